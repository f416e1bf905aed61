"""The sign service: the only place where a request, the double-sign state and a signer meet.

Owns: what `kms` answers to each privval request, per chain and per dialect.
Never touches sockets, files or devices directly (links bring requests; the
per-chain guard owns the state file; signers own the keys).

Per request:

| request              | checks                                   | answer                                      |
|----------------------|------------------------------------------|---------------------------------------------|
| PingRequest          | none                                     | PingResponse                                |
| PubKeyRequest        | chain ID                                 | the chain's public key (dialect layout)     |
| SignVoteRequest      | chain ID, vote validation, guard         | vote echoed + signature (+ extension sig)   |
| SignProposalRequest  | chain ID, proposal validation, guard     | proposal echoed + signature                 |
| SignBytes/RawBytes   | enabled for the chain, chain ID          | refused unless `raw_bytes = "prefixed"`     |

Every refusal is a `RemoteSignerError` inside the matching response variant, so
the node logs it and the link stays up. The vote is echoed whole: the node
replaces its vote with ours (`*vote = resp.Vote`), so the timestamp we return
must be the one we signed, and the extension must be returned as received.

Vote extensions (DESIGN.md §5): on the v0.38/v1 dialects every non-nil
precommit also gets a signature over the canonical vote-extension bytes, even
for an empty extension, unless the chain sets `sign_extensions = false` or a v1
node says `skip_extension_signing`. Prevotes and nil precommits never get one;
a request that carries an extension on them is refused by validation. The
extension is signed after the vote's state is persisted: a failure there sends
no signature at all, and the retry reuses the stored vote signature.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from kms.config import ChainConfig
from kms.errors import KmsError, SignerError, StateError
from kms.privval import canonical
from kms.privval.framing import frame
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
from kms.signer.base import Signature, Signer
from kms.state.guard import ChainGuard, GuardResult

log = logging.getLogger("kms.service")

RAW_BYTES_PREFIX = b"COMET::RAW_BYTES::SIGN"
"""Domain separation for raw-bytes signing (the prefix tmkms uses for Celestia's variant)."""

CODE_GENERIC = 0
CODE_DOUBLE_SIGN = 2

STEP_NAMES = {0: "proposal", 1: "prevote", 2: "precommit"}


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
            self._metrics.refusal(chain.config.id, "chain_id")
            log.warning(
                "refused pubkey request for another chain",
                extra={"fields": {"chain": chain.config.id, "requested": req.chain_id}},
            )
            return PubKeyResponse(
                error=RemoteSignerError(
                    CODE_GENERIC,
                    f"unable to provide pubkey: chain id {req.chain_id!r} is not "
                    f"{chain.config.id!r}",
                )
            )
        return PubKeyResponse(pub_key=chain.signer.public_key)

    # --- votes ----------------------------------------------------------------------

    async def _sign_vote(self, req: SignVoteRequest, chain: Chain, link: LinkInfo) -> Response:
        start = self._clock()
        cid = chain.config.id
        vote = req.vote
        kind = _vote_kind(vote)
        problem = self._check_chain(req.chain_id, cid) or canonical.validate_vote(
            vote, link.dialect
        )
        if problem is not None or vote is None:
            reason = problem or "missing vote"
            return self._refuse_vote(
                chain,
                link,
                kind,
                vote,
                reason,
                CODE_GENERIC,
                start,
                "chain_id" if req.chain_id != cid else "invalid",
            )
        try:
            result = await chain.guard.sign_vote(vote, self._signer_call(chain.signer))
        except (SignerError, StateError) as e:
            return self._refuse_vote(
                chain,
                link,
                kind,
                vote,
                f"unable to sign vote: {e}",
                CODE_GENERIC,
                start,
                _error_slug(e),
                error=True,
            )
        if result.outcome == "refused":
            return self._refuse_vote(
                chain,
                link,
                kind,
                vote,
                result.reason or "refused",
                result.error_code,
                start,
                _refusal_slug(result),
            )
        ext_sig = b""
        if self._wants_extension_signature(vote, req, chain, link.dialect):
            try:
                ext = await chain.signer.sign_traced(
                    canonical.vote_extension_sign_bytes(cid, vote), timeout=self._sign_timeout
                )
            except SignerError as e:
                return self._refuse_vote(
                    chain,
                    link,
                    kind,
                    vote,
                    f"unable to sign vote extension: {e}",
                    CODE_GENERIC,
                    start,
                    "signer_error",
                    error=True,
                )
            ext_sig = ext.signature
        signed = dataclasses.replace(
            vote,
            timestamp=result.timestamp,
            signature=result.signature,
            extension_signature=ext_sig,
        )
        self._log_outcome(chain, link, kind, vote.height, vote.round, result, start)
        return SignedVoteResponse(vote=signed)

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

    def _refuse_vote(
        self,
        chain: Chain,
        link: LinkInfo,
        kind: str,
        vote: Vote | None,
        reason: str,
        code: int,
        start: float,
        slug: str,
        *,
        error: bool = False,
    ) -> SignedVoteResponse:
        h, r = (vote.height, vote.round) if vote is not None else (0, 0)
        self._log_refusal(chain, link, kind, h, r, reason, slug, start, error=error)
        return SignedVoteResponse(error=RemoteSignerError(code, reason))

    # --- proposals ------------------------------------------------------------------

    async def _sign_proposal(
        self, req: SignProposalRequest, chain: Chain, link: LinkInfo
    ) -> Response:
        start = self._clock()
        cid = chain.config.id
        prop = req.proposal
        problem = self._check_chain(req.chain_id, cid) or canonical.validate_proposal(prop)
        if problem is not None or prop is None:
            reason = problem or "missing proposal"
            return self._refuse_proposal(
                chain,
                link,
                prop,
                reason,
                CODE_GENERIC,
                start,
                "chain_id" if req.chain_id != cid else "invalid",
            )
        try:
            result = await chain.guard.sign_proposal(prop, self._signer_call(chain.signer))
        except (SignerError, StateError) as e:
            return self._refuse_proposal(
                chain,
                link,
                prop,
                f"unable to sign proposal: {e}",
                CODE_GENERIC,
                start,
                _error_slug(e),
                error=True,
            )
        if result.outcome == "refused":
            return self._refuse_proposal(
                chain,
                link,
                prop,
                result.reason or "refused",
                result.error_code,
                start,
                _refusal_slug(result),
            )
        signed = dataclasses.replace(prop, timestamp=result.timestamp, signature=result.signature)
        self._log_outcome(chain, link, "proposal", prop.height, prop.round, result, start)
        return SignedProposalResponse(proposal=signed)

    def _refuse_proposal(
        self,
        chain: Chain,
        link: LinkInfo,
        prop: Proposal | None,
        reason: str,
        code: int,
        start: float,
        slug: str,
        *,
        error: bool = False,
    ) -> SignedProposalResponse:
        h, r = (prop.height, prop.round) if prop is not None else (0, 0)
        self._log_refusal(chain, link, "proposal", h, r, reason, slug, start, error=error)
        return SignedProposalResponse(error=RemoteSignerError(code, reason))

    # --- raw bytes --------------------------------------------------------------------

    async def _sign_raw(
        self, req: SignBytesRequest | SignRawBytesRequest, chain: Chain, link: LinkInfo
    ) -> Response:
        start = self._clock()
        cid = chain.config.id
        make: Callable[..., Response] = (
            SignBytesResponse if isinstance(req, SignBytesRequest) else SignedRawBytesResponse
        )
        reason: str | None = None
        if chain.config.raw_bytes != "prefixed":
            reason = (
                f'raw-bytes signing is disabled for chain {cid!r} (set raw_bytes = "prefixed" '
                "in its [[chain]] section to sign with a domain-separation prefix)"
            )
        elif isinstance(req, SignRawBytesRequest):
            reason = self._check_chain(req.chain_id, cid)
        if reason is not None:
            self._log_refusal(chain, link, "raw_bytes", 0, 0, reason, "raw_bytes", start)
            return make(error=RemoteSignerError(CODE_GENERIC, reason))
        try:
            sig = await chain.signer.sign_traced(
                raw_bytes_sign_bytes(req, link.dialect), timeout=self._sign_timeout
            )
        except SignerError as e:
            reason = f"unable to sign raw bytes: {e}"
            self._log_refusal(
                chain, link, "raw_bytes", 0, 0, reason, "signer_error", start, error=True
            )
            return make(error=RemoteSignerError(CODE_GENERIC, reason))
        log.info(
            "signed raw bytes",
            extra={"fields": {"chain": cid, "link": link.name, "replica": sig.by}},
        )
        return make(signature=sig.signature)

    # --- shared ---------------------------------------------------------------------------

    @staticmethod
    def _check_chain(requested: str, configured: str) -> str | None:
        if requested != configured:
            return f"chain id mismatch: request is for {requested!r}, this signer serves {configured!r}"
        return None

    def _signer_call(self, signer: Signer) -> Callable[[bytes], Awaitable[Signature]]:
        timeout = self._sign_timeout

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
                    "link": link.name,
                }
            },
        )

    def _log_refusal(
        self,
        chain: Chain,
        link: LinkInfo,
        kind: str,
        height: int,
        round_: int,
        reason: str,
        slug: str,
        start: float,
        *,
        error: bool = False,
    ) -> None:
        latency = self._clock() - start
        cid = chain.config.id
        self._metrics.signature(cid, kind, "error" if error else "refused", latency, None)
        self._metrics.refusal(cid, slug)
        (log.error if error else log.warning)(
            "refused",
            extra={
                "fields": {
                    "chain": cid,
                    "type": kind,
                    "height": height,
                    "round": round_,
                    "reason": reason,
                    "latency_ms": round(latency * 1000, 2),
                    "link": link.name,
                }
            },
        )


def raw_bytes_sign_bytes(req: SignBytesRequest | SignRawBytesRequest, dialect: Dialect) -> bytes:
    """What we sign for a raw-bytes request: a fixed prefix, then the request itself
    length-delimited, so raw bytes can never equal canonical vote/proposal sign bytes."""
    from kms.privval.codec import encode  # local: only this rare path needs the codec

    return RAW_BYTES_PREFIX + frame(encode(req, dialect))


_VOTE_KINDS: dict[int, str] = {
    SignedMsgType.PREVOTE: "prevote",
    SignedMsgType.PRECOMMIT: "precommit",
}


def _vote_kind(vote: Vote | None) -> str:
    return "vote" if vote is None else _VOTE_KINDS.get(vote.type, "vote")


def _refusal_slug(result: GuardResult) -> str:
    if result.error_code == CODE_DOUBLE_SIGN:
        return "double_sign"
    reason = (result.reason or "").lower()
    if "max_height" in reason or "max height" in reason:
        return "max_height"
    if "regression" in reason:
        return "regression"
    return "refused"


def _error_slug(e: KmsError) -> str:
    return "state_error" if isinstance(e, StateError) else "signer_error"
