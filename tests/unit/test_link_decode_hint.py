"""A link whose node keeps sending what kms cannot decode says protocol_version may be wrong,
instead of looking like a flapping link."""

from __future__ import annotations

import asyncio
import logging
import random
import tempfile
from pathlib import Path

import pytest

from kms.config import ValidatorConfig
from kms.link import DECODE_FAILURES_HINT, Link
from kms.privval.framing import frame
from kms.privval.messages import Dialect
from tests.unit.test_service import CHAIN, make_service

# a privval message whose variant (field 15) no dialect has: CodecError on every connection
JUNK = frame(b"\x7a\x00")


async def test_repeated_decode_failures_name_protocol_version(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    connections = 0

    async def node(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        writer.write(JUNK)
        await writer.drain()
        await reader.read()  # until kms hangs up
        writer.close()

    with tempfile.TemporaryDirectory() as short:  # unix paths must stay under 107 bytes
        sock = Path(short) / "node.sock"
        server = await asyncio.start_unix_server(node, path=str(sock))
        cfg = ValidatorConfig(
            chain_id=CHAIN,
            addr=f"unix://{sock}",
            scheme="unix",
            host="",
            port=0,
            peer_id=None,
            path=sock,
            secret_key=None,
            protocol_version=Dialect.V0_37,
            timeout=2.0,
        )
        for service in make_service(tmp_path):
            lk = Link(cfg, service, identity_seed=None, rng=random.Random(1))
            with caplog.at_level(logging.WARNING, logger="kms.link"):
                task = asyncio.create_task(lk.run())
                async with asyncio.timeout(20):
                    while lk.decode_failures < DECODE_FAILURES_HINT:
                        await asyncio.sleep(0.05)
                lk.stop()
                await task
        server.close()
        await server.wait_closed()
    hints = [r for r in caplog.records if "may speak another protocol_version" in r.getMessage()]
    assert len(hints) == 1
    assert "(configured v0.37)" in hints[0].getMessage()
    assert connections >= DECODE_FAILURES_HINT
