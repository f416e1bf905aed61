"""kms keygen / import / export / keys list through click, against simulated replicas."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from nacl.signing import SigningKey

from kms.cli.main import cli
from kms.keyfile import write_base64_seed, write_priv_validator_key, write_secret_file
from kms.pubkey import bech32_consensus_pubkey, validator_address
from kms.sim.yubihsm import SimulatedHsm

from .conftest import KEY_ID, SEED, SimFactory, objects_of

PUB = bytes(SigningKey(SEED).verify_key)
NEW_ID = 9


def run(*args: str | Path | int) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def conn_args(sims: list[SimulatedHsm], password_file: Path) -> list[str | Path]:
    out: list[str | Path] = []
    for s in sims:
        out += ["--connector", s.url.replace("http://", "tcp://")]
    return [*out, "--auth-key", "1", "--password-file", password_file]


def write_config(tmp_path: Path, sims: list[SimulatedHsm], password_file: Path, key: int) -> Path:
    sections = "".join(
        f"""
[[providers.yubihsm]]
adapter = {{ type = "http", addr = "tcp://127.0.0.1:{s.port}" }}
auth = {{ key = 1, password_file = "{password_file}" }}
keys = [{{ chain_ids = ["test-1"], key = {key} }}]
"""
        for s in sims
    )
    path = tmp_path / "kms.toml"
    path.write_text(
        """[[chain]]
