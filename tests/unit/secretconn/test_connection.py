"""The asyncio adapter over real TCP sockets on 127.0.0.1: both roles use open_secret_connection."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from kms.errors import FrameError, HandshakeError, LinkClosed
from kms.secretconn import (
    HandshakeTimeout,
    SecretConnection,
    open_secret_connection,
    peer_id,
)
from kms.secretconn.handshake import Handshake
from tests.unit.secretconn._peer import RawPeer

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[int]:
    """A TCP server on 127.0.0.1 whose connection handlers are awaited (and closed) on exit."""
    done: list[asyncio.Event] = []

    async def wrapped(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        event = asyncio.Event()
        done.append(event)
        try:
            await handler(reader, writer)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
            event.set()

    server = await asyncio.start_server(wrapped, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()
        for event in done:
            await asyncio.wait_for(event.wait(), 5)


async def read_exactly(conn: SecretConnection, size: int) -> bytes:
    buf = bytearray()
    while len(buf) < size:
        buf += await conn.read()
    assert len(buf) == size
    return bytes(buf)


async def test_tcp_pair_handshakes_and_exchanges_messages() -> None:
    node_seed, kms_seed = os.urandom(32), os.urandom(32)
    node_side: list[SecretConnection] = []
    sizes = [1, 200, 1024, 1025, 10 * 1024, 1024 * 1024 + 7]

    async def node(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = await open_secret_connection(reader, writer, node_seed)
        node_side.append(conn)
        for size in sizes:
            request = await read_exactly(conn, size)
            await conn.write(request[::-1])
        await conn.close()

    async with serve(node) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        node_pub = Handshake(node_seed).local_public_key
        conn = await open_secret_connection(
            reader, writer, kms_seed, expected_peer_id=peer_id(node_pub)
        )
        assert conn.remote_public_key == node_pub
        assert conn.remote_peer_id == peer_id(node_pub)
        for size in sizes:
            message = os.urandom(size)
            await conn.write(message)
            assert await read_exactly(conn, size) == message[::-1]
        with pytest.raises(LinkClosed):
            await conn.read()
        await conn.close()
        await conn.close()  # idempotent
        with pytest.raises(LinkClosed):
            await conn.write(b"after close")
    assert node_side[0].remote_public_key == conn.local_public_key
    assert node_side[0].remote_peer_id == peer_id(conn.local_public_key)


async def test_wrong_expected_peer_id_fails_and_closes_the_socket() -> None:
    closed = asyncio.Event()

    async def node(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(HandshakeError, LinkClosed):
            conn = await open_secret_connection(reader, writer, os.urandom(32))
            with contextlib.suppress(LinkClosed):
                await conn.read()
        closed.set()

    async with serve(node) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        with pytest.raises(HandshakeError, match="not the expected"):
            await open_secret_connection(reader, writer, os.urandom(32), expected_peer_id="ab" * 20)
        assert writer.is_closing()
        await asyncio.wait_for(closed.wait(), 5)


async def test_silent_peer_times_out() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never answers; returns when the client gives up
        writer.close()

    async with serve(silent) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        with pytest.raises(HandshakeTimeout):
            await open_secret_connection(reader, writer, os.urandom(32), timeout=0.2)
        assert writer.is_closing()


async def test_peer_closing_during_handshake_is_a_handshake_error() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(35)
        writer.close()

    async with serve(hang_up) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        with pytest.raises(HandshakeError, match="closed"):
            await open_secret_connection(reader, writer, os.urandom(32))


async def test_garbage_first_message_over_tcp_is_rejected() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"GET / HTTP/1.1\r\n\r\n")
        await writer.drain()
        await reader.read()
        writer.close()

    async with serve(garbage) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        with pytest.raises(HandshakeError, match="malformed"):
            await open_secret_connection(reader, writer, os.urandom(32))


async def test_corrupted_stream_after_handshake_raises_frame_error_and_stays_failed() -> None:
    async def node(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await open_secret_connection(reader, writer, os.urandom(32))
        writer.write(os.urandom(1044 * 2))  # raw garbage where frames belong
        await writer.drain()
        await reader.read()
        writer.close()

    async with serve(node) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        conn = await open_secret_connection(reader, writer, os.urandom(32))
        with pytest.raises(FrameError):
            await conn.read()
        with pytest.raises(FrameError):
            await conn.write(b"reply")
        await conn.close()


async def test_handshake_and_data_through_a_one_byte_per_write_proxy() -> None:
    # Every byte crosses the proxy in its own write, so both sides see one-byte reads.
    a_seed, b_seed = os.urandom(32), os.urandom(32)

    async def trickle(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        while chunk := await src.read(65536):
            for i in range(len(chunk)):
                dst.write(chunk[i : i + 1])
                await dst.drain()
        dst.close()

    async def node(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = await open_secret_connection(reader, writer, b_seed)
        await conn.write(await read_exactly(conn, 3000))
        await conn.close()

    async with serve(node) as node_port:

        async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", node_port)
            await asyncio.gather(trickle(reader, up_writer), trickle(up_reader, writer))

        async with serve(proxy) as proxy_port:
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
            conn = await open_secret_connection(reader, writer, a_seed, timeout=10)
            message = os.urandom(3000)
            await conn.write(message)
            assert await read_exactly(conn, 3000) == message
            await conn.close()


async def test_our_auth_sig_is_sent_even_when_the_peer_finishes_in_one_write() -> None:
    # The peer answers our ephemeral key with its ephemeral key and its AuthSig in a single
    # write, so our side completes on its first read and must still flush its own AuthSig.
    kms_seed = os.urandom(32)
    verdict: list[bytes] = []

    async def eager_peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = RawPeer()
        ours = await reader.readexactly(35)
        peer.on_first_message(ours)
        writer.write(peer.first_message() + peer.seal(peer.honest_auth_sig()))
        await writer.drain()
        assert peer.stream is not None
        auth = peer.stream.receive_data(await reader.readexactly(1044))
        key, signature = auth[5:37], auth[39:103]
        Ed25519PublicKey.from_public_bytes(key).verify(signature, peer.challenge)
        verdict.append(key)
        writer.write(peer.seal(b"first request"))
        await writer.drain()

    async with serve(eager_peer) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        conn = await asyncio.wait_for(open_secret_connection(reader, writer, kms_seed), 5)
        assert await asyncio.wait_for(conn.read(), 5) == b"first request"
        await conn.close()
    assert verdict == [conn.local_public_key]
