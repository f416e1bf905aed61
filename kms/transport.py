"""Byte transports under the privval framing: the seam between links and the wire.

Owns: the `Transport` interface (read some bytes, write bytes, close) and its
plain-stream implementation for unix sockets. SecretConnection
(`kms.secretconn.connection.SecretConnection`) implements the same interface for
tcp. Never interprets the bytes.
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
