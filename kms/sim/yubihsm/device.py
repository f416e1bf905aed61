"""The simulated YubiHSM2 device: raw message in, raw message out, no I/O.

Owns: the device's identity (serial, version, part number), the framing of a
raw request and its dispatch (the plaintext commands here; SESSION_MESSAGE
through `sessions.SessionTable`; in-session commands to `commands.HANDLERS`
with the force-audit, session-capability and audit-log steps around them and
the rollback of object changes when the state file cannot be written), the
public `cmdbase.DeviceApi` the handlers use, the persisted document
(`snapshot`/restore) and out-of-band provisioning and test controls.
One `threading.RLock` (`device.lock`) serialises everything, as the
single-threaded device and the connector's mutex do; the connector holds
it across the modelled latency. Never touches sockets or HTTP (connector.py),
and only writes the state file through `StateFile`. The parts it wires:
`objstore.ObjectStore` (objects, sequences), `audit_policy.AuditPolicy`
(options, log), `sessions.SessionTable` (slots, SCP03 channel); the
`put_ed25519_seed`/`put_auth_key`/`put_wrap_key` helpers come from
`provision.Provisioning`.

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
from dataclasses import dataclass
from typing import Any

from kms.errors import SimObjectFormatError
from kms.sim.yubihsm.audit_log import AuditLog
from kms.sim.yubihsm.audit_policy import AuditPolicy
from kms.sim.yubihsm.cmdbase import Ctx
from kms.sim.yubihsm.commands import HANDLERS
from kms.sim.yubihsm.defs import (
    ADVERTISED_ALGORITHMS,
    LOG_CAPACITY,
    MAX_ID,
    SESSION_CAPABILITY,
    SESSION_TIMEOUT_S,
    Cmd,
    Err,
    ObjType,
)
from kms.sim.yubihsm.faults import Faults
from kms.sim.yubihsm.frames import Refuse, error_frame, ok_frame
from kms.sim.yubihsm.objects import (
    SimObject,
    validate_secret,
)
from kms.sim.yubihsm.objstore import ObjectStore
from kms.sim.yubihsm.provision import Provisioning, default_auth_key
from kms.sim.yubihsm.sessions import Opened, Session, SessionTable
from kms.sim.yubihsm.store import StateFile

DEFAULT_SERIAL = 1000001


def _random_serial() -> int:
    # os.urandom, not the injected random_bytes: tests that script the card challenges
    # must not see an extra draw at boot
    return DEFAULT_SERIAL + int.from_bytes(os.urandom(4), "big") % 8_000_000


@dataclass(frozen=True, slots=True)
class Exchange:
    """What one raw request did: the raw response, the command that ran (the inner
    command for a SESSION_MESSAGE, when it could be decrypted) and the error code
    (0 on success)."""

    response: bytes
    command: int
    error: int
    session_id: int | None = None


def _refused(code: int, cmd: int, sid: int | None = None) -> Exchange:
    return Exchange(error_frame(code), cmd, code, sid)


class SimDevice(Provisioning):
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
        # the parts call through these lambdas, so a test swapping `clock` or
        # `random_bytes` on the device reaches them too
        self.audit = AuditPolicy(lambda: self.clock(), self.persist)
        self.store = ObjectStore(lambda n: self.random_bytes(n), self.persist)
        self.sessions = SessionTable(
            lambda: self.clock(),
            lambda n: self.random_bytes(n),
            session_timeout,
            max_session_messages,
        )
        # observability for tests
        self.counters: collections.Counter[tuple[int, int]] = collections.Counter()
        self.signed: list[tuple[int, bytes]] = []
        doc = state_file.load() if state_file is not None else None
        if doc is None:
            self._factory_state()
        else:
            self._restore(doc, serial)
            self.audit.log.boot(force=self.audit.forced)
        self.persist()

    @property
    def _log(self) -> AuditLog:
        # tests/integration/hsm/test_audit.py tampers with the log through this name
        return self.audit.log

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
            self.sessions.expire()
            if len(raw) < 3:
                return _refused(Err.WRONG_LENGTH, 0)
            cmd, length = struct.unpack("!BH", raw[:3])
            payload = raw[3:]
            if len(payload) != length or len(raw) > self.buffer_size:
                return self._finish(_refused(Err.WRONG_LENGTH, cmd))
            if cmd == Cmd.SESSION_MESSAGE:
                return self._finish(self._session_message(payload))
            injected = self.faults.take_error(cmd)
            if injected is not None:
                return self._finish(_refused(injected[0], cmd))
            plain = {
                Cmd.ECHO: self._plain_echo,
                Cmd.DEVICE_INFO: self.device_info,
                Cmd.CREATE_SESSION: self._create_session,
                Cmd.AUTHENTICATE_SESSION: self._authenticate_session,
            }.get(cmd)
            if plain is None:
                return self._finish(_refused(Err.INVALID_COMMAND, cmd))
            try:
                return self._finish(Exchange(ok_frame(cmd, plain(payload)), cmd, 0))
            except Refuse as r:
                return self._finish(_refused(r.code, cmd))

    def _finish(self, ex: Exchange) -> Exchange:
        self.counters[(ex.command, ex.error)] += 1
        return ex

    # ------------------------------------------------------------------ plaintext commands

    def _plain_echo(self, payload: bytes) -> bytes:
        return payload

    def device_info(self, payload: bytes) -> bytes:
        """The DEVICE_INFO reply: version, serial, log use, algorithms; `01`: part number."""
        if payload == b"":
            return struct.pack(
                "!BBBIBB", *self.version, self.serial, LOG_CAPACITY, self.audit.log.used
            ) + bytes(ADVERTISED_ALGORITHMS)
        if payload == b"\x01" and self.version >= (2, 4, 0):
            return self.part_number.encode("utf-8")
        raise Refuse(Err.INVALID_DATA)

    def _create_session(self, payload: bytes) -> bytes:
        if len(payload) != 10:
            raise Refuse(Err.WRONG_LENGTH)
        (key_id,) = struct.unpack("!H", payload[:2])
        key = self.store.get(key_id, ObjType.AUTHENTICATION_KEY)
        if key is None:
            raise Refuse(Err.OBJECT_NOT_FOUND)
        reply = self.sessions.create(key, payload[2:])
        self.audit.record(
            Cmd.CREATE_SESSION, len(payload), 0xFFFF, key_id, 0xFFFF, Cmd.CREATE_SESSION
        )
        return reply

    def _authenticate_session(self, payload: bytes) -> bytes:
        s = self.sessions.authenticate(payload)
        self.audit.record(
            Cmd.AUTHENTICATE_SESSION, 17, 0xFFFF, s.auth_key_id, 0xFFFF, Cmd.AUTHENTICATE_SESSION
        )
        return b""

    # ------------------------------------------------------------------ secure messaging

    def _session_message(self, payload: bytes) -> Exchange:
        opened = self.sessions.open(payload)
        if not isinstance(opened, Opened):
            return _refused(opened.error, Cmd.SESSION_MESSAGE, opened.sid)
        s, inner = opened.session, opened.inner
        inner_cmd = inner[0] if inner else 0
        injected = self.faults.take_error(inner_cmd)
        if injected is not None and injected[1] == "outer":
            self.sessions.drop(s.sid)
            return _refused(injected[0], inner_cmd, s.sid)
        self.sessions.touch(s)
        after: Callable[[], None] | None = None
        if injected is not None:
            inner_resp, error = error_frame(injected[0]), injected[0]
        else:
            inner_resp, error, after = self._run_inner(s, inner)
        resp = self.sessions.seal(opened, inner_resp)
        if self.faults.take_corrupt_mac():
            resp = resp[:-1] + bytes([resp[-1] ^ 0x01])
        if after is not None:
            after()
        return Exchange(resp, inner_cmd, error, s.sid)

    def _run_inner(self, s: Session, inner: bytes) -> tuple[bytes, int, Callable[[], None] | None]:
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
        saved = self.store.checkpoint()
        try:
            self.audit.check_room(cmd)
            if need and not s.capabilities & need:
                raise Refuse(Err.INSUFFICIENT_PERMISSIONS)
            resp = ok_frame(cmd, handler(self, ctx, data))
            self._audit_ctx(ctx, cmd | 0x80)
            return resp, 0, ctx.after
        except Refuse as r:
            self._audit_ctx(ctx, Cmd.ERROR)
            return error_frame(r.code), r.code, None
        except OSError:
            # The state file could not be written: like a flash write failure, the command
            # fails with STORAGE_FAILED and its object changes are rolled back.
            self.store.rollback(saved)
            return error_frame(Err.STORAGE_FAILED), Err.STORAGE_FAILED, None

    def _audit_ctx(self, ctx: Ctx, result: int) -> None:
        self.audit.record(
            ctx.command, ctx.length, ctx.session.auth_key_id, ctx.target, ctx.second, result
        )

    # ------------------------------------------------------------------ DeviceApi actions

    def end_session(self, sid: int) -> None:
        self.sessions.drop(sid)

    def reset_device(self) -> None:
        self.factory_reset()
        if self.on_reset is not None:
            self.on_reset()

    # ------------------------------------------------------------------ state and provisioning

    def _factory_state(self) -> None:
        self.store.reset([default_auth_key()])
        self.sessions.clear()
        self.audit.factory()

    def factory_reset(self) -> None:
        """What RESET_DEVICE does: erase everything, default auth key back, sessions gone."""
        with self.lock:
            self._factory_state()
            self.audit.boot_time = self.clock()
            self.persist()

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "format": 1,
                "device": {
                    **({"serial": self.serial} if self._serial_fixed else {}),
                    "version": list(self.version),
                    "part_number": self.part_number,
                },
                **self.audit.to_json(),
                **self.store.to_json(),
            }

    def _restore(self, doc: dict[str, Any], serial: int | None) -> None:
        try:
            dev = doc.get("device", {})
            if serial is None and "serial" in dev:  # an explicit serial wins over the file's
                self.serial = int(dev["serial"])
                self._serial_fixed = True
            self.version = tuple(int(v) for v in dev.get("version", self.version))  # type: ignore[assignment]
            self.part_number = str(dev.get("part_number", self.part_number))
            self.store.load_json(doc)
            self.audit.load_json(doc)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise SimObjectFormatError(f"bad simulator state: {e}") from e

    def persist(self) -> None:
        if self._state_file is not None:
            self._state_file.save(self.snapshot())

    def put_object(self, obj: SimObject) -> SimObject:
        """Out-of-band provisioning: store `obj` (no session, no permission checks).
        Raises ValueError when (id, type) exists or the secret is malformed."""
        validate_secret(obj.type, obj.algorithm, obj.secret)
        if not 1 <= obj.id <= MAX_ID:
            raise ValueError(f"object id {obj.id} out of range 1..0xFFFE")
        with self.lock:
            return self.store.provision(obj)

    def get_object(self, obj_id: int, obj_type: int) -> SimObject | None:
        with self.lock:
            return self.store.get(obj_id, obj_type)

    def objects(self) -> list[SimObject]:
        with self.lock:
            return self.store.all()

    def delete_object(self, obj_id: int, obj_type: int) -> None:
        with self.lock:
            obj = self.store.get(obj_id, obj_type)
            if obj is None:
                raise KeyError((obj_id, obj_type))
            self.store.remove(obj)

    # ------------------------------------------------------------------ session controls (tests)

    def active_sessions(self) -> list[int]:
        with self.lock:
            self.sessions.expire()
            return self.sessions.active()

    def expire_all_sessions(self) -> None:
        with self.lock:
            self.sessions.clear()

    def kill_session(self, sid: int) -> None:
        with self.lock:
            self.sessions.drop(sid)
