"""The simulated yubihsm-connector: HTTP in front of a `SimDevice`.

Owns: the HTTP server thread, `POST /connector/api` (raw YubiHSM message in,
raw response out, 200 + application/octet-stream; 400 outside 3..3139 bytes;
405 for other methods; 500 when the device is "unplugged"),
`GET /connector/status` in the real connector's key=value format, the one
device lock held across each command *and its modelled latency*, the set of
open client sockets (so connections can really be dropped), the listener
down/up switch, and the loopback-only control route `POST /sim/fault`.
Never touches device internals beyond `device.handle()` and `device.lock`.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from kms.config.addresses import is_loopback
from kms.sim.yubihsm.device import SimDevice
from kms.sim.yubihsm.faults import Faults
from kms.sim.yubihsm.latency import LatencyProfile

MIN_REQUEST = 3
MAX_REQUEST = 3136 + 3
CONNECTOR_VERSION = "3.0.7"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], connector: SimConnector) -> None:
        self.connector = connector
        super().__init__(addr, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        # Idle keep-alive sockets are closed after this (the real connector's Go server uses
        # its 5 s ReadTimeout as idle timeout); urllib3 notices and reconnects.
        super().setup()
        self.connection.settimeout(self.server.connector.idle_timeout_s)
        # Headers and body go out in separate writes; without NODELAY, Nagle plus the
        # client's delayed ACK adds ~40 ms to every keep-alive request.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.connector._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.connector._track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _path(self) -> str:
        return urlsplit(self.path).path

    def do_GET(self) -> None:
        path = self._path()
        if path == "/connector/status":
            self.server.connector._status(self)
        elif path in ("/connector/api", "/sim/fault"):
            self._reply(405, b"", extra={"Allow": "POST"})
        else:
            self._reply(404, b"")

    def do_POST(self) -> None:
        path = self._path()
        if path == "/connector/api":
            self.server.connector._api(self)
        elif path == "/sim/fault":
            self.server.connector._control(self)
        elif path == "/connector/status":
            self._drain()
            self._reply(405, b"", extra={"Allow": "GET"})
        else:
            self._drain()
            self._reply(404, b"")

    def _other(self) -> None:
        self._drain()
        path = self._path()
        allow = "GET" if path == "/connector/status" else "POST"
        self._reply(405 if path.startswith("/connector/") else 404, b"", extra={"Allow": allow})

    do_PUT = do_DELETE = do_PATCH = _other

    def _drain(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _reply(
        self,
        status: int,
        body: bytes,
        ctype: str = "text/plain",
        extra: dict[str, str] | None = None,
    ) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Request-ID", uuid.uuid4().hex)
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    def abort(self) -> None:
        """Close the connection without any reply."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


