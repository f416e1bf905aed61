"""One connection's privval conversation, sans-IO: bytes in -> requests out, responses in -> bytes out.

Owns: splitting the received byte stream into requests (`kms.privval.framing`),
decoding them for the link's dialect (`kms.privval.codec`), encoding and framing the
responses, the per-transport response shape (`single_frame_vote_response` for
noise://), and the idle deadline of the connection (the node pings every ~3.3 s, so
a connection with nothing to read for `idle_timeout` after its last request or our
last response is dead). The clock is
injected: every call that depends on time takes `now`.

Never touches sockets, tasks or timers (`kms.link` pumps bytes between a transport
and a session), and never decides what to answer (`kms.service`).

Errors, by direction (kms.errors):
- what the node sent that cannot be read is a `CodecError` (remote): the
  connection must be closed, its stream position is lost;
- a response that cannot be encoded is an `EncodeError` (local: our bug), never
  blamed on the node.
Requests are handed out strictly in order, one at a time: a node has at most one
request in flight, and any extra bytes it sent wait in the session.
"""

from __future__ import annotations

import dataclasses
from collections import deque

from kms.privval.codec import decode_request, encode
from kms.privval.framing import MessageReader, frame
from kms.privval.framing import max_message_size as max_message_size_for
from kms.privval.messages import Dialect, Request, Response, SignedVoteResponse


class PrivvalSession:
    """The privval state of one connection (see the module docstring)."""

    __slots__ = (
        "_bodies",
        "_deadline",
        "_dialect",
        "_idle_timeout",
        "_reader",
        "_single_frame_votes",
    )

    def __init__(
        self,
        dialect: Dialect,
        *,
        idle_timeout: float,
        now: float,
        max_message_size: int | None = None,
        single_frame_votes: bool = False,
    ) -> None:
        self._dialect = dialect
        # bounded memory per connection: at most one message of the dialect's cap is buffered
        self._reader = MessageReader(
            max_message_size if max_message_size is not None else max_message_size_for(dialect)
        )
        self._bodies: deque[bytes] = deque()
        self._idle_timeout = idle_timeout
        self._deadline = now + idle_timeout
        self._single_frame_votes = single_frame_votes

    # --- inbound -------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> None:
        """Take bytes read from the connection (CodecError if they break the framing)."""
        self._deadline = now + self._idle_timeout
        self._bodies.extend(self._reader.feed(data))

    def next_request(self) -> Request | None:
        """The next complete request, decoded (CodecError if it does not decode), or None."""
        if not self._bodies:
            return None
        return decode_request(self._bodies.popleft(), self._dialect)

    @property
    def has_request(self) -> bool:
        """A complete request is waiting (the link is busy until it is answered)."""
        return bool(self._bodies)

    def idle_remaining(self, now: float) -> float:
        """Seconds left before the connection counts as dead for want of any byte (>= 0)."""
        return max(0.0, self._deadline - now)

    # --- outbound ------------------------------------------------------------------

    def send(self, response: Response, now: float) -> bytes:
        """The bytes to write for `response` (EncodeError: a local bug, see above).

        The idle deadline restarts here too: time spent answering (a slow HSM) is
        not the node's silence."""
        self._deadline = now + self._idle_timeout
        if self._single_frame_votes:
            response = single_frame_vote_response(response)
        return frame(encode(response, self._dialect))


def single_frame_vote_response(response: Response) -> Response:
    """A SignedVoteResponse without the echoed vote extension, for noise:// links.

    Why: go-libp2p v0.47's Noise `Read` (used by cometbft v0.40's NoiseListener) leaves a
    drained buffer behind when a message ends exactly at the end of a frame it had to
    read into its own buffer, and its next `Read` returns 0 bytes; cometbft's one-byte
    uvarint reader then reuses a stale byte, reads the next response as empty and falls
    one response behind for good (seen live: the node retried, then took a prevote
    answer for its precommit and stopped with CONSENSUS FAILURE). Any response longer
    than one Noise frame (65 519 bytes) triggers it. The node takes only `signature`,
    `extension_signature` and `timestamp` from the vote we return (v0.40
    types.SignAndCheckVote) and keeps its own extension, so dropping the echo keeps
    every response in one frame and changes nothing the node uses.
    """
    if not isinstance(response, SignedVoteResponse):
        return response
    vote = response.vote
    if vote is None or not vote.extension:
        return response
    return dataclasses.replace(response, vote=dataclasses.replace(vote, extension=b""))
