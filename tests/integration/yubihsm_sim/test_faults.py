"""Each fault produces what the library would raise against a failing real device/connector."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from yubihsm.core import AuthSession, YubiHsm
from yubihsm.defs import CAPABILITY, COMMAND, ERROR
from yubihsm.exceptions import (
    YubiHsmConnectionError,
    YubiHsmDeviceError,
    YubiHsmInvalidResponseError,
)
from yubihsm.objects import AsymmetricKey

from kms.sim.yubihsm import Cmd, Err, SimulatedHsm

from .conftest import connect


def put_key(session: AuthSession, key_id: int = 4) -> AsymmetricKey:
    return AsymmetricKey.put(
        session, key_id, "k", 1, CAPABILITY.SIGN_EDDSA, Ed25519PrivateKey.generate()
    )


def test_inner_device_error_keeps_the_session(sim: SimulatedHsm, session: AuthSession) -> None:
    key = put_key(session)
    sim.faults.fail_next(1, Err.OBJECT_NOT_FOUND, commands={Cmd.SIGN_EDDSA})
    with pytest.raises(YubiHsmDeviceError) as e:
        key.sign_eddsa(b"m")
    assert e.value.code == ERROR.OBJECT_NOT_FOUND
    assert sim.device.signed == []  # the command did not run
    key.sign_eddsa(b"m")


def test_outer_device_error_ends_the_session(sim: SimulatedHsm, session: AuthSession) -> None:
    key = put_key(session)
    sim.faults.fail_next(1, Err.INVALID_SESSION, layer="outer")
    with pytest.raises(YubiHsmDeviceError) as e:
        key.sign_eddsa(b"m")
    assert e.value.code == ERROR.INVALID_SESSION
    with pytest.raises(YubiHsmDeviceError) as e:
        key.sign_eddsa(b"m")
    assert e.value.code == ERROR.INVALID_SESSION


def test_plaintext_commands_can_fail_too(sim: SimulatedHsm, hsm: YubiHsm) -> None:
    sim.faults.fail_next(1, Err.SESSIONS_FULL, commands={Cmd.CREATE_SESSION})
    with pytest.raises(YubiHsmDeviceError) as e:
        hsm.create_session_derived(1, "password")
    assert e.value.code == ERROR.SESSIONS_FULL
    hsm.create_session_derived(1, "password")


def test_corrupt_mac_is_incorrect_mac_over_http(sim: SimulatedHsm, session: AuthSession) -> None:
    sim.faults.corrupt_next_mac(1)
    with pytest.raises(YubiHsmInvalidResponseError, match="Incorrect MAC"):
        session.send_secure_cmd(COMMAND.ECHO, b"x")


def test_hang_blocks_every_client_until_released(sim: SimulatedHsm) -> None:
    a, b = connect(sim, read_timeout=0.5), connect(sim, read_timeout=0.5)
    sim.faults.hang()
    t0 = time.monotonic()
    with pytest.raises(YubiHsmConnectionError):
        a.send_cmd(COMMAND.ECHO, b"a")
    with pytest.raises(YubiHsmConnectionError):
        b.send_cmd(COMMAND.ECHO, b"b")
    assert time.monotonic() - t0 >= 0.9
    sim.faults.release()
    assert a.send_cmd(COMMAND.ECHO, b"back") == b"back"


def test_lost_response_after_execution_desynchronises_the_session(
    sim: SimulatedHsm, session: AuthSession
) -> None:
    key = put_key(session)
    sim.faults.drop_next(1, after_execute=True)
    with pytest.raises(YubiHsmConnectionError):
        key.sign_eddsa(b"height 9")
    assert len(sim.device.signed) == 1  # it was signed, the answer was lost
    with pytest.raises(YubiHsmDeviceError) as e:
        key.sign_eddsa(b"height 9")
    assert e.value.code == ERROR.AUTHENTICATION_FAILED


def test_dropped_request_before_execution_runs_nothing(
    sim: SimulatedHsm, session: AuthSession
) -> None:
    key = put_key(session)
    sim.faults.drop_next(1)
    with pytest.raises(YubiHsmConnectionError):
        key.sign_eddsa(b"m")
    assert sim.device.signed == []
    key.sign_eddsa(b"m")  # the session is still in step


def test_http_500_is_a_connection_error(sim: SimulatedHsm, hsm: YubiHsm) -> None:
    sim.faults.http_error_next(1, 500)
    with pytest.raises(YubiHsmConnectionError):
        hsm.send_cmd(COMMAND.ECHO, b"x")
    assert hsm.send_cmd(COMMAND.ECHO, b"x") == b"x"


def test_no_device_mode(sim: SimulatedHsm, hsm: YubiHsm) -> None:
    sim.faults.set_no_device(True)
    assert "status=NO_DEVICE\n" in requests.get(sim.url + "/connector/status", timeout=2).text
    with pytest.raises(YubiHsmConnectionError):
        hsm.send_cmd(COMMAND.ECHO, b"x")
    sim.faults.set_no_device(False)
    assert hsm.send_cmd(COMMAND.ECHO, b"x") == b"x"


def test_drop_connections_kills_an_in_flight_request(
    sim: SimulatedHsm, session: AuthSession
) -> None:
    key = put_key(session)
    sim.faults.set_latency_ms(2000, commands={Cmd.SIGN_EDDSA})
    timer = threading.Timer(0.3, sim.faults.drop_connections)
    timer.start()
    with pytest.raises(YubiHsmConnectionError):
        key.sign_eddsa(b"m")
    timer.join()


def test_drop_connections_really_closes_idle_keep_alive_sockets(sim: SimulatedHsm) -> None:
    with socket.create_connection((sim.host, sim.port), timeout=2) as s:
        req = (
            b"POST /connector/api HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Length: 5\r\n\r\n\x01\x00\x02hi"
        )
        s.sendall(req)
        reply = b""
        while not reply.endswith(b"\x81\x00\x02hi"):
            reply += s.recv(4096)
        assert sim.faults.drop_connections() == 1
        assert s.recv(4096) == b""  # the server closed the keep-alive socket


def test_listener_down_refuses_connections_and_up_restores_them(
    sim: SimulatedHsm, session: AuthSession
) -> None:
    key = put_key(session)
    sim.faults.listener_down()
    with pytest.raises(YubiHsmConnectionError):
        key.sign_eddsa(b"m")  # the keep-alive socket was closed too
    with pytest.raises(requests.ConnectionError):
        requests.get(sim.url + "/connector/status", timeout=1)
    sim.faults.listener_up()
    key.sign_eddsa(b"m")  # the device kept the session: only the connector went away


def test_added_latency_applies_per_command(sim: SimulatedHsm, hsm: YubiHsm) -> None:
    sim.faults.set_latency_ms(400)
    t0 = time.monotonic()
    hsm.send_cmd(COMMAND.ECHO, b"x")
    assert time.monotonic() - t0 >= 0.4
    sim.faults.set_latency_ms(0)
    t0 = time.monotonic()
    hsm.send_cmd(COMMAND.ECHO, b"x")
    assert time.monotonic() - t0 < 0.3


def test_the_device_lock_serialises_clients_like_one_device() -> None:
    with SimulatedHsm(latency_ms=50) as sim:
        admin = connect(sim).create_session_derived(1, "password")
        put_key(admin)
        sessions = [connect(sim).create_session_derived(1, "password") for _ in range(3)]
        keys = [AsymmetricKey(s, 4) for s in sessions]

        def work(k: AsymmetricKey) -> None:
            for i in range(4):
                k.sign_eddsa(b"%d" % i)

        threads = [threading.Thread(target=work, args=(k,)) for k in keys]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - t0
    assert elapsed >= 12 * 0.050  # 12 signatures, never two at once


def test_realistic_latency_gives_about_nine_signatures_per_second() -> None:
    with SimulatedHsm(latency_ms=110) as sim:
        admin = connect(sim).create_session_derived(1, "password")
        key = put_key(admin)
        t0 = time.monotonic()
        for i in range(9):
            key.sign_eddsa(b"%d" % i)
        rate = 9 / (time.monotonic() - t0)
    assert 6.0 <= rate <= 9.1  # upper bound: 9 x 110 ms can never take less than 0.99 s


def test_the_simulators_own_work_counts_towards_the_modelled_latency() -> None:
    """A command's modelled time is its whole time on the device, not that plus the
    simulator's Python work (else N replicas look slower than N devices)."""
    slept: list[float] = []
    with SimulatedHsm(latency_ms=110, sleep=slept.append) as sim:
        admin = connect(sim).create_session_derived(1, "password")
        key = put_key(admin)
        slept.clear()
        key.sign_eddsa(b"m")
    (sign_sleep,) = slept
    assert 0.0 <= sign_sleep < 0.110  # the decrypt, sign and MAC already took some of it


