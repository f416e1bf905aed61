"""noise:// answers fit one Noise frame: the echoed vote extension is dropped (the v0.40 node
keeps its own and reads only signature, extension signature and timestamp). A response
longer than a frame desynchronises a v0.40 node's reader (see kms.link), which the e2e test
test_near_1_mib_vote_extensions_keep_the_chain_going[noise] reproduced live."""

from __future__ import annotations

from kms.noise.stream import MAX_PLAINTEXT
from kms.privval.codec import encode
from kms.privval.framing import MAX_VOTE_EXTENSION_SIZE, frame
from kms.privval.messages import (
    BlockID,
    Dialect,
    PartSetHeader,
    SignedMsgType,
    SignedProposalResponse,
    SignedVoteResponse,
    Timestamp,
    Vote,
)
from kms.privval.session import single_frame_vote_response

VOTE = Vote(
    type=SignedMsgType.PRECOMMIT,
    height=7,
    round=0,
    block_id=BlockID(b"\x01" * 32, PartSetHeader(1, b"\x02" * 32)),
    timestamp=Timestamp(1_800_000_000, 5),
    validator_address=b"\x03" * 20,
    signature=b"\x04" * 64,
    extension=b"\x05" * MAX_VOTE_EXTENSION_SIZE,
    extension_signature=b"\x06" * 64,
)


def test_extension_is_dropped_and_what_the_node_reads_is_kept() -> None:
    out = single_frame_vote_response(SignedVoteResponse(vote=VOTE))
    assert isinstance(out, SignedVoteResponse) and out.vote is not None
    assert out.vote.extension == b""
    assert (out.vote.signature, out.vote.extension_signature, out.vote.timestamp) == (
        VOTE.signature,
        VOTE.extension_signature,
        VOTE.timestamp,
    )
    assert len(frame(encode(out, Dialect.V0_40))) <= MAX_PLAINTEXT
    assert len(frame(encode(SignedVoteResponse(vote=VOTE), Dialect.V0_40))) > MAX_PLAINTEXT


def test_other_responses_pass_unchanged() -> None:
    small = SignedVoteResponse(vote=Vote(type=SignedMsgType.PREVOTE, height=1, round=0))
    assert single_frame_vote_response(small) is small
    prop = SignedProposalResponse()
    assert single_frame_vote_response(prop) is prop
    empty = SignedVoteResponse()
    assert single_frame_vote_response(empty) is empty
