"""The in-session commands of the simulated YubiHSM2: one function per command.

Owns: each command's payload parsing, checks and effect, in the order of
YUBIHSM.md §5.3 (length -> object lookup incl. domain visibility -> object
capability -> delegation and domain subset for new objects -> duplicate
(id, type) -> storage -> run), and the HANDLERS table. The session capability
from `defs.SESSION_CAPABILITY`, force-audit and the audit entry are applied by
the device around every call. They see the device only through
`cmdbase.DeviceApi` (its object store, audit policy and a few actions) and
never import it. Never touches sessions' crypto or I/O. A refusal is
`raise Refuse(code)`; the device turns it into an inner error.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from dataclasses import replace
from typing import NamedTuple

from kms.sim.yubihsm.cmdbase import Ctx, DeviceApi, Handler
from kms.sim.yubihsm.defs import (
    DELETE_CAPABILITY,
    MAX_ID,
    STORAGE_PAGE_SIZE,
    STORAGE_PAGES,
    STORAGE_RECORDS,
    WRAP_KEY_LENGTHS,
    Alg,
    Cap,
    Cmd,
    Err,
    ObjType,
    Option,
    Origin,
)
from kms.sim.yubihsm.frames import Refuse
from kms.sim.yubihsm.objects import (
    WRAP_FORMAT_LEGACY,
    WRAP_FORMAT_WITH_SEED,
    WRAP_NONCE_LEN,
    ObjectFormatError,
    SimObject,
    WrapAuthError,
    new_object,
    unwrap_object,
    wrap_object,
)
from kms.sim.yubihsm.sessions import Session

HEADER_FORMAT = "!H40sHQB"  # id, label, domains, capabilities, algorithm (53 bytes)
HEADER_LEN = struct.calcsize(HEADER_FORMAT)
LIST_FILTER_SIZES = {0x01: 2, 0x02: 1, 0x03: 2, 0x04: 8, 0x05: 1, 0x06: 40}


class Header(NamedTuple):
    """The common head of every PUT_*/GENERATE_* payload."""

    id: int
    label: bytes
    domains: int
    capabilities: int
    algorithm: int


def parse_header(data: bytes) -> Header:
    if len(data) < HEADER_LEN:
        raise Refuse(Err.WRONG_LENGTH)
    return Header(*struct.unpack(HEADER_FORMAT, data[:HEADER_LEN]))


def check_new(s: Session, domains: int, caps: int, delegated: int = 0) -> None:
    """A session may only create objects inside its domains with capabilities it may delegate."""
    if domains == 0:
        raise Refuse(Err.INVALID_DATA)
    if (caps | delegated) & ~s.delegated or domains & ~s.domains:
        raise Refuse(Err.INSUFFICIENT_PERMISSIONS)


def named_key(dev: DeviceApi, ctx: Ctx, data: bytes, obj_type: int, cap: int) -> SimObject:
    """The key an `id(2) || ...` payload names (the audit target), holding capability `cap`."""
    if len(data) < 2:
        raise Refuse(Err.WRONG_LENGTH)
    (obj_id,) = struct.unpack("!H", data[:2])
    ctx.target = obj_id
    obj = dev.store.visible(ctx.session.domains, obj_id, obj_type)
    if not obj.capabilities & cap:
        raise Refuse(Err.INSUFFICIENT_PERMISSIONS)
    return obj


def create(
    dev: DeviceApi,
    ctx: Ctx,
    head: Header,
    obj_type: int,
    secret: Callable[[], bytes],
    *,
    delegated: int = 0,
    origin: int = Origin.IMPORTED,
) -> bytes:
    """The shared tail of every PUT_*/GENERATE_* command: permission checks, id, store.
    `secret` is called after the id is chosen (a generated key draws its randomness last)."""
    check_new(ctx.session, head.domains, head.capabilities, delegated)
    obj_id = dev.store.new_id(head.id, obj_type)
    obj = new_object(
        obj_id,
        obj_type,
        head.algorithm,
        head.label,
        head.domains,
        head.capabilities,
        secret(),
        delegated=delegated,
        origin=origin,
    )
    ctx.target = dev.store.add(obj).id
    return struct.pack("!H", obj_id)


def cmd_echo(dev: DeviceApi, ctx: Ctx, data: bytes) -> bytes:
    return data


def cmd_device_info(dev: DeviceApi, ctx: Ctx, data: bytes) -> bytes:
    return dev.device_info(data)


def cmd_close_session(dev: DeviceApi, ctx: Ctx, data: bytes) -> bytes:
    if data:
        raise Refuse(Err.WRONG_LENGTH)
    sid = ctx.session.sid
    ctx.after = lambda: dev.end_session(sid)
    return b""


def cmd_reset(dev: DeviceApi, ctx: Ctx, data: bytes) -> bytes:
    if data:
        raise Refuse(Err.WRONG_LENGTH)
    ctx.after = dev.reset_device
    return b""


def cmd_pseudo_random(dev: DeviceApi, ctx: Ctx, data: bytes) -> bytes:
    if len(data) != 2:
        raise Refuse(Err.WRONG_LENGTH)
    (n,) = struct.unpack("!H", data)
    if n > dev.max_inner_data:
        raise Refuse(Err.WRONG_LENGTH)
    return dev.random_bytes(n)


def cmd_list(dev: DeviceApi, ctx: Ctx, data: bytes) -> bytes:
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
    found = [o for o in dev.store.all() if o.domains & s.domains and match(o)]
    return b"".join(struct.pack("!HBB", o.id, o.type, o.sequence) for o in found)


def cmd_object_info(dev: DeviceApi, ctx: Ctx, data: bytes) -> bytes:
    if len(data) != 3:
        raise Refuse(Err.WRONG_LENGTH)
    obj_id, obj_type = struct.unpack("!HB", data)
    ctx.target = obj_id
    return dev.store.visible(ctx.session.domains, obj_id, obj_type).info_bytes()


def cmd_generate_asym(dev: DeviceApi, ctx: Ctx, data: bytes) -> bytes:
    if len(data) != HEADER_LEN:
        raise Refuse(Err.WRONG_LENGTH)
    head = parse_header(data)
    if head.algorithm != Alg.EC_ED25519:
        raise Refuse(Err.INVALID_DATA)
    return create(
        dev,
        ctx,
        head,
        ObjType.ASYMMETRIC_KEY,
        lambda: dev.random_bytes(32),
        origin=Origin.GENERATED,
    )


def cmd_put_asym(dev: DeviceApi, ctx: Ctx, data: bytes) -> bytes:
    head = parse_header(data)
    material = data[HEADER_LEN:]
    if head.algorithm != Alg.EC_ED25519:
        raise Refuse(Err.INVALID_DATA)
    if len(material) != 32:
        raise Refuse(Err.WRONG_LENGTH)
    return create(dev, ctx, head, ObjType.ASYMMETRIC_KEY, lambda: material)


def cmd_put_opaque(dev: DeviceApi, ctx: Ctx, data: bytes) -> bytes:
    head = parse_header(data)
    content = data[HEADER_LEN:]
    if head.algorithm not in (Alg.OPAQUE_DATA, Alg.OPAQUE_X509_CERTIFICATE) or not content:
        raise Refuse(Err.INVALID_DATA)
    return create(dev, ctx, head, ObjType.OPAQUE, lambda: content)


def cmd_get_opaque(dev: DeviceApi, ctx: Ctx, data: bytes) -> bytes:
    if len(data) != 2:
        raise Refuse(Err.WRONG_LENGTH)
    (obj_id,) = struct.unpack("!H", data)
    ctx.target = obj_id
    return dev.store.visible(ctx.session.domains, obj_id, ObjType.OPAQUE).secret


def cmd_public_key(dev: DeviceApi, ctx: Ctx, data: bytes) -> bytes:
    if len(data) == 2:
        (obj_id,), obj_type = struct.unpack("!H", data), int(ObjType.ASYMMETRIC_KEY)
    elif len(data) == 3:
        obj_id, obj_type = struct.unpack("!HB", data)
    else:
        raise Refuse(Err.WRONG_LENGTH)
    ctx.target = obj_id
    obj = dev.store.visible(ctx.session.domains, obj_id, obj_type)
    if not obj.is_ed25519:
        raise Refuse(Err.INVALID_DATA)
    return bytes([obj.algorithm]) + obj.public_key()


def cmd_sign_eddsa(dev: DeviceApi, ctx: Ctx, data: bytes) -> bytes:
    obj = named_key(dev, ctx, data, ObjType.ASYMMETRIC_KEY, Cap.SIGN_EDDSA)
    if not obj.is_ed25519:
        raise Refuse(Err.INVALID_DATA)
    message = data[2:]
    dev.signed.append((obj.id, hashlib.sha256(message).digest()))
    signature = obj.sign_eddsa(message)
    if dev.faults.take_corrupt_signature():
        signature = bytes([signature[0] ^ 0x01]) + signature[1:]
    return signature


def cmd_delete(dev: DeviceApi, ctx: Ctx, data: bytes) -> bytes:
    if len(data) != 3:
        raise Refuse(Err.WRONG_LENGTH)
    obj_id, obj_type = struct.unpack("!HB", data)
    ctx.target = obj_id
    need = DELETE_CAPABILITY.get(obj_type)
    if need is None:
        raise Refuse(Err.INVALID_DATA)
    if not ctx.session.capabilities & need:
        raise Refuse(Err.INSUFFICIENT_PERMISSIONS)
    dev.store.remove(dev.store.visible(ctx.session.domains, obj_id, obj_type))
    return b""


def cmd_put_auth(dev: DeviceApi, ctx: Ctx, data: bytes) -> bytes:
    head = parse_header(data)
    rest = data[HEADER_LEN:]
    if head.algorithm != Alg.AES128_YUBICO_AUTHENTICATION:
        raise Refuse(Err.INVALID_DATA)
    if len(rest) != 8 + 32:
        raise Refuse(Err.WRONG_LENGTH)
    (delegated,) = struct.unpack("!Q", rest[:8])
    return create(dev, ctx, head, ObjType.AUTHENTICATION_KEY, lambda: rest[8:], delegated=delegated)


def cmd_change_auth(dev: DeviceApi, ctx: Ctx, data: bytes) -> bytes:
    if len(data) != 3 + 32:
        raise Refuse(Err.WRONG_LENGTH)
    obj_id, alg = struct.unpack("!HB", data[:3])
    ctx.target = obj_id
    if obj_id != ctx.session.auth_key_id:
        raise Refuse(Err.INVALID_ID)
    obj = dev.store.visible(ctx.session.domains, obj_id, ObjType.AUTHENTICATION_KEY)
    if alg != obj.algorithm:
        raise Refuse(Err.INVALID_DATA)
    dev.store.update(replace(obj, secret=data[3:]))
    return struct.pack("!H", obj_id)


def _wrap_key_common(dev: DeviceApi, ctx: Ctx, data: bytes, generate: bool) -> bytes:
    head = parse_header(data)
    rest = data[HEADER_LEN:]
    key_len = WRAP_KEY_LENGTHS.get(head.algorithm)
    if key_len is None:
        raise Refuse(Err.INVALID_DATA)
    if len(rest) != 8 + (0 if generate else key_len):
        raise Refuse(Err.WRONG_LENGTH if generate else Err.INVALID_DATA)
    (delegated,) = struct.unpack("!Q", rest[:8])
    return create(
        dev,
        ctx,
        head,
        ObjType.WRAP_KEY,
        (lambda: dev.random_bytes(key_len)) if generate else (lambda: rest[8:]),
        delegated=delegated,
        origin=Origin.GENERATED if generate else Origin.IMPORTED,
    )


def cmd_put_wrap(dev: DeviceApi, ctx: Ctx, data: bytes) -> bytes:
    return _wrap_key_common(dev, ctx, data, generate=False)


def cmd_generate_wrap(dev: DeviceApi, ctx: Ctx, data: bytes) -> bytes:
    return _wrap_key_common(dev, ctx, data, generate=True)


def cmd_export(dev: DeviceApi, ctx: Ctx, data: bytes) -> bytes:
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
    domains = ctx.session.domains
    wrap_key = dev.store.visible(domains, wrap_id, ObjType.WRAP_KEY)
    obj = dev.store.visible(domains, obj_id, obj_type)
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


def cmd_import(dev: DeviceApi, ctx: Ctx, data: bytes) -> bytes:
    wrap_key = named_key(dev, ctx, data, ObjType.WRAP_KEY, Cap.IMPORT_WRAPPED)
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
    if obj.handle in dev.store:
        raise Refuse(Err.OBJECT_EXISTS)
    obj = replace(obj, origin=(obj.origin & 0x0F) | Origin.IMPORTED_WRAPPED)
    obj = dev.store.add(obj)
    return struct.pack("!BH", obj.type, obj.id)


def cmd_storage_info(dev: DeviceApi, ctx: Ctx, data: bytes) -> bytes:
    """Records and pages in use; no capability needed (as GET_OBJECT_INFO)."""
    if data:
        raise Refuse(Err.WRONG_LENGTH)
    objects = dev.store.all()
    pages = sum(-(-o.size // STORAGE_PAGE_SIZE) for o in objects)
    return struct.pack(
        "!HHHHH",
        STORAGE_RECORDS,
        STORAGE_RECORDS - len(objects),
        STORAGE_PAGES,
        max(0, STORAGE_PAGES - pages),
        STORAGE_PAGE_SIZE,
    )


def cmd_get_log(dev: DeviceApi, ctx: Ctx, data: bytes) -> bytes:
    if data:
        raise Refuse(Err.WRONG_LENGTH)
    return dev.audit.log.response()


def cmd_set_log_index(dev: DeviceApi, ctx: Ctx, data: bytes) -> bytes:
    if len(data) != 2:
        raise Refuse(Err.WRONG_LENGTH)
    (index,) = struct.unpack("!H", data)
    if not dev.audit.log.set_index(index):
        raise Refuse(Err.INVALID_DATA)
    dev.persist()
    return b""


def cmd_set_option(dev: DeviceApi, ctx: Ctx, data: bytes) -> bytes:
    if len(data) < 3:
        raise Refuse(Err.WRONG_LENGTH)
    option, length = struct.unpack("!BH", data[:3])
    value = data[3:]
    if len(value) != length:
        raise Refuse(Err.WRONG_LENGTH)
    if option == Option.FORCE_AUDIT and len(value) == 1 and value[0] in (0, 1, 2):
        dev.audit.set_force(value[0])
    elif option == Option.COMMAND_AUDIT and len(value) % 2 == 0 and value:
        dev.audit.set_per_command([(value[i], value[i + 1]) for i in range(0, len(value), 2)])
    else:
        raise Refuse(Err.INVALID_DATA)
    return b""


def cmd_get_option(dev: DeviceApi, ctx: Ctx, data: bytes) -> bytes:
    if len(data) != 1:
        raise Refuse(Err.WRONG_LENGTH)
    if data[0] == Option.FORCE_AUDIT:
        return bytes([dev.audit.force])
    if data[0] == Option.COMMAND_AUDIT:
        return dev.audit.per_command_bytes()
    raise Refuse(Err.INVALID_DATA)


HANDLERS: dict[int, Handler] = {
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
