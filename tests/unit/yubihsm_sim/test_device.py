"""The device without HTTP: raw frames (vectors) and the real library over an in-memory backend."""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator

import pytest
from yubihsm import YubiHsm
from yubihsm.backends import YhsmBackend
from yubihsm.core import AuthSession
from yubihsm.defs import ERROR
from yubihsm.exceptions import YubiHsmDeviceError, YubiHsmInvalidResponseError

from kms.sim.yubihsm.defs import Cap, Cmd, Err, ObjType
from kms.sim.yubihsm.device import SimDevice
from kms.sim.yubihsm.faults import Faults


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class DirectBackend(YhsmBackend):  # type: ignore[misc]
    def __init__(self, device: SimDevice) -> None:
        self.device = device

    def transceive(self, msg: bytes) -> bytes:
        return self.device.handle(msg).response

    def close(self) -> None:
        pass


def fixed_random(card: bytes) -> Callable[[int], bytes]:
    def rnd(n: int) -> bytes:
        return card if n == 8 else bytes(range(n % 256)) * (n // 256 + 1)

    return rnd


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def device(clock: FakeClock) -> SimDevice:
    return SimDevice(clock=clock)


@pytest.fixture
def hsm(device: SimDevice) -> Iterator[YubiHsm]:
    yield YubiHsm(DirectBackend(device))


def login(hsm: YubiHsm, key_id: int = 1, password: str = "password") -> AuthSession:
    return hsm.create_session_derived(key_id, password)


def err(code: int) -> bytes:
    return bytes((0x7F, 0, 1, code))


# --- raw frames --------------------------------------------------------------------


def test_device_reproduces_the_yubihsm_md_session_vectors_byte_for_byte() -> None:
    dev = SimDevice(random_bytes=fixed_random(bytes.fromhex("08090a0b0c0d0e0f")))
    create = dev.handle(bytes.fromhex("03000a00010001020304050607")).response
    assert create.hex() == "830011" + "00" + "08090a0b0c0d0e0f" + "0d89ea51bf1bf533"
    auth = dev.handle(bytes.fromhex("04001100b01410d72022ed0ec1e620c499fbf1a9")).response
    assert auth == b"\x84\x00\x00"
    cmd = bytes.fromhex("05001900dfaeaaab8b2a997e0ca963ac834cbd0a0f709344da410952")
    resp = dev.handle(cmd).response
    assert resp.hex() == "85001900139656777a5cb7fe9fca0ccae9dc61c1c2d94c8f9894b68e"


def test_replaying_a_session_message_fails_and_kills_the_session() -> None:
    dev = SimDevice(random_bytes=fixed_random(bytes.fromhex("08090a0b0c0d0e0f")))
    dev.handle(bytes.fromhex("03000a00010001020304050607"))
    dev.handle(bytes.fromhex("04001100b01410d72022ed0ec1e620c499fbf1a9"))
    cmd = bytes.fromhex("05001900dfaeaaab8b2a997e0ca963ac834cbd0a0f709344da410952")
    dev.handle(cmd)
    assert dev.handle(cmd).response == err(Err.AUTHENTICATION_FAILED)
    assert dev.active_sessions() == []
    assert dev.handle(cmd).response == err(Err.INVALID_SESSION)


def test_a_wrong_host_cryptogram_fails_authentication_and_frees_the_slot() -> None:
    dev = SimDevice(random_bytes=fixed_random(bytes.fromhex("08090a0b0c0d0e0f")))
    dev.handle(bytes.fromhex("03000a00010001020304050607"))
    bad = bytearray(bytes.fromhex("04001100b01410d72022ed0ec1e620c499fbf1a9"))
    bad[5] ^= 1
    assert dev.handle(bytes(bad)).response == err(Err.AUTHENTICATION_FAILED)
    assert dev.active_sessions() == []


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"\x01\x00", Err.WRONG_LENGTH),  # shorter than a header
        (b"\x01\x00\x05ab", Err.WRONG_LENGTH),  # LEN disagrees with the payload
        (b"\x48\x00\x00", Err.INVALID_COMMAND),  # session-only command sent in plaintext
        (b"\x99\x00\x00", Err.INVALID_COMMAND),  # unknown command
        (b"\x03\x00\x02\x00\x01", Err.WRONG_LENGTH),  # CREATE_SESSION too short
        (b"\x03\x00\x0a\x00\x09" + b"h" * 8, Err.OBJECT_NOT_FOUND),  # no auth key 9
        (b"\x05\x00\x19\x07" + b"\0" * 24, Err.INVALID_SESSION),  # no session 7
    ],
)
def test_plaintext_errors(device: SimDevice, raw: bytes, code: int) -> None:
    assert device.handle(raw).response == err(code)


