"""`Metrics`: the recording methods the daemon calls, one per event it reports.

Owns: turning an event (a request answered, a refusal, a link up or down, an HSM
request, a failover, a shared-state result) into updates of the families listed in
kms.metrics.catalog, and the per-chain window behind the median sign latency.

Never touches: the text format, files, sockets, the privval protocol. Every recording
method is cheap and never raises (metrics must not stop a signer): it runs on the
request path, and HSM device threads call `hsm_request` from the executor.

Cost rule: one event takes the registry lock once, whatever number of series it
updates (the `*_held` family methods), and builds no strings: label values are the
caller's own strings in a tuple, all formatting happens when rendering.
"""

from __future__ import annotations

import collections
import math
import statistics
import time
from collections.abc import Callable
from typing import TypeVar

from kms import __version__
from kms.metrics.catalog import MEDIAN_WINDOW, SPECS
from kms.metrics.registry import Counter, Family, Gauge, Histogram, Lock, Registry, observable

F = TypeVar("F", bound=Family)


class Metrics:
    """The metrics the daemon records. Every recording method is cheap and never raises."""

    def __init__(self, *, clock: Callable[[], float] = time.time, lock: Lock | None = None) -> None:
        self.registry = Registry(lock=lock)
        self._lock = self.registry.lock
        r = self.registry
        fams: dict[str, Family] = {}
        for s in SPECS:
            if s.kind == "counter":
                fams[s.name] = r.counter(s.name, s.help, s.labels)
            elif s.kind == "gauge":
                fams[s.name] = r.gauge(s.name, s.help, s.labels)
            else:
                fams[s.name] = r.histogram(s.name, s.help, s.labels, s.buckets)

        def family(name: str, kind: type[F]) -> F:
            f = fams[name]
            assert isinstance(f, kind), name  # a catalog entry of the wrong kind: our bug
            return f

        def c(name: str) -> Counter:
            return family(name, Counter)

        def g(name: str) -> Gauge:
            return family(name, Gauge)

        def h(name: str) -> Histogram:
            return family(name, Histogram)

        g("kms_build_info").set((__version__,), 1)
        g("kms_start_time_seconds").set((), clock())
        self._signatures = c("kms_signatures_total")
        self._refusals = c("kms_refusals_total")
        self._sign_latency = h("kms_sign_latency_seconds")
        self._sign_median = g("kms_sign_latency_median_seconds")
        # per chain, the latest latencies; the median is computed when rendering, not per
        # signature (a deque append is all the hot path pays)
        self._recent: dict[str, collections.deque[float]] = {}
        self._by_replica = c("kms_replica_signatures_total")
        self._last_height = g("kms_last_signed_height")
        self._link_up = g("kms_link_up")
        self._reconnects = c("kms_link_reconnects_total")
        self._hsm_latency = h("kms_hsm_request_seconds")
        self._hsm_requests = c("kms_hsm_requests_total")
        self._hsm_healthy = g("kms_hsm_healthy")
        self._failovers = c("kms_failovers_total")
        self._hedges = c("kms_hedges_total")
        self.write_errors = c("kms_metrics_write_errors_total")
        self._shared = c("kms_shared_state_total")
        self._standby = g("kms_link_standby")

    # -- recording (hot path) --

    def signature(
        self, chain: str, msg_type: str, outcome: str, latency_s: float, replica: str | None
    ) -> None:
        """One answered sign request. outcome: signed | reused | refused | error."""
        if outcome != "signed" and outcome != "reused":
            self._signatures.inc((chain, msg_type, outcome))  # one series: inc locks once
            return
        timed = observable(latency_s)
        with self._lock:
            self._signatures.inc_held((chain, msg_type, outcome))
            if timed:
                self._sign_latency.observe_held((chain, msg_type), latency_s)
            if replica is not None and outcome == "signed":
                self._by_replica.inc_held((chain, replica))
        recent = self._recent.get(chain)
        if recent is None:
            recent = self._recent[chain] = collections.deque(maxlen=MEDIAN_WINDOW)
        if timed and math.isfinite(latency_s):
            recent.append(float(latency_s))

    def refusal(self, chain: str, reason: str) -> None:
        self._refusals.inc((chain, reason))

    def last_signed_height(self, chain: str, height: int) -> None:
        self._last_height.set((chain,), height)

    def link_state(self, chain: str, link: str, up: bool) -> None:
        key = (chain, link)
        with self._lock:
            self._link_up.set_held(key, 1 if up else 0)
            self._reconnects.touch_held(key)

    def link_reconnect(self, chain: str, link: str) -> None:
        self._reconnects.inc((chain, link))

    def hsm_request(self, replica: str, latency_s: float, ok: bool) -> None:
        timed = observable(latency_s)
        with self._lock:
            if timed:
                self._hsm_latency.observe_held((replica,), latency_s)
            self._hsm_requests.inc_held((replica, "ok" if ok else "error"))

    def hsm_health(self, replica: str, healthy: bool) -> None:
        self._hsm_healthy.set((replica,), 1 if healthy else 0)

    def failover(self, chain: str, from_replica: str, to_replica: str) -> None:
        self._failovers.inc((chain, from_replica, to_replica))

    def hedge(self, chain: str, slow_replica: str, to_replica: str) -> None:
        self._hedges.inc((chain, slow_replica, to_replica))

    def link_standby(self, chain: str, link: str, standby: bool) -> None:
        self._standby.set((chain, link), 1 if standby else 0)

    def shared_state(self, chain: str, result: str) -> None:
        self._shared.inc((chain, result))

    # -- reading --

    def render(self) -> str:
        for chain, recent in list(self._recent.items()):
            try:
                window = list(recent)  # render may run in a thread while the loop appends
            except RuntimeError:
                continue
            if window:
                self._sign_median.set((chain,), statistics.median(window))
        return self.registry.render()
