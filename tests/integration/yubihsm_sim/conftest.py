"""Fixtures: a running simulator and the unmodified `yubihsm` library talking to it over HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from yubihsm.backends.http import HttpBackend
from yubihsm.core import AuthSession, YubiHsm

from kms.sim.yubihsm import SimulatedHsm


class FakeClock:
    """A settable monotonic clock (session expiry without sleeping)."""

    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


def connect(sim: SimulatedHsm, read_timeout: float = 3) -> YubiHsm:
    # requests takes float seconds; yubihsm's annotation says int
    return YubiHsm(HttpBackend(sim.url, timeout=(1, read_timeout)))  # type: ignore[arg-type]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sim(clock: FakeClock) -> Iterator[SimulatedHsm]:
    with SimulatedHsm(clock=clock) as s:
        yield s


@pytest.fixture
def hsm(sim: SimulatedHsm) -> Iterator[YubiHsm]:
    h = connect(sim)
    yield h
    h.close()


@pytest.fixture
def session(hsm: YubiHsm) -> AuthSession:
    return hsm.create_session_derived(1, "password")
