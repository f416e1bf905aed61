"""The sign service: what kms answers to each request, per chain and per dialect.

Real guard (a state file in tmp), real software key; a failing signer where needed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest
from nacl.signing import SigningKey, VerifyKey

from kms.config import ChainConfig, KeyFormat
from kms.errors import SignerError
from kms.privval import canonical
from kms.privval.canonical import RAW_BYTES_SIGN_PREFIX, raw_bytes_sign_bytes
from kms.privval.messages import (
    BlockID,
    Dialect,
    PartSetHeader,
    PingRequest,
    PingResponse,
    Proposal,
    PubKeyRequest,
    PubKeyResponse,
    SignBytesRequest,
    SignBytesResponse,
    SignedMsgType,
    SignedProposalResponse,
    SignedRawBytesResponse,
    SignedVoteResponse,
    SignProposalRequest,
    SignRawBytesRequest,
    SignVoteRequest,
    Timestamp,
    Vote,
)
from kms.service import Chain, LinkInfo, SignService
from kms.signer.base import Signature, Signer
from kms.signer.softsign import SoftSigner
from kms.state.guard import ChainGuard
from kms.state.machine import SignState
from kms.state.store import StateStore

CHAIN = "svc-chain"
SEED = bytes(range(32))
BLOCK = BlockID(b"\x11" * 32, PartSetHeader(1, b"\x22" * 32))
OTHER = BlockID(b"\x33" * 32, PartSetHeader(1, b"\x44" * 32))
TS = Timestamp(1_700_000_000, 5)


class BrokenSigner(Signer):
    name = "broken"

    @property
    def public_key(self) -> bytes:
        return bytes(SigningKey(SEED).verify_key)

    async def sign_traced(self, message: bytes, *, timeout: float | None = None) -> Signature:
        raise SignerError("device unplugged")


def make_service(
    tmp_path: Path,
    signer: Signer | None = None,
    *,
    sign_extensions: bool = True,
    raw_bytes: Literal["off", "prefixed"] = "off",
) -> Iterator[SignService]:
    state = tmp_path / "state.json"
    StateStore.create(state, SignState.initial())
    cfg = ChainConfig(
        id=CHAIN,
        key_format=KeyFormat(),
        state_file=state,
        sign_extensions=sign_extensions,
        raw_bytes=raw_bytes,
    )
    guard = ChainGuard(CHAIN, StateStore(state))
    try:
        yield SignService({CHAIN: Chain(cfg, guard, signer or SoftSigner(SEED))})
    finally:
        guard.close()


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[SignService]:
    yield from make_service(tmp_path)


def link(dialect: Dialect = Dialect.V0_38) -> LinkInfo:
    return LinkInfo(CHAIN, dialect, "test-link")


def vote(kind: SignedMsgType, height: int = 5, block: BlockID = BLOCK, ext: bytes = b"") -> Vote:
    return Vote(
        type=kind,
        height=height,
        round=0,
        block_id=block,
        timestamp=TS,
        validator_address=b"\x01" * 20,
        extension=ext,
    )


def verify(sign_bytes: bytes, sig: bytes) -> None:
    VerifyKey(bytes(SigningKey(SEED).verify_key)).verify(sign_bytes, sig)


async def test_ping_and_pubkey(svc: SignService) -> None:
    assert isinstance(await svc.handle(PingRequest(), link()), PingResponse)
    r = await svc.handle(PubKeyRequest(CHAIN), link())
    assert r == PubKeyResponse(pub_key=bytes(SigningKey(SEED).verify_key))


async def test_pubkey_for_another_chain_is_refused(svc: SignService) -> None:
    r = await svc.handle(PubKeyRequest("other"), link())
    assert isinstance(r, PubKeyResponse) and r.error is not None and not r.pub_key


async def test_non_nil_precommit_gets_a_vote_and_an_extension_signature(svc: SignService) -> None:
    v = vote(SignedMsgType.PRECOMMIT, ext=b"app-data")
    r = await svc.handle(SignVoteRequest(v, CHAIN), link(Dialect.V0_38))
    assert isinstance(r, SignedVoteResponse) and r.error is None and r.vote is not None
    verify(canonical.vote_sign_bytes(CHAIN, r.vote), r.vote.signature)
    verify(canonical.vote_extension_sign_bytes(CHAIN, v), r.vote.extension_signature)
    assert r.vote.extension == b"app-data"  # echoed: the node replaces its vote with ours


async def test_empty_extension_is_signed_too(svc: SignService) -> None:
    r = await svc.handle(SignVoteRequest(vote(SignedMsgType.PRECOMMIT), CHAIN), link(Dialect.V1))
    assert isinstance(r, SignedVoteResponse) and r.vote is not None
    assert r.vote.extension_signature


@pytest.mark.parametrize(
    "v",
    [vote(SignedMsgType.PREVOTE), vote(SignedMsgType.PRECOMMIT, block=BlockID())],
    ids=["prevote", "nil-precommit"],
)
async def test_prevotes_and_nil_precommits_never_get_an_extension_signature(
    svc: SignService, v: Vote
) -> None:
    r = await svc.handle(SignVoteRequest(v, CHAIN), link(Dialect.V0_38))
    assert isinstance(r, SignedVoteResponse) and r.vote is not None and r.vote.signature
    assert r.vote.extension_signature == b""


async def test_no_extension_signature_on_dialects_without_extensions(svc: SignService) -> None:
    r = await svc.handle(SignVoteRequest(vote(SignedMsgType.PRECOMMIT), CHAIN), link(Dialect.V0_34))
    assert isinstance(r, SignedVoteResponse) and r.vote is not None and r.vote.signature
    assert r.vote.extension_signature == b""


async def test_v1_skip_extension_signing_is_honoured(svc: SignService) -> None:
    req = SignVoteRequest(vote(SignedMsgType.PRECOMMIT), CHAIN, skip_extension_signing=True)
    r = await svc.handle(req, link(Dialect.V1))
    assert isinstance(r, SignedVoteResponse) and r.vote is not None and r.vote.signature
    assert r.vote.extension_signature == b""


async def test_sign_extensions_false_turns_extension_signing_off(tmp_path: Path) -> None:
    for svc in make_service(tmp_path, sign_extensions=False):
        r = await svc.handle(SignVoteRequest(vote(SignedMsgType.PRECOMMIT), CHAIN), link())
        assert isinstance(r, SignedVoteResponse) and r.vote is not None
        assert r.vote.signature and r.vote.extension_signature == b""


async def test_a_retried_vote_with_a_new_timestamp_gets_the_stored_timestamp(
    svc: SignService,
) -> None:
    v = vote(SignedMsgType.PREVOTE)
    first = await svc.handle(SignVoteRequest(v, CHAIN), link())
    later = dataclasses.replace(v, timestamp=Timestamp(TS.seconds + 3, 0))
    again = await svc.handle(SignVoteRequest(later, CHAIN), link())
    assert isinstance(first, SignedVoteResponse) and isinstance(again, SignedVoteResponse)
    assert first.vote is not None and again.vote is not None
    assert again.vote.signature == first.vote.signature
    assert again.vote.timestamp == TS  # the signed one, so the node's vote is valid
    verify(canonical.vote_sign_bytes(CHAIN, again.vote), again.vote.signature)


async def test_conflicting_vote_is_refused_with_code_2(svc: SignService) -> None:
    await svc.handle(SignVoteRequest(vote(SignedMsgType.PREVOTE), CHAIN), link())
    r = await svc.handle(SignVoteRequest(vote(SignedMsgType.PREVOTE, block=OTHER), CHAIN), link())
    assert isinstance(r, SignedVoteResponse) and r.error is not None and r.error.code == 2
    assert r.vote is None


async def test_wrong_chain_id_is_refused_before_the_guard(svc: SignService) -> None:
    r = await svc.handle(SignVoteRequest(vote(SignedMsgType.PREVOTE), "other"), link())
    assert isinstance(r, SignedVoteResponse) and r.error is not None
    assert "chain id" in r.error.description
    assert svc.chain(CHAIN).guard.state.height == 0


@pytest.mark.parametrize("kind", ["vote", "proposal", "pubkey"])
async def test_a_huge_node_supplied_chain_id_is_never_echoed_or_logged_whole(
    svc: SignService, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Regression (issue 11, item 7): a 1 MiB chain ID made a 1 MiB log line and reply.
    huge = "x" * (1 << 20)
    requests: dict[str, SignVoteRequest | SignProposalRequest | PubKeyRequest] = {
        "vote": SignVoteRequest(vote(SignedMsgType.PREVOTE), huge),
        "proposal": SignProposalRequest(
            Proposal(SignedMsgType.PROPOSAL, 5, 0, -1, BLOCK, TS), huge
        ),
        "pubkey": PubKeyRequest(huge),
    }
    with caplog.at_level("DEBUG"):
        r = await svc.handle(requests[kind], link())
    assert isinstance(r, SignedVoteResponse | SignedProposalResponse | PubKeyResponse)
    assert r.error is not None
    description = r.error.description
    assert "chain id" in description and len(description) < 300
    assert f"({1 << 20} characters)" in description
    for record in caplog.records:
        assert len(str(record.__dict__)) < 2000


async def test_proposal_is_signed_over_its_canonical_bytes(svc: SignService) -> None:
    p = Proposal(SignedMsgType.PROPOSAL, 5, 0, -1, BLOCK, TS)
    r = await svc.handle(SignProposalRequest(p, CHAIN), link())
    assert isinstance(r, SignedProposalResponse) and r.proposal is not None
    verify(canonical.proposal_sign_bytes(CHAIN, p), r.proposal.signature)


async def test_invalid_proposal_is_refused(svc: SignService) -> None:
    p = Proposal(SignedMsgType.PROPOSAL, 5, 0, 3, BLOCK, TS)  # pol_round >= round
    r = await svc.handle(SignProposalRequest(p, CHAIN), link())
    assert isinstance(r, SignedProposalResponse) and r.error is not None and r.proposal is None


async def test_signer_failure_is_a_remote_signer_error_and_nothing_is_stored(
    tmp_path: Path,
) -> None:
    for svc in make_service(tmp_path, signer=BrokenSigner()):
        r = await svc.handle(SignVoteRequest(vote(SignedMsgType.PREVOTE), CHAIN), link())
        assert isinstance(r, SignedVoteResponse) and r.error is not None
        assert "device unplugged" in r.error.description
        assert StateStore(tmp_path / "state.json").load().height == 0


@pytest.mark.parametrize(
    ("req", "dialect", "resp_type"),
    [
        (SignBytesRequest(b"anything"), Dialect.V1, SignBytesResponse),
        (SignRawBytesRequest(CHAIN, b"anything", "id-1"), Dialect.CELESTIA, SignedRawBytesResponse),
    ],
    ids=["v1-sign-bytes", "celestia-raw-bytes"],
)
async def test_raw_bytes_are_refused_unless_enabled(
    tmp_path: Path,
    req: SignBytesRequest | SignRawBytesRequest,
    dialect: Dialect,
    resp_type: type[SignBytesResponse | SignedRawBytesResponse],
) -> None:
    for svc in make_service(tmp_path):
        r = await svc.handle(req, link(dialect))
        assert isinstance(r, SignBytesResponse | SignedRawBytesResponse) and type(r) is resp_type
        assert r.error is not None and not r.signature
        assert "disabled" in r.error.description


async def test_enabled_raw_bytes_are_signed_only_with_the_prefix(tmp_path: Path) -> None:
    for svc in make_service(tmp_path, raw_bytes="prefixed"):
        req = SignRawBytesRequest(CHAIN, b"payload", "id-1")
        r = await svc.handle(req, link(Dialect.CELESTIA))
        assert isinstance(r, SignedRawBytesResponse) and r.error is None
        signed = raw_bytes_sign_bytes(req, Dialect.CELESTIA)
        assert signed.startswith(RAW_BYTES_SIGN_PREFIX)
        verify(signed, r.signature)
        # never a signature over the bare payload (which could mimic a canonical vote)
        with pytest.raises(Exception):  # noqa: B017
            verify(b"payload", r.signature)
        other = await svc.handle(
            SignRawBytesRequest("other", b"payload", "x"), link(Dialect.CELESTIA)
        )
        assert isinstance(other, SignedRawBytesResponse) and other.error is not None