def test_control_route_switches_faults_over_http(sim: SimulatedHsm, hsm: YubiHsm) -> None:
    r = requests.post(
        sim.url + "/sim/fault", json={"action": "fail_next", "n": 1, "error_code": 7}, timeout=2
    )
    assert r.status_code == 200 and r.json()["ok"] is True
    with pytest.raises(YubiHsmDeviceError) as e:
        hsm.send_cmd(COMMAND.ECHO, b"x")
    assert e.value.code == ERROR.STORAGE_FAILED
    bad = requests.post(sim.url + "/sim/fault", json={"action": "explode"}, timeout=2)
    assert bad.status_code == 400 and "unknown action" in bad.json()["error"]


def test_control_route_listener_down_for_a_while(sim: SimulatedHsm) -> None:
    r = requests.post(
        sim.url + "/sim/fault", json={"action": "listener_down", "seconds": 0.5}, timeout=2
    )
    assert r.status_code == 200
    with pytest.raises(requests.ConnectionError):
        requests.get(sim.url + "/connector/status", timeout=1)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            requests.get(sim.url + "/connector/status", timeout=1)
            break
        except requests.ConnectionError:
            time.sleep(0.05)
    else:
        pytest.fail("listener did not come back")


def test_reboot_window_after_reset_refuses_the_api_for_a_while() -> None:
    with SimulatedHsm(reboot_window_s=1.0) as sim:
        connect(sim).create_session_derived(1, "password").reset_device()
        with pytest.raises(YubiHsmConnectionError):
            connect(sim)  # DEVICE_INFO during the reboot
        time.sleep(1.05)
        connect(sim).create_session_derived(1, "password")


def test_idle_keep_alive_sockets_are_closed_and_the_library_reconnects() -> None:
    with SimulatedHsm(idle_timeout_s=0.2) as sim:
        with socket.create_connection((sim.host, sim.port), timeout=2) as s:
            s.settimeout(2)
            assert s.recv(1) == b""  # closed by the server after 0.2 s idle
        hsm = connect(sim)
        session = hsm.create_session_derived(1, "password")
        time.sleep(0.4)
        assert session.send_secure_cmd(COMMAND.ECHO, b"after idle") == b"after idle"


def test_control_route_still_answers_while_the_device_hangs(sim: SimulatedHsm) -> None:
    hsm = connect(sim, read_timeout=0.5)

    def control(action: str) -> None:
        r = requests.post(sim.url + "/sim/fault", json={"action": action}, timeout=2)
        assert r.status_code == 200

    control("hang")
    with pytest.raises(YubiHsmConnectionError):
        hsm.send_cmd(COMMAND.ECHO, b"x")
    control("release")
    assert hsm.send_cmd(COMMAND.ECHO, b"y") == b"y"
