"""Interop with CometBFT's own Go SecretConnection (p2p/conn, cometbft v0.38.26).

The Go echo peer in go_peer/ is built from the local Go module cache only (GOPROXY=off,
GOTOOLCHAIN=local): the test skips, saying why, when Go or the cached cometbft module is
missing. Both roles are covered: Go listens and we dial (the daemon's case), and Go dials
and we listen (the simulated validator's case).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from kms.secretconn import SecretConnection, open_secret_connection, peer_id
from kms.secretconn.handshake import Handshake

pytestmark = pytest.mark.slow

GO_PEER_SRC = Path(__file__).with_name("go_peer")
SIZES = (1, 200, 1024, 1025, 10 * 1024, 1024 * 1024 + 3)


@pytest.fixture(scope="module")
def go_peer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    go = shutil.which("go") or (
        "/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None
    )
    if go is None:
        pytest.skip("go toolchain not installed")
    work = tmp_path_factory.mktemp("go_peer")
    for name in ("main.go", "go.mod"):
        shutil.copy(GO_PEER_SRC / name, work / name)
    env = {**os.environ, "GOFLAGS": "-mod=mod", "GOPROXY": "off", "GOTOOLCHAIN": "local"}
    build = subprocess.run(
        [go, "build", "-o", str(work / "peer"), "."],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if build.returncode != 0:
        pytest.skip(
            f"cannot build the Go peer offline (cometbft v0.38.26 not cached?): {build.stderr[-300:]}"
        )
    return work / "peer"


async def _line(proc: asyncio.subprocess.Process, tag: str) -> str:
    assert proc.stdout is not None
    raw = await asyncio.wait_for(proc.stdout.readline(), 20)
    words = raw.decode().split()
    assert words and words[0] == tag, raw
    return words[1]


async def _echo_round_trips(conn: SecretConnection) -> int:
    total = 0
    for size in SIZES:
        message = os.urandom(size)
        await conn.write(message)
        got = bytearray()
        while len(got) < size:
            got += await asyncio.wait_for(conn.read(), 10)
        assert bytes(got) == message
        total += size
    return total


async def _finish(proc: asyncio.subprocess.Process, total: int) -> None:
    assert await _line(proc, "TOTAL") == str(total)
    assert await asyncio.wait_for(proc.wait(), 10) == 0


async def test_we_dial_a_go_listener(go_peer: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        str(go_peer), "listen", stdout=asyncio.subprocess.PIPE
    )
    try:
        port = int(await _line(proc, "PORT"))
        go_id = await _line(proc, "ID")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        conn = await open_secret_connection(reader, writer, os.urandom(32), expected_peer_id=go_id)
        assert conn.remote_peer_id == go_id
        assert await _line(proc, "REMOTE") == peer_id(conn.local_public_key)
        total = await _echo_round_trips(conn)
        await conn.close()
        await _finish(proc, total)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_a_go_dialer_reaches_our_listener(go_peer: Path) -> None:
    results: asyncio.Queue[object] = asyncio.Queue()
    our_seed = os.urandom(32)
    our_id = peer_id(Handshake(our_seed).local_public_key)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            conn = await open_secret_connection(reader, writer, our_seed)
            await results.put(conn.remote_peer_id)
            await results.put(await _echo_round_trips(conn))
            await conn.close()
        except BaseException as exc:  # handed to the test body
            await results.put(exc)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    proc = await asyncio.create_subprocess_exec(
        str(go_peer), "dial", f"127.0.0.1:{port}", stdout=asyncio.subprocess.PIPE
    )
    try:
        go_id = await _line(proc, "ID")
        assert await _line(proc, "REMOTE") == our_id
        items = [await asyncio.wait_for(results.get(), 30) for _ in range(2)]
        for item in items:
            if isinstance(item, BaseException):
                raise item
        assert items == [go_id, sum(SIZES)]
        await _finish(proc, sum(SIZES))
    finally:
        server.close()
        await server.wait_closed()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
