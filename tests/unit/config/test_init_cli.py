"""`kms init`: a private home whose config loads once the validator address is filled in."""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from kms.cli.init import VALIDATOR_ADDR_PLACEHOLDER
from kms.cli.main import cli
from kms.config import load_config
from kms.errors import ConfigError
from kms.identity import load_identity_key
from kms.keyfile import write_secret_file

# the test chains are not in the known-chains table: their prefixes are given
TEST_PREFIXES = ("--account-prefix", "testpub", "--consensus-prefix", "testvalconspub")


def run(*args: str) -> Result:
    extra = TEST_PREFIXES if "--chain-id" in args else ()
    return CliRunner().invoke(cli, ["init", *args, *extra], catch_exceptions=False)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def fill_in_address(config: Path, addr: str = "tcp://127.0.0.1:26658") -> None:
    text = config.read_text()
    assert VALIDATOR_ADDR_PLACEHOLDER in text
    config.write_text(text.replace(VALIDATOR_ADDR_PLACEHOLDER, addr))


@pytest.fixture
def no_umask() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_softsign_home_has_private_modes_and_its_config_loads_once_addr_is_set(
    tmp_path: Path, no_umask: None
) -> None:
    home = tmp_path / "kms"
    r = run(str(home), "--softsign", "--chain-id", "test-1", "--fresh-state")
    assert r.exit_code == 0, r.output
    for d in (home, home / "secrets", home / "state"):
        assert mode(d) == 0o700, d
    files = [
        home / "tmkms.toml",
        home / "secrets/kms-identity.key",
        home / "secrets/test-1-consensus.key",
        home / "state/test-1.json",
    ]
    for f in files:
        assert mode(f) == 0o600, f
        assert f"created {f}" in r.output
    fill_in_address(home / "tmkms.toml")
    cfg = load_config(home / "tmkms.toml")
    (chain,) = cfg.chains
    assert chain.id == "test-1" and chain.state_file == home.resolve() / "state/test-1.json"
    (v,) = cfg.validators
    assert (v.host, v.port, v.secret_key) == (
        "127.0.0.1",
        26658,
        home.resolve() / "secrets/kms-identity.key",
    )
    (soft,) = cfg.softsign
    assert soft.path == home.resolve() / "secrets/test-1-consensus.key"
    assert cfg.yubihsm == ()
    consensus = load_identity_key(soft.path)  # same Base64-seed format
    assert consensus != load_identity_key(home / "secrets/kms-identity.key")


def test_softsign_key_written_by_init_loads_in_the_softsign_signer(tmp_path: Path) -> None:
    softsign = pytest.importorskip("kms.signer.softsign")
    assert run(str(tmp_path / "h"), "--softsign", "--chain-id", "t-1").exit_code == 0
    signer = softsign.load_softsign(tmp_path / "h/secrets/t-1-consensus.key")
    assert len(signer.public_key) == 32


def test_fresh_state_is_height_zero_and_readable_by_the_state_store(tmp_path: Path) -> None:
    store = pytest.importorskip("kms.state.store")
    assert run(str(tmp_path / "h"), "--chain-id", "c-1", "--fresh-state").exit_code == 0
    state = store.StateStore(tmp_path / "h/state/c-1.json").load()
    assert (state.height, state.round, state.step) == (0, 0, 0)


def test_fresh_state_without_the_state_store_writes_tmkms_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "kms.state.store", None)  # import fails
    assert run(str(tmp_path / "h"), "--chain-id", "c-1", "--fresh-state").exit_code == 0
    path = tmp_path / "h/state/c-1.json"
    assert json.loads(path.read_text()) == {
        "height": "0",
        "round": "0",
        "step": 0,
        "block_id": None,
    }
    assert mode(path) == 0o600


def test_without_fresh_state_no_state_file_is_created(tmp_path: Path) -> None:
    assert run(str(tmp_path / "h"), "--chain-id", "c-1").exit_code == 0
    assert list((tmp_path / "h/state").iterdir()) == []
    assert "kms state" in (tmp_path / "h/tmkms.toml").read_text()  # tells how to create one


def test_fresh_state_needs_an_explicit_chain_id(tmp_path: Path) -> None:
    r = CliRunner().invoke(cli, ["init", str(tmp_path / "h"), "--fresh-state"])
    assert r.exit_code != 0 and "--chain-id" in r.output
    assert not (tmp_path / "h").exists()


def test_yubihsm_home_loads_once_addr_and_hsm_password_are_set(tmp_path: Path) -> None:
    home = tmp_path / "h"
    assert run(str(home), "--chain-id", "hub-1").exit_code == 0
    fill_in_address(home / "tmkms.toml", "unix:///run/hub.sock")
    with pytest.raises(ConfigError, match=r"key 'auth.password_file'.*does not exist"):
        load_config(home / "tmkms.toml")
    write_secret_file(home / "secrets/hsm-password", b"password")
    cfg = load_config(home / "tmkms.toml")
    (p,) = cfg.yubihsm
    assert (p.name, p.auth_key, p.keys[0].chain_ids, p.keys[0].key) == (
        "127.0.0.1:12345",
        1,
        ("hub-1",),
        1,
    )
    assert cfg.softsign == ()


