"""One YubiHSM2 device and one Ed25519 key on it, through Yubico's `yubihsm` library.

Owns: the connection to one device (HTTP connector or direct USB), its single
authenticated session, the mapping of library exceptions to `kms.errors`, and
the key-administration primitives the `kms keygen/import/export/keys` commands
use (`DeviceSession`, `read_key`, `put_ed25519`, ...). Never touches double-sign
state, sockets other than the connector's, or the privval protocol.

Rules (see docs/YUBIHSM.md §1.1, §3.5, §3.7, §6):
- Short timeouts, never the library's default (10 s connect / 600 s read):
  `HttpBackend(url, timeout=(connect_timeout, request_timeout))`.
- The session is not thread-safe: every library call for a device runs on that
  device's own single-thread executor (`YubiHsmDevice`, shared by the
  `YubiHsmSigner` of every key on the device: one session per device), or on
  the caller's thread for the synchronous CLI (`DeviceSession`), never both.
  A request that timed out while still queued is skipped, not run late.
- The password is turned into K-ENC/K-MAC (PBKDF2, 10 000 iterations) once per
  process (`derive_credentials` caches); reconnects reuse the derived keys.
- After ANY error the session and the connection are thrown away: a lost reply
  leaves the device's MAC chain ahead of ours. When the device answered (a
  device error or a bad MAC) the stale session is closed best-effort; after a
  connection error or timeout it is left to the device's 30 s idle expiry
  (trying to close it would block the device thread again).
- After an authentication failure (wrong password), no new session is tried for
  `auth_hold_off` seconds: every failed attempt leaves a half-open session on
  the device holding one of its 16 slots until the 30 s idle expiry.
- A session idle for longer than `session_idle_limit` (25 s, inside the
  device's 30 s) is replaced before use; `ping()` (an ECHO inside the session)
  is the keep-alive the replica set's health loop sends.
- `open()` checks that the key exists, is Ed25519 and has sign-eddsa; every
  signature is verified against the public key read at open.
- At start: two configured names that reach one serial are refused
  (`check_distinct_devices`, called by the factory before any session), and a
  device that still holds the factory auth key (id 1) is a loud warning.
- `yhusb://` uses the library's UsbBackend; no device, no libusb or no
  permission is one HsmConnectionError line naming the device.
- A missing auth key and a wrong password are HsmAuthError naming the auth key
  id ("authentication failed ..."), never a connection error.
- Errors carry the device name and key id: HsmConnectionError (connector
  unreachable, connection broke, HTTP error), HsmTimeoutError (no answer in
  time), HsmDeviceError (the device answered with an error, bad MAC/response,
  authentication failure).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import logging
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey
from yubihsm.backends import YhsmBackend
from yubihsm.backends.http import HttpBackend
from yubihsm.core import AuthSession, YubiHsm
from yubihsm.defs import ALGORITHM, CAPABILITY, COMMAND, ERROR, OBJECT
from yubihsm.exceptions import (
    YubiHsmAuthenticationError,
    YubiHsmConnectionError,
    YubiHsmDeviceError,
    YubiHsmError,
    YubiHsmInvalidRequestError,
    YubiHsmInvalidResponseError,
)
from yubihsm.objects import AsymmetricKey, ObjectInfo, WrapKey
from yubihsm.utils import password_to_key

from kms.errors import HsmConnectionError, HsmDeviceError, HsmError, HsmTimeoutError
from kms.signer.base import Health, Signature, Signer

log = logging.getLogger(__name__)

T = TypeVar("T")

# Capabilities of a validator key: sign, and (unless --non-exportable) export under wrap.
SIGN_CAPS = CAPABILITY.SIGN_EDDSA
EXPORTABLE_CAPS = CAPABILITY.SIGN_EDDSA | CAPABILITY.EXPORTABLE_UNDER_WRAP


class HsmAuthError(HsmDeviceError):
    """Session authentication failed: wrong password or auth key id."""


class HsmKeyError(HsmDeviceError):
    """The key is missing, not Ed25519, or lacks a capability it needs."""


# --- connector addresses -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HttpConnector:
    url: str  # http(s)://host:port


@dataclass(frozen=True, slots=True)
class UsbConnector:
    serial: int | None = None


Connector = HttpConnector | UsbConnector


def parse_connector(text: str) -> Connector:
    """`tcp://host:port` (as tmkms writes it), `http(s)://host:port`, `yhusb://[serial=N]`."""
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme in ("tcp", "http", "https"):
        if not parts.hostname or parts.port is None:
            raise ValueError(f"connector {text!r}: expected {scheme}://host:port")
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        return HttpConnector(f"{'https' if scheme == 'https' else 'http'}://{host}:{parts.port}")
    if scheme == "yhusb":
        query = parts.query or parts.netloc or parts.path.lstrip("/")
        if not query:
            return UsbConnector()
        key, _, value = query.partition("=")
        if key != "serial" or not value.isdigit():
            raise ValueError(f"connector {text!r}: expected yhusb:// or yhusb://serial=N")
        return UsbConnector(int(value))
    raise ValueError(f"connector {text!r}: expected tcp://, http://, https:// or yhusb://")


def connector_name(connector: Connector) -> str:
    if isinstance(connector, HttpConnector):
        return urlsplit(connector.url).netloc
    return f"usb:{connector.serial}" if connector.serial is not None else "usb"


def make_backend(
    connector: Connector, connect_timeout: float, request_timeout: float
) -> YhsmBackend:
    if isinstance(connector, HttpConnector):
        # requests takes float seconds; the library's annotation says int
        timeouts: Any = (connect_timeout, request_timeout)
        return HttpBackend(connector.url, timeout=timeouts)
    return _usb_backend(connector, request_timeout)


def _usb_backend(connector: UsbConnector, request_timeout: float) -> YhsmBackend:
    """The library's direct-USB backend, its failures as one-line HsmConnectionErrors."""
    name = connector_name(connector)
    try:
        import usb.core  # type: ignore[import-untyped]
        from yubihsm.backends.usb import UsbBackend
    except ImportError:
        raise HsmConnectionError(
            f"{name}: USB support is not installed (pip install 'yubihsm[usb]')"
        ) from None
    which = (
        "a YubiHSM2" if connector.serial is None else f"the YubiHSM2 with serial {connector.serial}"
    )
    try:
        # pyusb takes whole seconds here (converted to ms inside the backend)
        return UsbBackend(serial=connector.serial, timeout=max(1, round(request_timeout)))
    except usb.core.NoBackendError:
        raise HsmConnectionError(
            f"{name}: libusb-1.0 is not installed (e.g. apt install libusb-1.0-0),"
            " or use yubihsm-connector over http"
        ) from None
    except YubiHsmConnectionError as e:
        cause = e.args[0] if e.args else None
        if isinstance(cause, usb.core.USBError) and cause.errno == 13:
            raise HsmConnectionError(
                f"{name}: permission denied opening the USB device (add a udev rule for"
                " 1050:0030 or run as the device's owner)"
            ) from None
        if cause is None or "No YubiHSM found" in str(e):
            raise HsmConnectionError(f"{name}: {which} is not connected over USB") from None
        raise HsmConnectionError(f"{name}: USB error: {_first_line(e)}") from None
    except (usb.core.USBError, ValueError) as e:
        raise HsmConnectionError(f"{name}: USB error: {_first_line(e)}") from None


