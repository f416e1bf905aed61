"""`kms hsm setup`: provision factory-fresh YubiHSM2 replicas identically from one recovery phrase.

Owns: the ceremony over all target devices (check every device, then write
every device, then verify every device), the freshness rule, and the
per-device verification of the provisioned layout (also used by `kms hsm
status`). Never prints or stores the phrase (the CLI shows it once) and never
touches validator keys.

Order, per the "check everything first" rule of the key commands:
1. Check: every device is reached as the factory auth key (id 1, password
   "password"), is distinct (serials differ) and is factory-fresh (the factory
   auth key is its only object). A device that is not fresh is refused unless
   `force`; then the objects at the planned (id, type) are deleted first.
2. Write, per device: command audit on for the commands in
   `roles.AUDITED_COMMANDS`, the wrap key and the role auth keys (secrets from
   the phrase, see phrase.py), forced audit if asked, then a session as the new
   admin deletes the factory auth key. If anything fails before that last step
   the factory key is still there: the device is never locked out.
3. Verify, per device: every planned object has exactly the planned label,
   capabilities, delegated capabilities and domains; every role logs in with
   its derived password; the factory auth key is gone.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from yubihsm.core import AuthSession
from yubihsm.defs import AUDIT, COMMAND, OBJECT
from yubihsm.objects import AuthenticationKey, WrapKey, YhsmObject

from kms.errors import HsmAdminError, HsmError
from kms.hsm import phrase
from kms.hsm.devices import Target, device_facts, duplicate_serials, open_session
from kms.hsm.roles import (
    AUDITED_COMMANDS,
    FACTORY_PASSWORD,
    PLAN,
    ROLES,
    PlannedObject,
    role,
)
from kms.signer.yubihsm_session import FACTORY_AUTH_KEY_ID, DeviceSession, derive_credentials

log = logging.getLogger(__name__)

Echo = Callable[[str], None]


@dataclass(slots=True)
class DeviceCheck:
    target: Target
    serial: int = 0
    firmware: str = ""
    objects: list[tuple[int, int]] = field(default_factory=list)  # (id, type) present

    @property
    def fresh(self) -> bool:
        return self.objects == [(FACTORY_AUTH_KEY_ID, OBJECT.AUTHENTICATION_KEY)]

    @property
    def conflicts(self) -> list[tuple[int, int]]:
        planned = {(p.object_id, p.object_type) for p in PLAN}
        return [o for o in self.objects if o in planned]


def _factory_session(target: Target) -> DeviceSession:
    return open_session(target, FACTORY_AUTH_KEY_ID, FACTORY_PASSWORD)


def check_devices(targets: Sequence[Target]) -> list[DeviceCheck]:
    """Step 1 (read-only): reach every device as the factory auth key and describe it."""
    if not targets:
        raise HsmAdminError("no devices: give -c CONFIG or --connector URL")
    checks: list[DeviceCheck] = []
    for t in targets:
        facts = device_facts(t)
        s = _factory_session(t)
        try:
            objs = s.call(lambda a: a.list_objects(), ": list objects")
        except HsmError as e:
            raise HsmAdminError(
                f"{t.name}: cannot log in with the factory auth key {FACTORY_AUTH_KEY_ID}"
                f" ({_reason(e)}); the device is not factory-fresh: factory-reset it first"
            ) from None
        finally:
            s.close()
        objects = sorted((o.id, int(o.object_type)) for o in objs)
        checks.append(DeviceCheck(t, facts.serial, facts.firmware, objects))
    dups = duplicate_serials({c.target.name: c.serial for c in checks})
    if dups:
        raise HsmAdminError("; ".join(dups))
    return checks


def _reason(e: Exception) -> str:
    text = str(e)
    return text.split(": ", 1)[1] if ": " in text else text


def describe_plan(checks: Sequence[DeviceCheck], *, force_audit: bool) -> list[str]:
    lines = []
    for c in checks:
        state = (
            "factory-fresh"
            if c.fresh
            else f"NOT factory-fresh ({len(c.objects)} objects; refused without --force)"
        )
        lines.append(f"{c.target.name} (serial {c.serial}, firmware {c.firmware}): {state}")
        for o in c.conflicts:
            if o != (FACTORY_AUTH_KEY_ID, OBJECT.AUTHENTICATION_KEY):
                lines.append(f"  delete existing {OBJECT(o[1]).name.lower()} {o[0]} (--force)")
        lines.append("  command audit on: " + ", ".join(_audited_names()))
        for p in PLAN:
            lines.append(f"  create {p.describe()}")
        if force_audit:
            lines.append("  forced audit on (signing stops when the log is full)")
        lines.append(f"  delete the factory auth key {FACTORY_AUTH_KEY_ID}")
    return lines


def _audited_names() -> list[str]:
    return [COMMAND(c).name.lower().replace("_", "-") for c in AUDITED_COMMANDS]


def refuse_unfresh(checks: Sequence[DeviceCheck], *, force: bool, echo: Echo) -> None:
    stale = [c for c in checks if not c.fresh]
    if not stale:
        return
    names = ", ".join(f"{c.target.name} ({len(c.objects)} objects)" for c in stale)
    if not force:
        raise HsmAdminError(
            f"not factory-fresh: {names}; factory-reset them, or pass --force to provision"
            " over existing objects"
        )
    echo(
        f"WARNING: provisioning devices that are not factory-fresh: {names}; objects at the"
        " planned ids are deleted, other objects are left as they are"
    )


def _delete(a: AuthSession, *, obj_id: int, obj_type: int) -> None:
    YhsmObject._create(OBJECT(obj_type), a, obj_id).delete()


def _put(a: AuthSession, *, p: PlannedObject, entropy: bytes) -> YhsmObject:
    if p.object_type == OBJECT.WRAP_KEY:
        return WrapKey.put(
            a,
            p.object_id,
            p.label,
            p.domains,
            p.capabilities,
            p.algorithm,
            p.delegated,
            phrase.wrap_key(entropy),
        )
    creds = derive_credentials(p.object_id, phrase.role_password(entropy, p.role))
    return AuthenticationKey.put(
        a,
        p.object_id,
        p.label,
        p.domains,
        p.capabilities,
        p.delegated,
        creds.key_enc,
        creds.key_mac,
    )


def provision(check: DeviceCheck, entropy: bytes, *, force_audit: bool) -> None:
    """Step 2 on one device (already checked)."""
    t = check.target
    s = _factory_session(t)
    try:
        for obj_id, obj_type in check.conflicts:
            if (obj_id, obj_type) != (FACTORY_AUTH_KEY_ID, OBJECT.AUTHENTICATION_KEY):
                s.call(
                    functools.partial(_delete, obj_id=obj_id, obj_type=obj_type),
                    f": delete object {obj_id}",
                )
        s.call(
            lambda a: a.set_command_audit({COMMAND(c): AUDIT.ON for c in AUDITED_COMMANDS}),
            ": command audit",
        )
        for p in PLAN:
            s.call(
                functools.partial(_put, p=p, entropy=entropy), f": create {p.role} {p.object_id}"
            )
        if force_audit:
            s.call(lambda a: a.set_force_audit(AUDIT.ON), ": forced audit")
    finally:
        s.close()
    admin = role_session(t, entropy, "admin")
    try:
        admin.call(
            lambda a: AuthenticationKey(a, FACTORY_AUTH_KEY_ID).delete(),
            f": delete the factory auth key {FACTORY_AUTH_KEY_ID}",
        )
    finally:
        admin.close()


def role_session(target: Target, entropy: bytes, name: str) -> DeviceSession:
    r = role(name)
    return open_session(target, r.object_id, phrase.role_password(entropy, name))


def layout_problems(a: AuthSession) -> list[str]:
    """Differences between a device's objects and the planned layout (any session may read them)."""
    problems = []
    for p in PLAN:
        try:
            info = YhsmObject._create(p.object_type, a, p.object_id).get_info()
        except Exception:
            problems.append(f"{p.role} {p.object_id}: missing")
            continue
        label = info.label if isinstance(info.label, str) else repr(info.label)
        got = (label, int(info.capabilities), int(info.delegated_capabilities), info.domains)
        want = (p.label, int(p.capabilities), int(p.delegated), p.domains)
        if got != want:
            problems.append(f"{p.role} {p.object_id}: {got} differs from the plan {want}")
    return problems