def test_plaintext_echo_and_exact_response_length(device: SimDevice) -> None:
    assert device.handle(b"\x01\x00\x03abc").response == b"\x81\x00\x03abc"


def test_frames_above_the_device_buffer_are_refused(device: SimDevice) -> None:
    payload = b"x" * (3136 - 3 + 1)
    raw = struct.pack("!BH", Cmd.ECHO, len(payload)) + payload
    assert device.handle(raw).response == err(Err.WRONG_LENGTH)


# --- through the real library, no HTTP ------------------------------------------------


def test_factory_state_has_only_the_default_auth_key(hsm: YubiHsm) -> None:
    session = login(hsm)
    objs = session.list_objects()
    assert [(o.id, o.object_type) for o in objs] == [(1, ObjType.AUTHENTICATION_KEY)]
    info = objs[0].get_info()
    assert info.label == "DEFAULT AUTHKEY CHANGE THIS ASAP"
    assert (info.domains, info.algorithm, info.origin, info.sequence, info.size) == (
        0xFFFF,
        38,
        2,
        0,
        40,
    )
    assert info.capabilities == info.delegated_capabilities == Cap.ALL


def test_sessions_expire_after_30_idle_seconds(
    hsm: YubiHsm, device: SimDevice, clock: FakeClock
) -> None:
    session = login(hsm)
    clock.now += 29.9
    session.send_secure_cmd(Cmd.ECHO, b"keep")  # resets the idle timer
    clock.now += 29.9
    assert session.send_secure_cmd(Cmd.ECHO, b"x") == b"x"
    clock.now += 30.1
    with pytest.raises(YubiHsmDeviceError) as e:
        session.send_secure_cmd(Cmd.ECHO, b"x")
    assert e.value.code == ERROR.INVALID_SESSION
    assert device.active_sessions() == []


def test_half_open_sessions_hold_a_slot_until_they_expire(
    hsm: YubiHsm, device: SimDevice, clock: FakeClock
) -> None:
    hsm.init_session(1)  # CREATE_SESSION without AUTHENTICATE_SESSION
    assert device.active_sessions() == [0]
    clock.now += 31
    assert device.active_sessions() == []


def test_sixteen_sessions_then_sessions_full(hsm: YubiHsm, device: SimDevice) -> None:
    sessions = [login(hsm) for _ in range(16)]
    assert sorted(s.sid for s in sessions) == list(range(16))
    with pytest.raises(YubiHsmDeviceError) as e:
        login(hsm)
    assert e.value.code == ERROR.SESSIONS_FULL
    sessions[3].close()
    assert login(hsm).sid == 3  # lowest free slot


