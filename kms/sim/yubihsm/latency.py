"""How long each simulated command takes.

Owns: the latency model. The configured latency is the time of one Ed25519
signature (SIGN_EDDSA, 110 ms models a real YubiHSM2: tendermint/yubihsm-rs
PR #16 measured about 114 ms); other commands cost a fixed fraction of it
(table below, [ASSUMED] magnitudes from YUBIHSM.md §5.5 / §6.1). The connector
holds the device lock for this long per command, its own processing included
(what it spent is subtracted from the sleep), so one simulator serialises like
one device and a command takes the modelled time, not that plus the simulator's
Python work. Never touches I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from kms.sim.yubihsm.defs import Cmd

# Fraction of the configured signature latency per command; everything else: DEFAULT_FRACTION.
FRACTIONS: Final[dict[int, float]] = {
    Cmd.SIGN_EDDSA: 1.0,
    Cmd.GENERATE_ASYMMETRIC_KEY: 1.0,
    Cmd.CREATE_SESSION: 0.25,
    Cmd.AUTHENTICATE_SESSION: 0.25,
    Cmd.EXPORT_WRAPPED: 0.2,
    Cmd.IMPORT_WRAPPED: 0.2,
    Cmd.PUT_ASYMMETRIC_KEY: 0.2,
    Cmd.PUT_AUTHENTICATION_KEY: 0.2,
    Cmd.PUT_WRAP_KEY: 0.2,
    Cmd.GENERATE_WRAP_KEY: 0.2,
    Cmd.DELETE_OBJECT: 0.2,
    Cmd.RESET_DEVICE: 1.0,
}
DEFAULT_FRACTION: Final = 0.03


@dataclass(frozen=True, slots=True)
class LatencyProfile:
    sign_ms: float = 0.0

    def __post_init__(self) -> None:
        if self.sign_ms < 0:
            raise ValueError("latency must be >= 0")

    def seconds(self, command: int) -> float:
        return self.sign_ms * FRACTIONS.get(command, DEFAULT_FRACTION) / 1000.0
