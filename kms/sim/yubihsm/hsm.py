"""`SimulatedHsm`: one simulated YubiHSM2 behind one simulated connector.

Owns: wiring a `SimDevice`, its `Faults` and a `SimConnector` together, the
start/stop life cycle and the latency setting. Never touches protocol details.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from kms.sim.yubihsm.connector import SimConnector
from kms.sim.yubihsm.defs import SESSION_TIMEOUT_S
from kms.sim.yubihsm.device import SimDevice
from kms.sim.yubihsm.faults import Faults
from kms.sim.yubihsm.latency import LatencyProfile
from kms.sim.yubihsm.store import StateFile


class SimulatedHsm:
    """A YubiHSM2 + yubihsm-connector simulator (see the package docstring)."""

    def __init__(
        self,
        state_file: Path | str | None = None,
        latency_ms: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        serial: int | None = None,
        version: tuple[int, int, int] = (2, 4, 0),
        session_timeout: float = SESSION_TIMEOUT_S,
        max_session_messages: int | None = None,
        random_bytes: Callable[[int], bytes] = os.urandom,
        sleep: Callable[[float], None] = time.sleep,
        reboot_window_s: float = 0.0,
        idle_timeout_s: float = 5.0,
    ) -> None:
        self.faults = Faults()
        self.device = SimDevice(
            serial=serial,
            version=version,
            clock=clock,
            random_bytes=random_bytes,
            session_timeout=session_timeout,
            max_session_messages=max_session_messages,
            state_file=StateFile(Path(state_file)) if state_file is not None else None,
            faults=self.faults,
        )
        self.connector = SimConnector(
            self.device,
            self.faults,
            LatencyProfile(latency_ms),
            sleep=sleep,
            idle_timeout_s=idle_timeout_s,
        )
        if reboot_window_s > 0:
            self.device.on_reset = lambda: self.faults.unavailable_for(reboot_window_s)
        self._started = False

    @property
    def latency_ms(self) -> float:
        return self.connector.latency.sign_ms

    @latency_ms.setter
    def latency_ms(self, ms: float) -> None:
        self.connector.latency = LatencyProfile(ms)

    def start(self, host: str = "127.0.0.1", port: int = 0) -> SimulatedHsm:
        self.connector.start(host, port)
        self._started = True
        return self

    def stop(self) -> None:
        if self._started:
            self._started = False
            self.connector.stop()

    @property
    def url(self) -> str:
        return self.connector.url

    @property
    def port(self) -> int:
        return self.connector.port

    @property
    def host(self) -> str:
        return self.connector.host

    def __enter__(self) -> SimulatedHsm:
        if not self._started:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
