"""The simulated YubiHSM2's SCP03 sessions: the 16 slots and each one's channel state.

Owns: the `Session` record (auth key, its capabilities/delegated/domains as
they were when the session opened, session keys, C-MAC chain, counter, idle
time, message count), the slot table, idle expiry on the injected clock, the
CREATE_SESSION / AUTHENTICATE_SESSION handshakes, opening a SESSION_MESSAGE
envelope (length -> session state -> C-MAC -> message cap -> padding; each
failure drops the session) and sealing the response (R-MAC, chain and counter
advance). Never touches the object store, the audit log, faults or I/O; which
command runs inside the envelope is the device's business.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from kms.errors import SimPaddingError
from kms.sim.yubihsm import scp03
from kms.sim.yubihsm.defs import MAX_SESSIONS, Err
from kms.sim.yubihsm.frames import Refuse
from kms.sim.yubihsm.objects import SimObject


@dataclass(slots=True)
class Session:
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
class Opened:
    """A SESSION_MESSAGE whose envelope checked out: the session, the decrypted inner
    message and the full C-MAC that becomes the chain value once the reply is sealed."""

    session: Session
    inner: bytes
    mac: bytes


@dataclass(frozen=True, slots=True)
class Rejected:
    """A SESSION_MESSAGE refused at session level (the session, if any, is gone)."""

    error: Err
    sid: int | None


class SessionTable:
    def __init__(
        self,
        clock: Callable[[], float],
        random_bytes: Callable[[int], bytes],
        timeout: float,
        max_messages: int | None,
    ) -> None:
        self._clock = clock
        self._random_bytes = random_bytes
        self.timeout = timeout
        self.max_messages = max_messages
        self._slots: dict[int, Session] = {}

    # ------------------------------------------------------------------ slots

    def expire(self) -> None:
        now = self._clock()
        for sid in [sid for sid, s in self._slots.items() if now - s.last_used > self.timeout]:
            del self._slots[sid]

    def active(self) -> list[int]:
        return sorted(self._slots)

    def drop(self, sid: int) -> None:
        self._slots.pop(sid, None)

    def clear(self) -> None:
        self._slots.clear()

    # ------------------------------------------------------------------ handshake

    def create(self, key: SimObject, host_challenge: bytes) -> bytes:
        """Open a slot for auth key `key`: the CREATE_SESSION reply (sid, card challenge,
        card cryptogram); SESSIONS_FULL when all 16 slots are taken."""
        free = [sid for sid in range(MAX_SESSIONS) if sid not in self._slots]
        if not free:
            raise Refuse(Err.SESSIONS_FULL)
        card_challenge = self._random_bytes(8)
        context = host_challenge + card_challenge
        keys = scp03.session_keys(key.secret[:16], key.secret[16:], context)
        sid = free[0]
        self._slots[sid] = Session(
            sid=sid,
            auth_key_id=key.id,
            capabilities=key.capabilities,
            delegated=key.delegated,
            domains=key.domains,
            keys=keys,
            context=context,
            authenticated=False,
            chain=b"\0" * 16,
            counter=0,
            last_used=self._clock(),
        )
        return bytes([sid]) + card_challenge + scp03.card_cryptogram(keys.s_mac, context)

    def authenticate(self, payload: bytes) -> Session:
        """AUTHENTICATE_SESSION: check host cryptogram and MAC; a failure frees the slot."""
        if len(payload) != 17:
            raise Refuse(Err.WRONG_LENGTH)
        sid, host_crypto, mac = payload[0], payload[1:9], payload[9:]
        s = self._slots.get(sid)
        if s is None or s.authenticated:
            raise Refuse(Err.INVALID_SESSION)
        full = scp03.authenticate_mac(s.keys.s_mac, sid, host_crypto)
        good = scp03.mac_ok(full[:8], mac) and scp03.mac_ok(
            scp03.host_cryptogram(s.keys.s_mac, s.context), host_crypto
        )
        if not good:
            del self._slots[sid]
            raise Refuse(Err.AUTHENTICATION_FAILED)
        s.authenticated = True
        s.chain = full
        s.counter = 1
        s.last_used = self._clock()
        return s

    # ------------------------------------------------------------------ secure messaging

    def open(self, payload: bytes) -> Opened | Rejected:
        if len(payload) < 1:
            return Rejected(Err.WRONG_LENGTH, None)
        sid = payload[0]
        s = self._slots.get(sid)
        if s is None or not s.authenticated:
            return Rejected(Err.INVALID_SESSION, sid)
        ct, mac = payload[1:-8], payload[-8:]
        if len(payload) < 1 + 16 + 8 or len(ct) % 16:
            return self._reject(Err.WRONG_LENGTH, sid)
        full = scp03.command_mac(s.keys.s_mac, s.chain, sid, ct)
        if not scp03.mac_ok(full[:8], mac):
            return self._reject(Err.AUTHENTICATION_FAILED, sid)
        if self.max_messages is not None and s.messages >= self.max_messages:
            return self._reject(Err.INVALID_SESSION, sid)
        iv = scp03.iv_for(s.keys.s_enc, s.counter)
        try:
            inner = scp03.unpad(scp03.cbc_decrypt(s.keys.s_enc, iv, ct))
        except SimPaddingError:
            return self._reject(Err.INVALID_DATA, sid)
        return Opened(s, inner, full)

    def _reject(self, error: Err, sid: int) -> Rejected:
        del self._slots[sid]
        return Rejected(error, sid)

    def touch(self, s: Session) -> None:
        """The command inside will run: the session is used now and counts one more message."""
        s.last_used = self._clock()
        s.messages += 1

    def seal(self, opened: Opened, inner_response: bytes) -> bytes:
        """The SESSION_MESSAGE reply for `inner_response`; advances the chain and counter."""
        s = opened.session
        resp = scp03.wrap_response(s.keys, s.counter, opened.mac, s.sid, inner_response)
        s.chain = opened.mac
        s.counter += 1
        return resp
