"""A simulated CometBFT validator node: the privval *listener* side, for the demo, tests and benchmarks.

Owns: behaving like a node towards a signer: it listens on a `priv_validator_laddr`
(tcp with SecretConnection under a fresh random identity per start, or a unix
socket), serves one signer connection at a time (a second dial waits until the
first drops, as in CometBFT), sends requests in the chosen dialect, retries a
failed round trip while a signer reconnects (the node's RetrySignerClient), and
checks every signature it gets back against the signer's public key and the
canonical sign bytes. Never signs anything itself.

`run_heights(n)` plays consensus height after height: PubKey, proposal, prevote,
precommit (with a vote extension on v0.38/v1), pings when idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from kms.errors import KmsError, LinkClosed, ProtocolError
from kms.errors import SignerRefused as SignerRefused  # re-exported: callers import it from here
from kms.errors import ValidatorSimError as ValidatorSimError  # re-exported, as SignerRefused
from kms.identity import identity_public_key
from kms.noise.connection import open_noise_connection
from kms.noise.peerid import peer_id_from_ed25519
from kms.privval import canonical
from kms.privval.codec import decode_response, encode
from kms.privval.framing import MessageReader, frame
from kms.privval.messages import (
    BlockID,
    Dialect,
    PartSetHeader,
    PingRequest,
    PingResponse,
    Proposal,
    PubKeyRequest,
    PubKeyResponse,
    Request,
    Response,
    SignedMsgType,
    SignedProposalResponse,
    SignedVoteResponse,
    SignProposalRequest,
    SignVoteRequest,
    Timestamp,
    Vote,
)
from kms.secretconn.connection import open_secret_connection
from kms.transport import PlainTransport, Transport

PING_INTERVAL = 5.0 * 2 / 3
"""The node pings after 2/3 of its 5 s timeout of idleness."""


def now_timestamp() -> Timestamp:
    ns = time.time_ns()
    return Timestamp(seconds=ns // 1_000_000_000, nanos=ns % 1_000_000_000)


def random_block_id() -> BlockID:
    return BlockID(secrets.token_bytes(32), PartSetHeader(1, secrets.token_bytes(32)))


@dataclass(frozen=True)
class HeightReport:
    height: int
    latency_ms: dict[str, float]


@dataclass
class _Conn:
    transport: Transport
    reader: MessageReader = field(default_factory=MessageReader)
    closed: asyncio.Event = field(default_factory=asyncio.Event)


class SimulatedValidator:
    """A privval listener. `await start()`, point a signer at `.addr`, then send requests."""

    def __init__(
        self,
        chain_id: str,
        dialect: Dialect,
        *,
        transport: Literal["tcp", "unix", "noise"] = "tcp",
        host: str = "127.0.0.1",
        port: int = 0,
        path: Path | None = None,
        extensions: bool = True,
        timeout: float = 5.0,
        retry_window: float = 5.0,
        ping: bool = True,
        node_key: bytes | None = None,
        allow_peer_id: str | None = None,
    ) -> None:
        self.chain_id = chain_id
        # noise: the node's persistent identity seed and the one signer peer ID it accepts
        # (None = accept anyone, as cometbft's tests do); rejected peers are counted.
        self.node_key = node_key if node_key is not None else secrets.token_bytes(32)
        self.allow_peer_id = allow_peer_id
        self.rejected_peers: list[str] = []
        self.dialect = dialect
        self.transport = transport
        self.host = host
        self.port = port
        self.path = path
        self.extensions = extensions and dialect.has_vote_extensions
        self.timeout = timeout
        self.retry_window = retry_window
        self._ping_enabled = ping
        self._server: asyncio.Server | None = None
        self._conn: _Conn | None = None
        self._connected = asyncio.Event()
        self._slot = asyncio.Lock()  # one signer connection at a time
        self._rpc = asyncio.Lock()  # one request in flight
        self._last_activity = time.monotonic()
        self._ping_task: asyncio.Task[None] | None = None
        self.pub_key: bytes | None = None
        self.connections = 0
        self.latencies: dict[str, list[float]] = {}

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def addr(self) -> str:
        if self.transport == "unix":
            return f"unix://{self.path}"
        if self.transport == "noise":
            return f"noise://{self.peer_id}@{self.host}:{self.port}"
        return f"tcp://{self.host}:{self.port}"

    @property
    def peer_id(self) -> str:
        """The node's libp2p peer ID (what a signer pins in its noise:// address)."""
        return peer_id_from_ed25519(identity_public_key(self.node_key))

    async def start(self) -> str:
        if self.transport == "unix":
            if self.path is None:
                raise ValueError("a unix listener needs a path")
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            self._server = await asyncio.start_unix_server(self._accept, path=str(self.path))
        else:
            self._server = await asyncio.start_server(self._accept, self.host, self.port)
            self.port = self._server.sockets[0].getsockname()[1]
        if self._ping_enabled:
            self._ping_task = asyncio.create_task(self._ping_loop())
        return self.addr

    async def close(self) -> None:
        if self._ping_task is not None:
            self._ping_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ping_task
        if self._server is not None:
            self._server.close()
        await self.drop_connection()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)

    async def __aenter__(self) -> SimulatedValidator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def wait_connected(self, timeout: float = 5.0) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def drop_connection(self) -> None:
        """Close the current signer connection (as a node does after a timeout)."""
        conn = self._conn
        if conn is not None:
            self._conn = None
            self._connected.clear()
            with contextlib.suppress(Exception):
                await conn.transport.close()
            conn.closed.set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with self._slot:
            try:
                transport: Transport
                if self.transport == "tcp":
                    transport = await open_secret_connection(
                        reader, writer, secrets.token_bytes(32), timeout=self.timeout
                    )
                elif self.transport == "noise":
                    transport = await self._accept_noise(reader, writer)
                else:
                    transport = PlainTransport(reader, writer)
                conn = _Conn(transport)
            except (KmsError, OSError, TimeoutError):
                writer.close()
                return
            self.connections += 1
            self._conn = conn
            self._connected.set()
            await conn.closed.wait()

    async def _accept_noise(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> Transport:
        """Like cometbft's NoiseListener: full handshake, then the allowlist check."""
        conn = await open_noise_connection(
            reader, writer, self.node_key, initiator=False, timeout=self.timeout
        )
        allowed = self.allow_peer_id
        if allowed is not None and conn.remote_peer_id != allowed:
            self.rejected_peers.append(conn.remote_peer_id)
            await conn.close()
            raise ProtocolError(f"rejecting non-allowlisted signer peer {conn.remote_peer_id}")
        return conn

    # --- requests --------------------------------------------------------------------------

    async def request(self, req: Request) -> Response:
        """One round trip on the current connection; retried across reconnects for up to
        `retry_window` seconds, like the node. A RemoteSignerError is returned, not retried."""
        deadline = time.monotonic() + self.retry_window
        while True:
            try:
                async with self._rpc:
                    return await self._round_trip(req)
            except (ProtocolError, LinkClosed, OSError, TimeoutError) as e:
                await self.drop_connection()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ValidatorSimError(f"no answer from the signer: {e}") from e
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._connected.wait(), remaining)
                await asyncio.sleep(0.1)

    async def _round_trip(self, req: Request) -> Response:
        if self._conn is None:
            await asyncio.wait_for(self._connected.wait(), self.timeout)
        conn = self._conn
        if conn is None:
            raise LinkClosed("no signer connected")
        await asyncio.wait_for(conn.transport.write(frame(encode(req, self.dialect))), self.timeout)
        bodies: list[bytes] = []
        while not bodies:
            data = await asyncio.wait_for(conn.transport.read(), self.timeout)
            bodies = conn.reader.feed(data)
        if len(bodies) > 1:
            raise ProtocolError("signer sent more than one message for one request")
        self._last_activity = time.monotonic()
        return decode_response(bodies[0], self.dialect)

    async def _ping_loop(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            if self._conn is None or self._rpc.locked():
                continue
            if time.monotonic() - self._last_activity < PING_INTERVAL:
                continue
            try:
                resp = await self.request(PingRequest())
                if not isinstance(resp, PingResponse):
                    await self.drop_connection()
            except KmsError:
                continue

    # --- typed helpers ---------------------------------------------------------------------

    async def get_pubkey(self) -> bytes:
        resp = _answer(await self.request(PubKeyRequest(self.chain_id)), PubKeyResponse)
        if len(resp.pub_key) != 32:
            raise ValidatorSimError(f"public key of {len(resp.pub_key)} bytes")
        self.pub_key = resp.pub_key
        return resp.pub_key

    async def sign_vote(self, vote: Vote, *, skip_extension_signing: bool = False) -> Vote:
        """Ask for a vote signature; verify it like a node would; return the signed vote."""
        if self.pub_key is None:
            await self.get_pubkey()
        t0 = time.perf_counter()
        resp = await self.request(
            SignVoteRequest(vote, self.chain_id, skip_extension_signing=skip_extension_signing)
        )
        self._record("prevote" if vote.type == SignedMsgType.PREVOTE else "precommit", t0)
        resp = _answer(resp, SignedVoteResponse)
        if resp.vote is None:
            raise ValidatorSimError("SignedVoteResponse without a vote")
        signed = resp.vote
        if self.transport == "noise" and not signed.extension and vote.extension:
            # kms drops the echoed extension on noise:// (kms.privval.session.single_frame_vote_response);
            # the node keeps its own and takes signature, extension signature and timestamp
            signed = dataclasses.replace(signed, extension=vote.extension)
        self._verify(canonical.vote_sign_bytes(self.chain_id, signed), signed.signature, "vote")
        non_nil_precommit = signed.type == SignedMsgType.PRECOMMIT and not signed.block_id.is_nil
        if signed.extension_signature and not non_nil_precommit:
            raise ValidatorSimError(
                "extension signature on a prevote or nil precommit (node panics)"
            )
        if self.extensions and non_nil_precommit and not skip_extension_signing:
            if not signed.extension_signature:
                raise ValidatorSimError("missing extension signature on a non-nil precommit")
            self._verify(
                canonical.vote_extension_sign_bytes(self.chain_id, signed),
                signed.extension_signature,
                "vote extension",
            )
        if signed.extension != vote.extension:
            raise ValidatorSimError("vote extension was not echoed")
        return signed

    async def sign_proposal(self, proposal: Proposal) -> Proposal:
        if self.pub_key is None:
            await self.get_pubkey()
        t0 = time.perf_counter()
        resp = await self.request(SignProposalRequest(proposal, self.chain_id))
        self._record("proposal", t0)
        resp = _answer(resp, SignedProposalResponse)
        if resp.proposal is None:
            raise ValidatorSimError("SignedProposalResponse without a proposal")
        # the node keeps its own proposal and takes only the signature
        signed = dataclasses.replace(proposal, signature=resp.proposal.signature)
        self._verify(
            canonical.proposal_sign_bytes(self.chain_id, signed), signed.signature, "proposal"
        )
        return signed

    async def run_heights(
        self,
        n: int,
        *,
        start_height: int = 1,
        on_height: Callable[[HeightReport], None] | None = None,
    ) -> list[HeightReport]:
        """Play `n` heights of consensus as the proposer: pubkey, proposal, prevote, precommit."""
        if self.pub_key is None:
            await self.get_pubkey()
        reports = []
        for height in range(start_height, start_height + n):
            lat: dict[str, float] = {}
            t = time.perf_counter()
            await self.get_pubkey()
            lat["pubkey"] = _ms_since(t)
            block = random_block_id()
            t = time.perf_counter()
            await self.sign_proposal(
                Proposal(SignedMsgType.PROPOSAL, height, 0, -1, block, now_timestamp())
            )
            lat["proposal"] = _ms_since(t)
            for kind, ext in ((SignedMsgType.PREVOTE, b""), (SignedMsgType.PRECOMMIT, b"ext")):
                vote = Vote(
                    type=kind,
                    height=height,
                    round=0,
                    block_id=block,
                    timestamp=now_timestamp(),
                    validator_address=b"\x01" * 20,
                    validator_index=0,
                    extension=ext if self.extensions else b"",
                )
                t = time.perf_counter()
                await self.sign_vote(vote)
                lat["prevote" if kind == SignedMsgType.PREVOTE else "precommit"] = _ms_since(t)
            report = HeightReport(height, lat)
            reports.append(report)
            if on_height is not None:
                on_height(report)
        return reports

    # --- internals -------------------------------------------------------------------------

    def _verify(self, sign_bytes: bytes, signature: bytes, what: str) -> None:
        if self.pub_key is None:
            raise ValidatorSimError("no public key yet: ask for it first")
        try:
            VerifyKey(self.pub_key).verify(sign_bytes, signature)
        except (BadSignatureError, ValueError) as e:
            raise ValidatorSimError(f"bad {what} signature") from e

    def _record(self, kind: str, t0: float) -> None:
        self.latencies.setdefault(kind, []).append(_ms_since(t0))


_Answer = TypeVar("_Answer", PubKeyResponse, SignedVoteResponse, SignedProposalResponse)


def _answer(resp: Response, expected: type[_Answer]) -> _Answer:
    """`resp` as the response type a node expects; SignerRefused when it carries an error."""
    if not isinstance(resp, expected):
        raise ValidatorSimError(f"expected {expected.__name__}, got {type(resp).__name__}")
    if resp.error is not None:
        raise SignerRefused(resp.error)
    return resp


def _ms_since(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0
