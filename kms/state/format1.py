"""State file format 1: the JSON document tmkms reads, and the readers `kms state import` uses.

Owns: encoding and strictly decoding one state as JSON (format 1, also the
payload of a format-2 slot), and the lenient readers for CometBFT's
`priv_validator_state.json` and tmkms's state files. Pure functions over bytes:
never opens a file (that is `kms.state.store`) and never decides anything (that
is `kms.state.machine`).

Document::

    {"height": "123", "round": "0", "step": 1,
     "block_id": {"hash": "<HEX>", "parts": {"total": 1, "hash": "<HEX>"}},
     "sign_bytes": "<hex>", "signature": "<base64>", "updated_at": "<RFC 3339>"}

`height`/`round` are decimal strings and `step` a number (0 proposal, 1 prevote,
2 precommit), `block_id` is written the way tendermint-rs serialises
`consensus::State` (upper-case hex, `parts`, nil as empty hashes and total 0);
`sign_bytes`, `signature` and `updated_at` are ours and are omitted when empty.
Reading accepts what tmkms writes or once wrote: `parts` or `part_set_header`,
`total` as a number or a string, `block_id` null.

Rules: decoding is strict (a wrong shape, size, range or sign bytes that
contradict the watermark is BadState); stored sign bytes must encode the stored
height, round, step and block ID.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Any

from kms.errors import BadState, CodecError
from kms.privval import canonical
from kms.privval.limits import MAX_HEIGHT, MAX_ROUND
from kms.privval.messages import NIL_BLOCK_ID, BlockID, PartSetHeader, SignedMsgType
from kms.state.machine import SignState, Step

_STEPS = frozenset(int(s) for s in Step)

HASH_SIZE = 32
SIGNATURE_SIZE = 64
_OUR_KEYS = frozenset(
    {"height", "round", "step", "block_id", "sign_bytes", "signature", "updated_at"}
)
_PARTS_SPELLINGS = ("parts", "part_set_header", "partSetHeader", "PartSetHeader")


# --- encoding ------------------------------------------------------------------


def format_time(t: datetime) -> str:
    """RFC 3339 in UTC with microseconds and a 'Z'."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def encode_block_id(block_id: BlockID) -> dict[str, Any]:
    return {
        "hash": block_id.hash.hex().upper(),
        "parts": {
            "total": block_id.part_set_header.total,
            "hash": block_id.part_set_header.hash.hex().upper(),
        },
    }


def encode_state(state: SignState, *, compact: bool = False) -> bytes:
    """The format-1 JSON document (indented, as tmkms writes it; `compact` for format 2)."""
    obj: dict[str, Any] = {
        "height": str(state.height),
        "round": str(state.round),
        "step": state.step,
        "block_id": encode_block_id(state.block_id),
    }
    if state.sign_bytes:
        obj["sign_bytes"] = state.sign_bytes.hex()
    if state.signature:
        obj["signature"] = base64.b64encode(state.signature).decode("ascii")
    if state.updated_at is not None:
        obj["updated_at"] = format_time(state.updated_at)
    if compact:
        return json.dumps(obj, separators=(",", ":")).encode("utf-8")
    return (json.dumps(obj, indent=2) + "\n").encode("utf-8")


# --- decoding --------------------------------------------------------------------


def _decimal(value: Any, key: str, limit: int, *, allow_number: bool) -> int:
    if isinstance(value, bool):
        raise BadState(f"'{key}' must be a decimal string, got {json.dumps(value)}")
    if isinstance(value, int) and allow_number:
        n = value
    elif isinstance(value, str) and value.isascii() and value.isdigit():
        n = int(value)
    else:
        raise BadState(f"'{key}' must be a non-negative decimal string, got {json.dumps(value)}")
    if not 0 <= n <= limit:
        raise BadState(f"'{key}' is out of range (0..{limit}): {n}")
    return n


def _hex(value: Any, key: str, sizes: tuple[int, ...]) -> bytes:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise BadState(f"'{key}' must be a hex string, got {json.dumps(value)}")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise BadState(f"'{key}' is not valid hex: {value!r}") from None
    if sizes and len(raw) not in sizes:
        raise BadState(f"'{key}' must be {' or '.join(map(str, sizes))} bytes, got {len(raw)}")
    return raw