id = "test-1"
key_format = { type = "bech32", account_key_prefix = "cosmospub", consensus_key_prefix = "cosmosvalconspub" }
state_file = "state/test-1.json"
"""
        + sections
    )
    return path


def public_key_on(sim: SimulatedHsm, key_id: int) -> bytes | None:
    obj = sim.device.get_object(key_id, 3)
    if obj is None:
        return None
    secret = bytes(obj.secret)
    return bytes(SigningKey(secret[:32]).verify_key) if len(secret) in (32, 128) else secret[64:96]


# --- softsign -------------------------------------------------------------------------


def test_keygen_softsign_writes_private_seed_and_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "consensus.key"
    res = run("keygen", "--softsign", path)
    assert res.exit_code == 0, res.output
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    seed = base64.b64decode(path.read_bytes())
    assert validator_address(bytes(SigningKey(seed).verify_key)) in res.output
    before = path.read_bytes()
    res2 = run("keygen", "--softsign", path)
    assert res2.exit_code != 0 and "already exists" in res2.output
    assert path.read_bytes() == before


def test_import_softsign_from_priv_validator_key(tmp_path: Path) -> None:
    src, out = tmp_path / "priv_validator_key.json", tmp_path / "out.key"
    write_priv_validator_key(src, SEED)
    res = run("import", "--softsign", out, src)
    assert res.exit_code == 0, res.output
    assert base64.b64decode(out.read_bytes()) == SEED
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


# --- HSM import / keygen / export -------------------------------------------------------


def test_import_seed_once_into_every_replica_then_all_sign_identically(
    sims: SimFactory, admin_password_file: Path, tmp_path: Path
) -> None:
    reps = sims(3, seed=None)
    src = tmp_path / "priv_validator_key.json"
    write_priv_validator_key(src, SEED)
    res = run("import", *conn_args(reps, admin_password_file), "--key-id", KEY_ID, src)
    assert res.exit_code == 0, res.output
    assert validator_address(PUB) in res.output
    assert [public_key_on(s, KEY_ID) for s in reps] == [PUB] * 3


def test_import_refuses_permissive_key_file_and_changes_nothing(
    sims: SimFactory, admin_password_file: Path, tmp_path: Path
) -> None:
    reps = sims(2, seed=None)
    src = tmp_path / "seed.key"
    write_base64_seed(src, SEED)
    src.chmod(0o644)
    before = [objects_of(s) for s in reps]
    res = run("import", *conn_args(reps, admin_password_file), "--key-id", KEY_ID, src)
    assert res.exit_code != 0
    assert "chmod 600" in res.output and str(src) in res.output
    assert [objects_of(s) for s in reps] == before


def test_wrong_password_fails_with_one_clear_message_and_changes_nothing(
    sims: SimFactory, tmp_path: Path
) -> None:
    reps = sims(2, seed=None)
    bad = tmp_path / "bad-password"
    write_secret_file(bad, b"not-the-password\n")
    src = tmp_path / "seed.key"
    write_base64_seed(src, SEED)
    before = [objects_of(s) for s in reps]
    res = run("import", *conn_args(reps, bad), "--key-id", KEY_ID, src)
    assert res.exit_code != 0
    assert "authentication failed" in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert [objects_of(s) for s in reps] == before


def test_import_refuses_to_overwrite_a_different_key_unless_forced(
    sims: SimFactory, admin_password_file: Path, tmp_path: Path
) -> None:
    reps = sims(2)  # both already hold SEED at KEY_ID
    other = tmp_path / "other.key"
    write_base64_seed(other, bytes(32))
    before = [objects_of(s) for s in reps]
    res = run("import", *conn_args(reps, admin_password_file), "--key-id", KEY_ID, other)
    assert res.exit_code != 0 and "already exists" in res.output and "--force" in res.output
    assert [objects_of(s) for s in reps] == before
    res = run("import", *conn_args(reps, admin_password_file), "--key-id", KEY_ID, "--force", other)
    assert res.exit_code == 0, res.output
    new_pub = bytes(SigningKey(bytes(32)).verify_key)
    assert [public_key_on(s, KEY_ID) for s in reps] == [new_pub] * 2


def test_keygen_generates_on_first_and_clones_under_wrap_with_backup(
    sims: SimFactory, admin_password_file: Path, tmp_path: Path
) -> None:
    reps = sims(3, seed=None)
    backup = tmp_path / "backup.json"
    res = run(
        "keygen", *conn_args(reps, admin_password_file), "--key-id", NEW_ID, "--backup", backup
    )
    assert res.exit_code == 0, res.output
    keys = {public_key_on(s, NEW_ID) for s in reps}
    assert len(keys) == 1 and None not in keys
    doc = json.loads(backup.read_text())
    assert doc["format"] == "kms-wrapped-v1" and doc["key_id"] == NEW_ID
    assert base64.b64decode(doc["public_key"]) in keys
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    # the backup restores into a fresh device through the wrap key
    (fresh,) = sims(1, seed=None)
    res = run("import", *conn_args([fresh], admin_password_file), "--key-id", NEW_ID, backup)
    assert res.exit_code == 0, res.output
    assert public_key_on(fresh, NEW_ID) in keys


def test_keygen_refuses_before_generating_when_a_replica_lacks_the_wrap_key(
    sims: SimFactory, admin_password_file: Path
) -> None:
    reps = sims(2, seed=None)
    reps[1].device.delete_object(1, 4)
    before = [objects_of(s) for s in reps]
    res = run("keygen", *conn_args(reps, admin_password_file), "--key-id", NEW_ID)
    assert res.exit_code != 0 and "wrap key 1 not found" in res.output
    assert [objects_of(s) for s in reps] == before


def test_keygen_refuses_existing_key_id(sims: SimFactory, admin_password_file: Path) -> None:
    reps = sims(2)
    before = [objects_of(s) for s in reps]
    res = run("keygen", *conn_args(reps, admin_password_file), "--key-id", KEY_ID)
    assert res.exit_code != 0 and "already exists" in res.output
    assert [objects_of(s) for s in reps] == before


def test_non_exportable_keygen_cannot_have_replicas(
    sims: SimFactory, admin_password_file: Path
) -> None:
    reps = sims(2, seed=None)
    res = run(
        "keygen", *conn_args(reps, admin_password_file), "--key-id", NEW_ID, "--non-exportable"
    )
    assert res.exit_code != 0 and "non-exportable" in res.output
    assert [public_key_on(s, NEW_ID) for s in reps] == [None, None]


def test_export_missing_key_id_is_refused(
    sims: SimFactory, admin_password_file: Path, tmp_path: Path
) -> None:
    (sim,) = sims(1)
    out = tmp_path / "b.json"
    res = run("export", *conn_args([sim], admin_password_file), "--key-id", 77, out)
    assert res.exit_code != 0 and "not found" in res.output
    assert not out.exists()


def test_wrapped_backup_for_the_wrong_wrap_key_is_refused_and_changes_nothing(
    sims: SimFactory, admin_password_file: Path, tmp_path: Path
) -> None:
    # keys generated on-device are exportable; SEED was put without that capability
    a, b = sims(2, seed=None)
    assert run("keygen", *conn_args([a], admin_password_file), "--key-id", NEW_ID).exit_code == 0
    out = tmp_path / "b.json"
    res = run("export", *conn_args([a], admin_password_file), "--key-id", NEW_ID, out)
    assert res.exit_code == 0, res.output
    b.device.delete_object(1, 4)
    b.device.put_wrap_key(1, bytes(32))  # same id, different key
    before = objects_of(b)
    res = run("import", *conn_args([b], admin_password_file), "--key-id", NEW_ID, out)
    assert res.exit_code != 0
    assert "INVALID_DATA" in res.output or "device error" in res.output
    assert objects_of(b) == before


# --- keys list --------------------------------------------------------------------------


def test_keys_list_shows_chain_format_and_address(
    sims: SimFactory, admin_password_file: Path, tmp_path: Path
) -> None:
    reps = sims(2)
    cfg = write_config(tmp_path, reps, admin_password_file, KEY_ID)
    res = run("keys", "list", "-c", cfg)
    assert res.exit_code == 0, res.output
    assert bech32_consensus_pubkey(PUB, "cosmosvalconspub") in res.output
    assert validator_address(PUB) in res.output
    assert "sign-eddsa" in res.output
    res = run("keys", "list", "-c", cfg, "--json")
    doc = json.loads(res.output)
    assert doc["problems"] == []
    assert [k["id"] for d in doc["devices"] for k in d["keys"]] == [KEY_ID, KEY_ID]


def test_keys_list_flags_replicas_that_disagree_or_miss_the_key(
    sims: SimFactory, admin_password_file: Path, tmp_path: Path
) -> None:
    reps = sims(3)
    reps[1].device.delete_object(KEY_ID, 3)
    reps[1].device.put_ed25519_seed(KEY_ID, bytes(32), domains=1)
    reps[2].device.delete_object(KEY_ID, 3)
    cfg = write_config(tmp_path, reps, admin_password_file, KEY_ID)
    res = CliRunner().invoke(cli, ["keys", "list", "-c", str(cfg), "--json"])
    assert res.exit_code == 1
    doc = json.loads(res.stdout)
    problems = " | ".join(doc["problems"])
    assert f"127.0.0.1:{reps[2].port}: configured key {KEY_ID} is missing" in problems
    assert "disagree" in problems


def test_keys_list_reports_an_unreachable_device(
    sims: SimFactory, admin_password_file: Path, tmp_path: Path
) -> None:
    reps = sims(2)
    reps[1].faults.listener_down()
    res = run("keys", "list", *conn_args(reps, admin_password_file))
    assert res.exit_code == 1
    assert "unreachable" in res.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["import", "--key-id", "4", "x"], "give -c CONFIG or --connector"),
        (["keygen", "--connector", "ftp://h:1", "--key-id", "4"], "expected tcp://"),
        (["keygen", "--connector", "tcp://127.0.0.1:1", "--key-id", "0"], "1..65534"),
    ],
)
def test_bad_invocations_fail_with_one_line(
    args: list[str], message: str, tmp_path: Path, admin_password_file: Path
) -> None:
    if args[-1] == "x":
        src = tmp_path / "x"
        write_base64_seed(src, SEED)
        args = [*args[:-1], str(src)]
    args = [*args, "--password-file", str(admin_password_file)]
    res = run(*args)
    assert res.exit_code != 0
    assert message in res.output


def test_password_is_prompted_when_no_file_is_given(sims: SimFactory, tmp_path: Path) -> None:
    (sim,) = sims(1, seed=None)
    src = tmp_path / "seed.key"
    write_base64_seed(src, SEED)
    args = ["import", "--connector", sim.url, "--key-id", str(KEY_ID), str(src)]
    res = CliRunner().invoke(cli, args, input="password\n")
    assert res.exit_code == 0, res.output
    assert "password\n" not in res.output.replace("Password for auth key 1: \n", "")
    assert public_key_on(sim, KEY_ID) == PUB


def test_keygen_and_export_from_a_config(
    sims: SimFactory, admin_password_file: Path, tmp_path: Path
) -> None:
    reps = sims(2, seed=None)
    cfg = write_config(tmp_path, reps, admin_password_file, NEW_ID)
    res = run("keygen", "-c", cfg, "--key-id", NEW_ID)
    assert res.exit_code == 0, res.output
    assert run("keys", "list", "-c", cfg).exit_code == 0
    out = tmp_path / "backup.json"
    res = run("export", "-c", cfg, "--key-id", NEW_ID, out)
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert base64.b64decode(doc["public_key"]) == public_key_on(reps[1], NEW_ID)
