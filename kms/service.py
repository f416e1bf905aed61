"""The sign service: the only place where a request, the double-sign state and a signer meet.

Owns: what `kms` answers to each privval request, per chain and per dialect.
Never touches sockets, files or devices directly (links bring requests; the
per-chain guard owns the state file; signers own the keys).

Above 400 lines as one thing: the table below is answered in one place so that
each request kind's checks, the guard call and the refusal reporting are read
side by side (validation, sign bytes and rules live in their own modules).

Per request:

| request              | checks                                   | answer                                      |
|----------------------|------------------------------------------|---------------------------------------------|
| PingRequest          | none                                     | PingResponse                                |
| PubKeyRequest        | chain ID                                 | the chain's public key (dialect layout)     |
| SignVoteRequest      | chain ID, vote validation, guard         | vote echoed + signature (+ extension sig)   |
| SignProposalRequest  | chain ID, proposal validation, guard     | proposal echoed + signature                 |
| SignBytes/RawBytes   | enabled for the chain, chain ID          | refused unless `raw_bytes = "prefixed"`     |
|                      | RawBytes: only on protocol "celestia",   | signed over the fork's domain-separated     |
|                      | every field non-empty                    | bytes (kms.privval.celestia)                |

Every refusal is a `RemoteSignerError` inside the matching response variant, so
the node logs it and the link stays up. The vote is echoed whole: the node
replaces its vote with ours (`*vote = resp.Vote`), so the timestamp we return
must be the one we signed, and the extension must be returned as received.

Vote extensions (DESIGN.md §5): on the v0.38/v1 dialects every non-nil
precommit also gets a signature over the canonical vote-extension bytes, even
for an empty extension, unless the chain sets `sign_extensions = false` or a v1
node says `skip_extension_signing`. Prevotes and nil precommits never get one;
a request that carries an extension on them is refused by validation. Once the
guard has decided to sign, the vote and its extension are signed at once (on
two replicas when two are healthy: one device latency, not two); the extension
signature is released only with the vote, after the vote's state is persisted.
A vote the guard refuses gets no extension signature (none is even made). If
the extension alone failed, it is tried once more after the vote is persisted;
a failure there sends no signature at all, and the retry reuses the stored
vote signature.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from kms.config import ChainConfig
from kms.errors import KmsError, SharedStateError, SignerError, StateError
from kms.privval import canonical, celestia, validation
from kms.privval.limits import MAX_CHAIN_ID_LEN
from kms.privval.messages import (
    Dialect,
    PingRequest,
    PingResponse,
    Proposal,
    PubKeyRequest,
    PubKeyResponse,
    RemoteSignerError,
    Request,
    Response,
    SignBytesRequest,
    SignBytesResponse,
    SignedMsgType,
    SignedProposalResponse,
    SignedRawBytesResponse,
    SignedVoteResponse,
    SignProposalRequest,
    SignRawBytesRequest,
    SignVoteRequest,
    Vote,
)
from kms.refusal import Code, Label, Refusal
from kms.signer.base import Signature, Signer
from kms.state.guard import ChainGuard, GuardResult

log = logging.getLogger("kms.service")


class MetricsSink(Protocol):
    def signature(
        self, chain: str, msg_type: str, outcome: str, latency_s: float, replica: str | None
    ) -> None: ...

    def refusal(self, chain: str, reason: str) -> None: ...

    def last_signed_height(self, chain: str, height: int) -> None: ...


class _NoMetrics:
    def signature(
        self, chain: str, msg_type: str, outcome: str, latency_s: float, replica: str | None
    ) -> None:
        pass

    def refusal(self, chain: str, reason: str) -> None:
        pass

    def last_signed_height(self, chain: str, height: int) -> None:
        pass


@dataclass(frozen=True, slots=True)
class Chain:
    """One chain's configuration, its double-sign guard and its signer."""

    config: ChainConfig
    guard: ChainGuard
    signer: Signer


@dataclass(frozen=True, slots=True)
class LinkInfo:
    """Who is asking: the link's chain, dialect and a label for logs."""

    chain_id: str
    dialect: Dialect
    name: str


