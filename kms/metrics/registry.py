"""Metric families (counter, gauge, histogram) and the registry that holds them.

Owns: the values of every series, keyed by a tuple of label values; the validation of
metric and label names (at family creation, never per update); the one lock per
registry that makes recording safe from executor threads; a consistent snapshot for
rendering.

Never touches: the text format (kms.metrics.exposition spells the lines), which metrics
`kms` exports (kms.metrics.catalog), files, sockets. It never raises into recording
callers: recording is a lock plus a dict lookup and an addition; a bad value (negative
counter increment, NaN observation) is dropped. A caller that records several series
for one event takes the lock once and uses the `*_held` methods (kms.metrics.recorder
does, on the request path).
"""

from __future__ import annotations

import bisect
import itertools
import math
import re
import threading
from collections.abc import Sequence
from types import TracebackType
from typing import Literal, Protocol

from kms.metrics import exposition
from kms.metrics.exposition import LabelValues

_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_LABEL_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
_RESERVED_LABELS = frozenset({"le", "quantile"})
_NUMBER = (int, float)  # a tuple: isinstance with it is faster than with `int | float`


class Lock(Protocol):
    """What the registry needs of its lock (a threading.Lock; a test may count acquisitions)."""

    def __enter__(self) -> object: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> object: ...


def observable(value: object) -> bool:
    """Whether `value` can go into a histogram: a number, not NaN (infinities count as +Inf)."""
    return isinstance(value, _NUMBER) and value == value  # NaN is the one value != itself


class Family:
    """A named metric with fixed label names; subclasses hold the values."""

    kind: Literal["counter", "gauge", "histogram"]

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str], lock: Lock) -> None:
        if not _NAME_RE.match(name):
            raise ValueError(f"invalid metric name {name!r}")
        for label in labelnames:
            if not _LABEL_RE.match(label) or label.startswith("__"):
                raise ValueError(f"invalid label name {label!r} for {name}")
            if label in _RESERVED_LABELS:
                raise ValueError(f"label name {label!r} is reserved ({name})")
        if len(set(labelnames)) != len(labelnames):
            raise ValueError(f"duplicate label names for {name}")
        self.name = name
        self.help = help_text
        self.labelnames: tuple[str, ...] = tuple(labelnames)
        self._lock = lock

    def snapshot_all(self) -> object:
        """A cheap copy of every series; call with the registry lock held."""
        raise NotImplementedError

    def format(self, snap: object) -> list[str]:
        """HELP, TYPE and the sample lines of a snapshot (no lock needed)."""
        raise NotImplementedError


class _Scalar(Family):
    def __init__(self, name: str, help_text: str, labelnames: Sequence[str], lock: Lock) -> None:
        super().__init__(name, help_text, labelnames, lock)
        self._values: dict[LabelValues, float] = {}
        if not self.labelnames:
            self._values[()] = 0

    def value(self, labels: LabelValues = ()) -> float:
        with self._lock:
            return self._values.get(labels, 0)

    def items(self) -> list[tuple[LabelValues, float]]:
        with self._lock:
            return sorted(self._values.items())

    def snapshot_all(self) -> object:
        return list(self._values.items())

    def format(self, snap: object) -> list[str]:
        assert isinstance(snap, list)
        items: list[tuple[LabelValues, float]] = snap
        return exposition.scalar_lines(self.name, self.kind, self.help, self.labelnames, items)


class Counter(_Scalar):
    """A monotonically increasing count per label-value tuple."""

    kind: Literal["counter"] = "counter"

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str], lock: Lock) -> None:
        if not name.endswith("_total"):
            raise ValueError(f"counter {name!r} must end in _total")
        super().__init__(name, help_text, labelnames, lock)

    def inc(self, labels: LabelValues = (), amount: float = 1) -> None:
        if amount < 0:
            return  # counters never go down; a negative amount is a caller bug, ignored
        with self._lock:
            self._values[labels] = self._values.get(labels, 0) + amount

    def inc_held(self, labels: LabelValues, amount: float = 1) -> None:
        """`inc` for a caller that holds the registry lock (amount >= 0, checked by the caller)."""
        self._values[labels] = self._values.get(labels, 0) + amount

    def touch(self, labels: LabelValues) -> None:
        """Make a series exist at 0 (so rate() works from the first increment)."""
        with self._lock:
            self._values.setdefault(labels, 0)

    def touch_held(self, labels: LabelValues) -> None:
        """`touch` for a caller that holds the registry lock."""
        self._values.setdefault(labels, 0)


