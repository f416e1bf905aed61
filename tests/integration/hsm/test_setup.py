"""`kms hsm setup` / `kms hsm password` through click against three simulated replicas."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from yubihsm.backends.http import HttpBackend
from yubihsm.core import YubiHsm
from yubihsm.defs import CAPABILITY, ERROR, OBJECT
from yubihsm.exceptions import YubiHsmDeviceError

from kms.cli.main import cli
from kms.hsm import phrase
from kms.hsm.roles import PLAN, role
from kms.sim.yubihsm import SimulatedHsm

PHRASE_RE = re.compile(r"^((?:[a-z]+ ){23}[a-z]+)$", re.M)


def run(*args: str | Path, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False)


def conns(sims: list[SimulatedHsm]) -> list[str]:
    out: list[str] = []
    for s in sims:
        out += ["--connector", s.url]
    return out


@pytest.fixture
def sims() -> Iterator[list[SimulatedHsm]]:
    started = [SimulatedHsm(serial=7000001 + i).start() for i in range(3)]
    yield started
    for s in started:
        s.stop()


def layout(sim: SimulatedHsm) -> list[tuple[int, int, bytes, int, int, int, bytes]]:
    out = []
    for p in PLAN:
        o = sim.device.get_object(p.object_id, p.object_type)
        assert o is not None, f"{p.role} missing on {sim.device.serial}"
        out.append((o.id, o.type, o.label, o.capabilities, o.delegated, o.domains, o.secret))
    return out


def setup_ok(sims: list[SimulatedHsm], *extra: str | Path, input: str | None = None) -> Result:
    res = run("hsm", "setup", *conns(sims), *extra, input=input)
    assert res.exit_code == 0, res.output
    return res


def test_plan_lists_every_device_and_changes_nothing(sims: list[SimulatedHsm]) -> None:
    before = [s.device.snapshot()["objects"] for s in sims]
    res = setup_ok(sims, "--plan")
    for s in sims:
        assert f"serial {s.device.serial}" in res.output
    assert res.output.count("factory-fresh") == 3
    assert res.output.count("create auth key 4 'kms-signer': capabilities sign-eddsa;") == 3
    assert "delete the factory auth key 1" in res.output
    assert [s.device.snapshot()["objects"] for s in sims] == before


def test_setup_provisions_identical_replicas_and_prints_the_phrase_once(
    sims: list[SimulatedHsm], tmp_path: Path
) -> None:
    pw = tmp_path / "signer.pw"
    res = setup_ok(sims, "--signer-password-file", pw)
    phrases = PHRASE_RE.findall(res.output)
    assert len(phrases) == 1
    entropy = phrase.from_phrase(phrases[0])
    assert res.output.count("provisioned and verified") == 3
    assert layout(sims[0]) == layout(sims[1]) == layout(sims[2])
    for s in sims:
        assert s.device.get_object(1, OBJECT.AUTHENTICATION_KEY) is None  # factory key deleted
        wrap = s.device.get_object(1, OBJECT.WRAP_KEY)
        assert wrap is not None and wrap.secret == phrase.wrap_key(entropy)
    assert pw.read_text().strip() == phrase.role_password(entropy, "signer")
    assert pw.stat().st_mode & 0o777 == 0o600
    # the phrase is never written anywhere kms writes
    assert phrases[0] not in pw.read_text()
    # the derived signer password logs in with exactly the signer capabilities
    hsm = YubiHsm(HttpBackend(sims[0].url, timeout=(1, 3)))
    signer = hsm.create_session_derived(4, pw.read_text().strip())
    with pytest.raises(YubiHsmDeviceError) as e:
        signer.get_pseudo_random(4)
    assert e.value.code == ERROR.INSUFFICIENT_PERMISSIONS
    hsm.close()
    # a second setup is refused: the factory auth key is gone
    again = run("hsm", "setup", *conns(sims))
    assert again.exit_code == 1
    assert "cannot log in with the factory auth key 1" in again.output
    assert len(again.output.strip().splitlines()) == 1


def test_a_reset_device_rebuilt_from_the_phrase_gets_identical_objects(
    sims: list[SimulatedHsm], tmp_path: Path
) -> None:
    res = setup_ok(sims)
    text = PHRASE_RE.findall(res.output)[0]
    want = layout(sims[0])
    sims[2].device.factory_reset()
    rebuilt = setup_ok(sims[2:], "--recover", input=text + "\n")
    assert not PHRASE_RE.findall(rebuilt.output)  # a recovered phrase is never printed
    assert layout(sims[2]) == want
    out = tmp_path / "operator.pw"
    assert run("hsm", "password", "operator", "--out", out, input=text + "\n").exit_code == 0
    hsm = YubiHsm(HttpBackend(sims[2].url, timeout=(1, 3)))
    hsm.create_session_derived(role("operator").object_id, out.read_text().strip()).close()
    hsm.close()


def test_split_shares_any_two_of_three_rebuild_the_device(sims: list[SimulatedHsm]) -> None:
    res = setup_ok(sims[:1], "--split", "2-of-3")
    assert not PHRASE_RE.findall(res.output)  # the whole phrase is never shown
    shares = re.findall(r"^2-\d: .+$", res.output, re.M)
    assert len(shares) == 3
    want = layout(sims[0])
    sims[0].device.factory_reset()
    setup_ok(sims[:1], "--recover", input=f"{shares[2]}\n{shares[0]}\n")
    assert layout(sims[0]) == want
    sims[0].device.factory_reset()
    one = run("hsm", "setup", *conns(sims[:1]), "--recover", input=shares[1] + "\n")
    assert one.exit_code == 1 and "need 2 shares, got 1" in one.output
    assert sims[0].device.get_object(4, OBJECT.AUTHENTICATION_KEY) is None  # nothing written


def test_a_bad_phrase_changes_nothing(sims: list[SimulatedHsm]) -> None:
    words = phrase.to_phrase(bytes(range(32))).split()
    words[0], words[1] = words[1], words[0]
    res = run("hsm", "setup", *conns(sims[:1]), "--recover", input=" ".join(words) + "\n")
    assert res.exit_code == 1 and "checksum" in res.output
    assert len(sims[0].device.objects()) == 1


def test_devices_that_are_not_fresh_are_refused_unless_forced(sims: list[SimulatedHsm]) -> None:
    sims[1].device.put_ed25519_seed(9, bytes(32))
    sims[1].device.put_auth_key(4, "old", capabilities=CAPABILITY.ALL)
    res = run("hsm", "setup", *conns(sims))
    assert res.exit_code == 1
    assert f"not factory-fresh: 127.0.0.1:{sims[1].port} (3 objects)" in res.output
    assert all(len(s.device.objects()) == n for s, n in zip(sims, (1, 3, 1), strict=True))
    forced = setup_ok(sims, "--force")
    assert "WARNING: provisioning devices that are not factory-fresh" in forced.output
    assert layout(sims[0]) == layout(sims[1])
    assert sims[1].device.get_object(9, OBJECT.ASYMMETRIC_KEY) is not None  # not ours: kept


def test_the_same_device_under_two_addresses_is_refused(sims: list[SimulatedHsm]) -> None:
    twice = [
        "--connector",
        sims[0].url,
        "--connector",
        sims[0].url.replace("127.0.0.1", "localhost"),
    ]
    res = run("hsm", "setup", *twice)
    assert res.exit_code == 1
    assert (
        f"127.0.0.1:{sims[0].port} and localhost:{sims[0].port} are the same device" in res.output
    )
    assert len(sims[0].device.objects()) == 1


def test_forced_audit_and_the_config_path(sims: list[SimulatedHsm], tmp_path: Path) -> None:
    pw = tmp_path / "signer.pw"
    text = ""
    for s in sims[:2]:
        text += (
            f'[[providers.yubihsm]]\nadapter = {{ type = "http", addr = "tcp://127.0.0.1:{s.port}" }}\n'
            f'auth = {{ key = 1, password_file = "{pw}" }}\nkeys = [{{ chain_ids = ["c"], key = 7 }}]\n'
        )
    cfg = tmp_path / "kms.toml"
    cfg.write_text(
        '[[chain]]\nid = "c"\nkey_format = { type = "bech32", account_key_prefix = "p",'
        f' consensus_key_prefix = "pc" }}\nstate_file = "{tmp_path}/s.json"\n' + text
    )
    plan = setup_ok([], "-c", cfg, "--plan", "--force-audit")
    assert plan.output.count("forced audit on") == 2
    res = setup_ok([], "-c", cfg, "--force-audit", "--signer-password-file", pw)
    assert "WARNING: the config uses another auth key" in res.output  # key = 1, not 4
    for s in sims[:2]:
        assert s.device.snapshot()["options"]["force_audit"] == 1
        assert s.device.snapshot()["options"]["command_audit"]["106"] == 1  # SIGN_EDDSA
    assert len(sims[2].device.objects()) == 1  # not in the config: untouched
