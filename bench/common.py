"""Shared pieces of the benchmark suite: statistics, process accounting, ports, key files, targets.

Owns: how a list of latencies becomes p50/p99/max (linear-interpolated
percentiles, milliseconds), reading a child process's CPU time and peak RSS from
/proc, finding free loopback ports, writing throw-away key files, and the targets
table (what each number is compared with). Never touches the kms package's
internals: benchmarks drive kms through its command line and its public APIs.
"""

from __future__ import annotations

import base64
import math
import os
import socket
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey


@dataclass(frozen=True, slots=True)
class Summary:
    """Latency summary in milliseconds."""

    n: int
    p50: float
    p99: float
    max: float
    mean: float

    def as_dict(self) -> dict[str, float]:
        return {"n": self.n, "p50": self.p50, "p99": self.p99, "max": self.max, "mean": self.mean}


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of already sorted values, linear interpolation."""
    if not sorted_values:
        return math.nan
    if len(sorted_values) == 1:
        return float(sorted_values[0])
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    frac = pos - lo
    return float(sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * frac)


def summarize_ms(values_ms: Sequence[float]) -> Summary:
    s = sorted(values_ms)
    if not s:
        return Summary(0, math.nan, math.nan, math.nan, math.nan)
    return Summary(
        n=len(s),
        p50=percentile(s, 50),
        p99=percentile(s, 99),
        max=float(s[-1]),
        mean=statistics.fmean(s),
    )


# --- process accounting ------------------------------------------------------------------

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (and its reaped children) from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    # the command name may contain spaces; fields after the closing parenthesis
    fields = data[data.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / _CLK_TCK


def process_peak_rss_mb(pid: int) -> float:
    """Peak resident set size (VmHWM) of a process in MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return math.nan


def process_threads(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return 0


def load_average() -> float:
    return os.getloadavg()[0]


# --- ports, keys, files ---------------------------------------------------------------------


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (racy by nature; callers retry on bind errors)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_private(path: Path, data: bytes) -> None:
    """Write a secret-looking file with mode 0600 (throw-away benchmark keys only)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.chmod(path, 0o600)


def write_base64_seed(path: Path, seed: bytes) -> None:
    """An Ed25519 seed as base64 (the format of tmkms's and kms's key files)."""
    write_private(path, base64.b64encode(seed) + b"\n")


def public_key(seed: bytes) -> bytes:
    return bytes(SigningKey(seed).verify_key)


def wait_until(predicate: Any, timeout: float, interval: float = 0.05) -> bool:
    """Poll `predicate()` until true or `timeout` seconds pass (synchronous)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


# --- targets ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """One goal a number is checked against. `limit` is computed from other results."""

    label: str
    value: float
    limit: float
    kind: str  # "<=" or ">="

    @property
    def met(self) -> bool | None:
        if math.isnan(self.value) or math.isnan(self.limit):
            return None
        return self.value <= self.limit if self.kind == "<=" else self.value >= self.limit

    def line(self) -> str:
        verdict = {True: "ok", False: "MISSED", None: "n/a"}[self.met]
        return f"{self.label}: {self.value:.3f} {self.kind} {self.limit:.3f}  [{verdict}]"

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "value": _json_num(self.value),
            "limit": _json_num(self.limit),
            "kind": self.kind,
            "met": self.met,
        }


def _json_num(x: float) -> float | None:
    return None if math.isnan(x) or math.isinf(x) else round(x, 4)


def jsonable(obj: Any) -> Any:
    """NaN/Inf -> None and floats rounded to 0.1 us, recursively (json.dumps-safe)."""
    if isinstance(obj, float):
        return _json_num(obj)
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    return obj


@dataclass
class Section:
    """One benchmark's result: numbers (ms unless named otherwise), notes, or why it was skipped."""

    name: str
    data: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.data)
        if self.notes:
            out["notes"] = list(self.notes)
        if self.skipped is not None:
            out["skipped"] = self.skipped
        clean: dict[str, Any] = jsonable(out)
        return clean