def decode_block_id(value: Any, key: str = "block_id") -> BlockID:
    """tmkms's block ID JSON (or null) -> BlockID; rejects odd shapes and sizes."""
    if value is None:
        return NIL_BLOCK_ID
    if not isinstance(value, dict):
        raise BadState(f"'{key}' must be an object or null, got {json.dumps(value)}")
    spellings = [k for k in _PARTS_SPELLINGS if k in value]
    unknown = set(value) - {"hash", *_PARTS_SPELLINGS}
    if unknown or len(spellings) > 1:
        raise BadState(f"'{key}' has unexpected keys: {sorted(unknown | set(spellings[1:]))}")
    block_hash = _hex(value.get("hash", ""), f"{key}.hash", (0, HASH_SIZE))
    psh: Any = value[spellings[0]] if spellings else None
    if psh is None:
        psh = {}
    if not isinstance(psh, dict) or set(psh) - {"total", "hash"}:
        raise BadState(f"'{key}.parts' must be an object with 'total' and 'hash'")
    total = _decimal(psh.get("total", 0), f"{key}.parts.total", 2**32 - 1, allow_number=True)
    parts_hash = _hex(psh.get("hash", ""), f"{key}.parts.hash", (0, HASH_SIZE))
    return BlockID(block_hash, PartSetHeader(total, parts_hash))


def _step(value: Any, key: str = "step") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value not in _STEPS:
        raise BadState(f"'{key}' must be 0 (proposal), 1 (prevote) or 2 (precommit), got {value!r}")
    return value


def _signature(value: Any) -> bytes:
    if not isinstance(value, str):
        raise BadState(f"'signature' must be a base64 string, got {json.dumps(value)}")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BadState(f"'signature' is not valid base64: {value!r}") from None
    if len(raw) != SIGNATURE_SIZE:
        raise BadState(f"'signature' must be {SIGNATURE_SIZE} bytes, got {len(raw)}")
    return raw


def _updated_at(value: Any) -> datetime:
    if not isinstance(value, str):
        raise BadState(f"'updated_at' must be an RFC 3339 string, got {json.dumps(value)}")
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        raise BadState(f"'updated_at' is not an RFC 3339 time: {value!r}") from None
    if t.tzinfo is None:
        raise BadState(f"'updated_at' has no time zone: {value!r}")
    return t


def check_sign_bytes(state: SignState) -> None:
    """Raise BadState unless `sign_bytes` decode to the stored height, round, step and block ID."""
    try:
        if state.step == Step.PROPOSAL:
            p = canonical.decode_canonical_proposal(state.sign_bytes)
            seen = (p.type, p.height, p.round, p.block_id)
            want_type = int(SignedMsgType.PROPOSAL)
        else:
            v = canonical.decode_canonical_vote(state.sign_bytes)
            seen = (v.type, v.height, v.round, v.block_id)
            want_type = int(
                SignedMsgType.PREVOTE if state.step == Step.PREVOTE else SignedMsgType.PRECOMMIT
            )
    except CodecError as e:
        raise BadState(f"'sign_bytes' do not decode as a canonical message: {e}") from None
    if seen != (want_type, state.height, state.round, state.block_id):
        raise BadState(
            "'sign_bytes' do not match the stored height/round/step/block_id "
            f"(they encode type {seen[0]}, height {seen[1]}, round {seen[2]})"
        )


def sign_bytes_chain(state: SignState) -> str | None:
    """The chain ID the stored sign bytes name (None when nothing is stored)."""
    if not state.sign_bytes:
        return None
    try:
        if state.step == Step.PROPOSAL:
            return canonical.decode_canonical_proposal(state.sign_bytes).chain_id
        return canonical.decode_canonical_vote(state.sign_bytes).chain_id
    except CodecError as e:
        raise BadState(f"'sign_bytes' do not decode as a canonical message: {e}") from None


def check_chain(state: SignState, chain_id: str) -> None:
    """BadState unless the stored sign bytes (if any) were made for `chain_id`.

    A watermark carried over from another chain says nothing about this one:
    trusting it would let this chain sign below what it really signed.
    """
    named = sign_bytes_chain(state)
    if named is not None and named != chain_id:
        raise BadState(
            f"holds sign bytes for chain {named!r}, not {chain_id!r} "
            "(a state file of another chain?)"
        )


def _parse_json(data: bytes) -> Any:
    if not data.strip():
        raise BadState("is empty")
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise BadState("is not UTF-8 text (corrupt?)") from None
    except json.JSONDecodeError as e:
        raise BadState(f"is not valid JSON (truncated or corrupt?): {e}") from None


