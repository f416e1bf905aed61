"""Session setup, limits and lifetime through the real library over HTTP."""

from __future__ import annotations

import pytest
from yubihsm.core import YubiHsm
from yubihsm.defs import CAPABILITY, COMMAND, ERROR
from yubihsm.exceptions import YubiHsmAuthenticationError, YubiHsmDeviceError
from yubihsm.objects import AuthenticationKey

from kms.sim.yubihsm import SimulatedHsm

from .conftest import FakeClock


def test_connect_reads_device_info_with_both_pages(hsm: YubiHsm, sim: SimulatedHsm) -> None:
    info = hsm.get_device_info()
    assert info.version == (2, 4, 0)
    assert info.serial == sim.device.serial >= 1000001
    assert info.log_size == 62 and info.log_used == 2
    assert info.part_number == "SIM-YubiHSM2"
    assert len(info.supported_algorithms) >= 47


def test_default_password_opens_a_session_and_echo_works(hsm: YubiHsm) -> None:
    with hsm.create_session_derived(1, "password") as session:
        assert session.send_secure_cmd(COMMAND.ECHO, b"ping") == b"ping"


def test_plaintext_echo(hsm: YubiHsm) -> None:
    assert hsm.send_cmd(COMMAND.ECHO, b"\x00" * 2021) == b"\x00" * 2021


def test_wrong_password_is_refused_by_the_card_cryptogram(hsm: YubiHsm, sim: SimulatedHsm) -> None:
    with pytest.raises(YubiHsmAuthenticationError):
        hsm.create_session_derived(1, "not the password")
    # The library gives up before AUTHENTICATE_SESSION: the half-open session holds a slot.
    assert sim.device.active_sessions() == [0]
    assert len([hsm.create_session_derived(1, "password") for _ in range(15)]) == 15
    with pytest.raises(YubiHsmDeviceError) as e:
        hsm.create_session_derived(1, "password")
    assert e.value.code == ERROR.SESSIONS_FULL


def test_unknown_auth_key_is_object_not_found(hsm: YubiHsm) -> None:
    with pytest.raises(YubiHsmDeviceError) as e:
        hsm.create_session_derived(42, "password")
    assert e.value.code == ERROR.OBJECT_NOT_FOUND


def test_session_exhaustion_and_recovery_by_close(hsm: YubiHsm) -> None:
    sessions = [hsm.create_session_derived(1, "password") for _ in range(16)]
    with pytest.raises(YubiHsmDeviceError) as e:
        hsm.create_session_derived(1, "password")
    assert e.value.code == ERROR.SESSIONS_FULL
    sessions[0].close()
    hsm.create_session_derived(1, "password")


def test_idle_session_expires_after_30_seconds(
    hsm: YubiHsm, sim: SimulatedHsm, clock: FakeClock
) -> None:
    session = hsm.create_session_derived(1, "password")
    clock.now += 30.5
    with pytest.raises(YubiHsmDeviceError) as e:
        session.send_secure_cmd(COMMAND.ECHO, b"x")
    assert e.value.code == ERROR.INVALID_SESSION
    assert sim.device.active_sessions() == []
    # A fresh session works; sessions are cheap to re-create.
    assert hsm.create_session_derived(1, "password").send_secure_cmd(COMMAND.ECHO, b"y") == b"y"


def test_expired_sessions_free_their_slots(hsm: YubiHsm, clock: FakeClock) -> None:
    for _ in range(16):
        hsm.create_session_derived(1, "password")
    clock.now += 31
    hsm.create_session_derived(1, "password")


def test_close_session_frees_the_slot(hsm: YubiHsm, sim: SimulatedHsm) -> None:
    session = hsm.create_session_derived(1, "password")
    assert sim.device.active_sessions() == [0]
    session.close()
    assert session.sid is None
    assert sim.device.active_sessions() == []
    assert hsm.create_session_derived(1, "password").sid == 0


def test_a_password_derived_auth_key_can_log_in_and_has_only_its_capabilities(
    hsm: YubiHsm,
) -> None:
    admin = hsm.create_session_derived(1, "password")
    AuthenticationKey.put_derived(
        admin, 2, "validator", 1, CAPABILITY.SIGN_EDDSA, CAPABILITY.NONE, "s3cret"
    )
    with pytest.raises(YubiHsmAuthenticationError):
        hsm.create_session_derived(2, "password")
    validator = hsm.create_session_derived(2, "s3cret")
    with pytest.raises(YubiHsmDeviceError) as e:
        validator.get_pseudo_random(8)
    assert e.value.code == ERROR.INSUFFICIENT_PERMISSIONS
    assert validator.send_secure_cmd(COMMAND.ECHO, b"ok") == b"ok"  # session survived


def test_change_authentication_key_only_on_the_own_key(hsm: YubiHsm) -> None:
    admin = hsm.create_session_derived(1, "password")
    other = AuthenticationKey.put_derived(
        admin, 3, "other", 1, CAPABILITY.CHANGE_AUTHENTICATION_KEY, CAPABILITY.NONE, "pw3"
    )
    with pytest.raises(YubiHsmDeviceError) as e:
        other.change_password("nope")
    assert e.value.code == ERROR.INVALID_ID
    own = hsm.create_session_derived(3, "pw3")
    AuthenticationKey(own, 3).change_password("pw3-new")
    with pytest.raises(YubiHsmAuthenticationError):
        hsm.create_session_derived(3, "pw3")
    hsm.create_session_derived(3, "pw3-new")
