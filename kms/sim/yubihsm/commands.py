"""The in-session commands of the simulated YubiHSM2: one function per command.

Owns: each command's payload parsing, checks and effect, in the order of
YUBIHSM.md §5.3 (length -> object lookup incl. domain visibility -> object
capability -> delegation and domain subset for new objects -> duplicate
(id, type) -> storage -> run), and the HANDLERS table. The session capability
from `defs.SESSION_CAPABILITY`, force-audit and the audit entry are applied by
the device around every call. These functions are part of the device: they
use its object store and helpers directly. Never touches sessions' crypto or
I/O. A refusal is `raise Refuse(code)`; the device turns it into an inner error.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from kms.sim.yubihsm.defs import (
    AUDITABLE_COMMANDS,
    DELETE_CAPABILITY,
    MAX_ID,
    STORAGE_PAGE_SIZE,
    STORAGE_PAGES,
    STORAGE_RECORDS,
    WRAP_KEY_LENGTHS,
    Alg,
    Audit,
    Cap,
    Cmd,
    Err,
    ObjType,
    Option,
    Origin,
)
from kms.sim.yubihsm.objects import (
    WRAP_FORMAT_LEGACY,
    WRAP_FORMAT_WITH_SEED,
    WRAP_NONCE_LEN,
    ObjectFormatError,
    SimObject,
    WrapAuthError,
    unwrap_object,
    wrap_object,
)

if TYPE_CHECKING:
    from kms.sim.yubihsm.device import SimDevice, _Session

HEADER_FORMAT = "!H40sHQB"  # id, label, domains, capabilities, algorithm (53 bytes)
HEADER_LEN = struct.calcsize(HEADER_FORMAT)
LIST_FILTER_SIZES = {0x01: 2, 0x02: 1, 0x03: 2, 0x04: 8, 0x05: 1, 0x06: 40}


class Refuse(Exception):
    """End the current command with a device error code."""

    def __init__(self, code: Err) -> None:
        super().__init__(code.name)
        self.code = code


@dataclass(slots=True)
class Ctx:
    """Per-command bookkeeping: who runs it, and what the audit log records."""

    session: _Session
    command: int
    length: int
    target: int = 0xFFFF
    second: int = 0xFFFF
    after: Callable[[], None] | None = None


def error_frame(code: int) -> bytes:
    return bytes((Cmd.ERROR, 0, 1, code))


def ok_frame(cmd: int, data: bytes) -> bytes:
    return struct.pack("!BH", cmd | 0x80, len(data)) + data


def cmd_echo(dev: SimDevice, ctx: Ctx, data: bytes) -> bytes:
    return data


def cmd_device_info(dev: SimDevice, ctx: Ctx, data: bytes) -> bytes:
    return dev._device_info(data)


def cmd_close_session(dev: SimDevice, ctx: Ctx, data: bytes) -> bytes:
    if data:
        raise Refuse(Err.WRONG_LENGTH)
    sid = ctx.session.sid

    def free_slot() -> None:
        dev._sessions.pop(sid, None)

    ctx.after = free_slot
    return b""


def cmd_reset(dev: SimDevice, ctx: Ctx, data: bytes) -> bytes:
    if data:
        raise Refuse(Err.WRONG_LENGTH)

    def reset() -> None:
        dev.factory_reset()
        if dev.on_reset is not None:
            dev.on_reset()

    ctx.after = reset
    return b""


def cmd_pseudo_random(dev: SimDevice, ctx: Ctx, data: bytes) -> bytes:
    if len(data) != 2:
        raise Refuse(Err.WRONG_LENGTH)
    (n,) = struct.unpack("!H", data)
    if n > dev.max_inner_data:
        raise Refuse(Err.WRONG_LENGTH)
    return dev.random_bytes(n)


def cmd_list(dev: SimDevice, ctx: Ctx, data: bytes) -> bytes:
    filters: dict[int, bytes] = {}
    i = 0
    while i < len(data):
        tag = data[i]
        size = LIST_FILTER_SIZES.get(tag)
        if size is None:
            raise Refuse(Err.INVALID_DATA)
        if i + 1 + size > len(data):
            raise Refuse(Err.WRONG_LENGTH)
        filters[tag] = data[i + 1 : i + 1 + size]
        i += 1 + size

    def match(o: SimObject) -> bool:
        tests: dict[int, Callable[[bytes], bool]] = {
            0x01: lambda v: o.id == struct.unpack("!H", v)[0],
            0x02: lambda v: o.type == v[0],
            0x03: lambda v: bool(o.domains & struct.unpack("!H", v)[0]),
            0x04: lambda v: bool(o.capabilities & struct.unpack("!Q", v)[0]),
            0x05: lambda v: o.algorithm == v[0],
            0x06: lambda v: o.label == v,
        }
        return all(tests[tag](value) for tag, value in filters.items())

    s = ctx.session
    found = [o for _, o in sorted(dev._objects.items()) if o.domains & s.domains and match(o)]
    return b"".join(struct.pack("!HBB", o.id, o.type, o.sequence) for o in found)


def cmd_object_info(dev: SimDevice, ctx: Ctx, data: bytes) -> bytes:
    if len(data) != 3:
        raise Refuse(Err.WRONG_LENGTH)
    obj_id, obj_type = struct.unpack("!HB", data)
    ctx.target = obj_id
    return dev._visible(ctx.session, obj_id, obj_type).info_bytes()


def parse_header(data: bytes) -> tuple[int, bytes, int, int, int]:
    if len(data) < HEADER_LEN:
        raise Refuse(Err.WRONG_LENGTH)
    obj_id, label, domains, caps, alg = struct.unpack(HEADER_FORMAT, data[:HEADER_LEN])
    return obj_id, label, domains, caps, alg


def cmd_generate_asym(dev: SimDevice, ctx: Ctx, data: bytes) -> bytes:
    if len(data) != HEADER_LEN:
        raise Refuse(Err.WRONG_LENGTH)
    obj_id, label, domains, caps, alg = parse_header(data)
    if alg != Alg.EC_ED25519:
        raise Refuse(Err.INVALID_DATA)
    dev._check_new(ctx.session, domains, caps)
    obj_id = dev._new_id(obj_id, ObjType.ASYMMETRIC_KEY)
    seed = dev.random_bytes(32)
    obj = SimObject(
        obj_id, ObjType.ASYMMETRIC_KEY, alg, label, domains, caps, 0, Origin.GENERATED, 0, seed
    )
    ctx.target = dev._store_new(obj).id
    return struct.pack("!H", obj_id)


def cmd_put_asym(dev: SimDevice, ctx: Ctx, data: bytes) -> bytes:
    obj_id, label, domains, caps, alg = parse_header(data)
    material = data[HEADER_LEN:]
    if alg != Alg.EC_ED25519:
        raise Refuse(Err.INVALID_DATA)
    if len(material) != 32:
        raise Refuse(Err.WRONG_LENGTH)
    dev._check_new(ctx.session, domains, caps)
    obj_id = dev._new_id(obj_id, ObjType.ASYMMETRIC_KEY)
    obj = SimObject(
        obj_id,
        ObjType.ASYMMETRIC_KEY,
        alg,
        label,
        domains,
        caps,
        0,
        Origin.IMPORTED,
        0,
        material,
    )
    ctx.target = dev._store_new(obj).id
    return struct.pack("!H", obj_id)


def cmd_put_opaque(dev: SimDevice, ctx: Ctx, data: bytes) -> bytes:
    obj_id, label, domains, caps, alg = parse_header(data)
    content = data[HEADER_LEN:]
    if alg not in (Alg.OPAQUE_DATA, Alg.OPAQUE_X509_CERTIFICATE) or not content:
        raise Refuse(Err.INVALID_DATA)
    dev._check_new(ctx.session, domains, caps)
    obj_id = dev._new_id(obj_id, ObjType.OPAQUE)
    obj = SimObject(
        obj_id, ObjType.OPAQUE, alg, label, domains, caps, 0, Origin.IMPORTED, 0, content
    )
    ctx.target = dev._store_new(obj).id
    return struct.pack("!H", obj_id)


def cmd_get_opaque(dev: SimDevice, ctx: Ctx, data: bytes) -> bytes:
    if len(data) != 2:
        raise Refuse(Err.WRONG_LENGTH)
    (obj_id,) = struct.unpack("!H", data)
    ctx.target = obj_id
    return dev._visible(ctx.session, obj_id, ObjType.OPAQUE).secret


def cmd_public_key(dev: SimDevice, ctx: Ctx, data: bytes) -> bytes:
    if len(data) == 2:
        (obj_id,), obj_type = struct.unpack("!H", data), int(ObjType.ASYMMETRIC_KEY)
    elif len(data) == 3:
        obj_id, obj_type = struct.unpack("!HB", data)
    else:
        raise Refuse(Err.WRONG_LENGTH)
    ctx.target = obj_id
    obj = dev._visible(ctx.session, obj_id, obj_type)
    if not obj.is_ed25519:
        raise Refuse(Err.INVALID_DATA)
    return bytes([obj.algorithm]) + obj.public_key()


def cmd_sign_eddsa(dev: SimDevice, ctx: Ctx, data: bytes) -> bytes:
    if len(data) < 2:
        raise Refuse(Err.WRONG_LENGTH)
    (obj_id,) = struct.unpack("!H", data[:2])
    ctx.target = obj_id
    obj = dev._visible(ctx.session, obj_id, ObjType.ASYMMETRIC_KEY)
    if not obj.capabilities & Cap.SIGN_EDDSA:
        raise Refuse(Err.INSUFFICIENT_PERMISSIONS)
    if not obj.is_ed25519:
        raise Refuse(Err.INVALID_DATA)
    message = data[2:]
    dev.signed.append((obj_id, hashlib.sha256(message).digest()))
    signature = obj.sign_eddsa(message)
    if dev.faults.take_corrupt_signature():
        signature = bytes([signature[0] ^ 0x01]) + signature[1:]
    return signature


def cmd_delete(dev: SimDevice, ctx: Ctx, data: bytes) -> bytes:
    if len(data) != 3:
        raise Refuse(Err.WRONG_LENGTH)
    obj_id, obj_type = struct.unpack("!HB", data)
    ctx.target = obj_id
    need = DELETE_CAPABILITY.get(obj_type)
    if need is None:
        raise Refuse(Err.INVALID_DATA)
    if not ctx.session.capabilities & need:
        raise Refuse(Err.INSUFFICIENT_PERMISSIONS)
    dev._remove(dev._visible(ctx.session, obj_id, obj_type))
    return b""


def cmd_put_auth(dev: SimDevice, ctx: Ctx, data: bytes) -> bytes:
    obj_id, label, domains, caps, alg = parse_header(data)
    rest = data[HEADER_LEN:]
    if alg != Alg.AES128_YUBICO_AUTHENTICATION:
        raise Refuse(Err.INVALID_DATA)
    if len(rest) != 8 + 32:
        raise Refuse(Err.WRONG_LENGTH)
    (delegated,) = struct.unpack("!Q", rest[:8])
    dev._check_new(ctx.session, domains, caps, delegated)
    obj_id = dev._new_id(obj_id, ObjType.AUTHENTICATION_KEY)
    obj = SimObject(
        obj_id,
        ObjType.AUTHENTICATION_KEY,
        alg,
        label,
        domains,
        caps,
        delegated,
        Origin.IMPORTED,
        0,
        rest[8:],
    )
    ctx.target = dev._store_new(obj).id
    return struct.pack("!H", obj_id)


def cmd_change_auth(dev: SimDevice, ctx: Ctx, data: bytes) -> bytes:
    if len(data) != 3 + 32:
        raise Refuse(Err.WRONG_LENGTH)
    obj_id, alg = struct.unpack("!HB", data[:3])
    ctx.target = obj_id
    if obj_id != ctx.session.auth_key_id:
        raise Refuse(Err.INVALID_ID)
    obj = dev._visible(ctx.session, obj_id, ObjType.AUTHENTICATION_KEY)
    if alg != obj.algorithm:
        raise Refuse(Err.INVALID_DATA)
    dev._objects[obj.handle] = replace(obj, secret=data[3:])
    dev._persist()
    return struct.pack("!H", obj_id)


def _wrap_key_common(dev: SimDevice, ctx: Ctx, data: bytes, generate: bool) -> bytes:
    obj_id, label, domains, caps, alg = parse_header(data)
    rest = data[HEADER_LEN:]
    key_len = WRAP_KEY_LENGTHS.get(alg)
    if key_len is None:
        raise Refuse(Err.INVALID_DATA)
    if len(rest) != 8 + (0 if generate else key_len):
        raise Refuse(Err.WRONG_LENGTH if generate else Err.INVALID_DATA)
    (delegated,) = struct.unpack("!Q", rest[:8])
    dev._check_new(ctx.session, domains, caps, delegated)
    obj_id = dev._new_id(obj_id, ObjType.WRAP_KEY)
    secret = dev.random_bytes(key_len) if generate else rest[8:]
    origin = Origin.GENERATED if generate else Origin.IMPORTED
    obj = SimObject(
        obj_id, ObjType.WRAP_KEY, alg, label, domains, caps, delegated, origin, 0, secret
    )
    ctx.target = dev._store_new(obj).id
    return struct.pack("!H", obj_id)


def cmd_put_wrap(dev: SimDevice, ctx: Ctx, data: bytes) -> bytes:
    return _wrap_key_common(dev, ctx, data, generate=False)


def cmd_generate_wrap(dev: SimDevice, ctx: Ctx, data: bytes) -> bytes:
    return _wrap_key_common(dev, ctx, data, generate=True)


def cmd_export(dev: SimDevice, ctx: Ctx, data: bytes) -> bytes:
    if len(data) == 5:
        wrap_id, obj_type, obj_id = struct.unpack("!HBH", data)
        fmt = WRAP_FORMAT_LEGACY
    elif len(data) == 6:
        wrap_id, obj_type, obj_id, fmt = struct.unpack("!HBHB", data)
    else:
        raise Refuse(Err.WRONG_LENGTH)
    ctx.target, ctx.second = wrap_id, obj_id
    if fmt not in (WRAP_FORMAT_LEGACY, WRAP_FORMAT_WITH_SEED):
        raise Refuse(Err.INVALID_DATA)
    s = ctx.session
    wrap_key = dev._visible(s, wrap_id, ObjType.WRAP_KEY)
    obj = dev._visible(s, obj_id, obj_type)
    if not wrap_key.capabilities & Cap.EXPORT_WRAPPED:
        raise Refuse(Err.INSUFFICIENT_PERMISSIONS)
    if not obj.capabilities & Cap.EXPORTABLE_UNDER_WRAP:
        raise Refuse(Err.INSUFFICIENT_PERMISSIONS)
    if obj.capabilities & ~wrap_key.delegated:
        raise Refuse(Err.INSUFFICIENT_PERMISSIONS)
    try:
        return wrap_object(wrap_key, obj, fmt, dev.random_bytes(WRAP_NONCE_LEN))
    except ObjectFormatError as e:
        raise Refuse(Err.INVALID_DATA) from e


def cmd_import(dev: SimDevice, ctx: Ctx, data: bytes) -> bytes:
    if len(data) < 2:
        raise Refuse(Err.WRONG_LENGTH)
    (wrap_id,) = struct.unpack("!H", data[:2])
    ctx.target = wrap_id
    wrap_key = dev._visible(ctx.session, wrap_id, ObjType.WRAP_KEY)
    if not wrap_key.capabilities & Cap.IMPORT_WRAPPED:
        raise Refuse(Err.INSUFFICIENT_PERMISSIONS)
    try:
        obj = unwrap_object(wrap_key, data[2:])
    except (WrapAuthError, ObjectFormatError) as e:
        raise Refuse(Err.INVALID_DATA) from e
    ctx.second = obj.id
    if obj.capabilities & ~wrap_key.delegated:
        raise Refuse(Err.INSUFFICIENT_PERMISSIONS)
    if obj.domains & ~ctx.session.domains:
        # as for put/generate [ASSUMED]: a session cannot place objects outside its domains
        raise Refuse(Err.INSUFFICIENT_PERMISSIONS)
    if obj.id == 0 or obj.id > MAX_ID:
        raise Refuse(Err.INVALID_ID)
    if obj.handle in dev._objects:
        raise Refuse(Err.OBJECT_EXISTS)
    obj = replace(obj, origin=(obj.origin & 0x0F) | Origin.IMPORTED_WRAPPED)
    obj = dev._store_new(obj)
    return struct.pack("!BH", obj.type, obj.id)


def cmd_storage_info(dev: SimDevice, ctx: Ctx, data: bytes) -> bytes:
    """Records and pages in use; no capability needed (as GET_OBJECT_INFO)."""
    if data:
        raise Refuse(Err.WRONG_LENGTH)
    objects = list(dev._objects.values())
    pages = sum(-(-o.size // STORAGE_PAGE_SIZE) for o in objects)
    return struct.pack(
        "!HHHHH",
        STORAGE_RECORDS,
        STORAGE_RECORDS - len(objects),
        STORAGE_PAGES,
        max(0, STORAGE_PAGES - pages),
        STORAGE_PAGE_SIZE,
    )


def cmd_get_log(dev: SimDevice, ctx: Ctx, data: bytes) -> bytes:
    if data:
        raise Refuse(Err.WRONG_LENGTH)
    return dev._log.response()


def cmd_set_log_index(dev: SimDevice, ctx: Ctx, data: bytes) -> bytes:
    if len(data) != 2:
        raise Refuse(Err.WRONG_LENGTH)
    (index,) = struct.unpack("!H", data)
    if not dev._log.set_index(index):
        raise Refuse(Err.INVALID_DATA)
    dev._persist()
    return b""


def cmd_set_option(dev: SimDevice, ctx: Ctx, data: bytes) -> bytes:
    if len(data) < 3:
        raise Refuse(Err.WRONG_LENGTH)
    option, length = struct.unpack("!BH", data[:3])
    value = data[3:]
    if len(value) != length:
        raise Refuse(Err.WRONG_LENGTH)
    if option == Option.FORCE_AUDIT and len(value) == 1 and value[0] in (0, 1, 2):
        if dev._force_audit == Audit.FIXED:
            raise Refuse(Err.INVALID_DATA)
        dev._force_audit = Audit(value[0])
    elif option == Option.COMMAND_AUDIT and len(value) % 2 == 0 and value:
        pairs = [(value[i], value[i + 1]) for i in range(0, len(value), 2)]
        if any(c not in AUDITABLE_COMMANDS or v not in (0, 1, 2) for c, v in pairs):
            raise Refuse(Err.INVALID_DATA)
        for c, v in pairs:
            if dev._command_audit.get(c) != Audit.FIXED:
                dev._command_audit[c] = Audit(v)
    else:
        raise Refuse(Err.INVALID_DATA)
    dev._persist()
    return b""


def cmd_get_option(dev: SimDevice, ctx: Ctx, data: bytes) -> bytes:
    if len(data) != 1:
        raise Refuse(Err.WRONG_LENGTH)
    if data[0] == Option.FORCE_AUDIT:
        return bytes([dev._force_audit])
    if data[0] == Option.COMMAND_AUDIT:
        return b"".join(
            bytes([c, dev._command_audit.get(c, Audit.OFF)]) for c in AUDITABLE_COMMANDS
        )
    raise Refuse(Err.INVALID_DATA)


HANDLERS: dict[int, Callable[[SimDevice, Ctx, bytes], bytes]] = {
    Cmd.ECHO: cmd_echo,
    Cmd.DEVICE_INFO: cmd_device_info,
    Cmd.CLOSE_SESSION: cmd_close_session,
    Cmd.RESET_DEVICE: cmd_reset,
    Cmd.GET_PSEUDO_RANDOM: cmd_pseudo_random,
    Cmd.LIST_OBJECTS: cmd_list,
    Cmd.GET_OBJECT_INFO: cmd_object_info,
    Cmd.GENERATE_ASYMMETRIC_KEY: cmd_generate_asym,
    Cmd.PUT_ASYMMETRIC_KEY: cmd_put_asym,
    Cmd.GET_PUBLIC_KEY: cmd_public_key,
    Cmd.PUT_OPAQUE: cmd_put_opaque,
    Cmd.GET_OPAQUE: cmd_get_opaque,
    Cmd.SIGN_EDDSA: cmd_sign_eddsa,
    Cmd.DELETE_OBJECT: cmd_delete,
    Cmd.PUT_AUTHENTICATION_KEY: cmd_put_auth,
    Cmd.CHANGE_AUTHENTICATION_KEY: cmd_change_auth,
    Cmd.PUT_WRAP_KEY: cmd_put_wrap,
    Cmd.GENERATE_WRAP_KEY: cmd_generate_wrap,
    Cmd.EXPORT_WRAPPED: cmd_export,
    Cmd.IMPORT_WRAPPED: cmd_import,
    Cmd.GET_STORAGE_INFO: cmd_storage_info,
    Cmd.GET_LOG_ENTRIES: cmd_get_log,
    Cmd.SET_LOG_INDEX: cmd_set_log_index,
    Cmd.SET_OPTION: cmd_set_option,
    Cmd.GET_OPTION: cmd_get_option,
}
