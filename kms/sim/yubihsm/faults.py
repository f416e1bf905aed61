"""Fault injection for the simulated YubiHSM2 and its connector.

Owns: the switchable fault plan (added latency, failing the next N commands
with a device error, hang/release, dropped connections, corrupted response
MACs, HTTP errors, listener down/up) and its thread-safe bookkeeping. The
device and the connector *ask* this object what to do; it never touches the
device state or sockets itself, except through the `ListenerControl` the
connector registers (so `faults.listener_down()` really refuses connections).

Every knob can be switched while the simulator runs, from tests in-process or
over the connector's loopback-only control route (`POST /sim/fault`).
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass
from typing import Literal, Protocol

Layer = Literal["inner", "outer"]
Shot = Literal["corrupt_mac", "drop_before", "drop_after", "corrupt_signature"]
"""One-shot faults: each armed `n` times, each use takes one."""


class ListenerControl(Protocol):
    def drop_connections(self) -> int: ...
    def listener_down(self) -> None: ...
    def listener_up(self) -> None: ...


@dataclass(slots=True)
class _FailRule:
    remaining: int
    code: int
    layer: Layer
    commands: frozenset[int] | None


class Faults:
    """The fault plan of one simulator. All methods are thread-safe."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._latency_ms = 0.0
        self._latency_commands: frozenset[int] | None = None
        self._fail: list[_FailRule] = []
        self._hung = False
        self._shots: collections.Counter[Shot] = collections.Counter()
        self._http_errors: list[int] = []
        self._no_device = False
        self._unavailable_until = 0.0
        self._listener: ListenerControl | None = None

    # --- knobs ---------------------------------------------------------------------

    def set_latency_ms(self, ms: float, commands: set[int] | None = None) -> None:
        """Add `ms` to every command (or only to `commands`, matched on the inner command)."""
        if ms < 0:
            raise ValueError("latency must be >= 0")
        with self._cond:
            self._latency_ms = float(ms)
            self._latency_commands = frozenset(commands) if commands is not None else None

    def fail_next(
        self,
        n: int,
        error_code: int,
        *,
        layer: Layer = "inner",
        commands: set[int] | None = None,
    ) -> None:
        """Answer the next `n` matching commands with device error `error_code`, without
        running them. `layer="inner"`: inside a valid encrypted, R-MACed envelope (the
        session survives, as for OBJECT_NOT_FOUND on a real device); `"outer"`: as a
        plaintext error to the SESSION_MESSAGE, and the session is dropped (as for
        INVALID_SESSION / AUTHENTICATION_FAILED). Plaintext commands always get a
        plaintext error."""
        if n < 0 or not 0 <= error_code <= 0xFF:
            raise ValueError("bad fail_next arguments")
        with self._cond:
            self._fail.append(
                _FailRule(n, error_code, layer, frozenset(commands) if commands else None)
            )

    def hang(self) -> None:
        """Every request blocks (before reaching the device) until `release()`."""
        with self._cond:
            self._hung = True

    def release(self) -> None:
        with self._cond:
            self._hung = False
            self._cond.notify_all()

    def corrupt_next_mac(self, n: int = 1) -> None:
        """Flip a bit in the R-MAC of the next `n` session responses (the library
        raises "Incorrect MAC"; the device has already run the command)."""
        self._arm("corrupt_mac", n)

    def drop_next(self, n: int = 1, *, after_execute: bool = False) -> None:
        """Close the connection without a reply for the next `n` API requests, either
        before the device sees them or after it has run them (a lost response)."""
        self._arm("drop_after" if after_execute else "drop_before", n)

    def http_error_next(self, n: int = 1, status: int = 500) -> None:
        """Answer the next `n` API requests with this HTTP status (USB failure: 500)."""
        with self._cond:
            self._http_errors.extend([status] * n)

    def set_no_device(self, on: bool = True) -> None:
        """Unplugged USB device: the status page says NO_DEVICE and the API answers 500."""
        with self._cond:
            self._no_device = on

    @property
    def no_device(self) -> bool:
        with self._cond:
            return self._no_device

    def unavailable_for(self, seconds: float) -> None:
        """The API answers HTTP 500 for `seconds` of wall-clock time (a rebooting device
        re-enumerating on USB; used after RESET_DEVICE when a reboot window is set)."""
        with self._cond:
            self._unavailable_until = time.monotonic() + seconds

    @property
    def unavailable(self) -> bool:
        with self._cond:
            return time.monotonic() < self._unavailable_until

    def corrupt_next_signature(self, n: int = 1) -> None:
        """Flip a bit in the next `n` SIGN_EDDSA results, inside a valid envelope: only
        the caller's own signature check can notice."""
        self._arm("corrupt_signature", n)

    def take_corrupt_signature(self) -> bool:
        return self._take("corrupt_signature")

    def drop_connections(self) -> int:
        """Close every open client connection now (keep-alive sockets included)."""
        return self._require_listener().drop_connections()

    def listener_down(self) -> None:
        """Stop listening and close open connections: clients get connection refused."""
        self._require_listener().listener_down()

    def listener_up(self) -> None:
        """Listen again on the same port."""
        self._require_listener().listener_up()

    def clear(self) -> None:
        """Remove every fault (and release a hang)."""
        with self._cond:
            self._latency_ms = 0.0
            self._latency_commands = None
            self._fail.clear()
            self._shots.clear()
            self._http_errors.clear()
            self._no_device = False
            self._unavailable_until = 0.0
            self._hung = False
            self._cond.notify_all()

    # --- queries (device and connector) --------------------------------------------

    def attach_listener(self, listener: ListenerControl | None) -> None:
        with self._cond:
            self._listener = listener

    def _require_listener(self) -> ListenerControl:
        with self._cond:
            listener = self._listener
        if listener is None:
            raise RuntimeError("the simulator is not serving HTTP")
        return listener

    def extra_latency_s(self, command: int | None) -> float:
        with self._cond:
            if self._latency_commands is not None and command not in self._latency_commands:
                return 0.0
            return self._latency_ms / 1000.0

    def wait_while_hung(self, stop: threading.Event) -> None:
        with self._cond:
            while self._hung and not stop.is_set():
                self._cond.wait(0.1)

    @property
    def hung(self) -> bool:
        with self._cond:
            return self._hung

    def take_error(self, command: int) -> tuple[int, Layer] | None:
        with self._cond:
            for rule in self._fail:
                if rule.remaining > 0 and (rule.commands is None or command in rule.commands):
                    rule.remaining -= 1
                    code, layer = rule.code, rule.layer
                    self._fail = [r for r in self._fail if r.remaining > 0]
                    return code, layer
            return None

    def take_corrupt_mac(self) -> bool:
        return self._take("corrupt_mac")

    def take_drop_before(self) -> bool:
        return self._take("drop_before")

    def take_drop_after(self) -> bool:
        return self._take("drop_after")

    def _arm(self, shot: Shot, n: int) -> None:
        with self._cond:
            self._shots[shot] += n

    def _take(self, shot: Shot) -> bool:
        with self._cond:
            if self._shots[shot] > 0:
                self._shots[shot] -= 1
                return True
            return False

    def take_http_error(self) -> int | None:
        with self._cond:
            return self._http_errors.pop(0) if self._http_errors else None