class SimConnector:
    """Serves one `SimDevice` over HTTP on a background thread."""

    def __init__(
        self,
        device: SimDevice,
        faults: Faults,
        latency: LatencyProfile,
        *,
        sleep: Callable[[float], None] = time.sleep,
        idle_timeout_s: float = 5.0,
    ) -> None:
        self.device = device
        self.idle_timeout_s = idle_timeout_s
        self.faults = faults
        self.latency = latency
        self._sleep = sleep
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        self._stopping = threading.Event()
        self._state_lock = threading.Lock()
        self.host = "127.0.0.1"
        self.port = 0

    # --- life cycle ----------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        with self._state_lock:
            if self._server is not None:
                raise RuntimeError("already serving")
            self.host = host
            self._stopping.clear()
            self._listen(port)
            self.port = self._server.server_address[1] if self._server else port
        self.faults.attach_listener(self)

    def _listen(self, port: int) -> None:
        server = _Server((self.host, port), self)
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"hsm-sim:{server.server_address[1]}",
            daemon=True,
        )
        self._server, self._thread = server, thread
        thread.start()

    def _close_listener(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def stop(self) -> None:
        self._stopping.set()
        self.faults.attach_listener(None)
        with self._state_lock:
            self._close_listener()
        self.drop_connections()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # --- ListenerControl --------------------------------------------------------------

    def drop_connections(self, keep: socket.socket | None = None) -> int:
        with self._conns_lock:
            conns = [c for c in self._conns if c is not keep]
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                conn.close()
        return len(conns)

    def listener_down(self, keep: socket.socket | None = None) -> None:
        with self._state_lock:
            self._close_listener()
        self.drop_connections(keep)

    def listener_up(self) -> None:
        with self._state_lock:
            if self._server is None and not self._stopping.is_set():
                self._listen(self.port)

    @property
    def listening(self) -> bool:
        return self._server is not None

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._conns_lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    # --- routes ----------------------------------------------------------------------

    def _status(self, h: _Handler) -> None:
        status = "NO_DEVICE" if self.faults.no_device else "OK"
        body = (
            f"status={status}\nserial=*\nversion={CONNECTOR_VERSION}\npid={os.getpid()}\n"
            f"address={self.host}\nport={self.port}\n"
        ).encode()
        h._reply(200, body)

    def _api(self, h: _Handler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        if not MIN_REQUEST <= length <= MAX_REQUEST:
            if length > 0:
                h.rfile.read(min(length, 1 << 20))
            h.close_connection = length > MAX_REQUEST
            h._reply(400, b"")
            return
        body = h.rfile.read(length)
        self.faults.wait_while_hung(self._stopping)
        if self._stopping.is_set() or self.faults.take_drop_before():
            h.abort()
            return
        status = self.faults.take_http_error()
        if status is not None or self.faults.no_device or self.faults.unavailable:
            h._reply(status or 500, b"")
            return
        with self.device.lock:
            started = time.monotonic()
            try:
                ex = self.device.handle(body)
            except Exception:  # a simulator bug: answer like a failing USB device, loudly
                traceback.print_exc(file=sys.stderr)
                h._reply(500, b"")
                return
            # The modelled latency is the command's whole time on the device (a real
            # YubiHSM2's ~110 ms is measured end to end), so the simulator's own work
            # counts towards it instead of being added on top; a fault's extra latency
            # is added in full.
            spent = time.monotonic() - started
            delay = max(0.0, self.latency.seconds(ex.command) - spent)
            delay += self.faults.extra_latency_s(ex.command)
            if delay > 0:
                self._sleep(delay)
        if self.faults.take_drop_after():
            h.abort()
            return
        h._reply(200, ex.response, ctype="application/octet-stream")

    def _control(self, h: _Handler) -> None:
        body = h._drain()
        if not is_loopback(h.client_address[0]):
            h._reply(403, b"control is loopback-only\n")
            return
        try:
            req = json.loads(body or b"{}")
            result = apply_control(self, req, h.connection)
            h.close_connection = True
        except (ValueError, TypeError, KeyError, RuntimeError) as e:
            h._reply(400, json.dumps({"ok": False, "error": str(e)}).encode(), "application/json")
            return
        h._reply(200, json.dumps({"ok": True, **result}).encode(), "application/json")


def apply_control(
    conn: SimConnector, req: dict[str, Any], caller: socket.socket | None = None
) -> dict[str, Any]:
    """Run one control request: {"action": NAME, ...arguments}. Returns extra reply fields."""
    f = conn.faults
    action = req["action"]

    def commands() -> set[int] | None:
        cmds = req.get("commands")
        return {int(c) for c in cmds} if cmds is not None else None

    def down_for() -> dict[str, Any]:
        seconds = float(req.get("seconds", 0))
        conn.listener_down(keep=caller)
        if seconds > 0:
            timer = threading.Timer(seconds, conn.listener_up)
            timer.daemon = True
            timer.start()
        return {}

    table: dict[str, Callable[[], Any]] = {
        "set_latency_ms": lambda: f.set_latency_ms(float(req["ms"]), commands()),
        "fail_next": lambda: f.fail_next(
            int(req["n"]),
            int(req["error_code"]),
            layer=req.get("layer", "inner"),
            commands=commands(),
        ),
        "hang": f.hang,
        "release": f.release,
        "corrupt_next_mac": lambda: f.corrupt_next_mac(int(req.get("n", 1))),
        "drop_next": lambda: f.drop_next(
            int(req.get("n", 1)), after_execute=bool(req.get("after_execute", False))
        ),
        "http_error_next": lambda: f.http_error_next(
            int(req.get("n", 1)), int(req.get("status", 500))
        ),
        "no_device": lambda: f.set_no_device(bool(req.get("on", True))),
        "unavailable_for": lambda: f.unavailable_for(float(req["seconds"])),
        "corrupt_next_signature": lambda: f.corrupt_next_signature(int(req.get("n", 1))),
        "drop_connections": lambda: {"dropped": conn.drop_connections(keep=caller)},
        "listener_down": down_for,
        "expire_sessions": conn.device.expire_all_sessions,
        "clear": f.clear,
    }
    if action not in table:
        raise ValueError(f"unknown action {action!r}; known: {', '.join(sorted(table))}")
    result = table[action]()
    return result if isinstance(result, dict) else {}
