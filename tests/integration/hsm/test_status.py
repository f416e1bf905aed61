"""`kms hsm status` against simulated replicas: report, warnings, and one-line error messages."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from nacl.signing import SigningKey

from kms.cli.main import cli
from kms.hsm.roles import VALIDATOR_KEY_CAPS
from kms.keyfile import write_secret_file
from kms.pubkey import validator_address
from kms.sim.yubihsm import SimulatedHsm

SEED = bytes(range(32))
KEY_ID = 7


def run(*args: str | Path, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False)


@pytest.fixture
def sims() -> Iterator[list[SimulatedHsm]]:
    started = [SimulatedHsm().start() for _ in range(2)]
    yield started
    for s in started:
        s.stop()


def provisioned(sims: list[SimulatedHsm], tmp_path: Path) -> Path:
    """Run kms hsm setup, add the validator key, write a config using the signer role."""
    pw = tmp_path / "signer.pw"
    args: list[str | Path] = ["hsm", "setup", "--signer-password-file", pw]
    for s in sims:
        args += ["--connector", s.url]
    assert run(*args).exit_code == 0
    for s in sims:
        s.device.put_ed25519_seed(KEY_ID, SEED, capabilities=int(VALIDATOR_KEY_CAPS), domains=1)
    text = (
        '[[chain]]\nid = "c-1"\nkey_format = { type = "bech32", account_key_prefix = "p",'
        f' consensus_key_prefix = "pc" }}\nstate_file = "{tmp_path}/c-1.json"\n'
    )
    for s in sims:
        text += (
            f'[[providers.yubihsm]]\nadapter = {{ type = "http", addr = "tcp://127.0.0.1:{s.port}" }}\n'
            f'auth = {{ key = 4, password_file = "{pw}" }}\n'
            f'keys = [{{ chain_ids = ["c-1"], key = {KEY_ID} }}]\n'
        )
    cfg = tmp_path / "kms.toml"
    cfg.write_text(text)
    return cfg


def test_status_of_provisioned_replicas(sims: list[SimulatedHsm], tmp_path: Path) -> None:
    cfg = provisioned(sims, tmp_path)
    res = run("hsm", "status", "-c", cfg, "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["ok"] and doc["problems"] == []
    address = validator_address(bytes(SigningKey(SEED).verify_key))
    for s, d in zip(sims, doc["devices"], strict=True):
        assert d["reachable"] and d["serial"] == s.device.serial and d["firmware"] == "2.4.0"
        assert d["auth_key"] == 4 and d["auth_key_capabilities"] == "sign-eddsa"
        assert d["auth_key_domains"] == "1"
        assert d["factory_auth_key_present"] is False
        assert d["total_objects"] == 256 and d["free_objects"] == 256 - len(s.device.objects())
        assert d["log_total"] == 62 and 0 < d["log_used"] <= 62
        assert [(k["key_id"], k["address"]) for k in d["keys"]] == [(KEY_ID, address)]
    text = run("hsm", "status", "-c", cfg)
    assert text.exit_code == 0
    assert f"key {KEY_ID} 'validator': {address} (sign-eddsa,exportable-under-wrap)" in text.output


def test_factory_key_and_missing_key_are_reported_and_exit_1(
    sims: list[SimulatedHsm], tmp_path: Path
) -> None:
    pw = tmp_path / "factory.pw"
    write_secret_file(pw, b"password")
    res = run("hsm", "status", "--connector", sims[0].url, "--auth-key", "1", "--password-file", pw)
    assert res.exit_code == 1
    assert "WARNING: the factory auth key 1 still exists" in res.output
    assert "auth key 1: capabilities all; domains all" in res.output


def test_error_messages_name_the_cause_and_the_address_once(
    sims: list[SimulatedHsm], tmp_path: Path
) -> None:
    cfg = provisioned(sims, tmp_path)
    wrong = tmp_path / "wrong.pw"
    write_secret_file(wrong, b"not-the-password")
    url = sims[0].url
    addr = url.removeprefix("http://")
    res = run("hsm", "status", "--connector", url, "--auth-key", "4", "--password-file", wrong)
    line = next(ln for ln in res.output.splitlines() if "authentication failed" in ln)
    assert "authentication failed for auth key 4 (wrong password?)" in line
    assert "unreachable" not in res.output.lower()
    assert line.count(addr) <= 1
    res = run("hsm", "status", "--connector", url, "--auth-key", "9", "--password-file", wrong)
    assert "auth key 9 does not exist on the device" in res.output
    sims[1].stop()
    res = run("hsm", "status", "-c", cfg)
    assert res.exit_code == 1
    down = [ln for ln in res.output.splitlines() if "UNREACHABLE" in ln]
    assert len(down) == 1 and down[0].count(f"127.0.0.1:{sims[1].port}") == 1, down
    assert re.search(r"UNREACHABLE \(connection failed \(connection refused\)\)", down[0])


def test_two_addresses_of_one_device_are_a_problem(
    sims: list[SimulatedHsm], tmp_path: Path
) -> None:
    pw = tmp_path / "factory.pw"
    write_secret_file(pw, b"password")
    other = sims[0].url.replace("127.0.0.1", "localhost")
    res = run(
        "hsm", "status", "--connector", sims[0].url, "--connector", other,
        "--auth-key", "1", "--password-file", pw, "--json",
    )  # fmt: skip
    assert res.exit_code == 1
    doc = json.loads(res.output)
    assert doc["problems"] == [
        f"127.0.0.1:{sims[0].port} and localhost:{sims[0].port} are the same device"
        f" (serial {sims[0].device.serial}); list each device once"
    ]
