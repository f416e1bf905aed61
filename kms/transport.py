"""Byte transports under the privval framing: the seam between links and the wire.

Owns: the `Transport` interface (read some bytes, write bytes, close), its
plain-stream implementation for unix sockets, and `SealedTransport`, the pump that
SecretConnection (tcp) and Noise (noise) share: bytes between an asyncio stream pair
and a sans-IO stream that opens what it receives and seals what it sends. Never
interprets the bytes and never runs a handshake (the transports' own modules do).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

from kms.errors import LinkClosed

READ_CHUNK = 65536


class Transport(Protocol):
    async def read(self) -> bytes: ...

    async def write(self, data: bytes) -> None: ...

    async def close(self) -> None: ...


class SealingStream(Protocol):
    """A sans-IO encrypted stream (kms.secretconn.stream, kms.noise.stream)."""

    def receive_data(self, data: bytes) -> bytes: ...

    def seal(self, data: bytes) -> bytes: ...


class SealedTransport:
    """An authenticated, encrypted byte stream over an asyncio stream pair.

    `read()` returns the next non-empty chunk of opened bytes (privval framing is the
    caller's job); EOF or a socket error is LinkClosed, a bad frame the stream's
    FrameError. `write()` seals one message and drains. `close()` is idempotent.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        stream: SealingStream,
        initial_plaintext: bytes,
        *,
        what: str,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._stream = stream
        self._pending = initial_plaintext
        self._closed = False
        self._what = what  # "secret connection", "noise connection": for messages

    @property
    def closed(self) -> bool:
        return self._closed

    async def read(self) -> bytes:
        if self._pending:
            out, self._pending = self._pending, b""
            return out
        while True:
            if self._closed:
                raise LinkClosed(f"{self._what} closed locally")
            try:
                chunk = await self._reader.read(READ_CHUNK)
            except (ConnectionError, OSError) as exc:
                raise LinkClosed(f"connection lost: {exc}") from exc
            if not chunk:
                raise LinkClosed("peer closed the connection")
            out = self._stream.receive_data(chunk)
            if out:
                return out

    async def write(self, data: bytes) -> None:
        if self._closed:
            raise LinkClosed(f"{self._what} closed locally")
        wire = self._stream.seal(data)
        if not wire:
            return
        try:
            self._writer.write(wire)
            await self._writer.drain()
        except (ConnectionError, OSError) as exc:
            raise LinkClosed(f"connection lost: {exc}") from exc

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()


class PlainTransport:
    """A unix socket: privval framing directly on the stream, no encryption."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def read(self) -> bytes:
        data = await self._reader.read(READ_CHUNK)
        if not data:
            raise LinkClosed("connection closed by the node")
        return data

    async def write(self, data: bytes) -> None:
        self._writer.write(data)
        await self._writer.drain()

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError, asyncio.CancelledError):
            await self._writer.wait_closed()
