"""The sans-IO privval session: bytes in -> requests, responses -> bytes, idle deadline on an injected clock."""

from __future__ import annotations

import pytest

from kms.errors import CodecError, EncodeError
from kms.privval.codec import decode_response, encode
from kms.privval.framing import MessageReader, frame
from kms.privval.messages import (
    Dialect,
    PingRequest,
    PingResponse,
    PubKeyRequest,
    SignedVoteResponse,
    Vote,
)
from kms.privval.session import PrivvalSession

PING = frame(encode(PingRequest(), Dialect.V0_38))
PUBKEY = frame(encode(PubKeyRequest("c"), Dialect.V0_38))


def session(**kw: object) -> PrivvalSession:
    return PrivvalSession(Dialect.V0_38, idle_timeout=7.0, now=100.0, **kw)  # type: ignore[arg-type]


def test_requests_come_out_in_order_one_at_a_time_whatever_the_chunking() -> None:
    stream = PING + PUBKEY + PING
    for cut in range(len(stream) + 1):
        s = session()
        s.receive_data(stream[:cut], 100.0)
        s.receive_data(stream[cut:], 100.0)
        got = []
        while s.has_request:
            got.append(s.next_request())
        assert got == [PingRequest(), PubKeyRequest("c"), PingRequest()]
        assert s.next_request() is None


def test_a_partial_message_is_no_request_yet() -> None:
    s = session()
    s.receive_data(PUBKEY[:-1], 100.0)
    assert not s.has_request and s.next_request() is None
    s.receive_data(PUBKEY[-1:], 100.0)
    assert s.next_request() == PubKeyRequest("c")


def test_undecodable_bytes_are_a_remote_codec_error() -> None:
    s = session()
    s.receive_data(frame(b"\x7a\x00"), 100.0)  # field 15: no dialect has it
    with pytest.raises(CodecError):
        s.next_request()


def test_an_oversized_message_is_refused_before_its_body_is_buffered() -> None:
    s = session(max_message_size=100)
    with pytest.raises(CodecError, match="exceeds"):
        s.receive_data(b"\xe5\x00", 100.0)  # declares 101 bytes


def test_a_response_that_cannot_be_encoded_is_a_local_error_not_the_nodes() -> None:
    v034 = PrivvalSession(Dialect.V0_34, idle_timeout=7.0, now=0.0)
    with pytest.raises(EncodeError) as info:  # an extension on a dialect without them
        v034.send(SignedVoteResponse(vote=Vote(type=2, height=1, round=0, extension=b"x")), 0.0)
    assert not isinstance(info.value, CodecError)  # never reported as the peer's fault
    with pytest.raises(EncodeError):  # a round beyond int32
        session().send(SignedVoteResponse(vote=Vote(type=1, height=1, round=2**40)), 0.0)


def test_a_response_is_framed_for_the_dialect() -> None:
    s = session()
    out = s.send(PingResponse(), 100.0)
    bodies = MessageReader().feed(out)
    assert [decode_response(b, Dialect.V0_38) for b in bodies] == [PingResponse()]


def test_the_idle_deadline_follows_the_injected_clock_and_restarts_on_traffic() -> None:
    s = session()
    assert s.idle_remaining(100.0) == 7.0
    assert s.idle_remaining(105.5) == 1.5
    assert s.idle_remaining(200.0) == 0.0  # never negative
    s.receive_data(PING, 106.0)
    assert s.idle_remaining(106.0) == 7.0
    s.next_request()
    s.send(PingResponse(), 110.0)  # answering slowly is not the node's silence
    assert s.idle_remaining(110.0) == 7.0


def test_noise_links_send_a_vote_without_its_echoed_extension() -> None:
    vote = Vote(type=2, height=1, round=0, extension=b"e" * 70_000, extension_signature=b"s" * 64)
    plain = PrivvalSession(Dialect.V0_40, idle_timeout=7.0, now=0.0)
    noise = PrivvalSession(Dialect.V0_40, idle_timeout=7.0, now=0.0, single_frame_votes=True)
    full = plain.send(SignedVoteResponse(vote=vote), 0.0)
    slim = noise.send(SignedVoteResponse(vote=vote), 0.0)
    assert len(full) > 70_000 > len(slim)
    (body,) = MessageReader(2_000_000).feed(slim)
    got = decode_response(body, Dialect.V0_40)
    assert isinstance(got, SignedVoteResponse) and got.vote is not None
    assert got.vote.extension == b"" and got.vote.extension_signature == b"s" * 64
