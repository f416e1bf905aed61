"""Noise transport frames: chunking at 65519 bytes, no empty frames, any read chunking,
bounded buffering, and a stream that failed stays failed."""

from __future__ import annotations

import pytest

from kms.errors import FrameError
from kms.noise.state import CipherState
from kms.noise.stream import MAX_FRAME, MAX_PLAINTEXT, NoiseStream, frame_bytes

K1, K2 = bytes(range(32)), bytes(range(32, 64))


def _pair() -> tuple[NoiseStream, NoiseStream]:
    return (
        NoiseStream(CipherState(K1), CipherState(K2)),
        NoiseStream(CipherState(K2), CipherState(K1)),
    )


def _frames(wire: bytes) -> list[int]:
    sizes, pos = [], 0
    while pos < len(wire):
        n = int.from_bytes(wire[pos : pos + 2], "big")
        sizes.append(n)
        pos += 2 + n
    return sizes


def test_limits() -> None:
    assert MAX_FRAME == 65535 and MAX_PLAINTEXT == 65519


@pytest.mark.parametrize(
    ("size", "frames"),
    [(1, [17]), (MAX_PLAINTEXT, [MAX_FRAME]), (MAX_PLAINTEXT + 1, [MAX_FRAME, 17])],
)
def test_seal_cuts_messages_into_full_frames(size: int, frames: list[int]) -> None:
    a, b = _pair()
    wire = a.seal(b"x" * size)
    assert _frames(wire) == frames
    assert b.receive_data(wire) == b"x" * size
    assert a.send_nonce == len(frames) == b.recv_nonce


def test_one_mib_message_round_trips_in_any_chunking_with_bounded_buffer() -> None:
    a, b = _pair()
    msg = bytes(range(256)) * 4100  # ~1 MiB: a big vote extension
    wire = a.seal(msg)
    assert len(_frames(wire)) == -(-len(msg) // MAX_PLAINTEXT)
    out = bytearray()
    for i in range(0, len(wire), 7777):
        out += b.receive_data(wire[i : i + 7777])
        assert b.buffered <= 2 + MAX_FRAME
    assert bytes(out) == msg


def test_empty_message_sends_nothing_but_an_empty_frame_is_tolerated() -> None:
    a, b = _pair()
    assert a.seal(b"") == b""
    assert a.send_nonce == 0
    go_like = CipherState(K1)  # a peer that does send one (Go never does)
    empty = frame_bytes(go_like.encrypt(b"", b""))
    assert len(empty) == 18
    assert b.receive_data(empty) == b""
    assert b.receive_data(frame_bytes(go_like.encrypt(b"", b"after"))) == b"after"


def test_frame_shorter_than_a_tag_poisons_the_stream() -> None:
    _, b = _pair()
    with pytest.raises(FrameError, match="shorter than its tag"):
        b.receive_data(b"\x00\x0f" + bytes(15))
    assert b.poisoned
    with pytest.raises(FrameError, match="failed earlier"):
        b.receive_data(b"")


def test_bad_tag_poisons_and_replays_are_refused() -> None:
    a, b = _pair()
    wire = a.seal(b"one")
    assert b.receive_data(wire) == b"one"
    with pytest.raises(FrameError, match="authenticate"):
        b.receive_data(wire)  # replay: nonce 1 now
    with pytest.raises(FrameError):
        b.receive_data(a.seal(b"two"))


def test_truncated_frame_waits_and_holds_at_most_one_frame() -> None:
    a, b = _pair()
    wire = a.seal(b"y" * 1000)
    assert b.receive_data(wire[:-1]) == b""
    assert b.buffered == len(wire) - 1
    assert b.receive_data(wire[-1:]) == b"y" * 1000
    assert b.buffered == 0


def test_oversized_frame_body_cannot_be_built() -> None:
    with pytest.raises(FrameError):
        frame_bytes(bytes(MAX_FRAME + 1))
