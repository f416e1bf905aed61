"""One YubiHSM2 reached synchronously: its address, its connection and one authenticated session.

Owns: connector addresses (`tcp://`, `http(s)://`, `yhusb://`) and the library
backend for each, the password-to-key derivation and its per-process cache, the
mapping of library exceptions to `kms.errors`, `DeviceSession` (one connection
and one authenticated session, used from one thread), and the start-up check
that two configured names do not reach one device. Never signs, never reads or
writes key objects (kms/signer/yubihsm.py signs, kms/hsm/keyadmin.py administers
keys), never touches double-sign state or the privval protocol. (A little over
400 lines: addresses, credentials and error mapping exist only to serve the one
session.)

Rules (see docs/YUBIHSM.md §1.1, §3.5, §3.7, §6):
- Short timeouts, never the library's default (10 s connect / 600 s read):
  `HttpBackend(url, timeout=(connect_timeout, request_timeout))`.
- A `DeviceSession` is not thread-safe: its owner calls it from one thread
  only (the signer's per-device executor, or the synchronous CLI's thread).
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
  device's 30 s) is replaced before use.
- At start: two configured names that reach one serial are refused
  (`check_distinct_devices`, called by the factory before any session).
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

import concurrent.futures
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
from yubihsm.backends import YhsmBackend
from yubihsm.backends.http import HttpBackend
from yubihsm.core import AuthSession, YubiHsm
from yubihsm.defs import ERROR
from yubihsm.exceptions import (
    YubiHsmAuthenticationError,
    YubiHsmConnectionError,
    YubiHsmDeviceError,
    YubiHsmError,
    YubiHsmInvalidRequestError,
    YubiHsmInvalidResponseError,
)
from yubihsm.utils import password_to_key

from kms.errors import HsmAuthError, HsmConnectionError, HsmDeviceError, HsmError, HsmTimeoutError

log = logging.getLogger(__name__)

T = TypeVar("T")

# every YubiHSM2 leaves the factory with this auth key (password "password")
FACTORY_AUTH_KEY_ID = 1

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
