"""The connector's HTTP surface, byte-level, without the library."""

from __future__ import annotations

import os

import pytest
import requests

from kms.config.addresses import is_loopback
from kms.sim.yubihsm import SimulatedHsm


def test_status_page_is_the_real_connector_key_value_format(sim: SimulatedHsm) -> None:
    r = requests.get(sim.url + "/connector/status", timeout=2)
    assert r.status_code == 200
    assert r.text == (
        f"status=OK\nserial=*\nversion=3.0.7\npid={os.getpid()}\n"
        f"address=127.0.0.1\nport={sim.port}\n"
    )


def test_api_answers_octet_stream_with_a_request_id(sim: SimulatedHsm) -> None:
    r = requests.post(sim.url + "/connector/api", data=b"\x01\x00\x02hi", timeout=2)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/octet-stream"
    assert r.headers["X-Request-ID"]
    assert r.content == b"\x81\x00\x02hi"


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [("GET", "/connector/api", "POST"), ("POST", "/connector/status", "GET")],
)
def test_wrong_methods_are_405(sim: SimulatedHsm, method: str, path: str, allow: str) -> None:
    r = requests.request(method, sim.url + path, timeout=2)
    assert r.status_code == 405 and r.headers["Allow"] == allow


@pytest.mark.parametrize("size", [0, 2, 3140])
def test_request_sizes_outside_3_to_3139_bytes_are_400(sim: SimulatedHsm, size: int) -> None:
    r = requests.post(sim.url + "/connector/api", data=b"\x01" * size, timeout=2)
    assert r.status_code == 400


def test_the_largest_accepted_request_reaches_the_device(sim: SimulatedHsm) -> None:
    body = b"\x01\x0c\x40" + b"x" * 3136  # 3139 bytes: over the device buffer
    r = requests.post(sim.url + "/connector/api", data=body, timeout=2)
    assert r.status_code == 200 and r.content == b"\x7f\x00\x01\x08"  # WRONG_LENGTH


def test_unknown_paths_are_404(sim: SimulatedHsm) -> None:
    assert requests.get(sim.url + "/nope", timeout=2).status_code == 404


@pytest.mark.parametrize(
    ("addr", "ok"),
    [("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("10.0.0.1", False), ("x", False)],
)
def test_control_route_peer_check(addr: str, ok: bool) -> None:
    assert is_loopback(addr) is ok


def test_stop_releases_hung_requests_and_frees_the_port() -> None:
    import threading

    sim = SimulatedHsm().start()
    sim.faults.hang()
    result: list[int] = []

    def call() -> None:
        try:
            requests.post(sim.url + "/connector/api", data=b"\x01\x00\x00", timeout=5)
        except requests.RequestException:
            result.append(-1)

    t = threading.Thread(target=call)
    t.start()
    sim.stop()
    t.join(timeout=5)
    assert not t.is_alive() and result == [-1]
    again = SimulatedHsm().start(port=sim.port)  # the port is reusable at once
    again.stop()


def test_a_device_crash_is_http_500_not_a_hung_client(
    sim: SimulatedHsm, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def boom(raw: bytes) -> object:
        raise RuntimeError("simulator bug")

    monkeypatch.setattr(sim.device, "handle", boom)
    r = requests.post(sim.url + "/connector/api", data=b"\x01\x00\x00", timeout=2)
    assert r.status_code == 500
    assert "simulator bug" in capsys.readouterr().err