# --- credentials -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Credentials:
    """An authentication key id and its derived static keys (never the password)."""

    auth_key_id: int
    key_enc: bytes
    key_mac: bytes

    def __repr__(self) -> str:
        return f"Credentials(auth_key_id={self.auth_key_id})"


_DERIVED: dict[bytes, tuple[bytes, bytes]] = {}
_DERIVED_LOCK = threading.Lock()


def derive_credentials(auth_key_id: int, password: str) -> Credentials:
    """PBKDF2 the password into K-ENC/K-MAC, once per distinct password per process."""
    tag = hashlib.sha256(b"kms-yubihsm-password\0" + password.encode()).digest()
    with _DERIVED_LOCK:
        if tag not in _DERIVED:
            _DERIVED[tag] = password_to_key(password)
        enc, mac = _DERIVED[tag]
    return Credentials(auth_key_id, enc, mac)


# --- error mapping -------------------------------------------------------------------------


def _is_timeout(exc: BaseException) -> bool:
    return any(isinstance(a, requests.exceptions.ReadTimeout | TimeoutError) for a in exc.args)


def map_error(exc: BaseException, where: str) -> HsmError:
    """Turn a library exception into the kms error family, naming device and key."""
    if isinstance(exc, HsmError):
        return exc
    if isinstance(exc, YubiHsmConnectionError):
        if _is_timeout(exc):
            return HsmTimeoutError(f"{where}: no answer in time ({_first_line(exc)})")
        return HsmConnectionError(f"{where}: connection failed ({_first_line(exc)})")
    if isinstance(exc, YubiHsmDeviceError):
        return HsmDeviceError(f"{where}: device error {exc.code.name}")
    if isinstance(exc, YubiHsmAuthenticationError):
        return HsmAuthError(f"{where}: authentication failed (wrong password?)")
    if isinstance(exc, YubiHsmInvalidResponseError):
        return HsmDeviceError(f"{where}: invalid response from device ({_first_line(exc)})")
    if isinstance(exc, YubiHsmInvalidRequestError):
        return HsmDeviceError(f"{where}: request refused by the library ({_first_line(exc)})")
    if isinstance(exc, TimeoutError):
        return HsmTimeoutError(f"{where}: no answer in time")
    if isinstance(exc, OSError | YubiHsmError):
        return HsmConnectionError(f"{where}: {_first_line(exc)}")
    return HsmDeviceError(f"{where}: unexpected {type(exc).__name__}: {_first_line(exc)}")


