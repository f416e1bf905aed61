"""Operator actions on the shared watermark: push, show, seal, export, import (HA.md §4).

Owns: what each operator command does to the etcd records, each as one
compare-and-swap loop that can only raise a watermark, never lower it, and the
hand-over file format. Never signs and never touches local state files (the CLI
reads the state file and hands us a SignState).

Hand-over file (JSON)::

    {"kind": "kms-handover", "v": 1, "prefix": "/kms/eu",
     "chains": {"<chain-id>": {"sealed_at": "<H>", "record": <record JSON>}}}
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from kms.errors import SharedStateError
from kms.privval.limits import MAX_ROUND
from kms.shared.etcd import EtcdClient, KeyValue
from kms.shared.gate import missing_record_message
from kms.shared.record import Record, decode, encode, watermark_key
from kms.state.machine import SignState, Step

HANDOVER_KIND = "kms-handover"
HANDOVER_VERSION = 1
IMPORT_HOST = "handover-import"
_MAX_TRIES = 10


@dataclass(frozen=True, slots=True)
class Outcome:
    chain_id: str
    changed: bool
    record: Record
    message: str


def _now() -> datetime:
    return datetime.now(UTC)


def _new_id() -> str:
    return secrets.token_hex(16)


async def read(client: EtcdClient, prefix: str, chain_id: str) -> tuple[Record, int] | None:
    kv = await client.get(watermark_key(prefix, chain_id))
    return None if kv is None else (_decode(kv, chain_id), kv.mod_revision)


def _decode(kv: KeyValue, chain_id: str) -> Record:
    try:
        return decode(kv.value)
    except SharedStateError as e:
        raise SharedStateError(f"chain {chain_id!r}: {kv.key.decode()}: {e}") from None


async def _update(
    client: EtcdClient,
    prefix: str,
    chain_id: str,
    change: Callable[[Record | None], Record | None],
) -> tuple[Record | None, bool]:
    """Apply `change` (None: leave as is) with compare-and-swap until it sticks."""
    key = watermark_key(prefix, chain_id)
    current = await read(client, prefix, chain_id)
    for _ in range(_MAX_TRIES):
        rec, rev = current if current is not None else (None, 0)
        new = change(rec)
        if new is None:
            return rec, False
        res = await client.cas(key, rev, encode(new))
        if res.succeeded:
            return new, True
        current = (
            None
            if res.current is None
            else (_decode(res.current, chain_id), res.current.mod_revision)
        )
    raise SharedStateError(f"chain {chain_id!r}: the record kept changing; try again")


async def push(
    client: EtcdClient, prefix: str, chain_id: str, state: SignState, host: str
) -> Outcome:
    """Initialise or raise the record from a local state; never lowers it."""

    def change(rec: Record | None) -> Record | None:
        if rec is not None and rec.hrs >= state.hrs:
            return None
        if rec is not None and rec.sealed_at is not None and state.height > rec.sealed_at:
            raise SharedStateError(
                f"chain {chain_id!r}: the shared watermark is sealed at height {rec.sealed_at}"
                f" and the state file is at {state.height}; refusing to push past a seal"
            )
        return Record(
            state.height, state.round, state.step, state.block_id, state.sign_bytes,
            host, _new_id(), _now(), rec.sealed_at if rec is not None else None,
        )  # fmt: skip

    rec, changed = await _update(client, prefix, chain_id, change)
    assert rec is not None
    if changed:
        msg = f"chain {chain_id}: shared watermark set to {rec.describe()}"
    else:
        msg = (
            f"chain {chain_id}: shared watermark {rec.describe()} is not below the state file"
            f" ({state.height}/{state.round}/{state.step}); left unchanged"
        )
    return Outcome(chain_id, changed, rec, msg)


async def seal(client: EtcdClient, prefix: str, chain_id: str, height: int) -> Outcome:
    """Refuse everything above `height` on every host of this cluster (a hand-over)."""

    def change(rec: Record | None) -> Record | None:
        if rec is None:
            raise SharedStateError(
                missing_record_message(chain_id, watermark_key(prefix, chain_id))
            )
        if rec.height > height:
            raise SharedStateError(
                f"chain {chain_id!r}: already signed at height {rec.height}, above {height};"
                " seal at a height at or above it"
            )
        if rec.sealed_at is not None and rec.sealed_at <= height:
            return None
        return replace(rec, sealed_at=height, write_id=_new_id(), written_at=_now())

    rec, changed = await _update(client, prefix, chain_id, change)
    assert rec is not None and rec.sealed_at is not None
    return Outcome(
        chain_id, changed, rec,
        f"chain {chain_id}: sealed at height {rec.sealed_at}: no host of this cluster signs above it",
    )  # fmt: skip


async def export(client: EtcdClient, prefix: str, chain_ids: list[str]) -> dict[str, Any]:
    """The hand-over document for sealed chains (refuses an unsealed or missing one)."""
    chains: dict[str, Any] = {}
    for cid in chain_ids:
        got = await read(client, prefix, cid)
        if got is None:
            raise SharedStateError(missing_record_message(cid, watermark_key(prefix, cid)))
        rec = got[0]
        if rec.sealed_at is None:
            raise SharedStateError(
                f"chain {cid!r} is not sealed; run `kms handover seal --at-height H` first"
            )
        chains[cid] = {"sealed_at": str(rec.sealed_at), "record": json.loads(encode(rec))}
    return {"kind": HANDOVER_KIND, "v": HANDOVER_VERSION, "prefix": prefix, "chains": chains}


def parse_handover(doc: Any) -> dict[str, int]:
    """chain ID -> sealed height from a hand-over document (SharedStateError if malformed)."""
    if not isinstance(doc, dict) or doc.get("kind") != HANDOVER_KIND or doc.get("v") != 1:
        raise SharedStateError("not a kms hand-over file (kind/v)")
    chains = doc.get("chains")
    if not isinstance(chains, dict) or not chains:
        raise SharedStateError("hand-over file lists no chains")
    out: dict[str, int] = {}
    for cid, entry in chains.items():
        if not isinstance(entry, dict):
            raise SharedStateError(f"hand-over file: chain {cid!r}: not an object")
        rec = decode(json.dumps(entry.get("record")).encode())
        sealed = entry.get("sealed_at")
        if rec.sealed_at is None or sealed != str(rec.sealed_at) or rec.height > rec.sealed_at:
            raise SharedStateError(f"hand-over file: chain {cid!r}: inconsistent seal")
        out[cid] = rec.sealed_at
    return out


async def import_sealed(client: EtcdClient, prefix: str, chain_id: str, sealed_at: int) -> Outcome:
    """Raise this cluster's record so that nothing at or below `sealed_at` is signed here."""
    floor = (sealed_at, MAX_ROUND, int(Step.PRECOMMIT))

    def change(rec: Record | None) -> Record | None:
        if rec is not None and rec.height > sealed_at:
            raise SharedStateError(
                f"chain {chain_id!r}: this cluster already signed at height {rec.height}, above"
                f" the other region's seal {sealed_at}: the regions overlapped; investigate"
                " before signing anywhere"
            )
        if rec is not None and rec.hrs >= floor:
            return None
        # No sign bytes: every request at or below the floor is refused here.
        return Record(
            sealed_at, MAX_ROUND, int(Step.PRECOMMIT), SignState.initial().block_id, b"",
            IMPORT_HOST, _new_id(), _now(), None,
        )  # fmt: skip

    rec, changed = await _update(client, prefix, chain_id, change)
    assert rec is not None
    return Outcome(
        chain_id, changed, rec,
        f"chain {chain_id}: shared watermark at {rec.describe()}: this cluster signs only above"
        f" height {sealed_at}",
    )  # fmt: skip
