"""The key-management commands of the simulated YubiHSM2: authentication and wrap keys.

Owns: PUT_AUTHENTICATION_KEY, CHANGE_AUTHENTICATION_KEY, PUT/GENERATE_WRAP_KEY,
EXPORT_WRAPPED and IMPORT_WRAPPED (payload parsing, checks and effect in the
order of YUBIHSM.md §5.3). The wrap blob itself is `objects.wrap_object` /
`unwrap_object`; creating objects goes through `cmd_objects.create`. Sees the
device only through `cmdbase.DeviceApi`; never touches sessions' crypto or I/O.
"""

from __future__ import annotations

import struct
from dataclasses import replace

from kms.errors import SimObjectFormatError, SimWrapAuthError
from kms.sim.yubihsm.cmd_objects import HEADER_LEN, create, named_key, parse_header
from kms.sim.yubihsm.cmdbase import Ctx, DeviceApi
from kms.sim.yubihsm.defs import MAX_ID, WRAP_KEY_LENGTHS, Alg, Cap, Err, ObjType, Origin
from kms.sim.yubihsm.frames import Refuse
from kms.sim.yubihsm.objects import (
    WRAP_FORMAT_LEGACY,
    WRAP_FORMAT_WITH_SEED,
    WRAP_NONCE_LEN,
    unwrap_object,
    wrap_object,
)


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
    except SimObjectFormatError as e:
        raise Refuse(Err.INVALID_DATA) from e


def cmd_import(dev: DeviceApi, ctx: Ctx, data: bytes) -> bytes:
    wrap_key = named_key(dev, ctx, data, ObjType.WRAP_KEY, Cap.IMPORT_WRAPPED)
    try:
        obj = unwrap_object(wrap_key, data[2:])
    except (SimWrapAuthError, SimObjectFormatError) as e:
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
