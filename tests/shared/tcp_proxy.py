"""A TCP proxy between kms and one etcd member, for network faults.

Owns: forwarding bytes both ways and the faults on that path: `delay` (each
chunk waits), `blackhole` (a partition: bytes are held, nothing passes, new
connections hang), `drop` (every connection is cut, new ones are closed at
once) and `lose_replies` (requests reach etcd, but the first answer bytes cut
the connection: a commit whose answer is lost). `heal()` cuts held
connections and goes back to passing.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Literal

Mode = Literal["pass", "delay", "blackhole", "drop", "lose_replies"]


class TcpProxy:
    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.target = (host, target_port)
        self.mode: Mode = "pass"
        self.delay = 0.0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.StreamWriter] = set()
        self.lost_replies = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def set(self, mode: Mode, delay: float = 0.0) -> None:
        self.mode, self.delay = mode, delay
        if mode == "drop":
            self._cut_all()

    def heal(self) -> None:
        held = self.mode in ("blackhole", "lose_replies")
        self.mode, self.delay = "pass", 0.0
        if held:
            self._cut_all()

    def _cut_all(self) -> None:
        for w in list(self._conns):
            w.transport.abort()
        self._conns.clear()

    async def close(self) -> None:
        self._cut_all()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "drop":
            writer.transport.abort()
            return
        try:
            up_r, up_w = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._conns.update((writer, up_w))
        armed = [False]  # a request passed while losing replies: cut its answer
        await asyncio.gather(
            self._pump(reader, up_w, writer, armed, reply=False),
            self._pump(up_r, writer, up_w, armed, reply=True),
            return_exceptions=True,
        )
        for w in (writer, up_w):
            self._conns.discard(w)
            w.transport.abort()

    async def _pump(
        self,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        other: asyncio.StreamWriter,
        armed: list[bool],
        *,
        reply: bool,
    ) -> None:
        try:
            while data := await src.read(65536):
                while self.mode == "blackhole":
                    await asyncio.sleep(0.02)
                if self.mode == "drop" or dst.transport.is_closing():
                    break
                if self.mode == "lose_replies":
                    if reply and armed[0]:
                        self.lost_replies += 1
                        break
                    armed[0] = armed[0] or not reply
                if self.mode == "delay" and self.delay > 0:
                    await asyncio.sleep(self.delay)
                dst.write(data)
                await dst.drain()
        except (OSError, ConnectionError):
            pass
        finally:
            dst.transport.abort()
            other.transport.abort()