def test_command_errors_keep_the_session_and_session_errors_end_it(
    hsm: YubiHsm, device: SimDevice
) -> None:
    session = login(hsm)
    with pytest.raises(YubiHsmDeviceError) as e:
        session.get_object(77, ObjType.ASYMMETRIC_KEY).get_info()
    assert e.value.code == ERROR.OBJECT_NOT_FOUND
    assert session.send_secure_cmd(Cmd.ECHO, b"still here") == b"still here"

    device.faults.fail_next(1, Err.AUTHENTICATION_FAILED, layer="outer")
    with pytest.raises(YubiHsmDeviceError) as e:
        session.send_secure_cmd(Cmd.ECHO, b"x")
    assert e.value.code == ERROR.AUTHENTICATION_FAILED
    with pytest.raises(YubiHsmDeviceError) as e:
        session.send_secure_cmd(Cmd.ECHO, b"x")
    assert e.value.code == ERROR.INVALID_SESSION


def test_a_corrupted_rmac_is_caught_by_the_library_and_desynchronises_the_session(
    hsm: YubiHsm, device: SimDevice
) -> None:
    session = login(hsm)
    device.faults.corrupt_next_mac(1)
    with pytest.raises(YubiHsmInvalidResponseError, match="Incorrect MAC"):
        session.send_secure_cmd(Cmd.ECHO, b"x")
    with pytest.raises(YubiHsmDeviceError) as e:
        session.send_secure_cmd(Cmd.ECHO, b"x")
    assert e.value.code == ERROR.AUTHENTICATION_FAILED


def test_injected_inner_errors_can_target_one_command(hsm: YubiHsm, device: SimDevice) -> None:
    session = login(hsm)
    device.faults.fail_next(2, Err.STORAGE_FAILED, commands={Cmd.GET_PSEUDO_RANDOM})
    assert session.send_secure_cmd(Cmd.ECHO, b"a") == b"a"
    for _ in range(2):
        with pytest.raises(YubiHsmDeviceError) as e:
            session.get_pseudo_random(4)
        assert e.value.code == ERROR.STORAGE_FAILED
    assert len(session.get_pseudo_random(4)) == 4


def test_the_message_cap_when_configured_ends_the_session(clock: FakeClock) -> None:
    dev = SimDevice(clock=clock, max_session_messages=3)
    session = login(YubiHsm(DirectBackend(dev)))
    for _ in range(3):
        session.send_secure_cmd(Cmd.ECHO, b"x")
    with pytest.raises(YubiHsmDeviceError) as e:
        session.send_secure_cmd(Cmd.ECHO, b"x")
    assert e.value.code == ERROR.INVALID_SESSION


def test_largest_pseudo_random_fits_the_buffer_and_one_more_is_refused(hsm: YubiHsm) -> None:
    session = login(hsm)
    assert len(session.get_pseudo_random(3116)) == 3116
    with pytest.raises(YubiHsmDeviceError) as e:
        session.get_pseudo_random(3117)
    assert e.value.code == ERROR.WRONG_LENGTH


def test_older_firmware_uses_the_2048_byte_buffer() -> None:
    dev = SimDevice(version=(2, 2, 0))
    hsm = YubiHsm(DirectBackend(dev))
    info = hsm.get_device_info()
    assert info.version == (2, 2, 0) and info.part_number is None
    session = login(hsm)
    assert len(session.get_pseudo_random(2028)) == 2028
    with pytest.raises(YubiHsmDeviceError):
        session.get_pseudo_random(2029)


def test_observability_counts_commands_and_results(hsm: YubiHsm, device: SimDevice) -> None:
    session = login(hsm)
    session.send_secure_cmd(Cmd.ECHO, b"x")
    with pytest.raises(YubiHsmDeviceError):
        session.get_object(9, ObjType.ASYMMETRIC_KEY).get_info()
    assert device.counters[(Cmd.ECHO, 0)] == 1
    assert device.counters[(Cmd.GET_OBJECT_INFO, Err.OBJECT_NOT_FOUND)] == 1


def test_faults_clear_removes_pending_faults() -> None:
    f = Faults()
    f.fail_next(3, Err.STORAGE_FAILED)
    f.corrupt_next_mac(2)
    f.hang()
    f.clear()
    assert f.take_error(Cmd.ECHO) is None
    assert not f.take_corrupt_mac()
    assert not f.hung
