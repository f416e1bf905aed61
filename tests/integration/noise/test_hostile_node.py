"""A hostile or broken node on noise://: `kms start` drops the connection cleanly, says why
once, redials, and stays up (the Noise layer's fuzz tests cover the bytes themselves)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

from kms.noise.connection import open_noise_connection
from kms.noise.stream import frame_bytes
from tests.integration.daemon.harness import KmsProcess, make_home, wait_until

CHAIN = "hostile-1"
NODE_KEY = bytes.fromhex("0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20")
NODE_ID = "12D3KooWJ1TsijH7H5F74hfAD5XishQz3sxrmAtVY37GtNd9CqYf"


def _config(tmp_path: Path, port: int) -> Path:
    home = make_home(tmp_path / "kms", [CHAIN])
    text = home.chain_section(CHAIN)
    text += home.validator_section(
        CHAIN, f"noise://{NODE_ID}@127.0.0.1:{port}", home.identity, "v0.40"
    )
    text += home.softsign_section([CHAIN])
    return home.write_config(text)


def _reasons(kms: KmsProcess) -> list[str]:
    out = []
    for line in kms.log().splitlines():
        if line.startswith("{"):
            e = json.loads(line)
            if e.get("msg") == "link down":
                out.append(str(e.get("reason")))
    return out


async def _serve(
    handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_garbage_instead_of_message_2_is_dropped_and_redialled(tmp_path: Path) -> None:
    dials: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        dials.append(await reader.read(100))
        writer.write(frame_bytes(b"\x07" * 202))  # a message 2 of the right size, all garbage
        await writer.drain()
        await asyncio.sleep(2)
        writer.close()

    server, port = await _serve(handler)
    kms = KmsProcess(_config(tmp_path, port))
    try:
        await wait_until(lambda: len(dials) >= 3, 20)
        assert all(d[:2] == b"\x00\x20" and len(d) == 34 for d in dials)  # message 1 only
        assert kms.alive()
        reasons = _reasons(kms)
        assert reasons and "authenticate" in reasons[0], reasons
        assert len(set(reasons)) == len(reasons)  # said once, not per attempt
    finally:
        server.close()
        assert kms.terminate() == 0, kms.log()


async def test_bad_frame_after_the_handshake_drops_the_link_and_kms_redials(
    tmp_path: Path,
) -> None:
    handshakes = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal handshakes
        conn = await open_noise_connection(reader, writer, NODE_KEY, initiator=False)
        handshakes += 1
        if handshakes == 1:
            writer.write(b"\x00\x20" + b"\x00" * 32)  # a frame that cannot authenticate
        else:
            writer.write(b"\xff\xff" + b"\x00" * 100)  # an oversized header, then EOF
        await writer.drain()
        await asyncio.sleep(0.5)
        await conn.close()

    server, port = await _serve(handler)
    kms = KmsProcess(_config(tmp_path, port))
    try:
        await wait_until(lambda: handshakes >= 3, 20)
        assert kms.alive()
        reasons = _reasons(kms)
        assert any("failed to authenticate" in r for r in reasons), reasons
    finally:
        server.close()
        assert kms.terminate() == 0, kms.log()
