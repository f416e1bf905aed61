"""Checks on what real nodes committed: commit signatures and duplicate-vote evidence.

Owns: turning the node's RPC JSON (/commit, /block) back into votes and verifying our
validator's Ed25519 signatures over the canonical vote sign bytes (built by
`kms.privval.canonical.vote_sign_bytes`), and scanning blocks for evidence. Never starts
processes and never talks to kms.

A commit signature with block_id_flag COMMIT (2) is a precommit for the commit's block ID;
NIL (3) is a precommit for nil; ABSENT (1) carries no signature. The timestamp is the one
the validator signed, so the sign bytes can be rebuilt exactly from the RPC.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from kms.privval.messages import BlockID, PartSetHeader, SignedMsgType, Timestamp, Vote

from .cometbft import Node

FLAG_ABSENT, FLAG_COMMIT, FLAG_NIL = 1, 2, 3

_RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")


def parse_timestamp(text: str) -> Timestamp:
    """RFC 3339 with up to nanosecond precision (as Go prints it) -> protobuf Timestamp."""
    m = _RFC3339.match(text)
    if not m:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    base, frac, zone = m.groups()
    when = dt.datetime.fromisoformat(base + ("+00:00" if zone == "Z" else zone))
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    delta = when - epoch
    seconds = delta.days * 86400 + delta.seconds
    nanos = int((frac or "0").ljust(9, "0"))
    return Timestamp(seconds=seconds, nanos=nanos)


def parse_block_id(doc: dict[str, Any]) -> BlockID:
    parts = doc.get("parts") or doc.get("part_set_header") or {}
    return BlockID(
        hash=bytes.fromhex(doc.get("hash") or ""),
        part_set_header=PartSetHeader(
            total=int(parts.get("total") or 0), hash=bytes.fromhex(parts.get("hash") or "")
        ),
    )


def vote_sign_bytes(chain_id: str, vote: Vote) -> bytes:
    from kms.privval import canonical

    return canonical.vote_sign_bytes(chain_id, vote)


@dataclass(frozen=True, slots=True)
class CommitCheck:
    """What one height's commit says about our validator."""

    height: int
    flag: int  # 0 when our validator is not in the commit at all
    verified: bool
    detail: str = ""


@dataclass
class CommitReport:
    checks: list[CommitCheck] = field(default_factory=list)

    @property
    def signed(self) -> list[CommitCheck]:
        return [c for c in self.checks if c.flag in (FLAG_COMMIT, FLAG_NIL)]

    @property
    def bad(self) -> list[CommitCheck]:
        return [c for c in self.signed if not c.verified]

    @property
    def missing(self) -> list[int]:
        return [c.height for c in self.checks if c.flag not in (FLAG_COMMIT, FLAG_NIL)]

    def summary(self) -> str:
        return (
            f"{len(self.checks)} commits: {len(self.signed)} signed by us, "
            f"{len(self.bad)} failed verification, missing at {self.missing[:20]}"
        )


def check_commit(
    node: Node, height: int, chain_id: str, public_key: bytes, address: str
) -> CommitCheck:
    """Verify our validator's signature in the commit of `height` (the commit for that block)."""
    doc = node.commit(height)
    commit = doc["signed_header"]["commit"]
    header = doc["signed_header"]["header"]
    header_note = (
        "" if header["chain_id"] == chain_id else f"; chain id {header['chain_id']!r} in header"
    )
    rnd = int(commit["round"])
    block_id = parse_block_id(commit["block_id"])
    for sig in commit["signatures"]:
        if (sig.get("validator_address") or "").upper() != address:
            continue
        flag = int(sig["block_id_flag"])
        if flag == FLAG_ABSENT:
            return CommitCheck(height, flag, False, "absent")
        vote = Vote(
            type=SignedMsgType.PRECOMMIT,
            height=int(commit["height"]),
            round=rnd,
            block_id=block_id if flag == FLAG_COMMIT else BlockID(),
            timestamp=parse_timestamp(sig["timestamp"]),
        )
        msg = vote_sign_bytes(chain_id, vote)
        try:
            VerifyKey(public_key).verify(msg, base64.b64decode(sig["signature"]))
        except BadSignatureError:
            return CommitCheck(height, flag, False, f"bad signature over {msg.hex()}{header_note}")
        return CommitCheck(height, flag, not header_note, header_note)
    return CommitCheck(height, 0, False, "not in commit")


def check_commits(
    node: Node, heights: Iterable[int], chain_id: str, public_key: bytes, address: str
) -> CommitReport:
    report = CommitReport()
    for h in heights:
        report.checks.append(check_commit(node, h, chain_id, public_key, address))
    return report


@dataclass(frozen=True, slots=True)
class Evidence:
    height: int  # block that carries it
    type: str
    addresses: tuple[str, ...]
    raw: str


def block_evidence(node: Node, height: int) -> list[Evidence]:
    block = node.block(height)["block"]
    ev_doc = block.get("evidence") or {}
    items = ev_doc.get("evidence") or [] if isinstance(ev_doc, dict) else ev_doc
    found: list[Evidence] = []
    for item in items:
        typ = str(item.get("type", "?"))
        value = item.get("value", item)
        addrs = tuple(
            str(value[k].get("validator_address", "")).upper()
            for k in ("vote_a", "vote_b")
            if isinstance(value.get(k), dict)
        )
        found.append(Evidence(height, typ, addrs, str(item)[:600]))
    return found


def evidence_in(node: Node, heights: Iterable[int]) -> list[Evidence]:
    out: list[Evidence] = []
    for h in heights:
        out.extend(block_evidence(node, h))
    return out
