"""One Ed25519 key on one YubiHSM2, signing for the asyncio service.

Owns: the per-device executor every library call for a device runs on
(`YubiHsmDevice`, shared by the `YubiHsmSigner` of every key on the device: one
session per device), the signer of one key (open, sign, ping, health), and the
read-only key inspection `open()` and `kms hsm status` need (`KeyInfo`,
`find_key`, the factory-auth-key check). Reaching the device and holding its
session is kms/signer/yubihsm_session.py; creating, importing, exporting and
deleting keys is kms/hsm/keyadmin.py. Never touches double-sign state, sockets
other than the connector's, or the privval protocol. (A little over 400 lines:
the executor's timeout and queue rules and the signer that relies on them are
one thing.)

Rules (see docs/YUBIHSM.md §1.1, §3.5, §3.7, §6):
- The session is not thread-safe: every library call for a device runs on that
  device's own single-thread executor, never on two threads.
  A request that timed out while still queued is skipped, not run late.
- `ping()` (an ECHO inside the session) is the keep-alive the replica set's
  health loop sends (the session is replaced after `session_idle_limit`).
- `open()` checks that the key exists, is Ed25519 and has sign-eddsa; every
  signature is verified against the public key read at open.
- A device that still holds the factory auth key (id 1) is a loud warning at
  open (never a reason not to sign).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey
from yubihsm.backends import YhsmBackend
from yubihsm.core import AuthSession
from yubihsm.defs import ALGORITHM, CAPABILITY, COMMAND, ERROR, OBJECT
from yubihsm.exceptions import YubiHsmDeviceError, YubiHsmInvalidResponseError
from yubihsm.objects import AsymmetricKey, ObjectInfo

from kms.errors import HsmConnectionError, HsmDeviceError, HsmError, HsmKeyError, HsmTimeoutError
from kms.signer.base import Health, Signature, Signer
from kms.signer.yubihsm_session import (
    FACTORY_AUTH_KEY_ID,
    Connector,
    Credentials,
    DeviceSession,
    parse_connector,
)

log = logging.getLogger(__name__)

T = TypeVar("T")


# --- key inspection (synchronous; used by open() and by kms hsm status / keys list) ------


@dataclass(frozen=True, slots=True)
class KeyInfo:
    key_id: int
    label: str
    algorithm: str
    capabilities: int
    domains: int
    origin: str
    public_key: bytes | None  # None unless Ed25519

    @property
    def capability_names(self) -> tuple[str, ...]:
        return tuple(
            (c.name or "").lower().replace("_", "-")
            for c in CAPABILITY
            if c.name and c.name != "ALL" and c.value and (self.capabilities & c.value) == c.value
        )

    @property
    def can_sign(self) -> bool:
        return self.algorithm == ALGORITHM.EC_ED25519.name and bool(
            self.capabilities & CAPABILITY.SIGN_EDDSA
        )


def _label(info: ObjectInfo) -> str:
    lab = info.label
    return lab if isinstance(lab, str) else lab.hex()


def read_key(session: AuthSession, key_id: int) -> KeyInfo:
    """Info and (for Ed25519) public key of asymmetric key `key_id`."""
    key = AsymmetricKey(session, key_id)
    info = key.get_info()
    public_key = None
    if info.algorithm == ALGORITHM.EC_ED25519:
        resp = session.send_secure_cmd(COMMAND.GET_PUBLIC_KEY, struct.pack("!H", key_id))
        if len(resp) != 33 or resp[0] != ALGORITHM.EC_ED25519:
            raise YubiHsmInvalidResponseError("unexpected GET_PUBLIC_KEY response")
        public_key = bytes(resp[1:])
    return KeyInfo(
        key_id=key_id,
        label=_label(info),
        algorithm=info.algorithm.name,
        capabilities=int(info.capabilities),
        domains=info.domains,
        origin=info.origin.name or f"0x{int(info.origin):02x}",
        public_key=public_key,
    )


def find_key(session: AuthSession, key_id: int) -> KeyInfo | None:
    """Like read_key, but None when the key does not exist (or is not visible)."""
    try:
        return read_key(session, key_id)
    except YubiHsmDeviceError as e:
        if e.code == ERROR.OBJECT_NOT_FOUND:
            return None
        raise


def factory_auth_key_present(session: AuthSession) -> bool:
    """Whether the factory auth key (id 1, password "password" until changed) still exists.

    It has every capability in every domain, so any session can see it."""
    found = session.list_objects(
        object_id=FACTORY_AUTH_KEY_ID, object_type=OBJECT.AUTHENTICATION_KEY
    )
    return bool(found)


def check_signing_key(info: KeyInfo | None, where: str) -> bytes:
    """The public key of a usable validator key, or HsmKeyError saying what is wrong."""
    if info is None:
        raise HsmKeyError(
            f"{where}: key not found on the device (or not in the auth key's domains)"
        )
    if info.algorithm != ALGORITHM.EC_ED25519.name or info.public_key is None:
        raise HsmKeyError(f"{where}: key is {info.algorithm}, expected EC_ED25519")
    if not info.capabilities & CAPABILITY.SIGN_EDDSA:
        raise HsmKeyError(f"{where}: key lacks the sign-eddsa capability")
    return info.public_key


# --- the async side ------------------------------------------------------------------------


class YubiHsmDevice:
    """One device: its DeviceSession and the single thread every library call runs on.

    Shared by the signers of every key held on that device (one session per
    device, whatever the number of chains). Closed when its last user closes.

    When a call fails at the transport level (connection error or timeout),
    every request that was already queued behind it fails at once instead of
    being sent to the broken device one after the other (with several chains
    on one device, each would otherwise wait out its own timeout in turn).
    """

    def __init__(
        self,
        name: str,
        connector: Connector | str,
        credentials: Credentials,
        *,
        connect_timeout: float = 1.0,
        request_timeout: float = 2.0,
        session_idle_limit: float = 25.0,
        backend_factory: Callable[[], YhsmBackend] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(connector, str):
            connector = parse_connector(connector)
        self.name = name
        self.connector = connector
        # a library call is bounded by the HTTP timeouts; the asyncio side waits a
        # little longer so the library's own timeout normally reports first
        self.call_timeout = connect_timeout + request_timeout + 0.5
        self.session = DeviceSession(
            name,
            connector,
            credentials,
            connect_timeout=connect_timeout,
            request_timeout=request_timeout,
            session_idle_limit=session_idle_limit,
            backend_factory=backend_factory,
            clock=clock,
        )
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._users = 0
        self.pending = 0  # run() calls queued or running, from every signer on this device
        self._transport_failures = 0  # bumped on connection errors and timeouts
        self._failures_lock = threading.Lock()
        self.factory_key_checked = False  # warned (once) when the factory auth key exists
        # when the device last answered (or failed) a call, and how long that call ran:
        # the replica set's stall detection and hedge delay (kms.signer.hedge)
        self._clock = clock
        self.last_answer = 0.0
        self.last_service: float | None = None

    def _transport_failed(self) -> None:
        with self._failures_lock:
            self._transport_failures += 1

    def _pool(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=f"yubihsm-{self.name}"
            )
        return self._executor

    async def run(
        self, fn: Callable[[AuthSession], T], *, timeout: float | None = None, what: str = ""
    ) -> T:
        """Run fn(session) on the device thread.

        `timeout` bounds the whole wait, queueing behind earlier requests included;
        once the call starts, it is also bounded by `call_timeout` (the device's own
        answer time: a healthy but busy device is slow to START, a hung one never
        FINISHES). A request still queued when its time is up is skipped.
        """
        loop = asyncio.get_running_loop()
        started: asyncio.Future[None] = loop.create_future()
        abandoned = threading.Event()

        def mark_started() -> None:
            if not started.done():
                started.set_result(None)

        epoch = self._transport_failures

        def job() -> T:
            if abandoned.is_set():
                raise HsmTimeoutError(f"{self.name}{what}: request abandoned before it ran")
            if self._transport_failures != epoch:
                raise HsmConnectionError(
                    f"{self.name}{what}: the device failed while this request was queued"
                )
            loop.call_soon_threadsafe(mark_started)
            began = self._clock()
            try:
                return self.session.call(fn, what)
            except (HsmConnectionError, HsmTimeoutError):
                self._transport_failed()
                raise
            finally:
                self.last_answer = end = self._clock()
                self.last_service = end - began

        t0 = loop.time()
        fut = loop.run_in_executor(self._pool(), job)
        self.pending += 1
        try:
            first: set[asyncio.Future[Any]] = {started, fut}
            done, _ = await asyncio.wait(
                first, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if not done:
                raise TimeoutError
            limit = self.call_timeout
            if timeout is not None:
                limit = min(limit, timeout - (loop.time() - t0))
            return await asyncio.wait_for(fut, max(0.0, limit))
        except TimeoutError:
            abandoned.set()
            if started.done() and not fut.done():
                self._transport_failed()  # stuck in a call: the device is not answering
            fut.cancel()
            waited = loop.time() - t0
            raise HsmTimeoutError(f"{self.name}{what}: no answer within {waited:.2f}s") from None
        except asyncio.CancelledError:
            abandoned.set()
            fut.cancel()
            raise
        finally:
            self.pending -= 1

    def acquire(self) -> None:
        self._users += 1

    async def release(self) -> None:
        self._users = max(0, self._users - 1)
        if self._users == 0:
            await self.close()

    async def close(self) -> None:
        if self._executor is None:
            return
        executor, self._executor = self._executor, None
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(
                loop.run_in_executor(executor, self.session.close), self.call_timeout
            )
        except Exception as e:
            log.debug("%s: close: %s", self.name, e)
        executor.shutdown(wait=False, cancel_futures=True)


class YubiHsmSigner(Signer):
    """One key on one device (see YubiHsmDevice for the threading rule)."""

    def __init__(self, device: YubiHsmDevice, key_id: int, *, name: str | None = None) -> None:
        self.device = device
        self.key_id = key_id
        self.name = name or device.name
        self._public_key: bytes | None = None
        self._verify_key: VerifyKey | None = None
        self._last_error = ""
        self._acquired = False
        self._where = f"{self.name} (key {key_id})"

    @classmethod
    def connect(
        cls,
        name: str,
        connector: Connector | str,
        key_id: int,
        credentials: Credentials,
        **device_options: Any,
    ) -> YubiHsmSigner:
        """A signer with a device of its own (tools, tests, single-key setups)."""
        return cls(YubiHsmDevice(name, connector, credentials, **device_options), key_id)

    @property
    def public_key(self) -> bytes:
        if self._public_key is None:
            raise HsmKeyError(f"{self._where}: public key unknown before open()")
        return self._public_key

    @property
    def sessions_created(self) -> int:
        return self.device.session.sessions_created

    @property
    def load(self) -> int | None:
        return self.device.pending

    @property
    def last_answer(self) -> float | None:
        return self.device.last_answer

    @property
    def last_service_time(self) -> float | None:
        return self.device.last_service

    async def _run(self, fn: Callable[[AuthSession], T], timeout: float | None, what: str) -> T:
        try:
            result = await self.device.run(fn, timeout=timeout, what=f" (key {self.key_id}){what}")
        except HsmError as e:
            self._last_error = str(e)
            raise
        self._last_error = ""
        return result

    async def open(self) -> None:
        if not self._acquired:
            self.device.acquire()
            self._acquired = True
        info = await self._run(lambda s: find_key(s, self.key_id), None, ": open")
        public_key = check_signing_key(info, self._where)
        if not self.device.factory_key_checked:
            self.device.factory_key_checked = True
            try:
                factory = await self.device.run(factory_auth_key_present, what=": list")
            except HsmError as e:  # a warning must never keep a replica from signing
                log.debug("%s: factory auth key check failed: %s", self.name, e)
                factory = False
            if factory:
                log.warning(
                    '%s: WARNING: the factory auth key %d (password "password") still exists'
                    " on this device: anyone who can reach it controls every key; provision it"
                    " with kms hsm setup (or delete the key)",
                    self.name,
                    FACTORY_AUTH_KEY_ID,
                )
        self._public_key = public_key
        self._verify_key = VerifyKey(public_key)
        log.info("%s: opened, public key %s", self._where, public_key.hex())

    async def close(self) -> None:
        if self._acquired:
            self._acquired = False
            await self.device.release()

    async def sign_traced(self, message: bytes, *, timeout: float | None = None) -> Signature:
        if self._verify_key is None:
            await self.open()
        assert self._verify_key is not None
        request = struct.pack("!H", self.key_id) + message

        def sign(session: AuthSession) -> bytes:
            return bytes(session.send_secure_cmd(COMMAND.SIGN_EDDSA, request))

        sig = await self._run(sign, timeout, ": sign")
        try:
            self._verify_key.verify(message, sig)
        except (BadSignatureError, ValueError, TypeError):
            self._last_error = "signature does not verify"
            raise HsmDeviceError(
                f"{self._where}: device returned a signature that does not verify"
            ) from None
        return Signature(sig, self.name)

    async def ping(self, *, timeout: float | None = None) -> None:
        """ECHO inside the session: proves the device answers and keeps the session alive."""
        payload = b"kms-keepalive"

        def echo(session: AuthSession) -> bytes:
            return bytes(session.send_secure_cmd(COMMAND.ECHO, payload))

        answer = await self._run(echo, timeout, ": echo")
        if answer != payload:
            raise HsmDeviceError(f"{self._where}: ECHO returned different bytes")

    def health(self) -> Health:
        return Health(not self._last_error, self._last_error)

    def __repr__(self) -> str:
        return f"YubiHsmSigner(name={self.name!r}, key_id={self.key_id})"