# requests/urllib3 wrap the cause in long reprs; say what happened in a few words
_TRANSPORT_CAUSES = (
    ("Connection refused", "connection refused"),
    ("Read timed out", "read timed out"),
    ("Connection reset", "connection reset"),
    ("RemoteDisconnected", "connection closed by the connector"),
    ("Connection aborted", "connection aborted"),
    ("Name or service not known", "unknown host"),
    ("No route to host", "no route to host"),
    ("Server Error", "connector returned an HTTP server error"),
)


def _first_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    for needle, short in _TRANSPORT_CAUSES:
        if needle in text:
            return short
    return text.splitlines()[0][:200]


def device_error_code(exc: BaseException) -> ERROR | None:
    """The device error code behind a (mapped) exception, if there is one."""
    cur: BaseException | None = exc
    while cur is not None:
        if isinstance(cur, YubiHsmDeviceError):
            return cur.code
        cur = cur.__cause__
    return None


# --- one session, synchronous ------------------------------------------------------------


class DeviceSession:
    """A device's connection and authenticated session, used from ONE thread.

    `call(fn)` runs `fn(session)` with a live session, creating it if needed and
    throwing it away after any error (see module rules).
    """

    def __init__(
        self,
        name: str,
        connector: Connector,
        credentials: Credentials,
        *,
        connect_timeout: float = 1.0,
        request_timeout: float = 2.0,
        session_idle_limit: float = 25.0,
        max_session_messages: int = 500_000,
        auth_hold_off: float = 30.0,
        backend_factory: Callable[[], YhsmBackend] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.auth_hold_off = auth_hold_off
        self.connector = connector
        self.credentials = credentials
        self.session_idle_limit = session_idle_limit
        self.max_session_messages = max_session_messages
        self._backend_factory = backend_factory or (
            lambda: make_backend(connector, connect_timeout, request_timeout)
        )
        self._clock = clock
        self._hsm: YubiHsm | None = None
        self._session: AuthSession | None = None
        self._last_used = float("-inf")
        self._messages = 0
        self.sessions_created = 0
        self._auth_failed: tuple[float, str] | None = None

    def _ensure(self) -> AuthSession:
        now = self._clock()
        stale = now - self._last_used > self.session_idle_limit
        if self._session is not None and (stale or self._messages >= self.max_session_messages):
            # expired on the device, or rotated on purpose: start a fresh one
            self._drop(close_session=not stale)
        if self._hsm is None:
            self._hsm = YubiHsm(self._backend_factory())
        if self._session is None:
            if self._auth_failed and now - self._auth_failed[0] < self.auth_hold_off:
                # each failed attempt leaves a half-open session holding one of the
                # device's 16 slots for 30 s: do not retry a wrong password in a loop
                raise HsmAuthError(
                    f"{self._auth_failed[1]} (not retried for {self.auth_hold_off:.0f} s)"
                )
            c = self.credentials
            try:
                self._session = self._hsm.create_session(c.auth_key_id, c.key_enc, c.key_mac)
            except YubiHsmAuthenticationError as e:
                msg = (
                    f"{self.name}: authentication failed for auth key {c.auth_key_id}"
                    " (wrong password?)"
                )
                self._auth_failed = (now, msg)
                raise HsmAuthError(msg) from e
            except YubiHsmDeviceError as e:
                if e.code != ERROR.OBJECT_NOT_FOUND:
                    raise
                # CREATE_SESSION names no signing key: the AUTH key is what is missing
                raise HsmAuthError(
                    f"{self.name}: authentication failed: auth key {c.auth_key_id}"
                    " does not exist on the device"
                ) from e
            self._auth_failed = None
            self.sessions_created += 1
            self._messages = 0
            self._last_used = self._clock()
        return self._session

    def call(self, fn: Callable[[AuthSession], T], what: str = "") -> T:
        try:
            session = self._ensure()
            result = fn(session)
        except BaseException as e:
            answered = isinstance(e, YubiHsmDeviceError | YubiHsmInvalidResponseError)
            outer_dead = isinstance(e, YubiHsmDeviceError) and e.code in (
                ERROR.INVALID_SESSION,
                ERROR.AUTHENTICATION_FAILED,
            )
            self._drop(close_session=answered and not outer_dead)
            if isinstance(e, Exception):
                raise map_error(e, f"{self.name}{what}") from e
            raise
        self._messages += 1
        self._last_used = self._clock()
        return result

    def _drop(self, *, close_session: bool) -> None:
        session, hsm = self._session, self._hsm
        self._session = None
        self._hsm = None
        if session is not None and close_session:
            try:
                session.close()
            except Exception as e:  # best effort: the device expires it anyway
                log.debug("%s: closing stale session failed: %s", self.name, e)
        if hsm is not None:
            try:
                hsm.close()
            except Exception as e:
                log.debug("%s: closing connection failed: %s", self.name, e)

    def close(self) -> None:
        self._drop(close_session=True)

    @property
    def has_session(self) -> bool:
        return self._session is not None


# --- key inspection and administration (synchronous; used by open() and the CLI) --------


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


def list_asymmetric_keys(session: AuthSession) -> list[KeyInfo]:
    objs = session.list_objects(object_type=OBJECT.ASYMMETRIC_KEY)
    return [read_key(session, o.id) for o in objs]


def wrap_key_exists(session: AuthSession, wrap_key_id: int) -> bool:
    try:
        WrapKey(session, wrap_key_id).get_info()
    except YubiHsmDeviceError as e:
        if e.code == ERROR.OBJECT_NOT_FOUND:
            return False
        raise
    return True


def put_ed25519(
    session: AuthSession, key_id: int, label: str, domains: int, caps: int, seed: bytes
) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    AsymmetricKey.put(
        session,
        key_id,
        label,
        domains,
        CAPABILITY(caps),
        Ed25519PrivateKey.from_private_bytes(seed),
    )


def generate_ed25519(
    session: AuthSession, key_id: int, label: str, domains: int, caps: int
) -> None:
    AsymmetricKey.generate(session, key_id, label, domains, CAPABILITY(caps), ALGORITHM.EC_ED25519)


def export_wrapped(session: AuthSession, wrap_key_id: int, key_id: int) -> bytes:
    return bytes(WrapKey(session, wrap_key_id).export_wrapped(AsymmetricKey(session, key_id)))


def import_wrapped(session: AuthSession, wrap_key_id: int, blob: bytes) -> tuple[int, int]:
    """Import a wrapped object; returns (object type, object id)."""
    obj = WrapKey(session, wrap_key_id).import_wrapped(blob)
    return int(obj.object_type), obj.id


def delete_key(session: AuthSession, key_id: int) -> None:
    AsymmetricKey(session, key_id).delete()


FACTORY_AUTH_KEY_ID = 1


def factory_auth_key_present(session: AuthSession) -> bool:
    """Whether the factory auth key (id 1, password "password" until changed) still exists.

    It has every capability in every domain, so any session can see it."""
    found = session.list_objects(
        object_id=FACTORY_AUTH_KEY_ID, object_type=OBJECT.AUTHENTICATION_KEY
    )
    return bool(found)


def read_serial(connector: Connector, connect_timeout: float, request_timeout: float) -> int:
    """The device's serial from a plaintext DEVICE_INFO (no session, no password)."""
    hsm = YubiHsm(make_backend(connector, connect_timeout, request_timeout))
    try:
        return int(hsm.get_device_info().serial)
    finally:
        hsm.close()


def check_distinct_devices(
    devices: dict[str, Connector], connect_timeout: float, request_timeout: float
) -> None:
    """Refuse two names (addresses) that reach the same device: they are one replica, not two.

    Every device is asked for its serial in parallel; one that does not answer is
    skipped here (the replica set reports it down)."""
    if len(devices) < 2:
        return

    def probe(item: tuple[str, Connector]) -> tuple[str, int | None]:
        name, conn = item
        try:
            return name, read_serial(conn, connect_timeout, request_timeout)
        except Exception as e:
            log.debug("%s: serial not read at start: %s", name, e)
            return name, None

    with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, len(devices))) as pool:
        results = list(pool.map(probe, devices.items()))
    by_serial: dict[int, list[str]] = {}
    for name, serial in results:
        if serial is not None:
            by_serial.setdefault(serial, []).append(name)
    dups = [
        f"{' and '.join(names)} are the same YubiHSM2 (serial {serial})"
        for serial, names in sorted(by_serial.items())
        if len(names) > 1
    ]
    if dups:
        raise HsmDeviceError("; ".join(dups) + ": list each device once")


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
            try:
                return self.session.call(fn, what)
            except (HsmConnectionError, HsmTimeoutError):
                self._transport_failed()
                raise

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