class SignService:
    """Answers privval requests. One instance serves every link of every chain."""

    def __init__(
        self,
        chains: Mapping[str, Chain],
        *,
        metrics: MetricsSink | None = None,
        sign_timeout: float = 4.0,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._chains = dict(chains)
        self._metrics: MetricsSink = metrics or _NoMetrics()
        self._sign_timeout = sign_timeout
        self._clock = clock

    def chain(self, chain_id: str) -> Chain:
        return self._chains[chain_id]

    async def handle(self, request: Request, link: LinkInfo) -> Response:
        """Answer one request. Never raises for anything a node can send."""
        chain = self._chains[link.chain_id]
        match request:
            case PingRequest():
                return PingResponse()
            case PubKeyRequest():
                return self._pubkey(request, chain)
            case SignVoteRequest():
                return await self._sign_vote(request, chain, link)
            case SignProposalRequest():
                return await self._sign_proposal(request, chain, link)
            case SignBytesRequest() | SignRawBytesRequest():
                return await self._sign_raw(request, chain, link)
        raise AssertionError(f"unhandled request type {type(request).__name__}")

    # --- pubkey ---------------------------------------------------------------------

    def _pubkey(self, req: PubKeyRequest, chain: Chain) -> PubKeyResponse:
        if req.chain_id != chain.config.id:
            self._metrics.refusal(chain.config.id, Label.CHAIN_ID)
            log.warning(
                "refused pubkey request for another chain",
                extra={
                    "fields": {"chain": chain.config.id, "requested": shown_chain_id(req.chain_id)}
                },
            )
            return PubKeyResponse(
                error=RemoteSignerError(
                    Code.GENERIC,
                    f"unable to provide pubkey: chain id {shown_chain_id(req.chain_id)} is not "
                    f"{chain.config.id!r}",
                )
            )
        return PubKeyResponse(pub_key=chain.signer.public_key)

    # --- votes ----------------------------------------------------------------------

    async def _sign_vote(self, req: SignVoteRequest, chain: Chain, link: LinkInfo) -> Response:
        start = self._clock()
        vote = req.vote
        kind = _vote_kind(vote)
        # the extension signature started alongside the vote's (see _sign_with_extension)
        ext_pending: list[asyncio.Future[Signature]] = []
        try:
            return await self._sign_vote_inner(req, vote, kind, chain, link, start, ext_pending)
        finally:
            for fut in ext_pending:  # refused or failed: the extension never leaves
                if not fut.done():
                    fut.cancel()
                elif not fut.cancelled():
                    fut.exception()  # retrieved, so asyncio does not report it

    async def _sign_vote_inner(
        self,
        req: SignVoteRequest,
        vote: Vote | None,
        kind: str,
        chain: Chain,
        link: LinkInfo,
        start: float,
        ext_pending: list[asyncio.Future[Signature]],
    ) -> Response:
        try:
            self._admit(req.chain_id, chain, validation.validate_vote(vote, link.dialect))
            if vote is None:  # validate_vote already refuses this; kept for the type checker
                raise _Refusal.of("invalid", "missing vote", Label.INVALID)
            ext_bytes = b""
            sign = self._sign(chain)
            if self._wants_extension_signature(vote, req, chain, link.dialect):
                ext_bytes = canonical.vote_extension_sign_bytes(chain.config.id, vote)
                if chain.signer.parallel_capacity >= 2:  # else: one after the other, below
                    sign = self._sign_with_extension(chain, ext_bytes, ext_pending)
            result = await self._guarded(chain, "vote", chain.guard.sign_vote(vote, sign))
            ext_sig = b""
            if ext_bytes:
                # reached only when the guard signed or reused the vote, with its state
                # durable: only now may an extension signature leave
                ext_sig = await self._extension_signature(chain, ext_bytes, ext_pending)
        except _Refusal as r:
            self._log_refusal(chain, link, kind, vote, r.refusal, start)
            return SignedVoteResponse(error=r.refusal.remote_error())
        signed = dataclasses.replace(
            vote,
            timestamp=result.timestamp,
            signature=result.signature,
            extension_signature=ext_sig,
        )
        self._log_outcome(
            chain, link, kind, vote.height, vote.round, result, start, ext_signed=bool(ext_sig)
        )
        return SignedVoteResponse(vote=signed)

    def _sign_with_extension(
        self, chain: Chain, ext_bytes: bytes, ext_pending: list[asyncio.Future[Signature]]
    ) -> Callable[[bytes], Awaitable[Signature]]:
        """The guard's sign callback for a precommit with an extension: once the guard has
        decided to sign, the vote and its extension are started at once (on two replicas
        when two are healthy). The guard gets the vote's signature as soon as it is there
        (its state write overlaps the extension's tail); the extension's future waits in
        `ext_pending` and is used only if the guard returns the vote signed."""
        signer, timeout = chain.signer, self._sign_timeout

        async def call(message: bytes) -> Signature:
            vote_fut, ext_fut = signer.start_signing([message, ext_bytes], timeout=timeout)
            ext_pending.append(ext_fut)
            return await vote_fut

        return call

    async def _extension_signature(
        self, chain: Chain, ext_bytes: bytes, ext_pending: list[asyncio.Future[Signature]]
    ) -> bytes:
        """The extension signature: the one started alongside the vote, else (a reused
        vote, or the extension failed there) signed now; a failure refuses the vote."""
        if ext_pending:
            try:
                return (await ext_pending[0]).signature
            except SignerError:
                pass  # one more try below, now that the vote is durable
        try:
            return await chain.signer.sign(ext_bytes, timeout=self._sign_timeout)
        except SignerError as e:
            raise _Refusal.failed(f"unable to sign vote extension: {e}", e) from e

    @staticmethod
    def _wants_extension_signature(
        vote: Vote, req: SignVoteRequest, chain: Chain, dialect: Dialect
    ) -> bool:
        return (
            dialect.has_vote_extensions
            and chain.config.sign_extensions
            and vote.type == SignedMsgType.PRECOMMIT
            and not vote.block_id.is_nil
            and not (dialect is Dialect.V1 and req.skip_extension_signing)
        )

    # --- proposals ------------------------------------------------------------------

    async def _sign_proposal(
        self, req: SignProposalRequest, chain: Chain, link: LinkInfo
    ) -> Response:
        start = self._clock()
        prop = req.proposal
        try:
            self._admit(req.chain_id, chain, validation.validate_proposal(prop))
            if prop is None:  # validate_proposal already refuses this
                raise _Refusal.of("invalid", "missing proposal", Label.INVALID)
            result = await self._guarded(
                chain, "proposal", chain.guard.sign_proposal(prop, self._sign(chain))
            )
        except _Refusal as r:
            self._log_refusal(chain, link, "proposal", prop, r.refusal, start)
            return SignedProposalResponse(error=r.refusal.remote_error())
        signed = dataclasses.replace(prop, timestamp=result.timestamp, signature=result.signature)
        self._log_outcome(chain, link, "proposal", prop.height, prop.round, result, start)
        return SignedProposalResponse(proposal=signed)

    # --- shared by votes and proposals ---------------------------------------------------

    def _admit(self, requested_chain: str, chain: Chain, invalid: str | None) -> None:
        """Chain ID first, then the request's own validity; raise _Refusal for either."""
        mismatch = self._check_chain(requested_chain, chain.config.id)
        if mismatch is not None:
            raise _Refusal.of("chain-id", mismatch, Label.CHAIN_ID)
        if invalid is not None:
            raise _Refusal.of("invalid", invalid, Label.INVALID)

    @staticmethod
    async def _guarded(chain: Chain, what: str, call: Awaitable[GuardResult]) -> GuardResult:
        """Run the guard; a refusal or a signer/state failure becomes a _Refusal."""
        try:
            result = await call
        except (SignerError, StateError) as e:
            raise _Refusal.failed(f"unable to sign {what}: {e}", e) from e
        if result.refusal is not None:
            raise _Refusal(result.refusal)
        return result

    # --- raw bytes --------------------------------------------------------------------

    async def _sign_raw(
        self, req: SignBytesRequest | SignRawBytesRequest, chain: Chain, link: LinkInfo
    ) -> Response:
        start = self._clock()
        cid = chain.config.id
        make: Callable[..., Response] = (
            SignBytesResponse if isinstance(req, SignBytesRequest) else SignedRawBytesResponse
        )
        try:
            if chain.config.raw_bytes != "prefixed":
                raise _Refusal.of(
                    "raw-bytes-disabled",
                    f'raw-bytes signing is disabled for chain {cid!r} (set raw_bytes = "prefixed" '
                    "in its [[chain]] section to sign with a domain-separation prefix)",
                    Label.RAW_BYTES,
                )
            if isinstance(req, SignRawBytesRequest):
                celestia_check(req, link.dialect)
                self._admit(req.chain_id, chain, None)
            try:
                sig = await chain.signer.sign_traced(
                    canonical.raw_bytes_sign_bytes(req, link.dialect), timeout=self._sign_timeout
                )
            except SignerError as e:
                raise _Refusal.failed(f"unable to sign raw bytes: {e}", e) from e
        except _Refusal as r:
            self._log_refusal(chain, link, "raw_bytes", None, r.refusal, start)
            return make(error=r.refusal.remote_error())
        latency = self._clock() - start
        self._metrics.signature(cid, "raw_bytes", "signed", latency, sig.by)
        log.info(
            "signed raw bytes",
            extra={
                "fields": {
                    "chain": cid,
                    "link": link.name,
                    "replica": sig.by,
                    "latency_ms": round(latency * 1000, 2),
                }
            },
        )
        return make(signature=sig.signature)

    # --- shared ---------------------------------------------------------------------------

    @staticmethod
    def _check_chain(requested: str, configured: str) -> str | None:
        if requested != configured:
            return (
                f"chain id mismatch: request is for {shown_chain_id(requested)}, "
                f"this signer serves {configured!r}"
            )
        return None

    def _sign(self, chain: Chain) -> Callable[[bytes], Awaitable[Signature]]:
        signer, timeout = chain.signer, self._sign_timeout

        async def call(message: bytes) -> Signature:
            return await signer.sign_traced(message, timeout=timeout)

        return call

    def _log_outcome(
        self,
        chain: Chain,
        link: LinkInfo,
        kind: str,
        height: int,
        round_: int,
        result: GuardResult,
        start: float,
        *,
        ext_signed: bool = False,
    ) -> None:
        latency = self._clock() - start
        cid = chain.config.id
        self._metrics.signature(cid, kind, result.outcome, latency, result.replica)
        self._metrics.last_signed_height(cid, height)
        log.info(
            result.outcome,
            extra={
                "fields": {
                    "chain": cid,
                    "type": kind,
                    "height": height,
                    "round": round_,
                    "latency_ms": round(latency * 1000, 2),
                    "replica": result.replica or "-",
                    "extension_signed": ext_signed,
                    "link": link.name,
                }
            },
        )

    def _log_refusal(
        self,
        chain: Chain,
        link: LinkInfo,
        kind: str,
        msg: Vote | Proposal | None,
        refusal: Refusal,
        start: float,
    ) -> None:
        latency = self._clock() - start
        cid = chain.config.id
        outcome = "error" if refusal.error else "refused"
        self._metrics.signature(cid, kind, outcome, latency, None)
        self._metrics.refusal(cid, refusal.label)
        (log.error if refusal.error else log.warning)(
            "refused",
            extra={
                "fields": {
                    "chain": cid,
                    "type": kind,
                    "height": msg.height if msg is not None else 0,
                    "round": msg.round if msg is not None else 0,
                    "reason": refusal.reason,
                    "latency_ms": round(latency * 1000, 2),
                    "link": link.name,
                }
            },
        )


def shown_chain_id(chain_id: str) -> str:
    """A node-supplied chain ID as it may appear in a log line or a reply: quoted and bounded.

    The node decides what it sends; without a bound, one request would write a
    1 MiB log line and get it echoed back.
    """
    if len(chain_id) <= MAX_CHAIN_ID_LEN:
        return repr(chain_id)
    return f"{chain_id[:MAX_CHAIN_ID_LEN]!r}... ({len(chain_id)} characters)"


class _Refusal(Exception):
    """Carries a `kms.refusal.Refusal` out of the request handling (internal to this module)."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.reason)
        self.refusal = refusal

    @classmethod
    def of(cls, rule: str, reason: str, label: Label) -> _Refusal:
        return cls(Refusal(rule, reason, Code.GENERIC, label))

    @classmethod
    def failed(cls, reason: str, e: KmsError) -> _Refusal:
        """A signer or state failure: no signature could be made safely."""
        if isinstance(e, SharedStateError):
            label = Label.SHARED_STATE
        else:
            label = Label.STATE_ERROR if isinstance(e, StateError) else Label.SIGNER_ERROR
        return cls(Refusal(label.value, reason, Code.GENERIC, label, error=True))


def celestia_check(req: SignRawBytesRequest, dialect: Dialect) -> None:
    """SignRawBytesRequest is the Celestia fork's message: signed only on a validator
    configured with protocol_version = "celestia" (never inferred from the request), and
    only with every field set (the fork refuses empty ones too)."""
    if dialect is not Dialect.CELESTIA:
        raise _Refusal.of(
            "raw-bytes-dialect",
            "SignRawBytesRequest is the Celestia fork's message; set protocol_version ="
            ' "celestia" for this validator to sign it',
            Label.RAW_BYTES,
        )
    problem = celestia.raw_bytes_problem(req)
    if problem is not None:
        raise _Refusal.of("raw-bytes-empty", problem, Label.RAW_BYTES)


_VOTE_KINDS: dict[int, str] = {
    SignedMsgType.PREVOTE: "prevote",
    SignedMsgType.PRECOMMIT: "precommit",
}


def _vote_kind(vote: Vote | None) -> str:
    return "vote" if vote is None else _VOTE_KINDS.get(vote.type, "vote")
