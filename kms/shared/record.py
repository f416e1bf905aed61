"""The shared watermark record stored in etcd: its key, encoding and strict decoding.

Owns: the record value (`Record`), the key it lives under
(`<prefix>/chains/<chain-id>/watermark`), `encode()` and the strict `decode()`.
Never talks to etcd and never decides (the gate calls `kms.state.machine.decide`
on `Record.sign_state()`).

Encoding: one JSON object, keys sorted, version 1::

    {"v": 1, "height": "123", "round": "0", "step": 1,
     "block_id": {"hash": "<HEX>", "parts_total": 1, "parts_hash": "<HEX>"},
     "sign_bytes": "<hex>", "host": "kms-a", "write_id": "<32 hex>",
     "written_at": "<RFC 3339>", "sealed_at": null | "<height>"}

The record holds the sign bytes the cluster allowed, not a signature: the etcd
commit comes before the HSM signs (HA.md §3). A host that finds identical sign
bytes signs them again (Ed25519 is deterministic: the same signature results).
`sealed_at` is the hand-over seal (HA.md §4): nothing above it is signed.

Decoding is strict: unknown keys, a different version, wrong types, out-of-range
numbers or sign bytes that do not match the height/round/step are a
SharedStateError (the chain refuses to sign until an operator acts).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kms.errors import CodecError, SharedStateError
from kms.privval import canonical
from kms.privval.limits import MAX_HEIGHT, MAX_ROUND
from kms.privval.messages import BlockID, PartSetHeader, SignedMsgType
from kms.state.machine import SignState, Step

RECORD_VERSION = 1
MAX_RECORD_SIZE = 16 * 1024
_KEYS = frozenset(
    {"v", "height", "round", "step", "block_id", "sign_bytes", "host", "write_id"}
    | {"written_at", "sealed_at"}
)
_WRITE_ID = re.compile(r"[0-9a-f]{32}")
_HEX32 = re.compile(r"(?:[0-9A-F]{64})?")
# decide() treats sign bytes without a signature as corrupt. The record never holds a
# signature (the commit precedes signing), so the gate hands decide() this marker; it
# is never returned to anyone: on REUSE the gate signs the stored sign bytes again.
RECORD_SIGNATURE_MARKER = b"\x00" * 64


def watermark_key(prefix: str, chain_id: str) -> bytes:
    return f"{prefix.rstrip('/')}/chains/{chain_id}/watermark".encode()


@dataclass(frozen=True, slots=True)
class Record:
    height: int
    round: int
    step: int
    block_id: BlockID
    sign_bytes: bytes
    host: str
    write_id: str
    written_at: datetime
    sealed_at: int | None = None

    @property
    def hrs(self) -> tuple[int, int, int]:
        return (self.height, self.round, self.step)

    def sign_state(self) -> SignState:
        """The record as the rule table sees it (see RECORD_SIGNATURE_MARKER)."""
        return SignState(
            height=self.height,
            round=self.round,
            step=self.step,
            block_id=self.block_id,
            sign_bytes=self.sign_bytes,
            signature=RECORD_SIGNATURE_MARKER if self.sign_bytes else b"",
            updated_at=self.written_at,
        )

    def describe(self) -> str:
        seal = f", sealed at {self.sealed_at}" if self.sealed_at is not None else ""
        return f"{self.height}/{self.round}/{self.step} by {self.host}{seal}"


def encode(rec: Record) -> bytes:
    obj: dict[str, Any] = {
        "v": RECORD_VERSION,
        "height": str(rec.height),
        "round": str(rec.round),
        "step": rec.step,
        "block_id": {
            "hash": rec.block_id.hash.hex().upper(),
            "parts_total": rec.block_id.part_set_header.total,
            "parts_hash": rec.block_id.part_set_header.hash.hex().upper(),
        },
        "sign_bytes": rec.sign_bytes.hex(),
        "host": rec.host,
        "write_id": rec.write_id,
        "written_at": rec.written_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "sealed_at": None if rec.sealed_at is None else str(rec.sealed_at),
    }
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _bad(why: str) -> SharedStateError:
    return SharedStateError(f"shared watermark record does not decode: {why}")


def _dec(obj: dict[str, Any], key: str, limit: int) -> int:
    v = obj.get(key)
    if not (isinstance(v, str) and v.isascii() and v.isdigit() and len(v) <= 19):
        raise _bad(f"'{key}' must be a decimal string, got {v!r}")
    n = int(v)
    if n > limit:
        raise _bad(f"'{key}' out of range: {n}")
    return n


def decode(data: bytes) -> Record:
    """Strict decode (SharedStateError with the reason on anything unexpected)."""
    if len(data) > MAX_RECORD_SIZE:
        raise _bad(f"{len(data)} bytes (limit {MAX_RECORD_SIZE})")
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _bad(f"not JSON ({e})") from None
    if not isinstance(obj, dict):
        raise _bad("not a JSON object")
    if obj.get("v") != RECORD_VERSION or isinstance(obj.get("v"), bool):
        raise _bad(f"version {obj.get('v')!r}, this kms reads version {RECORD_VERSION}")
    if set(obj) != _KEYS:
        raise _bad(f"keys {sorted(set(obj) ^ _KEYS)} missing or unexpected")
    height = _dec(obj, "height", MAX_HEIGHT)
    rnd = _dec(obj, "round", MAX_ROUND)
    step = obj["step"]
    if isinstance(step, bool) or step not in (0, 1, 2):
        raise _bad(f"'step' must be 0, 1 or 2, got {step!r}")
    bid = obj["block_id"]
    if not isinstance(bid, dict) or set(bid) != {"hash", "parts_total", "parts_hash"}:
        raise _bad("'block_id' must have hash, parts_total, parts_hash")
    total = bid["parts_total"]
    if not (
        isinstance(bid["hash"], str)
        and _HEX32.fullmatch(bid["hash"])
        and isinstance(bid["parts_hash"], str)
        and _HEX32.fullmatch(bid["parts_hash"])
        and isinstance(total, int)
        and not isinstance(total, bool)
        and 0 <= total < 2**32
    ):
        raise _bad(f"'block_id' malformed: {bid!r}")
    block_id = BlockID(
        bytes.fromhex(bid["hash"]), PartSetHeader(total, bytes.fromhex(bid["parts_hash"]))
    )
    sb = obj["sign_bytes"]
    if not isinstance(sb, str) or len(sb) % 2 or not re.fullmatch(r"[0-9a-f]*", sb):
        raise _bad("'sign_bytes' must be lower-case hex")
    sign_bytes = bytes.fromhex(sb)
    host, write_id, written = obj["host"], obj["write_id"], obj["written_at"]
    if not isinstance(host, str) or not 0 < len(host) <= 255:
        raise _bad(f"'host' must be a non-empty string, got {host!r}")
    if not isinstance(write_id, str) or not _WRITE_ID.fullmatch(write_id):
        raise _bad(f"'write_id' must be 32 lower-case hex digits, got {write_id!r}")
    try:
        if not isinstance(written, str) or not written.endswith("Z"):
            raise ValueError(written)
        written_at = datetime.strptime(written, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        raise _bad(f"'written_at' must be RFC 3339 UTC, got {written!r}") from None
    sealed_at = None if obj["sealed_at"] is None else _dec(obj, "sealed_at", MAX_HEIGHT)
    rec = Record(height, rnd, step, block_id, sign_bytes, host, write_id, written_at, sealed_at)
    _check_sign_bytes(rec)
    return rec


def _check_sign_bytes(rec: Record) -> None:
    """Stored sign bytes must be a canonical message at the record's own height/round/step."""
    if not rec.sign_bytes:
        return
    try:
        if rec.step == Step.PROPOSAL:
            p = canonical.decode_canonical_proposal(rec.sign_bytes)
            hr, kind_ok = (p.height, p.round), p.type == SignedMsgType.PROPOSAL
        else:
            v = canonical.decode_canonical_vote(rec.sign_bytes)
            hr, kind_ok = (v.height, v.round), v.type == rec.step  # prevote 1, precommit 2
    except CodecError as e:
        raise _bad(f"'sign_bytes' are not a canonical message: {e}") from None
    if not kind_ok:
        raise _bad(f"'sign_bytes' are not a message of step {rec.step}")
    if hr != (rec.height, rec.round):
        raise _bad(
            f"'sign_bytes' are for {hr[0]}/{hr[1]}, the record says {rec.height}/{rec.round}"
        )
