"""One validator connection: dial, handshake, read requests, answer them, redial.

Owns: the asyncio side of one `[[validator]]` entry: the outbound connection
(`tcp://[id@]host:port` through SecretConnection with our identity key,
`noise://peer-id@host:port` through libp2p Noise with the same key and the node's
peer ID pinned, or `unix://path` in the clear), read/write deadlines, and the reconnect loop.
A thin pump: bytes go between a `Transport` and a sans-IO `kms.privval.session`
(framing, decoding, encoding, the idle deadline live there). Dialling is a seam
(`dial`, and `sleep` for the backoff), so reconnect, backoff, shutdown and refusal
handling are tested in memory. Never decides what to answer (that is `kms.service`)
and never listens.

Rules:
- first dial immediately; while the node is down, redial with jittered backoff
  capped at `MAX_BACKOFF` (about 1 s: a node waits only 3 s for its signer at
  start-up); a dropped link is redialled at once;
- log once per state change (up, down and why), not per attempt;
- requests are answered strictly in order, one at a time (the node has at most
  one in flight);
- any transport, handshake, framing or decoding error closes the link, which is
  then redialled; refusals travel inside responses and keep the link up;
- a response kms cannot encode is kms's own bug (EncodeError): logged as one, the
  link is closed and redialled (the node retries), the node is not blamed;
- a write must complete within `timeout` seconds; a link with nothing to read
  for `idle_timeout` (the node pings every ~3.3 s) is considered dead;
- on shutdown, a request being answered is finished first;
- a node that takes the TCP connection but never answers the handshake serves
  another signer (a CometBFT node accepts one signer at a time; the others wait
  in its listen backlog): this host is a standby for that node. That is logged
  once as soon as the handshake stays silent for STANDBY_AFTER ("standby for
  node"), shown as kms_link_standby = 1; when the handshake times out the next dial
  follows at once with no backoff, so a queued connection is always waiting
  when the node's current signer goes away (fast take-over).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from kms.config import ValidatorConfig
from kms.errors import (
    CodecError,
    EncodeError,
    HandshakeTimeout,
    KmsError,
    LinkClosed,
    NodeBusy,
    ProtocolError,
    describe,
)
from kms.noise.connection import open_noise_connection
from kms.privval.session import PrivvalSession
from kms.secretconn.connection import open_secret_connection
from kms.service import LinkInfo, SignService
from kms.transport import PlainTransport, Transport

log = logging.getLogger("kms.link")

INITIAL_BACKOFF = 0.05
MAX_BACKOFF = 1.0
STANDBY_AFTER = 1.0  # seconds of handshake silence after which we are a standby


class LinkMetrics(Protocol):
    def link_state(self, chain: str, link: str, up: bool) -> None: ...

    def link_reconnect(self, chain: str, link: str) -> None: ...

    def link_standby(self, chain: str, link: str, standby: bool) -> None: ...


DECODE_FAILURES_HINT = 3  # connections in a row lost to undecodable messages before the hint


def backoff_delay(attempt: int, rng: random.Random) -> float:
    """Delay before dial attempt `attempt` (1-based) after a failure: exponential from
    50 ms, capped at MAX_BACKOFF, with jitter in [50 %, 100 %] so replicas do not synchronise."""
    base: float = min(MAX_BACKOFF, INITIAL_BACKOFF * 2.0 ** min(attempt - 1, 10))
    jitter: float = rng.uniform(0.5, 1.0)
    return base * jitter


class Link:
    """Serves one `[[validator]]` entry until `stop()` is called."""

    def __init__(
        self,
        cfg: ValidatorConfig,
        service: SignService,
        *,
        identity_seed: bytes | None,
        metrics: LinkMetrics | None = None,
        rng: random.Random | None = None,
        max_message_size: int | None = None,
        dial: Callable[[], Awaitable[Transport]] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`dial` replaces the configured connection (tests dial in memory); `sleep`
        waits out the backoff and `clock` tells the idle deadline (both injected for
        the same reason)."""
        if cfg.scheme in ("tcp", "noise") and identity_seed is None:
            raise KmsError(f"validator {cfg.addr}: a {cfg.scheme}:// link needs an identity key")
        self.cfg = cfg
        self.info = LinkInfo(cfg.chain_id, cfg.protocol_version, cfg.name)
        self._service = service
        self._identity = identity_seed
        self._metrics = metrics
        self._rng = rng or random.Random()
        self._max_message_size = max_message_size  # None: the dialect's own cap
        self._dial = dial or self._connect
        self._sleep = sleep
        self._clock = clock
        self._stopping = False
        self._busy = False
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        self.requests_served = 0
        self._standby = False  # our connection waits in the node's backlog
        self.decode_failures = 0  # connections in a row that ended on an undecodable message
        self.idle_timeout = max(2.0 * cfg.timeout, 7.0)
        if cfg.peer_id is not None and cfg.scheme == "tcp":
            log.warning(
                "peer ID pinned: CometBFT makes a new signer-listener identity at every node "
                "start, so this link will refuse the node after its next restart",
                extra={"fields": self._fields(peer_id=cfg.peer_id)},
            )

    # --- lifecycle -----------------------------------------------------------------

    async def run(self) -> None:
        """Dial, serve, redial; returns after `stop()` (or when `reconnect = false` and the link drops)."""
        self._task = asyncio.current_task()
        attempt = 0
        down_reason: str | None = None
        try:
            while not self._stopping:
                try:
                    transport = await self._dial()
                except (OSError, TimeoutError, ProtocolError, LinkClosed) as e:
                    reason = _describe(e)
                    if isinstance(e, NodeBusy):
                        self._enter_standby(reason)  # (normally already, after STANDBY_AFTER)
                        down_reason = reason
                        attempt = 0  # queue again at once: take over as soon as the node frees
                        continue
                    self._leave_standby()
                    if reason != down_reason:
                        log.warning("link down", extra={"fields": self._fields(reason=reason)})
                        down_reason = reason
                    attempt += 1
                    await self._sleep(backoff_delay(attempt, self._rng))
                    continue
                attempt = 0
                down_reason = None
                self._leave_standby()
                log.info("link up", extra={"fields": self._fields()})
                self._set_state(True)
                served_before = self.requests_served
                try:
                    await self._serve(transport)
                    reason = "shutting down"
                except (OSError, TimeoutError, ProtocolError, LinkClosed) as e:
                    reason = _describe(e)
                    self._count_decode_failure(e, self.requests_served > served_before)
                except EncodeError as e:
                    reason = f"internal error, could not encode the response: {e}"
                    log.error(
                        "kms could not encode its own response (a bug in kms, not the node);"
                        " closing the link so the node retries",
                        extra={"fields": self._fields(reason=str(e))},
                    )
                finally:
                    self._set_state(False)
                    await transport.close()
                if self._stopping:
                    break
                log.warning("link down", extra={"fields": self._fields(reason=reason)})
                down_reason = reason
                if self._metrics is not None:
                    self._metrics.link_reconnect(self.cfg.chain_id, self.cfg.name)
                if not self.cfg.reconnect:
                    log.error(
                        "link closed and reconnect = false: not redialling",
                        extra={"fields": self._fields()},
                    )
                    return
        except asyncio.CancelledError:
            if not self._stopping:
                raise
        finally:
            self._set_state(False)

    def stop(self) -> None:
        """Stop after the request in progress (if any) has been answered."""
        self._stopping = True
        if not self._busy and self._task is not None and not self._task.done():
            self._task.cancel()

    # --- connection ------------------------------------------------------------------

    async def _connect(self) -> Transport:
        cfg = self.cfg
        if cfg.scheme == "unix":
            assert cfg.path is not None
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(str(cfg.path), limit=65536), cfg.timeout
            )
            return PlainTransport(reader, writer)
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(cfg.host, cfg.port, limit=65536), cfg.timeout
        )
        assert self._identity is not None
        opening: Coroutine[Any, Any, Transport] = (
            open_noise_connection if cfg.scheme == "noise" else open_secret_connection
        )(reader, writer, self._identity, expected_peer_id=cfg.peer_id, timeout=cfg.timeout)
        handshake = asyncio.ensure_future(opening)
        try:
            done, _ = await asyncio.wait({handshake}, timeout=min(STANDBY_AFTER, cfg.timeout))
            if not done:
                # A waiting node answers the handshake in milliseconds: this one is
                # serving another signer and our connection waits in its backlog.
                self._enter_standby(
                    "connected, but the node does not answer the handshake: it serves another signer"
                )
            return await handshake
        except HandshakeTimeout:
            writer.close()
            raise NodeBusy(
                f"connected, but no handshake within {cfg.timeout:g} s: the node is"
                " probably serving another signer"
            ) from None
        except BaseException:
            handshake.cancel()
            writer.close()
            raise

    async def _serve(self, transport: Transport) -> None:
        clock = self._clock
        loop = asyncio.get_running_loop()
        session = PrivvalSession(
            self.cfg.protocol_version,
            idle_timeout=self.idle_timeout,
            now=clock(),
            max_message_size=self._max_message_size,
            single_frame_votes=self.cfg.scheme == "noise",
        )
        # One deadline for the whole connection, moved rather than re-created: the
        # idle deadline while reading, the write deadline while writing, none while
        # the service answers (it has its own sign timeout). Expiry raises TimeoutError.
        async with asyncio.timeout(None) as deadline:
            while not self._stopping:
                if not session.has_request:
                    deadline.reschedule(loop.time() + session.idle_remaining(clock()))
                    data = await transport.read()
                    deadline.reschedule(None)
                    self._busy = True  # a request may be complete: finish it before stopping
                    try:
                        session.receive_data(data, clock())
                    finally:
                        self._busy = session.has_request
                    continue
                self._busy = True
                try:
                    request = session.next_request()
                    assert request is not None
                    response = await self._service.handle(request, self.info)
                    out = session.send(response, clock())
                    deadline.reschedule(loop.time() + self.cfg.timeout)
                    await transport.write(out)
                    deadline.reschedule(None)
                    self.requests_served += 1
                finally:
                    self._busy = session.has_request

    # --- helpers ---------------------------------------------------------------------

    def _count_decode_failure(self, e: BaseException, served: bool) -> None:
        """A link that keeps failing to decode is a protocol_version mismatch, not a flap."""
        if not isinstance(e, CodecError):
            self.decode_failures = 0
            return
        self.decode_failures = 1 if served else self.decode_failures + 1
        if self.decode_failures == DECODE_FAILURES_HINT:
            log.error(
                "the node may speak another protocol_version (configured %s): %d connections"
                " in a row ended on a message kms could not decode; check the node's CometBFT"
                " version against this [[validator]]'s protocol_version",
                self.cfg.protocol_version.value,
                self.decode_failures,
                extra={"fields": self._fields(reason=_describe(e))},
            )

    def _set_state(self, up: bool) -> None:
        if up:
            self.connected.set()
        else:
            self.connected.clear()
        if self._metrics is not None:
            self._metrics.link_state(self.cfg.chain_id, self.cfg.name, up)

    def _enter_standby(self, reason: str) -> None:
        if self._standby:
            return
        self._standby = True
        log.warning(
            f"standby for node {self.cfg.name}",
            extra={"fields": self._fields(reason=reason)},
        )
        if self._metrics is not None:
            self._metrics.link_standby(self.cfg.chain_id, self.cfg.name, True)

    def _leave_standby(self) -> None:
        if self._standby and self._metrics is not None:
            self._metrics.link_standby(self.cfg.chain_id, self.cfg.name, False)
        self._standby = False

    def _fields(self, **extra: object) -> dict[str, object]:
        return {"chain": self.cfg.chain_id, "link": self.cfg.name, **extra}


def _describe(e: BaseException) -> str:
    if isinstance(e, FileNotFoundError):  # a unix:// socket the node has not created yet
        return "socket not found"
    return describe(e)
