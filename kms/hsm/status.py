"""`kms hsm status`: what each replica is, holds and allows, read-only.

Owns: the per-device report (reachable, serial, firmware, the auth key in use
and its capabilities, free object slots, audit-log fill, whether the factory
auth key still exists, the validator keys held) and the rules that make the
command exit non-zero (unreachable or refused device, factory auth key present,
a configured key missing, two addresses reaching one serial). Never writes to a
device.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from yubihsm.core import AuthSession
from yubihsm.defs import COMMAND
from yubihsm.objects import AuthenticationKey

from kms.errors import HsmAdminError, HsmError
from kms.hsm.devices import Target, device_facts, duplicate_serials, open_session, strip_name
from kms.hsm.keyadmin import list_asymmetric_keys
from kms.hsm.roles import cap_names, domain_list
from kms.pubkey import validator_address
from kms.signer.yubihsm import factory_auth_key_present, find_key
from kms.signer.yubihsm_session import FACTORY_AUTH_KEY_ID


@dataclass(slots=True)
class KeyReport:
    key_id: int
    label: str
    public_key: str | None  # hex
    address: str | None
    capabilities: str


@dataclass(slots=True)
class DeviceReport:
    name: str
    reachable: bool = False
    serial: int | None = None
    firmware: str | None = None
    log_used: int | None = None
    log_total: int | None = None
    auth_key: int | None = None
    auth_key_capabilities: str | None = None
    auth_key_domains: str | None = None
    free_objects: int | None = None
    total_objects: int | None = None
    factory_auth_key_present: bool | None = None
    keys: list[KeyReport] = field(default_factory=list)
    missing_keys: list[int] = field(default_factory=list)
    error: str | None = None

    @property
    def problems(self) -> list[str]:
        out = []
        if self.error:
            out.append(self.error)
        if self.factory_auth_key_present:
            out.append(
                f"the factory auth key {FACTORY_AUTH_KEY_ID} still exists (password"
                " 'password' unless changed): provision with kms hsm setup"
            )
        out += [f"configured key {k} is not on the device" for k in self.missing_keys]
        return out

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["problems"] = self.problems
        return d


def _storage(a: AuthSession) -> tuple[int, int]:
    resp = a.send_secure_cmd(COMMAND.GET_STORAGE_INFO)
    total, free = struct.unpack("!HH", resp[:4])
    return free, total


def device_report(t: Target) -> DeviceReport:
    r = DeviceReport(t.name, auth_key=t.auth_key)
    try:
        facts = device_facts(t)
    except HsmError as e:
        r.error = strip_name(e, t.name)
        return r
    r.reachable = True
    r.serial, r.firmware = facts.serial, facts.firmware
    r.log_used, r.log_total = facts.log_used, facts.log_total
    if t.auth_key is None or t.password is None:
        r.error = "no auth key given (use -c CONFIG or --auth-key/--password-file)"
        return r
    s = open_session(t, t.auth_key, t.password())
    try:
        own = s.call(lambda a: AuthenticationKey(a, t.auth_key or 0).get_info(), ": auth key")
        r.auth_key_capabilities = cap_names(int(own.capabilities))
        r.auth_key_domains = domain_list(own.domains)
        r.free_objects, r.total_objects = s.call(_storage, ": storage info")
        r.factory_auth_key_present = s.call(factory_auth_key_present, ": list")
        held = {k.key_id: k for k in s.call(list_asymmetric_keys, ": list keys")}
        for key_id in t.key_ids:
            if key_id not in held:
                info = s.call(lambda a, k=key_id: find_key(a, k), f": key {key_id}")  # type: ignore[misc]
                if info is None:
                    r.missing_keys.append(key_id)
                    continue
                held[key_id] = info
        for k in sorted(held.values(), key=lambda k: k.key_id):
            pub = k.public_key
            r.keys.append(
                KeyReport(
                    k.key_id,
                    k.label,
                    pub.hex() if pub else None,
                    validator_address(pub) if pub else None,
                    ",".join(k.capability_names),
                )
            )
    except HsmError as e:
        r.error = strip_name(e, t.name)
    finally:
        s.close()
    return r


def collect(targets: Sequence[Target]) -> tuple[list[DeviceReport], list[str]]:
    """Every device's report and the problems across devices (duplicate serials)."""
    if not targets:
        raise HsmAdminError("no devices: give -c CONFIG or --connector URL")
    reports = [device_report(t) for t in targets]
    serials = {r.name: r.serial for r in reports if r.serial is not None}
    return reports, duplicate_serials(serials)


def render(reports: Sequence[DeviceReport], fleet: Sequence[str]) -> list[str]:
    lines = []
    for r in reports:
        if not r.reachable:
            lines.append(f"{r.name}: UNREACHABLE ({r.error})")
            continue
        lines.append(
            f"{r.name}: serial {r.serial}, firmware {r.firmware},"
            f" audit log {r.log_used}/{r.log_total} entries"
        )
        if r.auth_key_capabilities is not None:
            lines.append(
                f"  auth key {r.auth_key}: capabilities {r.auth_key_capabilities};"
                f" domains {r.auth_key_domains}"
            )
        if r.free_objects is not None:
            lines.append(f"  object slots free: {r.free_objects} of {r.total_objects}")
        for k in r.keys:
            lines.append(f"  key {k.key_id} {k.label!r}: {k.address or '-'} ({k.capabilities})")
        for p in r.problems:
            loud = "WARNING" if "factory auth key" in p else "PROBLEM"
            lines.append(f"  {loud}: {p}")
    lines += [f"PROBLEM: {p}" for p in fleet]
    return lines
