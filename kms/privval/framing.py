"""uvarint length-delimited framing of privval messages (PRIVVAL.md §2.1), sans-IO.

Owns: `uvarint(len(body)) ‖ body` on the way out (`frame`) and the incremental
reader that splits a byte stream back into bodies (`MessageReader`). Never touches
sockets, encryption (SecretConnection is below this layer) or the protobuf content of
a body (that is `kms.privval.codec`).

Rules of the reader:
* a length prefix is a protobuf uvarint of at most 10 bytes; an 11th continuation
  byte, or a value that does not fit in 64 bits, is a CodecError;
* a declared length above `max_size` is a CodecError raised as soon as the prefix is
  complete, BEFORE any body byte is buffered;
* a zero-length body is valid (an empty `Message` is valid protobuf) unless the
  reader was built with `allow_empty=False`;
* any chunking of the input (byte by byte, many messages per chunk) gives the same
  bodies;
* after an error the reader is poisoned: every later `feed` raises again (the stream
  position is lost, so the connection must be closed).
"""

from __future__ import annotations

from kms.errors import CodecError
from kms.privval.messages import Dialect
from kms.varint import MAX_VARINT_LEN, encode_uvarint

DEFAULT_MAX_MESSAGE_SIZE = 1024 * 1024 + 64 * 1024
"""1 MiB + 64 KiB: a request can carry a 1 MiB vote extension (PRIVVAL.md §2.1)."""

MAX_VOTE_EXTENSION_SIZE = 1024 * 1024  # cometbft v0.40 types.MaxVoteExtensionSize
MAX_SIGNATURE_SIZE = 3309  # v0.40 types.MaxSignatureSize: max(ed25519, bls12381, mldsa65)
MAX_MESSAGE_SIZE_V0_40 = MAX_VOTE_EXTENSION_SIZE + 2 * MAX_SIGNATURE_SIZE + 1024  # 1 056 218
"""v0.40's maxRemoteSignerMsgSize (privval/signer_endpoint.go): the largest body it reads."""
MAX_MESSAGE_SIZE_LEGACY = 10 * 1024
"""maxRemoteSignerMsgSize of v0.34..v0.39 and v1: the largest body those nodes read. A
request above it could only be answered with a response above it (the vote is echoed),
which the node cannot read: we refuse it before signing, as the Go signer does."""


def max_message_size(dialect: Dialect) -> int:
    """The largest privval body kms reads (and a node of this dialect reads) per message."""
    return MAX_MESSAGE_SIZE_V0_40 if dialect is Dialect.V0_40 else MAX_MESSAGE_SIZE_LEGACY


_U64_MAX = (1 << 64) - 1


def frame(body: bytes) -> bytes:
    """Prefix `body` with its uvarint length (what goes on the privval socket)."""
    return encode_uvarint(len(body)) + body


class MessageReader:
    """Incremental splitter of a uvarint-delimited stream into message bodies."""

    __slots__ = (
        "_allow_empty",
        "_body",
        "_error",
        "_max_size",
        "_need",
        "_prefix_len",
        "_prefix_shift",
        "_prefix_value",
    )

    def __init__(self, max_size: int = DEFAULT_MAX_MESSAGE_SIZE, *, allow_empty: bool = True):
        if max_size < 0:
            raise ValueError("max_size must be >= 0")
        self._max_size = max_size
        self._allow_empty = allow_empty
        self._error: CodecError | None = None
        self._reset_prefix()
        self._need = -1  # -1: reading a prefix; >= 0: body bytes still missing
        self._body = bytearray()

    @property
    def max_size(self) -> int:
        return self._max_size

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete message (prefix and body)."""
        return len(self._body) + self._prefix_len

    @property
    def at_boundary(self) -> bool:
        """True when no partial message is buffered (a clean place for EOF)."""
        return self._need < 0 and self._prefix_len == 0

    def _reset_prefix(self) -> None:
        self._prefix_value = 0
        self._prefix_shift = 0
        self._prefix_len = 0

    def _fail(self, text: str) -> CodecError:
        self._error = CodecError(text)
        self._body = bytearray()
        self._reset_prefix()
        return self._error

    def feed(self, data: bytes) -> list[bytes]:
        """Consume `data`; return every body completed by it, in order."""
        if self._error is not None:
            raise CodecError(f"reader already failed: {self._error}")
        out: list[bytes] = []
        view = memoryview(data)
        pos = 0
        end = len(view)
        while pos < end:
            if self._need < 0:
                byte = view[pos]
                pos += 1
                self._prefix_len += 1
                if self._prefix_len > MAX_VARINT_LEN:
                    raise self._fail("length prefix longer than 10 bytes")
                self._prefix_value |= (byte & 0x7F) << self._prefix_shift
                self._prefix_shift += 7
                if byte & 0x80:
                    continue
                length = self._prefix_value
                if length > _U64_MAX:
                    raise self._fail("length prefix overflows 64 bits")
                if length > self._max_size:
                    raise self._fail(
                        f"message length {length} exceeds the limit of {self._max_size} bytes"
                    )
                if length == 0 and not self._allow_empty:
                    raise self._fail("zero-length message")
                self._reset_prefix()
                if length == 0:
                    out.append(b"")
                    continue
                self._need = length
                continue
            take = min(self._need, end - pos)
            if take == self._need and not self._body:
                out.append(bytes(view[pos : pos + take]))
            else:
                self._body += view[pos : pos + take]
                if take == self._need:
                    out.append(bytes(self._body))
                    self._body = bytearray()
            pos += take
            self._need -= take
            if self._need == 0:
                self._need = -1
        return out
