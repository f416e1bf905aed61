"""The device without HTTP: raw frames (vectors) and the real library over an in-memory backend."""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator

import pytest
from yubihsm.backends import YhsmBackend
from yubihsm.core import AuthSession, YubiHsm
from yubihsm.defs import COMMAND, ERROR, OBJECT
from yubihsm.exceptions import YubiHsmDeviceError, YubiHsmInvalidResponseError

from kms.sim.yubihsm import scp03
from kms.sim.yubihsm.defs import Cap, Cmd, Err, ObjType
from kms.sim.yubihsm.device import SimDevice
from kms.sim.yubihsm.faults import Faults
from tests.yubihsm_typed import ed25519_public_key


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class DirectBackend(YhsmBackend):
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
    assert [(o.id, o.object_type) for o in objs] == [(1, OBJECT.AUTHENTICATION_KEY)]
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
    session.send_secure_cmd(COMMAND.ECHO, b"keep")  # resets the idle timer
    clock.now += 29.9
    assert session.send_secure_cmd(COMMAND.ECHO, b"x") == b"x"
    clock.now += 30.1
    with pytest.raises(YubiHsmDeviceError) as e:
        session.send_secure_cmd(COMMAND.ECHO, b"x")
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
    assert sorted(s.sid for s in sessions if s.sid is not None) == list(range(16))
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
        session.get_object(77, OBJECT.ASYMMETRIC_KEY).get_info()
    assert e.value.code == ERROR.OBJECT_NOT_FOUND
    assert session.send_secure_cmd(COMMAND.ECHO, b"still here") == b"still here"

    device.faults.fail_next(1, Err.AUTHENTICATION_FAILED, layer="outer")
    with pytest.raises(YubiHsmDeviceError) as e:
        session.send_secure_cmd(COMMAND.ECHO, b"x")
    assert e.value.code == ERROR.AUTHENTICATION_FAILED
    with pytest.raises(YubiHsmDeviceError) as e:
        session.send_secure_cmd(COMMAND.ECHO, b"x")
    assert e.value.code == ERROR.INVALID_SESSION


def test_a_corrupted_rmac_is_caught_by_the_library_and_desynchronises_the_session(
    hsm: YubiHsm, device: SimDevice
) -> None:
    session = login(hsm)
    device.faults.corrupt_next_mac(1)
    with pytest.raises(YubiHsmInvalidResponseError, match="Incorrect MAC"):
        session.send_secure_cmd(COMMAND.ECHO, b"x")
    with pytest.raises(YubiHsmDeviceError) as e:
        session.send_secure_cmd(COMMAND.ECHO, b"x")
    assert e.value.code == ERROR.AUTHENTICATION_FAILED


def test_injected_inner_errors_can_target_one_command(hsm: YubiHsm, device: SimDevice) -> None:
    session = login(hsm)
    device.faults.fail_next(2, Err.STORAGE_FAILED, commands={Cmd.GET_PSEUDO_RANDOM})
    assert session.send_secure_cmd(COMMAND.ECHO, b"a") == b"a"
    for _ in range(2):
        with pytest.raises(YubiHsmDeviceError) as e:
            session.get_pseudo_random(4)
        assert e.value.code == ERROR.STORAGE_FAILED
    assert len(session.get_pseudo_random(4)) == 4


def test_the_message_cap_when_configured_ends_the_session(clock: FakeClock) -> None:
    dev = SimDevice(clock=clock, max_session_messages=3)
    session = login(YubiHsm(DirectBackend(dev)))
    for _ in range(3):
        session.send_secure_cmd(COMMAND.ECHO, b"x")
    with pytest.raises(YubiHsmDeviceError) as e:
        session.send_secure_cmd(COMMAND.ECHO, b"x")
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
    session.send_secure_cmd(COMMAND.ECHO, b"x")
    with pytest.raises(YubiHsmDeviceError):
        session.get_object(9, OBJECT.ASYMMETRIC_KEY).get_info()
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


# --- session-level checks, crafted by hand --------------------------------------------

VEC_CARD = bytes.fromhex("08090a0b0c0d0e0f")
VEC_CONTEXT = bytes.fromhex("0001020304050607") + VEC_CARD


def _vector_session() -> tuple[SimDevice, scp03.SessionKeys, bytes]:
    """A device with session 0 authenticated as in the §3.6 vectors: (device, keys, chain)."""
    dev = SimDevice(random_bytes=fixed_random(VEC_CARD))
    dev.handle(bytes.fromhex("03000a00010001020304050607"))
    dev.handle(bytes.fromhex("04001100b01410d72022ed0ec1e620c499fbf1a9"))
    keys = scp03.session_keys(*scp03.password_to_key("password"), VEC_CONTEXT)
    return dev, keys, bytes.fromhex("c1e620c499fbf1a9430c6f8678618bdb")


def test_a_correctly_maced_but_wrong_host_cryptogram_is_refused() -> None:
    dev = SimDevice(random_bytes=fixed_random(VEC_CARD))
    dev.handle(bytes.fromhex("03000a00010001020304050607"))
    keys = scp03.session_keys(*scp03.password_to_key("password"), VEC_CONTEXT)
    wrong = bytes(8)
    mac = scp03.authenticate_mac(keys.s_mac, 0, wrong)[:8]
    assert dev.handle(bytes.fromhex("04001100") + wrong + mac).response == err(
        Err.AUTHENTICATION_FAILED
    )
    assert dev.active_sessions() == []


