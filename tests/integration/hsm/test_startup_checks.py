"""`kms start` refuses one device listed twice, and warns loudly about a factory auth key."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kms.keyfile import write_secret_file
from kms.sim.yubihsm import SimulatedHsm
from tests.integration.daemon.harness import Home, KmsProcess, make_home, run_kms_start

CHAIN = "startup-1"
KEY_ID = 7


@pytest.fixture
def sim() -> Iterator[SimulatedHsm]:
    with SimulatedHsm() as s:
        yield s


def config(home: Home, hosts: list[tuple[str, int]], auth_key: int, password: str) -> Path:
    pw = home.root / "secrets" / f"hsm-password-{auth_key}"
    if not pw.exists():
        write_secret_file(pw, password.encode())
    text = home.chain_section(CHAIN) + home.validator_section(
        CHAIN, "tcp://127.0.0.1:1", home.identity, "v0.38"
    )
    for host, port in hosts:
        text += (
            "[[providers.yubihsm]]\n"
            f'adapter = {{ type = "http", addr = "tcp://{host}:{port}" }}\n'
            f'auth = {{ key = {auth_key}, password_file = "{pw}" }}\n'
            f'keys = [{{ chain_ids = ["{CHAIN}"], key = {KEY_ID} }}]\n\n'
        )
    return home.write_config(text)


def test_one_device_under_two_addresses_is_refused_once_naming_both(
    tmp_path: Path, sim: SimulatedHsm
) -> None:
    home = make_home(tmp_path / "kms", [CHAIN])
    sim.device.put_ed25519_seed(KEY_ID, home.seed)
    cfg = config(home, [("127.0.0.1", sim.port), ("localhost", sim.port)], 1, "password")
    res = run_kms_start(cfg)
    assert res.returncode == 1
    out = res.stdout + res.stderr
    message = f"127.0.0.1:{sim.port} and localhost:{sim.port} are the same YubiHSM2"
    assert message in out
    assert out.count(message) == 1, out
    assert not sim.device.signed


def test_the_factory_auth_key_is_a_loud_warning_at_start(tmp_path: Path, sim: SimulatedHsm) -> None:
    home = make_home(tmp_path / "kms", [CHAIN])
    sim.device.put_ed25519_seed(KEY_ID, home.seed)
    sim.device.put_auth_key(4, "signer-pw")
    kms = KmsProcess(config(home, [("127.0.0.1", sim.port)], 4, "signer-pw"))
    try:
        deadline = time.monotonic() + 20
        while "factory auth key 1" not in kms.log():
            assert kms.alive() and time.monotonic() < deadline, kms.log()
            time.sleep(0.1)
    finally:
        kms.terminate()
    assert '"level": "WARNING"' in kms.log() or "WARNING" in kms.log()
    # once the factory key is gone, no warning
    sim.device.delete_object(1, 2)
    kms = KmsProcess(config(home, [("127.0.0.1", sim.port)], 4, "signer-pw"))
    try:
        deadline = time.monotonic() + 20
        while "opened replicas" not in kms.log():
            assert kms.alive() and time.monotonic() < deadline, kms.log()
            time.sleep(0.1)
    finally:
        kms.terminate()
    assert "factory auth key" not in kms.log()


@pytest.mark.parametrize(
    ("auth_key", "password", "message"),
    [
        (4, "wrong", "authentication failed for auth key 4 (wrong password?)"),
        (9, "signer-pw", "authentication failed: auth key 9 does not exist on the device"),
    ],
)
def test_start_names_the_auth_problem_once_and_not_as_unreachable(
    tmp_path: Path, sim: SimulatedHsm, auth_key: int, password: str, message: str
) -> None:
    home = make_home(tmp_path / "kms", [CHAIN])
    sim.device.put_ed25519_seed(KEY_ID, home.seed)
    sim.device.put_auth_key(4, "signer-pw")
    res = run_kms_start(config(home, [("127.0.0.1", sim.port)], auth_key, password))
    assert res.returncode == 1
    out = res.stdout + res.stderr
    refusal = [ln for ln in out.splitlines() if "start-up refused" in ln]
    assert len(refusal) == 1, out
    assert message in refusal[0]
    assert refusal[0].count(f"127.0.0.1:{sim.port}") == 1, refusal[0]
    assert "unreachable" not in out


async def test_a_failing_factory_key_check_never_keeps_a_replica_from_signing(
    sim: SimulatedHsm, caplog: pytest.LogCaptureFixture
) -> None:
    from kms.signer.yubihsm import YubiHsmSigner
    from kms.signer.yubihsm_session import derive_credentials

    sim.device.put_ed25519_seed(KEY_ID, bytes(32))
    sim.faults.fail_next(1, 0x0B, commands={0x48})  # LIST_OBJECTS: the check's only command
    signer = YubiHsmSigner.connect(sim.url, sim.url, KEY_ID, derive_credentials(1, "password"))
    try:
        await signer.open()
        assert len((await signer.sign_traced(b"m")).signature) == 64
    finally:
        await signer.close()
    assert "factory auth key" not in caplog.text  # not checked: no false claim either way
