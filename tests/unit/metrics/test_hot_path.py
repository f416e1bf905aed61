"""The request-path cost rule: one recorded event takes the registry lock once, however many
series it updates, and still updates all of them."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from types import TracebackType

import pytest

from kms.metrics import Metrics
from tests.unit.metrics.promparse import parse


class CountingLock:
    """A real lock that counts how often it is taken."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.taken = 0

    def __enter__(self) -> bool:
        self._lock.acquire()
        self.taken += 1
        return True

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._lock.release()


EVENTS: dict[str, Callable[[Metrics], None]] = {
    "signed": lambda m: m.signature("c", "precommit", "signed", 0.002, "hsm-a"),
    "reused": lambda m: m.signature("c", "precommit", "reused", 0.002, None),
    "refused": lambda m: m.signature("c", "prevote", "refused", 0.001, None),
    "refusal": lambda m: m.refusal("c", "double_sign"),
    "height": lambda m: m.last_signed_height("c", 7),
    "link_state": lambda m: m.link_state("c", "node", True),
    "reconnect": lambda m: m.link_reconnect("c", "node"),
    "hsm_request": lambda m: m.hsm_request("hsm-a", 0.11, True),
    "hsm_health": lambda m: m.hsm_health("hsm-a", True),
    "failover": lambda m: m.failover("c", "a", "b"),
    "hedge": lambda m: m.hedge("c", "a", "b"),
    "standby": lambda m: m.link_standby("c", "node", True),
    "shared": lambda m: m.shared_state("c", "committed"),
}


@pytest.mark.parametrize("event", sorted(EVENTS))
def test_each_event_takes_the_lock_once(event: str) -> None:
    lock = CountingLock()
    m = Metrics(lock=lock)
    before = lock.taken
    EVENTS[event](m)
    assert lock.taken - before == 1


def test_a_signed_request_updates_every_series_under_its_one_lock() -> None:
    lock = CountingLock()
    m = Metrics(lock=lock)
    m.signature("c", "precommit", "signed", 0.002, "hsm-a")
    m.hsm_request("hsm-a", 0.11, False)
    m.link_state("c", "node", True)
    fams = parse(m.render())
    assert fams["kms_signatures_total"].value(chain="c", type="precommit", outcome="signed") == 1
    count = "kms_sign_latency_seconds_count"
    assert fams["kms_sign_latency_seconds"].value(count, chain="c", type="precommit") == 1
    assert fams["kms_replica_signatures_total"].value(chain="c", replica="hsm-a") == 1
    assert fams["kms_sign_latency_median_seconds"].value(chain="c") == 0.002
    assert (
        fams["kms_hsm_request_seconds"].value("kms_hsm_request_seconds_count", replica="hsm-a") == 1
    )
    assert fams["kms_hsm_requests_total"].value(replica="hsm-a", result="error") == 1
    assert fams["kms_link_up"].value(chain="c", link="node") == 1
    assert fams["kms_link_reconnects_total"].value(chain="c", link="node") == 0


def test_an_infinite_latency_is_counted_in_inf_but_kept_out_of_the_median() -> None:
    m = Metrics()
    m.signature("c", "prevote", "signed", 0.004, None)
    m.signature("c", "prevote", "signed", math.inf, None)
    fams = parse(m.render())
    h = fams["kms_sign_latency_seconds"]
    assert h.value("kms_sign_latency_seconds_count", chain="c", type="prevote") == 2
    assert h.value("kms_sign_latency_seconds_bucket", chain="c", type="prevote", le="5.0") == 1
    assert h.value("kms_sign_latency_seconds_bucket", chain="c", type="prevote", le="+Inf") == 2
    assert fams["kms_sign_latency_median_seconds"].value(chain="c") == 0.004