def test_bad_padding_under_a_valid_mac_ends_the_session() -> None:
    dev, keys, chain = _vector_session()
    ct = scp03.cbc_encrypt(keys.s_enc, scp03.iv_for(keys.s_enc, 1), b"\x01\x00\x00" + b"\0" * 13)
    full = scp03.command_mac(keys.s_mac, chain, 0, ct)
    msg = struct.pack("!BHB", 0x05, 1 + len(ct) + 8, 0) + ct + full[:8]
    assert dev.handle(msg).response == err(Err.INVALID_DATA)
    assert dev.active_sessions() == []


def test_ciphertext_that_is_not_whole_blocks_ends_the_session() -> None:
    dev, keys, chain = _vector_session()
    ct = b"\0" * 20
    full = scp03.command_mac(keys.s_mac, chain, 0, ct)
    msg = struct.pack("!BHB", 0x05, 1 + len(ct) + 8, 0) + ct + full[:8]
    assert dev.handle(msg).response == err(Err.WRONG_LENGTH)
    assert dev.active_sessions() == []


def test_inner_length_mismatch_is_an_inner_error_and_the_session_continues() -> None:
    dev, keys, chain = _vector_session()
    msg, full = scp03.wrap_command(keys, 1, chain, 0, b"\x01\x00\x09hi")  # LEN says 9
    resp = dev.handle(msg).response
    assert resp[0] == 0x85
    iv = scp03.iv_for(keys.s_enc, 1)
    assert scp03.unpad(scp03.cbc_decrypt(keys.s_enc, iv, resp[4:-8])) == err(Err.WRONG_LENGTH)
    msg2, _ = scp03.wrap_command(keys, 2, full, 0, b"\x01\x00\x02ok")
    assert dev.handle(msg2).response[0] == 0x85
    assert dev.active_sessions() == [0]


# --- object creation rules ----------------------------------------------------------------


def _put_frame(obj_id: int, domains: int, caps: int) -> bytes:
    return struct.pack("!H40sHQB", obj_id, b"k", domains, caps, 46) + bytes(32)


def test_new_objects_need_at_least_one_domain(hsm: YubiHsm) -> None:
    session = login(hsm)
    with pytest.raises(YubiHsmDeviceError) as e:
        session.send_secure_cmd(COMMAND.PUT_ASYMMETRIC_KEY, _put_frame(5, 0, Cap.SIGN_EDDSA))
    assert e.value.code == ERROR.INVALID_DATA


def test_id_0xffff_is_invalid(hsm: YubiHsm) -> None:
    session = login(hsm)
    with pytest.raises(YubiHsmDeviceError) as e:
        session.send_secure_cmd(COMMAND.PUT_ASYMMETRIC_KEY, _put_frame(0xFFFF, 1, Cap.SIGN_EDDSA))
    assert e.value.code == ERROR.INVALID_ID


def test_storage_is_limited_to_256_objects(hsm: YubiHsm, device: SimDevice) -> None:
    for i in range(2, 257):
        device.put_ed25519_seed(i, i.to_bytes(32, "big"))
    session = login(hsm)
    with pytest.raises(YubiHsmDeviceError) as e:
        session.send_secure_cmd(COMMAND.PUT_ASYMMETRIC_KEY, _put_frame(300, 1, Cap.SIGN_EDDSA))
    assert e.value.code == ERROR.STORAGE_FAILED


def test_get_public_key_of_a_wrap_key_is_invalid_data(hsm: YubiHsm, device: SimDevice) -> None:
    device.put_wrap_key(7, bytes(16))
    session = login(hsm)
    with pytest.raises(YubiHsmDeviceError) as e:
        session.send_secure_cmd(COMMAND.GET_PUBLIC_KEY, struct.pack("!HB", 7, ObjType.WRAP_KEY))
    assert e.value.code == ERROR.INVALID_DATA


def test_import_refuses_capabilities_the_wrap_key_does_not_delegate(
    hsm: YubiHsm, device: SimDevice
) -> None:
    from yubihsm.objects import AsymmetricKey, WrapKey

    device.put_ed25519_seed(4, bytes(32), capabilities=Cap.SIGN_EDDSA | Cap.EXPORTABLE_UNDER_WRAP)
    device.put_wrap_key(1, b"w" * 32, delegated=Cap.ALL)
    device.put_wrap_key(2, b"w" * 32, delegated=Cap.EXPORTABLE_UNDER_WRAP)  # same key, narrow
    session = login(hsm)
    blob = WrapKey(session, 1).export_wrapped(AsymmetricKey(session, 4))
    device.delete_object(4, ObjType.ASYMMETRIC_KEY)
    with pytest.raises(YubiHsmDeviceError) as e:
        WrapKey(session, 2).import_wrapped(blob)
    assert e.value.code == ERROR.INSUFFICIENT_PERMISSIONS
    WrapKey(session, 1).import_wrapped(blob)


def test_corrupted_signature_arrives_in_a_valid_envelope(hsm: YubiHsm, device: SimDevice) -> None:
    from cryptography.exceptions import InvalidSignature
    from yubihsm.objects import AsymmetricKey

    device.put_ed25519_seed(4, bytes(32))
    key = AsymmetricKey(login(hsm), 4)
    device.faults.corrupt_next_signature(1)
    bad = key.sign_eddsa(b"m")
    with pytest.raises(InvalidSignature):
        ed25519_public_key(key).verify(bad, b"m")
    ed25519_public_key(key).verify(key.sign_eddsa(b"m"), b"m")
