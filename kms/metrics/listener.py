"""The optional HTTP/1.1 listener serving `/metrics`, on a loopback address only.

Owns: the loopback check (`check_loopback`: any `listen` host that is not a loopback
IP literal, or `localhost` bound as 127.0.0.1, is refused with MetricsError, because the
signer's zone is outbound-only), the minimal request handling (GET/HEAD /metrics, one
request per connection, header size, read timeout and connection limits, lingering
close on errors) and binding, the one place in kms.metrics that raises: a wrong
`listen` address is an operator error best seen at start-up.

Never touches: sockets other than its own listener, the registry or the text format (it
is handed a `render` callable, run off the event loop), files.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import Callable

from kms.errors import MetricsError, describe
from kms.metrics.exposition import CONTENT_TYPE


def check_loopback(host: str) -> str:
    """The address to bind for `host`, or MetricsError if it is not loopback."""
    if host.lower() == "localhost":
        return "127.0.0.1"
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        raise MetricsError(
            f"metrics listen host {host!r} is not an IP address; use 127.0.0.1 or ::1"
        ) from None
    if not ip.is_loopback:
        raise MetricsError(
            f"metrics listen address {host!r} is not loopback; refusing to listen on the "
            "network (the signer's zone is outbound-only)"
        )
    return str(ip)


_MAX_HEADER_BYTES = 8192
_READ_TIMEOUT = 5.0
_LINGER = 1.0
_MAX_CONNECTIONS = 16


async def _discard(reader: asyncio.StreamReader, limit: int) -> None:
    """Read and drop up to `limit` bytes, until EOF."""
    while limit > 0:
        chunk = await reader.read(min(limit, 4096))
        if not chunk:
            return
        limit -= len(chunk)


def _http_response(status: str, body: bytes, content_type: str, *, head: bool = False) -> bytes:
    headers = (
        f"HTTP/1.1 {status}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n"
        "\r\n"
    ).encode("ascii")
    return headers if head else headers + body


def _route(request_line: str, render: Callable[[], str]) -> bytes:
    """One request line -> the full response bytes (pure apart from `render`)."""
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return _http_response("400 Bad Request", b"bad request\n", "text/plain")
    method, target, _ = parts
    path = target.split("?", 1)[0]
    if method not in ("GET", "HEAD"):
        return _http_response("405 Method Not Allowed", b"method not allowed\n", "text/plain")
    if path != "/metrics":
        return _http_response("404 Not Found", b"not found; try /metrics\n", "text/plain")
    return _http_response("200 OK", render().encode(), CONTENT_TYPE, head=method == "HEAD")


class MetricsServer:
    """Minimal HTTP/1.1 server: GET /metrics on a loopback address, one request per connection."""

    def __init__(self, render: Callable[[], str], host: str, port: int) -> None:
        self._bind_host = check_loopback(host)
        self._port = port
        self._render = render
        self._server: asyncio.Server | None = None
        self._active = 0

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        if self._server is None:
            raise RuntimeError("server not started")
        sock = self._server.sockets[0]
        return int(sock.getsockname()[1])

    @property
    def host(self) -> str:
        return self._bind_host

    async def start(self) -> None:
        try:
            self._server = await asyncio.start_server(
                self._handle, self._bind_host, self._port, limit=_MAX_HEADER_BYTES
            )
        except OSError as e:
            raise MetricsError(
                f"cannot listen for metrics on {self._bind_host}:{self._port}: {describe(e)}"
            ) from e

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def _read_request_line(self, reader: asyncio.StreamReader) -> str | None:
        total = 0
        first: str | None = None
        while True:
            try:
                line = await reader.readuntil(b"\n")
            except asyncio.LimitOverrunError:
                return None
            total += len(line)
            if total > _MAX_HEADER_BYTES:
                return None
            text = line.decode("latin-1").rstrip("\r\n")
            if first is None:
                first = text
            elif text == "":
                return first

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._active += 1
        try:
            if self._active > _MAX_CONNECTIONS:
                return
            try:
                line = await asyncio.wait_for(self._read_request_line(reader), _READ_TIMEOUT)
            except (TimeoutError, asyncio.IncompleteReadError):
                return
            except (ConnectionError, OSError):
                return
            if line is None:
                response = _http_response(
                    "431 Request Header Fields Too Large", b"too large\n", "text/plain"
                )
            else:
                # off the loop: a render of many series takes milliseconds
                response = await asyncio.to_thread(_route, line, self._render)
            writer.write(response)
            with contextlib.suppress(ConnectionError, OSError, TimeoutError):
                await asyncio.wait_for(writer.drain(), _READ_TIMEOUT)
                if not response.startswith(b"HTTP/1.1 200"):
                    # lingering close: unread request bytes would make close() send a
                    # reset that can destroy the error reply before the client reads it
                    if writer.can_write_eof():
                        writer.write_eof()
                    await asyncio.wait_for(_discard(reader, 1 << 16), _LINGER)
        finally:
            self._active -= 1
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
