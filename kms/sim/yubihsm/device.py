"""The simulated YubiHSM2 device: raw message in, raw message out, no I/O.

Owns: the device state (objects, per-(id, type) sequence counters, the 16
session slots, the audit log, options), the SCP03 session life cycle
(CREATE/AUTHENTICATE/SESSION_MESSAGE, C-MAC chain, counter, R-MAC, 30 s idle
expiry on an injectable clock), the plaintext commands, dispatch of in-session
commands to `commands.HANDLERS` with the session-capability, force-audit and
audit-log steps around them, persistence and out-of-band provisioning.
One `threading.RLock` (`device.lock`) serialises everything, as the
single-threaded device and the connector's mutex do; the connector holds
it across the modelled latency. Never touches sockets or HTTP (connector.py),
and only writes the state file through `StateFile`.

Errors are answered, never raised: session-level failures (unknown or expired
session, bad C-MAC, bad padding) are plaintext `7F 00 01 code` and drop the
session; command-level failures travel inside a valid encrypted, R-MACed
envelope and the session stays usable (YUBIHSM.md §2.3, §3.5).

Order for one in-session command (YUBIHSM.md §5.3): frame length -> session
state -> C-MAC -> padding (these three are session-level) -> inner length ->
LOG_FULL under force-audit -> session capability -> the command's own checks
(commands.py) -> audit entry.
"""

from __future__ import annotations

import collections
import os
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from kms.sim.yubihsm import scp03
from kms.sim.yubihsm.audit_log import AuditLog
from kms.sim.yubihsm.commands import HANDLERS, Ctx, Refuse, error_frame, ok_frame
from kms.sim.yubihsm.defs import (
    ADVERTISED_ALGORITHMS,
    DEFAULT_AUTH_KEY_ID,
    DEFAULT_AUTH_LABEL,
    DEFAULT_PASSWORD,
    LOG_CAPACITY,
    MAX_ID,
    MAX_SESSIONS,
    SESSION_CAPABILITY,
    SESSION_TIMEOUT_S,
    STORAGE_RECORDS,
    WRAP_KEY_LENGTHS,
    Alg,
    Audit,
    Cap,
    Cmd,
    Err,
    ObjType,
    Origin,
)
from kms.sim.yubihsm.faults import Faults
from kms.sim.yubihsm.objects import (
    ObjectFormatError,
    SimObject,
    pack_label,
    validate_secret,
)
from kms.sim.yubihsm.store import StateFile

MAX_OBJECTS = STORAGE_RECORDS
DEFAULT_SERIAL = 1000001


def _random_serial() -> int:
    # os.urandom, not the injected random_bytes: tests that script the card challenges
    # must not see an extra draw at boot
    return DEFAULT_SERIAL + int.from_bytes(os.urandom(4), "big") % 8_000_000


@dataclass(slots=True)
class _Session:
    sid: int
    auth_key_id: int
    capabilities: int
    delegated: int
    domains: int
    keys: scp03.SessionKeys
    context: bytes
    authenticated: bool
    chain: bytes
    counter: int
    last_used: float
    messages: int = 0


@dataclass(frozen=True, slots=True)
class Exchange:
    """What one raw request did: the raw response, the command that ran (the inner
    command for a SESSION_MESSAGE, when it could be decrypted) and the error code
    (0 on success)."""

    response: bytes
    command: int
    error: int
    session_id: int | None = None