def verify(target: Target, entropy: bytes) -> list[str]:
    """Step 3 on one device: the layout, every role's password, the factory key gone."""
    problems: list[str] = []
    admin = role_session(target, entropy, "admin")
    try:
        problems += admin.call(layout_problems, ": read objects")
        factory = admin.call(
            lambda a: a.list_objects(
                object_id=FACTORY_AUTH_KEY_ID, object_type=OBJECT.AUTHENTICATION_KEY
            ),
            ": list",
        )
        if factory:
            problems.append(f"the factory auth key {FACTORY_AUTH_KEY_ID} is still present")
    finally:
        admin.close()
    for r in ROLES:
        s = role_session(target, entropy, r.role)
        try:
            s.call(lambda a: a.list_objects(object_id=0xFFFF), f": log in as {r.role}")
        except HsmError as e:
            problems.append(f"{r.role} {r.object_id}: cannot log in ({_reason(e)})")
        finally:
            s.close()
    return problems


def run_setup(
    checks: Sequence[DeviceCheck], entropy: bytes, *, force_audit: bool, echo: Echo
) -> None:
    """Steps 2 and 3 on every device; raises naming the devices done when one fails."""
    done: list[str] = []
    for c in checks:
        try:
            provision(c, entropy, force_audit=force_audit)
        except HsmError as e:
            state = f"; already provisioned: {', '.join(done)}" if done else ""
            raise HsmAdminError(
                f"setup failed on {e}{state}; factory-reset that device and re-run setup"
                " with the same recovery phrase (kms hsm setup --recover)"
            ) from None
        done.append(c.target.name)
    failed = []
    for c in checks:
        problems = verify(c.target, entropy)
        if problems:
            failed.append(f"{c.target.name}: " + "; ".join(problems))
        else:
            echo(
                f"{c.target.name} (serial {c.serial}): provisioned and verified ({len(PLAN)} objects)"
            )
    if failed:
        raise HsmAdminError("verification failed: " + " | ".join(failed))