class Gauge(_Scalar):
    """A value that goes up and down per label-value tuple."""

    kind: Literal["gauge"] = "gauge"

    def set(self, labels: LabelValues, value: float) -> None:
        with self._lock:
            self._values[labels] = value

    def set_held(self, labels: LabelValues, value: float) -> None:
        """`set` for a caller that holds the registry lock."""
        self._values[labels] = value


class _HistState:
    __slots__ = ("buckets", "count", "sum")

    def __init__(self, n: int) -> None:
        self.buckets = [0] * n  # per-bucket (non-cumulative) counts; last one is +Inf
        self.sum = 0.0
        self.count = 0


class Histogram(Family):
    """Observations counted into fixed buckets per label-value tuple."""

    kind: Literal["histogram"] = "histogram"

    def __init__(
        self,
        name: str,
        help_text: str,
        labelnames: Sequence[str],
        lock: Lock,
        buckets: Sequence[float],
    ) -> None:
        super().__init__(name, help_text, labelnames, lock)
        bounds = [float(b) for b in buckets if not math.isinf(b)]
        if not bounds or any(a >= b for a, b in itertools.pairwise(bounds)):
            raise ValueError(f"histogram {name} buckets must be strictly increasing")
        self.bounds: tuple[float, ...] = (*bounds, math.inf)
        self._finite = tuple(bounds)
        self._states: dict[LabelValues, _HistState] = {}

    def observe(self, labels: LabelValues, value: float) -> None:
        if not observable(value):
            return  # a caller bug must not reach the signer's hot path as an exception
        with self._lock:
            self.observe_held(labels, value)

    def observe_held(self, labels: LabelValues, value: float) -> None:
        """`observe` for a caller that holds the registry lock and checked `observable(value)`."""
        st = self._states.get(labels)
        if st is None:
            st = self._states[labels] = _HistState(len(self.bounds))
        st.buckets[bisect.bisect_left(self._finite, value)] += 1  # first bound >= value ("le")
        st.sum += value
        st.count += 1

    def snapshot(self, labels: LabelValues) -> tuple[tuple[int, ...], float, int]:
        """(cumulative bucket counts, sum, count) for one series; zeros if never observed."""
        with self._lock:
            st = self._states.get(labels)
            if st is None:
                return (0,) * len(self.bounds), 0.0, 0
            return tuple(exposition.cumulative(st.buckets)), st.sum, st.count

    def snapshot_all(self) -> object:
        return [(k, list(st.buckets), st.sum, st.count) for k, st in self._states.items()]

    def format(self, snap: object) -> list[str]:
        assert isinstance(snap, list)
        series: list[tuple[LabelValues, list[int], float, int]] = snap
        return exposition.histogram_lines(
            self.name, self.help, self.labelnames, self.bounds, series
        )


class Registry:
    """Families in registration order, sharing one lock; renders the text format."""

    def __init__(self, *, lock: Lock | None = None) -> None:
        self.lock: Lock = threading.Lock() if lock is None else lock
        self._families: dict[str, Family] = {}

    def _add(self, fam: Family) -> None:
        if fam.name in self._families:
            raise ValueError(f"metric {fam.name} registered twice")
        self._families[fam.name] = fam

    def counter(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> Counter:
        c = Counter(name, help_text, labelnames, self.lock)
        self._add(c)
        return c

    def gauge(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> Gauge:
        g = Gauge(name, help_text, labelnames, self.lock)
        self._add(g)
        return g

    def histogram(
        self, name: str, help_text: str, labelnames: Sequence[str], buckets: Sequence[float]
    ) -> Histogram:
        h = Histogram(name, help_text, labelnames, self.lock, buckets)
        self._add(h)
        return h

    def families(self) -> tuple[Family, ...]:
        return tuple(self._families.values())

    def render(self) -> str:
        """The Prometheus text exposition format (version 0.0.4), newline-terminated.

        The lock is held only to copy the values (one consistent snapshot); formatting
        happens outside it, so recording threads are not held up by a render.
        """
        fams = tuple(self._families.values())
        with self.lock:
            snaps = [f.snapshot_all() for f in fams]
        lines: list[str] = []
        for fam, snap in zip(fams, snaps, strict=True):
            lines.extend(fam.format(snap))
        return "\n".join(lines) + "\n"
