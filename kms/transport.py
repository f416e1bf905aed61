"""Byte transports under the privval framing: the seam between links and the wire.

Owns: the `Transport` interface (read some bytes, write bytes, close), its
plain-stream implementation for unix sockets, and what SecretConnection (tcp) and
Noise (noise) share: `run_handshake`, the pump that drives a sans-IO handshake over an
asyncio stream pair under one deadline, and `SealedTransport`, the pump between that
stream pair and a sans-IO stream that opens what it receives and seals what it sends.
Never interprets the bytes and never decides a handshake's content (the transports'
own sans-IO modules do).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

from kms.errors import HandshakeError, HandshakeTimeout, LinkClosed

READ_CHUNK = 65536


class Transport(Protocol):
    async def read(self) -> bytes: ...

    async def write(self, data: bytes) -> None: ...

    async def close(self) -> None: ...


class HandshakeCore(Protocol):
    """A sans-IO handshake (kms.secretconn.handshake, kms.noise.handshake)."""

    @property
    def done(self) -> bool: ...

    def data_to_send(self) -> bytes: ...

    def receive_data(self, data: bytes) -> None: ...


async def run_handshake(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    handshake: HandshakeCore,
    *,
    timeout: float,
    what: str,
) -> None:
    """Drive `handshake` to completion: send what it has, read, feed, until done.

    The whole exchange must end within `timeout` seconds (HandshakeTimeout); EOF or a
    socket error is a HandshakeError naming `what`. Any failure, cancellation
    included, closes the writer before the error propagates, so a peer that fails a
    check is dropped before we send anything more.
    """
    try:
        async with asyncio.timeout(timeout):
            await _send(writer, handshake.data_to_send())
            while not handshake.done:
                chunk = await reader.read(READ_CHUNK)
                if not chunk:
                    raise HandshakeError(f"peer closed the connection during the {what}")
                handshake.receive_data(chunk)
                await _send(writer, handshake.data_to_send())
    except TimeoutError as exc:
        writer.close()
        raise HandshakeTimeout(f"{what} did not complete within {timeout} s") from exc
    except (ConnectionError, OSError) as exc:
        writer.close()
        raise HandshakeError(f"connection lost during the {what}: {exc}") from exc
    except BaseException:
        writer.close()
        raise


async def _send(writer: asyncio.StreamWriter, data: bytes) -> None:
    if data:
        writer.write(data)
        await writer.drain()


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