def test_skeleton_is_refused_until_the_validator_address_is_filled_in(tmp_path: Path) -> None:
    home = tmp_path / "h"
    assert run(str(home), "--softsign").exit_code == 0
    with pytest.raises(ConfigError, match=r"\[\[validator\]\] #1: key 'addr'"):
        load_config(home / "tmkms.toml")


def test_default_chain_and_directory_is_the_current_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert run("--softsign").exit_code == 0
    fill_in_address(tmp_path / "tmkms.toml")
    assert [c.id for c in load_config(tmp_path / "tmkms.toml").chains] == ["cosmoshub-4"]


def test_refuses_to_overwrite_and_leaves_everything_as_it_was(tmp_path: Path) -> None:
    home = tmp_path / "h"
    assert run(str(home), "--softsign", "--chain-id", "c-1", "--fresh-state").exit_code == 0
    before = {p: p.read_bytes() for p in home.rglob("*") if p.is_file()}
    r = CliRunner().invoke(
        cli, ["init", str(home), "--softsign", "--chain-id", "c-1", "--fresh-state", *TEST_PREFIXES]
    )
    assert r.exit_code != 0
    assert "refusing to overwrite" in r.output and "kms-identity.key" in r.output
    assert {p: p.read_bytes() for p in home.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("existing", ["tmkms.toml", "secrets/kms-identity.key", "state/c-1.json"])
def test_any_existing_target_file_stops_init_before_writing_anything(
    tmp_path: Path, existing: str
) -> None:
    home = tmp_path / "h"
    (home / "secrets").mkdir(parents=True)
    (home / "state").mkdir()
    (home / existing).write_text("operator's file")
    r = CliRunner().invoke(
        cli, ["init", str(home), "--chain-id", "c-1", "--fresh-state", *TEST_PREFIXES]
    )
    assert r.exit_code != 0 and existing.split("/")[-1] in r.output
    assert [p for p in home.rglob("*") if p.is_file()] == [home / existing]
    assert (home / existing).read_text() == "operator's file"


def test_existing_empty_directory_is_used_and_a_permissive_one_is_noted(tmp_path: Path) -> None:
    home = tmp_path / "h"
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)
    r = CliRunner().invoke(cli, ["init", str(home), "--softsign"])
    assert r.exit_code == 0, r.output
    assert f"chmod 700 {home}" in r.output
    assert mode(home) == 0o755  # not ours to change; the operator is told


@pytest.mark.parametrize("chain_id", ["a/b", "../up", 'q"uote', "x" * 51, "-dash"])
def test_chain_id_that_cannot_name_a_file_is_refused(tmp_path: Path, chain_id: str) -> None:
    r = CliRunner().invoke(
        cli, ["init", str(tmp_path / "h"), "--chain-id", chain_id, *TEST_PREFIXES]
    )
    assert r.exit_code != 0 and "chain ID" in r.output
    assert not (tmp_path / "h").exists()


def test_known_chain_gets_its_own_bech32_prefixes(tmp_path: Path) -> None:
    r = CliRunner().invoke(cli, ["init", str(tmp_path / "h"), "--chain-id", "osmosis-1"])
    assert r.exit_code == 0, r.output
    text = (tmp_path / "h" / "tmkms.toml").read_text()
    assert 'account_key_prefix = "osmopub", consensus_key_prefix = "osmovalconspub"' in text
    assert "cosmosvalconspub" not in text


def test_unknown_chain_needs_both_prefixes_and_writes_nothing_without_them(tmp_path: Path) -> None:
    r = CliRunner().invoke(cli, ["init", str(tmp_path / "h"), "--chain-id", "mychain-1"])
    assert r.exit_code == 2
    assert "--account-prefix" in r.output and "--consensus-prefix" in r.output
    assert not (tmp_path / "h").exists()
    r = CliRunner().invoke(
        cli, ["init", str(tmp_path / "h"), "--chain-id", "mychain-1", "--account-prefix", "mypub"]
    )
    assert r.exit_code == 2 and not (tmp_path / "h").exists()


def test_softsign_init_shows_every_form_of_the_new_public_key(tmp_path: Path) -> None:
    import base64

    from kms.pubkey import bech32_consensus_pubkey, public_key_from_seed, validator_address

    home = tmp_path / "h"
    r = CliRunner().invoke(cli, ["init", str(home), "--chain-id", "juno-1", "--softsign"])
    assert r.exit_code == 0, r.output
    seed = base64.b64decode((home / "secrets" / "juno-1-consensus.key").read_text().strip())
    pub = public_key_from_seed(seed[:32])
    for form in (
        pub.hex().upper(),
        base64.b64encode(pub).decode(),
        bech32_consensus_pubkey(pub, "junovalconspub"),
        validator_address(pub),
    ):
        assert form in r.output
    assert "junovalcons1" in r.output


def test_init_creates_the_audit_directory_its_config_names(tmp_path: Path) -> None:
    home = tmp_path / "h"
    assert run(str(home), "--softsign", "--chain-id", "c-1").exit_code == 0
    assert mode(home / "audit") == 0o700
    text = (
        (home / "tmkms.toml").read_text().replace(VALIDATOR_ADDR_PLACEHOLDER, "tcp://127.0.0.1:1")
    )
    (home / "tmkms.toml").write_text(text)
    (chain,) = load_config(home / "tmkms.toml").chains
    assert chain.audit_log == home / "audit" / "c-1.jsonl"
