"""The link as a pump, in memory: reconnect, backoff, shutdown and refusal handling through the dial seam.

No sockets: `Link(dial=...)` hands the link in-memory transports, `sleep=` records
the backoff instead of waiting it out. The service is the real one (softsign, a real
state file), so a refusal here is the double-sign rules' own.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from kms.config import ValidatorConfig
from kms.errors import LinkClosed, NodeBusy
from kms.link import INITIAL_BACKOFF, MAX_BACKOFF, Link
from kms.privval.codec import decode_response, encode
from kms.privval.framing import MessageReader, frame
from kms.privval.messages import (
    BlockID,
    Dialect,
    PartSetHeader,
    PingRequest,
    PingResponse,
    PubKeyRequest,
    PubKeyResponse,
    Request,
    Response,
    SignedMsgType,
    SignedVoteResponse,
    SignVoteRequest,
    Timestamp,
    Vote,
)
from kms.service import LinkInfo, SignService
from kms.transport import Transport
from tests.unit.test_service import CHAIN, make_service

DIALECT = Dialect.V0_38


class MemoryTransport:
    """One in-memory connection: the test plays the node on the other side."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.replies: asyncio.Queue[Response] = asyncio.Queue()
        self._reader = MessageReader()
        self.closed = asyncio.Event()
        self.stall_writes = False  # a node that stopped reading: our write never completes

    def send(self, request: Request) -> None:
        self.inbox.put_nowait(frame(encode(request, DIALECT)))

    def send_raw(self, data: bytes) -> None:
        self.inbox.put_nowait(data)

    def hang_up(self) -> None:
        self.inbox.put_nowait(None)

    async def reply(self) -> Response:
        async with asyncio.timeout(5):
            return await self.replies.get()

    # the Transport interface, as the link sees it
    async def read(self) -> bytes:
        data = await self.inbox.get()
        if data is None:
            raise LinkClosed("peer closed the connection")
        return data

    async def write(self, data: bytes) -> None:
        if self.closed.is_set():
            raise LinkClosed("closed locally")
        if self.stall_writes:
            await asyncio.Event().wait()
        for body in self._reader.feed(data):
            self.replies.put_nowait(decode_response(body, DIALECT))

    async def close(self) -> None:
        self.closed.set()


class Dialer:
    """Hands out scripted outcomes: a MemoryTransport, or an exception to raise."""

    def __init__(self) -> None:
        self.script: asyncio.Queue[MemoryTransport | BaseException] = asyncio.Queue()
        self.calls = 0

    async def __call__(self) -> Transport:
        self.calls += 1
        outcome = await self.script.get()
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def connect(self) -> MemoryTransport:
        t = MemoryTransport()
        self.script.put_nowait(t)
        return t


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


def config(**kw: Any) -> ValidatorConfig:
    base: dict[str, Any] = dict(
        chain_id=CHAIN,
        addr="unix:///nowhere/node.sock",
        scheme="unix",
        host="",
        port=0,
        peer_id=None,
        path=Path("/nowhere/node.sock"),
        secret_key=None,
        protocol_version=DIALECT,
        timeout=2.0,
    )
    base.update(kw)
    return ValidatorConfig(**base)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[SignService]:
    yield from make_service(tmp_path)


class Harness:
    def __init__(self, service: SignService, **link_kw: Any) -> None:
        self.dial = Dialer()
        self.sleeps = Sleeps()
        cfg = link_kw.pop("cfg", config())
        self.link = Link(
            cfg,
            service,
            identity_seed=None,
            rng=random.Random(7),
            dial=self.dial,
            sleep=self.sleeps,
            **link_kw,
        )
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.link.run())

    async def stop(self) -> None:
        self.link.stop()
        assert self.task is not None
        async with asyncio.timeout(5):
            await self.task

    async def wait_dials(self, n: int) -> None:
        async with asyncio.timeout(5):
            while self.dial.calls < n:
                await asyncio.sleep(0.001)


@pytest.fixture
async def h(service: SignService) -> AsyncIterator[Harness]:
    harness = Harness(service)
    harness.start()
    yield harness
    await harness.stop()


def precommit(height: int, block: bytes, chain: str = CHAIN) -> SignVoteRequest:
    vote = Vote(
        type=SignedMsgType.PRECOMMIT,
        height=height,
        round=0,
        block_id=BlockID(block * 32, PartSetHeader(1, b"\x02" * 32)),
        timestamp=Timestamp(1_700_000_000, 0),
        validator_address=b"\x01" * 20,
    )
    return SignVoteRequest(vote=vote, chain_id=chain)


async def test_requests_are_answered_in_order_on_one_connection(h: Harness) -> None:
    node = h.dial.connect()
    node.send_raw(
        frame(encode(PingRequest(), DIALECT)) + frame(encode(PubKeyRequest(CHAIN), DIALECT))
    )
    assert isinstance(await node.reply(), PingResponse)
    pub = await node.reply()
    assert isinstance(pub, PubKeyResponse) and pub.error is None
    assert h.link.requests_served == 2 and h.dial.calls == 1


async def test_a_refusal_travels_in_the_response_and_keeps_the_link_up(h: Harness) -> None:
    node = h.dial.connect()
    node.send(precommit(5, b"\xaa"))
    first = await node.reply()
    assert isinstance(first, SignedVoteResponse) and first.error is None
    node.send(precommit(5, b"\xbb"))  # same height/round/step, another block
    second = await node.reply()
    assert isinstance(second, SignedVoteResponse) and second.error is not None
    assert second.error.code == 2 and "double signing" in second.error.description
    node.send(PingRequest())  # still the same connection
    assert isinstance(await node.reply(), PingResponse)
    assert h.dial.calls == 1 and not node.closed.is_set()


