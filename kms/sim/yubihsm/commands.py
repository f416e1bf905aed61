"""The in-session commands of the simulated YubiHSM2: the dispatch table and the device commands.

Owns: the HANDLERS table (command code -> handler), and the device-level commands
ECHO, DEVICE_INFO, CLOSE_SESSION, RESET_DEVICE, GET_PSEUDO_RANDOM and the audit
log / option commands (GET_LOG_ENTRIES, SET_LOG_INDEX, SET/GET_OPTION). The other
families live in `cmd_objects` (objects, signing, storage) and `cmd_keys`
(authentication and wrap keys). Every handler checks in the order of
YUBIHSM.md §5.3 (length -> object lookup incl. domain visibility -> object
capability -> delegation and domain subset for new objects -> duplicate
(id, type) -> storage -> run); the session capability from
`defs.SESSION_CAPABILITY`, force-audit and the audit entry are applied by the
device around every call. Handlers see the device only through
`cmdbase.DeviceApi` and never import it. Never touches sessions' crypto or I/O.
A refusal is `raise Refuse(code)`; the device turns it into an inner error.
"""

from __future__ import annotations

import struct

from kms.sim.yubihsm import cmd_keys as keys
from kms.sim.yubihsm import cmd_objects as objects
from kms.sim.yubihsm.cmdbase import Ctx, DeviceApi, Handler
from kms.sim.yubihsm.defs import Cmd, Err, Option
from kms.sim.yubihsm.frames import Refuse


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
    Cmd.LIST_OBJECTS: objects.cmd_list,
    Cmd.GET_OBJECT_INFO: objects.cmd_object_info,
    Cmd.GENERATE_ASYMMETRIC_KEY: objects.cmd_generate_asym,
    Cmd.PUT_ASYMMETRIC_KEY: objects.cmd_put_asym,
    Cmd.GET_PUBLIC_KEY: objects.cmd_public_key,
    Cmd.PUT_OPAQUE: objects.cmd_put_opaque,
    Cmd.GET_OPAQUE: objects.cmd_get_opaque,
    Cmd.SIGN_EDDSA: objects.cmd_sign_eddsa,
    Cmd.DELETE_OBJECT: objects.cmd_delete,
    Cmd.PUT_AUTHENTICATION_KEY: keys.cmd_put_auth,
    Cmd.CHANGE_AUTHENTICATION_KEY: keys.cmd_change_auth,
    Cmd.PUT_WRAP_KEY: keys.cmd_put_wrap,
    Cmd.GENERATE_WRAP_KEY: keys.cmd_generate_wrap,
    Cmd.EXPORT_WRAPPED: keys.cmd_export,
    Cmd.IMPORT_WRAPPED: keys.cmd_import,
    Cmd.GET_STORAGE_INFO: objects.cmd_storage_info,
    Cmd.GET_LOG_ENTRIES: cmd_get_log,
    Cmd.SET_LOG_INDEX: cmd_set_log_index,
    Cmd.SET_OPTION: cmd_set_option,
    Cmd.GET_OPTION: cmd_get_option,
}
