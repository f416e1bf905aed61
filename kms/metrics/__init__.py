"""Metrics: a registry, the Prometheus text format, a textfile writer, a loopback listener.

This package only re-exports the names the rest of the tree imports (`from kms.metrics
import Metrics, run_metrics, ...`), so callers do not depend on its inner layout:

- `catalog`: the `kms_*` families (names, types, labels, help, buckets; docs/metrics.md
  is `metrics_table_markdown()`);
- `registry`: counter, gauge and histogram families and the registry holding their values
  under one lock;
- `recorder`: `Metrics`, the recording methods the daemon calls on the request path
  (cheap, never raising);
- `exposition`: the text exposition format (version 0.0.4), pure;
- `textfile`: the node_exporter textfile writer (atomic, through kms.fsutil);
- `listener`: the optional HTTP/1.1 `/metrics` server, loopback only;
- `runner`: `run_metrics`, the daemon's job running whichever outputs the config asks for.

Never touches, as a whole: sockets other than its own loopback listener, state files,
signers, the privval protocol. `MetricsError` lives in kms.errors and is re-exported here.
"""

from __future__ import annotations

from kms.errors import MetricsError
from kms.metrics.catalog import (
    HSM_BUCKETS,
    MEDIAN_WINDOW,
    OUTCOMES,
    REFUSAL_REASONS,
    SIGN_BUCKETS,
    metrics_table_markdown,
)
from kms.metrics.listener import MetricsServer, check_loopback
from kms.metrics.recorder import Metrics
from kms.metrics.registry import Counter, Gauge, Histogram, Registry
from kms.metrics.runner import run_metrics
from kms.metrics.textfile import TextfileWriter

__all__ = [
    "HSM_BUCKETS",
    "MEDIAN_WINDOW",
    "OUTCOMES",
    "REFUSAL_REASONS",
    "SIGN_BUCKETS",
    "Counter",
    "Gauge",
    "Histogram",
    "Metrics",
    "MetricsError",
    "MetricsServer",
    "Registry",
    "TextfileWriter",
    "check_loopback",
    "metrics_table_markdown",
    "run_metrics",
]
