"""`kms keys list` as data: every key on every configured device and softsign file, and its problems.

Owns: reading each device's asymmetric keys (one session per device, closed at
once), formatting each public key for the chain that uses it, and the problems
that make the listing fail: a device unreachable or refusing, a configured key
missing, replicas of one key holding different public keys, an unreadable
softsign file. Never writes to a device, never prints (kms/cli/keys.py does).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kms.chains import public_key_forms
from kms.config import Config, KeyFormat
from kms.errors import HsmConnectionError, HsmTimeoutError, KmsError
from kms.hsm.devices import strip_name
from kms.hsm.keyadmin import list_asymmetric_keys
from kms.hsm.keyflows import Device, DeviceSpec
from kms.pubkey import format_public_key, validator_address


@dataclass(frozen=True, slots=True)
class Listing:
    devices: list[dict[str, Any]]
    problems: list[str]


def list_flow(specs: Sequence[DeviceSpec], fallback: KeyFormat | str) -> Listing:
    devices: list[dict[str, Any]] = []
    problems: list[str] = []
    seen: dict[int, dict[str, bytes | None]] = {}
    for spec in specs:
        entry: dict[str, Any] = {"device": spec.name, "keys": []}
        devices.append(entry)
        dev: Device | None = None
        try:
            dev = Device(spec)
            infos = dev.call(list_asymmetric_keys, ": list")
        except KmsError as e:
            entry["error"] = strip_name(e, spec.name).removeprefix("list: ")  # name shown once
            down = isinstance(e, HsmConnectionError | HsmTimeoutError)
            problems.append(f"{spec.name}: {'unreachable' if down else 'refused'} (see above)")
            continue
        finally:
            if dev is not None:
                dev.close()
        by_id = {k.key_id: k for k in infos}
        for kid in spec.key_chains:
            if kid not in by_id:
                problems.append(f"{spec.name}: configured key {kid} is missing")
                seen.setdefault(kid, {})[spec.name] = None
        for k in infos:
            fmt = spec.key_formats.get(k.key_id, fallback)
            item: dict[str, Any] = {
                "id": k.key_id,
                "label": k.label,
                "algorithm": k.algorithm,
                "capabilities": list(k.capability_names),
                "domains": k.domains,
                "origin": k.origin,
                "chains": list(spec.key_chains.get(k.key_id, ())),
            }
            if k.public_key is not None:
                item["public_key"] = format_public_key(k.public_key, fmt)
                item["address"] = validator_address(k.public_key)
                item["forms"] = public_key_forms(
                    k.public_key, fmt if isinstance(fmt, KeyFormat) else None
                )
                seen.setdefault(k.key_id, {})[spec.name] = k.public_key
            entry["keys"].append(item)
    for kid, holders in sorted(seen.items()):
        distinct = {pk for pk in holders.values() if pk is not None}
        if len(distinct) > 1:
            detail = ", ".join(f"{n}: {pk.hex() if pk else 'missing'}" for n, pk in holders.items())
            problems.append(f"key {kid}: replicas disagree ({detail})")
    return Listing(devices, problems)


def list_softsign(config: Config) -> Listing:
    """The softsign keys of a config, listed like devices (a file instead of a device)."""
    from kms.signer.softsign import load_softsign

    devices: list[dict[str, Any]] = []
    problems: list[str] = []
    chains = {c.id: c for c in config.chains}
    for p in config.softsign:
        entry: dict[str, Any] = {"device": f"softsign {p.path}", "keys": []}
        devices.append(entry)
        try:
            public_key = load_softsign(p.path, p.key_format).public_key
        except KmsError as e:
            entry["error"] = str(e)
            problems.append(f"softsign {p.path}: unreadable ({e})")
            continue
        fmt = next((chains[c].key_format for c in p.chain_ids if c in chains), None)
        entry["keys"].append(
            {
                "id": None,
                "label": p.path.name,
                "algorithm": "ed25519",
                "capabilities": [],
                "key_type": p.key_type,
                "chains": list(p.chain_ids),
                "public_key": format_public_key(public_key, fmt or "base64"),
                "address": validator_address(public_key),
                "forms": public_key_forms(public_key, fmt),
            }
        )
    return Listing(devices, problems)