class SimDevice:
    """A software YubiHSM2. `handle(raw)` is the whole device protocol."""

    def __init__(
        self,
        *,
        serial: int | None = None,
        version: tuple[int, int, int] = (2, 4, 0),
        part_number: str = "SIM-YubiHSM2",
        clock: Callable[[], float] = time.monotonic,
        random_bytes: Callable[[int], bytes] = os.urandom,
        session_timeout: float = SESSION_TIMEOUT_S,
        max_session_messages: int | None = None,
        state_file: StateFile | None = None,
        faults: Faults | None = None,
    ) -> None:
        self.lock = threading.RLock()
        self.clock = clock
        self.random_bytes = random_bytes
        self.session_timeout = session_timeout
        self.max_session_messages = max_session_messages
        self.faults = faults if faults is not None else Faults()
        self._state_file = state_file
        self.on_reset: Callable[[], None] | None = None
        # An explicit serial (or one from the state file) is kept and persisted; without
        # one each boot picks its own, so copies of one state file are distinct devices
        # (as real replicas are: kms refuses two addresses reaching one serial).
        self._serial_fixed = serial is not None
        self.serial = serial if serial is not None else _random_serial()
        self.version = version
        self.part_number = part_number
        self._boot_time = clock()
        self._sessions: dict[int, _Session] = {}
        self._objects: dict[tuple[int, int], SimObject] = {}
        self._sequences: dict[tuple[int, int], int] = {}
        self._log = AuditLog()
        self._force_audit = Audit.OFF
        self._command_audit: dict[int, Audit] = {}
        # observability for tests
        self.counters: collections.Counter[tuple[int, int]] = collections.Counter()
        self.signed: list[tuple[int, bytes]] = []
        doc = state_file.load() if state_file is not None else None
        if doc is None:
            self._factory_state()
            self._persist()
        else:
            self._restore(doc, serial)
            self._log.boot(force=self._force_audit != Audit.OFF)
            self._persist()

    # ------------------------------------------------------------------ buffer sizes

    @property
    def buffer_size(self) -> int:
        return 3136 if self.version >= (2, 4, 0) else 2048

    @property
    def max_inner_data(self) -> int:
        """Largest payload inside a session response (2028 for fw < 2.4, 3116 for >= 2.4)."""
        return (self.buffer_size - 12) // 16 * 16 - 1 - 3

    # ------------------------------------------------------------------ entry point

    def handle(self, raw: bytes) -> Exchange:
        with self.lock:
            self._expire_sessions()
            if len(raw) < 3:
                return Exchange(error_frame(Err.WRONG_LENGTH), 0, Err.WRONG_LENGTH)
            cmd, length = struct.unpack("!BH", raw[:3])
            payload = raw[3:]
            if len(payload) != length or len(raw) > self.buffer_size:
                return self._finish(Exchange(error_frame(Err.WRONG_LENGTH), cmd, Err.WRONG_LENGTH))
            if cmd == Cmd.SESSION_MESSAGE:
                return self._finish(self._session_message(payload))
            injected = self.faults.take_error(cmd)
            if injected is not None:
                return self._finish(Exchange(error_frame(injected[0]), cmd, injected[0]))
            plain = {
                Cmd.ECHO: self._plain_echo,
                Cmd.DEVICE_INFO: self._device_info,
                Cmd.CREATE_SESSION: self._create_session,
                Cmd.AUTHENTICATE_SESSION: self._authenticate_session,
            }.get(cmd)
            if plain is None:
                return self._finish(
                    Exchange(error_frame(Err.INVALID_COMMAND), cmd, Err.INVALID_COMMAND)
                )
            try:
                resp = ok_frame(cmd, plain(payload))
                return self._finish(Exchange(resp, cmd, 0))
            except Refuse as r:
                return self._finish(Exchange(error_frame(r.code), cmd, r.code))

    def _finish(self, ex: Exchange) -> Exchange:
        self.counters[(ex.command, ex.error)] += 1
        return ex

    # ------------------------------------------------------------------ plaintext commands

    def _plain_echo(self, payload: bytes) -> bytes:
        return payload

    def _device_info(self, payload: bytes) -> bytes:
        if payload == b"":
            return struct.pack(
                "!BBBIBB", *self.version, self.serial, LOG_CAPACITY, self._log.used
            ) + bytes(ADVERTISED_ALGORITHMS)
        if payload == b"\x01" and self.version >= (2, 4, 0):
            return self.part_number.encode("utf-8")
        raise Refuse(Err.INVALID_DATA)

    def _create_session(self, payload: bytes) -> bytes:
        if len(payload) != 10:
            raise Refuse(Err.WRONG_LENGTH)
        (key_id,) = struct.unpack("!H", payload[:2])
        host_challenge = payload[2:]
        key = self._objects.get((key_id, ObjType.AUTHENTICATION_KEY))
        if key is None:
            raise Refuse(Err.OBJECT_NOT_FOUND)
        free = [sid for sid in range(MAX_SESSIONS) if sid not in self._sessions]
        if not free:
            raise Refuse(Err.SESSIONS_FULL)
        card_challenge = self.random_bytes(8)
        context = host_challenge + card_challenge
        keys = scp03.session_keys(key.secret[:16], key.secret[16:], context)
        sid = free[0]
        self._sessions[sid] = _Session(
            sid=sid,
            auth_key_id=key_id,
            capabilities=key.capabilities,
            delegated=key.delegated,
            domains=key.domains,
            keys=keys,
            context=context,
            authenticated=False,
            chain=b"\0" * 16,
            counter=0,
            last_used=self.clock(),
        )
        self._audit(Cmd.CREATE_SESSION, len(payload), 0xFFFF, key_id, 0xFFFF, Cmd.CREATE_SESSION)
        return bytes([sid]) + card_challenge + scp03.card_cryptogram(keys.s_mac, context)

    def _authenticate_session(self, payload: bytes) -> bytes:
        if len(payload) != 17:
            raise Refuse(Err.WRONG_LENGTH)
        sid, host_crypto, mac = payload[0], payload[1:9], payload[9:]
        s = self._sessions.get(sid)
        if s is None or s.authenticated:
            raise Refuse(Err.INVALID_SESSION)
        full = scp03.authenticate_mac(s.keys.s_mac, sid, host_crypto)
        good = scp03.mac_ok(full[:8], mac) and scp03.mac_ok(
            scp03.host_cryptogram(s.keys.s_mac, s.context), host_crypto
        )
        if not good:
            del self._sessions[sid]
            raise Refuse(Err.AUTHENTICATION_FAILED)
        s.authenticated = True
        s.chain = full
        s.counter = 1
        s.last_used = self.clock()
        self._audit(
            Cmd.AUTHENTICATE_SESSION, 17, 0xFFFF, s.auth_key_id, 0xFFFF, Cmd.AUTHENTICATE_SESSION
        )
        return b""

    # ------------------------------------------------------------------ sessions

    def _expire_sessions(self) -> None:
        now = self.clock()
        for sid in [
            sid for sid, s in self._sessions.items() if now - s.last_used > self.session_timeout
        ]:
            del self._sessions[sid]

    def _session_message(self, payload: bytes) -> Exchange:
        cmd = Cmd.SESSION_MESSAGE
        if len(payload) < 1:
            return Exchange(error_frame(Err.WRONG_LENGTH), cmd, Err.WRONG_LENGTH)
        sid = payload[0]
        s = self._sessions.get(sid)
        if s is None or not s.authenticated:
            return Exchange(error_frame(Err.INVALID_SESSION), cmd, Err.INVALID_SESSION, sid)
        ct, mac = payload[1:-8], payload[-8:]
        if len(payload) < 1 + 16 + 8 or len(ct) % 16:
            del self._sessions[sid]
            return Exchange(error_frame(Err.WRONG_LENGTH), cmd, Err.WRONG_LENGTH, sid)
        full = scp03.command_mac(s.keys.s_mac, s.chain, sid, ct)
        if not scp03.mac_ok(full[:8], mac):
            del self._sessions[sid]
            return Exchange(
                error_frame(Err.AUTHENTICATION_FAILED), cmd, Err.AUTHENTICATION_FAILED, sid
            )
        if self.max_session_messages is not None and s.messages >= self.max_session_messages:
            del self._sessions[sid]
            return Exchange(error_frame(Err.INVALID_SESSION), cmd, Err.INVALID_SESSION, sid)
        iv = scp03.iv_for(s.keys.s_enc, s.counter)
        try:
            inner = scp03.unpad(scp03.cbc_decrypt(s.keys.s_enc, iv, ct))
        except scp03.PaddingError:
            del self._sessions[sid]
            return Exchange(error_frame(Err.INVALID_DATA), cmd, Err.INVALID_DATA, sid)
        inner_cmd = inner[0] if inner else 0
        injected = self.faults.take_error(inner_cmd)
        if injected is not None and injected[1] == "outer":
            del self._sessions[sid]
            return Exchange(error_frame(injected[0]), inner_cmd, injected[0], sid)
        s.last_used = self.clock()
        s.messages += 1
        after: Callable[[], None] | None = None
        if injected is not None:
            inner_resp, error = error_frame(injected[0]), injected[0]
        else:
            inner_resp, error, after = self._run_inner(s, inner)
        resp = scp03.wrap_response(s.keys, s.counter, full, sid, inner_resp)
        if self.faults.take_corrupt_mac():
            resp = resp[:-1] + bytes([resp[-1] ^ 0x01])
        s.chain = full
        s.counter += 1
        if after is not None:
            after()
        return Exchange(resp, inner_cmd, error, sid)

    def _run_inner(self, s: _Session, inner: bytes) -> tuple[bytes, int, Callable[[], None] | None]:
        """Run one decrypted command: (inner response, error code, action after replying)."""
        if len(inner) < 3:
            return error_frame(Err.WRONG_LENGTH), Err.WRONG_LENGTH, None
        cmd, length = struct.unpack("!BH", inner[:3])
        data = inner[3:]
        if len(data) != length:
            return error_frame(Err.WRONG_LENGTH), Err.WRONG_LENGTH, None
        handler = HANDLERS.get(cmd)
        if handler is None:
            return error_frame(Err.INVALID_COMMAND), Err.INVALID_COMMAND, None
        need = SESSION_CAPABILITY.get(cmd, 0)
        ctx = Ctx(s, cmd, len(data))
        saved = (dict(self._objects), dict(self._sequences))
        try:
            if (
                self._force_audit != Audit.OFF
                and self._audited(cmd)
                and self._log.full
                and cmd not in (Cmd.GET_LOG_ENTRIES, Cmd.SET_LOG_INDEX)
            ):
                raise Refuse(Err.LOG_FULL)
            if need and not s.capabilities & need:
                raise Refuse(Err.INSUFFICIENT_PERMISSIONS)
            out = handler(self, ctx, data)
            resp = ok_frame(cmd, out)
            self._audit_ctx(ctx, cmd | 0x80)
            return resp, 0, ctx.after
        except Refuse as r:
            self._audit_ctx(ctx, Cmd.ERROR)
            return error_frame(r.code), r.code, None
        except OSError:
            # The state file could not be written: like a flash write failure, the command
            # fails with STORAGE_FAILED and its object changes are rolled back.
            self._objects, self._sequences = saved
            return error_frame(Err.STORAGE_FAILED), Err.STORAGE_FAILED, None

    # ------------------------------------------------------------------ object helpers

    def _visible(self, s: _Session, obj_id: int, obj_type: int) -> SimObject:
        obj = self._objects.get((obj_id, obj_type))
        if obj is None or not obj.domains & s.domains:
            raise Refuse(Err.OBJECT_NOT_FOUND)
        return obj

    def _new_id(self, requested: int, obj_type: int) -> int:
        if requested == 0:
            for _ in range(1000):
                candidate = int.from_bytes(self.random_bytes(2), "big")
                if 1 <= candidate <= MAX_ID and (candidate, obj_type) not in self._objects:
                    return candidate
            raise Refuse(Err.STORAGE_FAILED)
        if requested > MAX_ID:
            raise Refuse(Err.INVALID_ID)
        if (requested, obj_type) in self._objects:
            raise Refuse(Err.OBJECT_EXISTS)
        return requested

    def _check_new(self, s: _Session, domains: int, caps: int, delegated: int = 0) -> None:
        if domains == 0:
            raise Refuse(Err.INVALID_DATA)
        if (caps | delegated) & ~s.delegated or domains & ~s.domains:
            raise Refuse(Err.INSUFFICIENT_PERMISSIONS)

    def _store_new(self, obj: SimObject) -> SimObject:
        if len(self._objects) >= MAX_OBJECTS:
            raise Refuse(Err.STORAGE_FAILED)
        obj = replace(obj, sequence=self._sequences.get(obj.handle, 0))
        self._objects[obj.handle] = obj
        self._persist()
        return obj

    def _remove(self, obj: SimObject) -> None:
        del self._objects[obj.handle]
        self._sequences[obj.handle] = (self._sequences.get(obj.handle, 0) + 1) & 0xFF
        self._persist()

    # ------------------------------------------------------------------ audit log

    def _audited(self, cmd: int) -> bool:
        return self._command_audit.get(cmd, Audit.OFF) != Audit.OFF

    def _tick(self) -> int:
        return int((self.clock() - self._boot_time) * 1000) & 0xFFFFFFFF

    def _audit(
        self, cmd: int, length: int, session_key: int, target: int, second: int, result: int
    ) -> None:
        if not self._audited(cmd):
            return
        force = self._force_audit != Audit.OFF
        written = self._log.record(
            cmd, length, session_key, target, second, result, self._tick(), force=force
        )
        if not written and cmd in (Cmd.CREATE_SESSION, Cmd.AUTHENTICATE_SESSION):
            self._log.unlogged_auth += 1
        self._persist()

    def _audit_ctx(self, ctx: Ctx, result: int) -> None:
        self._audit(
            ctx.command, ctx.length, ctx.session.auth_key_id, ctx.target, ctx.second, result
        )

    # ------------------------------------------------------------------ state and provisioning

    def _factory_state(self) -> None:
        k_enc, k_mac = scp03.password_to_key(DEFAULT_PASSWORD)
        self._objects = {}
        self._sequences = {}
        self._sessions = {}
        self._force_audit = Audit.OFF
        self._command_audit = {}
        default = SimObject(
            DEFAULT_AUTH_KEY_ID,
            ObjType.AUTHENTICATION_KEY,
            Alg.AES128_YUBICO_AUTHENTICATION,
            pack_label(DEFAULT_AUTH_LABEL),
            0xFFFF,
            Cap.ALL,
            Cap.ALL,
            Origin.IMPORTED,
            0,
            k_enc + k_mac,
        )
        self._objects[default.handle] = default
        self._log.reset()

    def factory_reset(self) -> None:
        """What RESET_DEVICE does: erase everything, default auth key back, sessions gone."""
        with self.lock:
            self._factory_state()
            self._boot_time = self.clock()
            self._persist()

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "format": 1,
                "device": {
                    **({"serial": self.serial} if self._serial_fixed else {}),
                    "version": list(self.version),
                    "part_number": self.part_number,
                },
                "options": {
                    "force_audit": int(self._force_audit),
                    "command_audit": {str(c): int(v) for c, v in self._command_audit.items()},
                },
                "sequences": {f"{i}:{t}": n for (i, t), n in self._sequences.items()},
                "objects": [o.to_json() for _, o in sorted(self._objects.items())],
                "log": self._log.to_json(),
            }

    def _restore(self, doc: dict[str, Any], serial: int | None) -> None:
        try:
            dev = doc.get("device", {})
            if serial is None and "serial" in dev:  # an explicit serial wins over the file's
                self.serial = int(dev["serial"])
                self._serial_fixed = True
            self.version = tuple(int(v) for v in dev.get("version", self.version))  # type: ignore[assignment]
            self.part_number = str(dev.get("part_number", self.part_number))
            opts = doc.get("options", {})
            self._force_audit = Audit(int(opts.get("force_audit", 0)))
            self._command_audit = {
                int(c): Audit(int(v)) for c, v in opts.get("command_audit", {}).items()
            }
            self._sequences = {
                (int(k.split(":")[0]), int(k.split(":")[1])): int(v)
                for k, v in doc.get("sequences", {}).items()
            }
            self._objects = {}
            for entry in doc.get("objects", []):
                obj = SimObject.from_json(entry)
                self._objects[obj.handle] = obj
            self._log = AuditLog.from_json(doc["log"]) if "log" in doc else AuditLog()
            if "log" not in doc:
                self._log.reset()
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise ObjectFormatError(f"bad simulator state: {e}") from e

    def _persist(self) -> None:
        if self._state_file is not None:
            self._state_file.save(self.snapshot())

    def put_object(self, obj: SimObject) -> SimObject:
        """Out-of-band provisioning: store `obj` (no session, no permission checks).
        Raises ValueError when (id, type) exists or the secret is malformed."""
        validate_secret(obj.type, obj.algorithm, obj.secret)
        if not 1 <= obj.id <= MAX_ID:
            raise ValueError(f"object id {obj.id} out of range 1..0xFFFE")
        with self.lock:
            if obj.handle in self._objects:
                raise ValueError(f"object {obj.handle} already exists")
            obj = replace(obj, sequence=self._sequences.get(obj.handle, 0))
            self._objects[obj.handle] = obj
            self._persist()
            return obj

    def put_ed25519_seed(
        self,
        key_id: int,
        seed: bytes,
        *,
        label: str = "validator",
        capabilities: int = Cap.SIGN_EDDSA,
        domains: int = 1,
    ) -> SimObject:
        """Store an Ed25519 key from its 32-byte RFC 8032 seed (origin: imported)."""
        return self.put_object(
            SimObject(
                key_id,
                ObjType.ASYMMETRIC_KEY,
                Alg.EC_ED25519,
                pack_label(label),
                domains,
                capabilities,
                0,
                Origin.IMPORTED,
                0,
                bytes(seed),
            )
        )

    def put_auth_key(
        self,
        key_id: int,
        password: str,
        *,
        label: str = "",
        capabilities: int = Cap.SIGN_EDDSA,
        delegated: int = 0,
        domains: int = 1,
    ) -> SimObject:
        """Store an authentication key derived from `password` (as the library derives it)."""
        k_enc, k_mac = scp03.password_to_key(password)
        return self.put_object(
            SimObject(
                key_id,
                ObjType.AUTHENTICATION_KEY,
                Alg.AES128_YUBICO_AUTHENTICATION,
                pack_label(label),
                domains,
                capabilities,
                delegated,
                Origin.IMPORTED,
                0,
                k_enc + k_mac,
            )
        )

    def put_wrap_key(
        self,
        key_id: int,
        key: bytes,
        *,
        label: str = "",
        capabilities: int = Cap.EXPORT_WRAPPED | Cap.IMPORT_WRAPPED,
        delegated: int = Cap.ALL,
        domains: int = 0xFFFF,
    ) -> SimObject:
        """Store an AES-CCM wrap key; the algorithm follows from len(key) (16/24/32)."""
        algorithm = {n: alg for alg, n in WRAP_KEY_LENGTHS.items()}.get(len(key))
        if algorithm is None:
            raise ValueError("a wrap key is 16, 24 or 32 bytes")
        return self.put_object(
            SimObject(
                key_id,
                ObjType.WRAP_KEY,
                algorithm,
                pack_label(label),
                domains,
                capabilities,
                delegated,
                Origin.IMPORTED,
                0,
                bytes(key),
            )
        )

    def get_object(self, obj_id: int, obj_type: int) -> SimObject | None:
        with self.lock:
            return self._objects.get((obj_id, obj_type))

    def objects(self) -> list[SimObject]:
        with self.lock:
            return [o for _, o in sorted(self._objects.items())]

    def delete_object(self, obj_id: int, obj_type: int) -> None:
        with self.lock:
            obj = self._objects.get((obj_id, obj_type))
            if obj is None:
                raise KeyError((obj_id, obj_type))
            self._remove(obj)

    # ------------------------------------------------------------------ session controls (tests)

    def active_sessions(self) -> list[int]:
        with self.lock:
            self._expire_sessions()
            return sorted(self._sessions)

    def expire_all_sessions(self) -> None:
        with self.lock:
            self._sessions.clear()

    def kill_session(self, sid: int) -> None:
        with self.lock:
            self._sessions.pop(sid, None)
