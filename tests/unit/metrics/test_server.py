"""The /metrics listener: loopback only, minimal HTTP/1.1, bounded requests."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from kms import errors
from kms.config import MetricsConfig
from kms.metrics import Metrics, MetricsError, MetricsServer, check_loopback, run_metrics
from tests.unit.metrics.promparse import parse


async def _request(
    port: int, raw: bytes, host: str = "127.0.0.1"
) -> tuple[str, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(raw)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return lines[0], headers, body


@pytest.fixture
async def server() -> AsyncIterator[tuple[MetricsServer, Metrics]]:
    m = Metrics()
    m.signature("c", "prevote", "signed", 0.001, None)
    s = MetricsServer(m.render, "127.0.0.1", 0)
    await s.start()
    try:
        yield s, m
    finally:
        await s.close()


async def test_get_metrics_returns_the_rendered_text(server: tuple[MetricsServer, Metrics]) -> None:
    s, _m = server
    status, headers, body = await _request(
        s.port, b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nUser-Agent: t\r\n\r\n"
    )
    assert status == "HTTP/1.1 200 OK"
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    assert int(headers["content-length"]) == len(body)
    assert headers["connection"] == "close"
    fams = parse(body.decode())
    assert fams["kms_signatures_total"].value(chain="c", type="prevote", outcome="signed") == 1


async def test_each_scrape_sees_current_values(server: tuple[MetricsServer, Metrics]) -> None:
    s, m = server
    m.signature("c", "prevote", "signed", 0.001, None)
    _, _, body = await _request(s.port, b"GET /metrics?x=1 HTTP/1.0\r\n\r\n")
    fams = parse(body.decode())
    assert fams["kms_signatures_total"].value(chain="c", type="prevote", outcome="signed") == 2


async def test_head_has_headers_and_no_body(server: tuple[MetricsServer, Metrics]) -> None:
    s, _ = server
    status, headers, body = await _request(s.port, b"HEAD /metrics HTTP/1.1\r\n\r\n")
    assert status == "HTTP/1.1 200 OK"
    assert int(headers["content-length"]) > 0
    assert body == b""


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 404 Not Found"),
        (b"GET /metricsx HTTP/1.1\r\n\r\n", "HTTP/1.1 404 Not Found"),
        (b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", "HTTP/1.1 405 Method Not Allowed"),
        (b"garbage\r\n\r\n", "HTTP/1.1 400 Bad Request"),
        (b"GET /metrics SPDY/3\r\n\r\n", "HTTP/1.1 400 Bad Request"),
    ],
)
async def test_other_requests_get_error_statuses(
    server: tuple[MetricsServer, Metrics], raw: bytes, status: str
) -> None:
    s, _ = server
    got, _, _ = await _request(s.port, raw)
    assert got == status


@pytest.mark.parametrize(
    "raw",
    [
        b"GET /metrics HTTP/1.1\r\n" + (b"X-Pad: " + b"a" * 200 + b"\r\n") * 60 + b"\r\n",
        b"GET /metrics HTTP/1.1\r\nX-Long: " + b"a" * 20_000 + b"\r\n\r\n",
    ],
)
async def test_oversized_headers_are_refused(
    server: tuple[MetricsServer, Metrics], raw: bytes
) -> None:
    s, _ = server
    status, _, _ = await _request(s.port, raw)
    assert status == "HTTP/1.1 431 Request Header Fields Too Large"


@pytest.mark.parametrize("host", ["0.0.0.0", "10.0.1.10", "192.168.1.1", "::", "example.com", ""])
def test_non_loopback_hosts_are_refused(host: str) -> None:
    with pytest.raises(MetricsError):
        check_loopback(host)
    with pytest.raises(MetricsError):
        MetricsServer(lambda: "", host, 9464)


@pytest.mark.parametrize(
    ("host", "bind"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("127.0.0.2", "127.0.0.2"),
        ("::1", "::1"),
        ("[::1]", "::1"),
        ("localhost", "127.0.0.1"),
    ],
)
def test_loopback_hosts_are_accepted(host: str, bind: str) -> None:
    assert check_loopback(host) == bind


async def test_run_metrics_refuses_non_loopback_listen() -> None:
    cfg = MetricsConfig(listen=("0.0.0.0", 0))
    with pytest.raises(MetricsError, match="not loopback"):
        await asyncio.wait_for(run_metrics(Metrics(), cfg, asyncio.Event()), 2)


async def test_run_metrics_reports_a_busy_port() -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        cfg = MetricsConfig(listen=("127.0.0.1", busy.getsockname()[1]))
        with pytest.raises(MetricsError, match="cannot listen") as info:
            await asyncio.wait_for(run_metrics(Metrics(), cfg, asyncio.Event()), 2)
        # one line through kms.errors.describe: the OS's words, not Python's "[Errno 98]"
        assert "address already in use" in str(info.value)
        assert "Errno" not in str(info.value) and "\n" not in str(info.value)
    finally:
        busy.close()


def test_listener_errors_are_the_kms_error_family() -> None:
    # the CLI boundary catches KmsError and prints one line: the class that moved to
    # kms.errors must stay the one kms.metrics raises and re-exports
    assert MetricsError is errors.MetricsError
    with pytest.raises(errors.KmsError, match="not loopback"):
        check_loopback("192.0.2.1")


async def test_run_metrics_serves_until_stop_then_closes() -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    m = Metrics()
    stop = asyncio.Event()
    task = asyncio.create_task(run_metrics(m, MetricsConfig(listen=("127.0.0.1", port)), stop))
    for _ in range(100):
        try:
            status, _, _ = await _request(port, b"GET /metrics HTTP/1.1\r\n\r\n")
            break
        except OSError:
            await asyncio.sleep(0.01)
    assert status == "HTTP/1.1 200 OK"
    stop.set()
    await asyncio.wait_for(task, 2)
    with pytest.raises(OSError):
        await _request(port, b"GET /metrics HTTP/1.1\r\n\r\n")
