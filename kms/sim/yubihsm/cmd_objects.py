"""The object commands of the simulated YubiHSM2, and the helpers every command family shares.

Owns: LIST_OBJECTS, GET_OBJECT_INFO, GENERATE/PUT_ASYMMETRIC_KEY, PUT/GET_OPAQUE,
GET_PUBLIC_KEY, SIGN_EDDSA, DELETE_OBJECT and GET_STORAGE_INFO (payload parsing,
checks and effect in the order of YUBIHSM.md §5.3), plus the shared steps of
creating an object (`parse_header`, `check_new`, `create`) and of naming a key by
id (`named_key`). Sees the device only through `cmdbase.DeviceApi`; never
touches sessions' crypto or I/O. A refusal is `raise Refuse(code)`.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from typing import NamedTuple

from kms.sim.yubihsm.cmdbase import Ctx, DeviceApi
from kms.sim.yubihsm.defs import (
    DELETE_CAPABILITY,
    STORAGE_PAGE_SIZE,
    STORAGE_PAGES,
    STORAGE_RECORDS,
    Alg,
    Cap,
    Err,
    ObjType,
    Origin,
)
from kms.sim.yubihsm.frames import Refuse
from kms.sim.yubihsm.objects import SimObject, new_object
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
