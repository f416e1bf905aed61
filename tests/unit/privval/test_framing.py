"""uvarint framing: sizes checked before buffering, any chunking, strict prefixes."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kms.errors import CodecError, EncodeError
from kms.privval.framing import (
    DEFAULT_MAX_MESSAGE_SIZE,
    MessageReader,
    frame,
)
from kms.varint import encode_uvarint


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, "00"),
        (1, "01"),
        (127, "7f"),
        (128, "8001"),
        (300, "ac02"),
        (2**64 - 1, "ffffffffffffffffff01"),
    ],
)
def test_uvarint_encoding_matches_protobuf(value: int, encoded: str) -> None:
    assert encode_uvarint(value).hex() == encoded


@pytest.mark.parametrize("value", [-1, 2**64])
def test_uvarint_out_of_range_is_an_encode_error(value: int) -> None:
    with pytest.raises(EncodeError):
        encode_uvarint(value)


def test_frame_prefixes_the_length() -> None:
    assert frame(b"\x3a\x00") == b"\x02\x3a\x00"
    assert frame(b"") == b"\x00"
    assert frame(b"x" * 200)[:2] == b"\xc8\x01"


def test_default_limit_admits_a_one_mebibyte_vote_extension() -> None:
    assert DEFAULT_MAX_MESSAGE_SIZE == 1024 * 1024 + 64 * 1024
    body = b"\x1a" + b"x" * (1024 * 1024 + 1024)
    assert MessageReader().feed(frame(body)) == [body]


def test_whole_stream_yields_every_body_in_order() -> None:
    bodies = [b"\x3a\x00", b"", b"a" * 300, b"\x42\x00"]
    assert MessageReader().feed(b"".join(frame(b) for b in bodies)) == bodies


def test_byte_by_byte_feeding_yields_the_same_bodies() -> None:
    bodies = [b"\x3a\x00", b"a" * 300, b"", b"b" * 129]
    reader = MessageReader()
    out: list[bytes] = []
    stream = b"".join(frame(b) for b in bodies)
    for i in range(len(stream)):
        out += reader.feed(stream[i : i + 1])
    assert out == bodies
    assert reader.at_boundary


@given(
    bodies=st.lists(st.binary(max_size=600), max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=6000), max_size=20),
)
def test_any_chunking_yields_the_same_bodies(bodies: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(frame(b) for b in bodies)
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    reader = MessageReader()
    out: list[bytes] = []
    for start, end in itertools.pairwise(points):
        out += reader.feed(stream[start:end])
    assert out == bodies
    assert reader.at_boundary and reader.buffered == 0


def test_oversize_length_is_rejected_before_any_body_byte_arrives() -> None:
    reader = MessageReader(max_size=100)
    with pytest.raises(CodecError, match="exceeds"):
        reader.feed(encode_uvarint(101))  # prefix only: nothing to buffer yet
    assert reader.buffered == 0


def test_huge_declared_length_is_rejected_without_buffering_the_rest() -> None:
    reader = MessageReader()
    with pytest.raises(CodecError, match="exceeds"):
        reader.feed(encode_uvarint(2**40) + b"x" * 10_000)
    assert reader.buffered == 0


def test_oversize_is_detected_when_the_prefix_arrives_byte_by_byte() -> None:
    reader = MessageReader(max_size=1000)
    prefix = encode_uvarint(1001)
    assert reader.feed(prefix[:1]) == []
    with pytest.raises(CodecError):
        reader.feed(prefix[1:])


def test_length_exactly_at_the_limit_is_accepted() -> None:
    assert MessageReader(max_size=100).feed(frame(b"y" * 100)) == [b"y" * 100]


def test_ten_byte_prefix_is_accepted() -> None:
    # non-minimal but legal 10-byte varint for 5 (Go's binary.Uvarint accepts it)
    prefix = bytes([0x85] + [0x80] * 8 + [0x00])
    assert len(prefix) == 10
    assert MessageReader().feed(prefix + b"hello") == [b"hello"]


def test_eleven_byte_prefix_is_rejected() -> None:
    reader = MessageReader(max_size=2**70)
    with pytest.raises(CodecError, match="10 bytes"):
        reader.feed(bytes([0x80] * 10 + [0x00]))


def test_prefix_overflowing_64_bits_is_rejected() -> None:
    reader = MessageReader(max_size=2**70)
    with pytest.raises(CodecError, match="64 bits"):
        reader.feed(bytes([0xFF] * 9 + [0x02]))


def test_zero_length_body_is_allowed_by_default_and_refusable() -> None:
    assert MessageReader().feed(b"\x00\x00") == [b"", b""]
    with pytest.raises(CodecError, match="zero-length"):
        MessageReader(allow_empty=False).feed(b"\x00")


def test_reader_stays_failed_after_an_error() -> None:
    reader = MessageReader(max_size=1)
    with pytest.raises(CodecError):
        reader.feed(b"\x05")
    with pytest.raises(CodecError, match="already failed"):
        reader.feed(frame(b"a"))


def test_partial_message_is_not_at_boundary() -> None:
    reader = MessageReader()
    assert reader.feed(b"\x05ab") == []
    assert not reader.at_boundary
    assert reader.buffered == 2
    assert reader.feed(b"cde") == [b"abcde"]


@given(st.binary(max_size=2000), st.integers(min_value=0, max_value=4096))
def test_random_bytes_only_ever_raise_codec_error(data: bytes, max_size: int) -> None:
    reader = MessageReader(max_size=max_size)
    try:
        for body in reader.feed(data):
            assert len(body) <= max_size
    except CodecError:
        pass