def decode_state(data: bytes) -> SignState:
    """Strictly decode our format (which includes anything tmkms writes); raises BadState."""
    obj = _parse_json(data)
    if not isinstance(obj, dict):
        raise BadState("must contain a JSON object")
    if "signbytes" in obj:
        raise BadState(
            "looks like a CometBFT priv_validator_state.json (steps 1-3); "
            "convert it with `kms state import`"
        )
    unknown = set(obj) - _OUR_KEYS
    if unknown:
        raise BadState(f"has unexpected keys: {sorted(unknown)}")
    missing = [k for k in ("height", "round", "step") if k not in obj]
    if missing:
        raise BadState(f"is missing {', '.join(repr(k) for k in missing)}")
    state = SignState(
        height=_decimal(obj["height"], "height", MAX_HEIGHT, allow_number=False),
        round=_decimal(obj["round"], "round", MAX_ROUND, allow_number=False),
        step=_step(obj["step"]),
        block_id=decode_block_id(obj.get("block_id")),
        sign_bytes=_hex(obj.get("sign_bytes", ""), "sign_bytes", ()),
        signature=_signature(obj["signature"]) if "signature" in obj else b"",
        updated_at=_updated_at(obj["updated_at"]) if "updated_at" in obj else None,
    )
    if bool(state.sign_bytes) != bool(state.signature):
        raise BadState("has 'sign_bytes' without 'signature' or the other way round")
    if state.sign_bytes:
        check_sign_bytes(state)
    return state


# CometBFT FilePV numbers steps 1 propose, 2 prevote, 3 precommit (0: nothing signed yet).
_COMETBFT_STEP = {0: Step.PROPOSAL, 1: Step.PROPOSAL, 2: Step.PREVOTE, 3: Step.PRECOMMIT}


def decode_foreign_state(data: bytes) -> tuple[SignState, str]:
    """Read a CometBFT priv_validator_state.json, a tmkms state file or ours.

    Returns the state and the name of the format detected. Used by `kms state
    import`; lenient about spellings, strict about values. Raises BadState.
    """
    obj = _parse_json(data)
    if not isinstance(obj, dict):
        raise BadState("must contain a JSON object")
    if "signbytes" in obj or ("block_id" not in obj and "round" in obj and "step" in obj):
        unknown = set(obj) - {"height", "round", "step", "signature", "signbytes"}
        if unknown:
            raise BadState(f"has unexpected keys for a CometBFT state file: {sorted(unknown)}")
        raw_step = obj.get("step")
        if isinstance(raw_step, bool) or raw_step not in _COMETBFT_STEP:
            raise BadState(f"'step' must be 0..3 in a CometBFT state file, got {raw_step!r}")
        sign_bytes = _hex(obj.get("signbytes", ""), "signbytes", ())
        sig_value = obj.get("signature")
        signature = _signature(sig_value) if sig_value else b""
        state = SignState(
            height=_decimal(obj.get("height"), "height", MAX_HEIGHT, allow_number=True),
            round=_decimal(obj.get("round"), "round", MAX_ROUND, allow_number=True),
            step=_COMETBFT_STEP[raw_step],
        )
        if sign_bytes and signature:
            block_id = _block_id_from_sign_bytes(sign_bytes, state.step)
            state = SignState(
                state.height, state.round, state.step, block_id, sign_bytes, signature
            )
            check_sign_bytes(state)
        return state, "cometbft"
    # tmkms or ours: same reader, numbers tolerated for height/round
    fixed = dict(obj)
    for key in ("height", "round"):
        if isinstance(fixed.get(key), int) and not isinstance(fixed.get(key), bool):
            fixed[key] = str(fixed[key])
    state = decode_state(json.dumps(fixed).encode())
    ours = bool(set(obj) & {"sign_bytes", "signature", "updated_at"})
    return state, "kms" if ours else "tmkms"


def _block_id_from_sign_bytes(sign_bytes: bytes, step: int) -> BlockID:
    try:
        if step == Step.PROPOSAL:
            return canonical.decode_canonical_proposal(sign_bytes).block_id
        return canonical.decode_canonical_vote(sign_bytes).block_id
    except CodecError as e:
        raise BadState(f"'signbytes' do not decode as a canonical message: {e}") from None