async def test_a_decode_error_closes_the_link_and_it_is_redialled_at_once(h: Harness) -> None:
    node = h.dial.connect()
    node.send(PingRequest())
    await node.reply()
    node.send_raw(frame(b"\x7a\x00"))  # no dialect has field 15
    second = h.dial.connect()
    async with asyncio.timeout(5):
        await node.closed.wait()
    await h.wait_dials(2)
    assert h.sleeps.delays == []  # a link that served is redialled without backoff
    second.send(PingRequest())
    assert isinstance(await second.reply(), PingResponse)


async def test_failed_dials_back_off_exponentially_with_jitter_up_to_the_cap(h: Harness) -> None:
    for _ in range(8):
        h.dial.script.put_nowait(ConnectionRefusedError())
    node = h.dial.connect()
    node.send(PingRequest())
    assert isinstance(await node.reply(), PingResponse)
    delays = h.sleeps.delays
    assert len(delays) == 8
    for attempt, d in enumerate(delays, start=1):
        base = min(MAX_BACKOFF, INITIAL_BACKOFF * 2 ** (attempt - 1))
        assert 0.5 * base <= d <= base
    assert max(delays) <= MAX_BACKOFF
    # the link came up: the next failure starts from the first delay again
    node.hang_up()
    h.dial.script.put_nowait(ConnectionRefusedError())
    h.dial.connect()
    await h.wait_dials(11)
    assert h.sleeps.delays[8] <= INITIAL_BACKOFF


async def test_a_node_serving_another_signer_is_queued_for_again_without_backoff(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="kms.link"):
        for _ in range(3):
            h.dial.script.put_nowait(NodeBusy("no handshake: the node serves another signer"))
        node = h.dial.connect()
        node.send(PingRequest())
        await node.reply()
    assert h.sleeps.delays == []
    assert sum("standby for node" in r.getMessage() for r in caplog.records) == 1


async def test_shutdown_finishes_the_request_in_progress(service: SignService) -> None:
    release = asyncio.Event()
    started = asyncio.Event()
    original = service.handle

    async def slow_handle(request: Request, link: LinkInfo) -> Response:
        started.set()
        await release.wait()  # a slow HSM
        return await original(request, link)

    service.handle = slow_handle  # type: ignore[method-assign]
    harness = Harness(service)
    harness.start()
    node = harness.dial.connect()
    node.send(precommit(9, b"\xcc"))
    async with asyncio.timeout(5):
        await started.wait()
    harness.link.stop()  # while the signature is being made
    await asyncio.sleep(0.01)
    assert harness.task is not None and not harness.task.done()
    release.set()
    answer = await node.reply()
    assert isinstance(answer, SignedVoteResponse) and answer.error is None
    async with asyncio.timeout(5):
        await harness.task
    assert harness.dial.calls == 1  # and no redial after shutdown


async def test_stop_while_idle_returns_at_once(h: Harness) -> None:
    h.dial.connect()
    await h.wait_dials(1)
    await asyncio.sleep(0.01)
    await h.stop()  # (the fixture's second stop finds the task done)


async def test_a_silent_node_is_dropped_after_the_idle_timeout(service: SignService) -> None:
    harness = Harness(service)
    harness.link.idle_timeout = 0.05
    harness.start()
    first = harness.dial.connect()
    harness.dial.connect()
    async with asyncio.timeout(5):
        await first.closed.wait()
    await harness.wait_dials(2)
    await harness.stop()


async def test_a_write_that_does_not_complete_in_time_drops_the_link(
    service: SignService,
) -> None:
    harness = Harness(service, cfg=config(timeout=0.1))
    harness.start()
    node = harness.dial.connect()
    node.stall_writes = True
    node.send(PingRequest())
    harness.dial.connect()
    async with asyncio.timeout(5):
        await node.closed.wait()
    await harness.wait_dials(2)
    assert harness.link.requests_served == 0
    await harness.stop()


async def test_a_response_kms_cannot_encode_is_logged_as_its_own_bug_and_the_link_redialled(
    service: SignService, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken_handle(request: Request, link: LinkInfo) -> Response:
        # an extension on a vote response of v0.34, which has no such field
        return SignedVoteResponse(vote=Vote(type=2, height=1, round=0, extension=b"x"))

    service.handle = broken_handle  # type: ignore[method-assign]
    harness = Harness(service, cfg=config(protocol_version=Dialect.V0_34))
    harness.start()
    node = harness.dial.connect()
    node.inbox.put_nowait(frame(encode(PingRequest(), Dialect.V0_34)))
    harness.dial.connect()
    with caplog.at_level(logging.ERROR, logger="kms.link"):
        async with asyncio.timeout(5):
            await node.closed.wait()
        await harness.wait_dials(2)
    assert any("not the node" in r.getMessage() for r in caplog.records)
    assert harness.link.decode_failures == 0  # not counted against the node
    await harness.stop()


async def test_reconnect_false_stops_after_the_first_drop(service: SignService) -> None:
    harness = Harness(service, cfg=config(reconnect=False))
    harness.start()
    node = harness.dial.connect()
    node.send(PingRequest())
    await node.reply()
    node.hang_up()
    assert harness.task is not None
    async with asyncio.timeout(5):
        await harness.task
    assert harness.dial.calls == 1
