"""The metrics `kms` exports: their names, types, labels, help texts and buckets.

Owns: the list of `kms_*` families (one `MetricSpec` each; docs/metrics.md is
`metrics_table_markdown()`, checked by a test), the histogram buckets, the outcome and
refusal-reason values the service passes, and the size of the median window.

Never touches: values (kms.metrics.registry holds them, kms.metrics.recorder records
them), the text format, files, sockets. Data only: adding a metric is one entry here
plus the recording method that updates it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from kms.refusal import Label

OUTCOMES: tuple[str, ...] = ("signed", "reused", "refused", "error")
"""What `Metrics.signature` expects as `outcome`."""

REFUSAL_REASONS: tuple[str, ...] = tuple(label.value for label in Label)
"""The `reason` label values of kms_refusals_total: `kms.refusal.Label`, their one home."""

SIGN_BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.15,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)
"""Sign latency buckets (seconds): sub-ms softsign up to the node's 5 s deadline."""

HSM_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.125,
    0.15,
    0.2,
    0.3,
    0.5,
    1.0,
    2.0,
    5.0,
)
"""HSM request buckets (seconds): an Ed25519 signature on a YubiHSM2 is ~0.10-0.15 s."""


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One exported family: what it is called, what it is, what it means."""

    name: str
    kind: Literal["counter", "gauge", "histogram"]
    labels: tuple[str, ...]
    help: str

    @property
    def buckets(self) -> tuple[float, ...]:
        """The histogram buckets for this family (empty for counters and gauges)."""
        if self.kind != "histogram":
            return ()
        return HSM_BUCKETS if self.name.startswith("kms_hsm_") else SIGN_BUCKETS


SPECS: tuple[MetricSpec, ...] = (
    MetricSpec("kms_build_info", "gauge", ("version",), "Always 1; the kms version as a label."),
    MetricSpec("kms_start_time_seconds", "gauge", (), "Unix time the kms process started."),
    MetricSpec(
        "kms_signatures_total",
        "counter",
        ("chain", "type", "outcome"),
        "Sign requests answered, by message type and outcome (signed, reused, refused, error).",
    ),
    MetricSpec(
        "kms_refusals_total",
        "counter",
        ("chain", "reason"),
        "Sign requests refused, by reason (" + ", ".join(REFUSAL_REASONS) + ").",
    ),
    MetricSpec(
        "kms_sign_latency_seconds",
        "histogram",
        ("chain", "type"),
        "Time from request decoded to reply ready, for requests answered with a signature "
        "(signed or reused).",
    ),
    MetricSpec(
        "kms_sign_latency_median_seconds",
        "gauge",
        ("chain",),
        "Median of kms_sign_latency_seconds over the chain's last 1000 signatures, all types "
        "(Celestia's validator policy asks for <= 10 ms).",
    ),
    MetricSpec(
        "kms_replica_signatures_total",
        "counter",
        ("chain", "replica"),
        "Signatures produced, by the signer or replica that produced them.",
    ),
    MetricSpec(
        "kms_last_signed_height",
        "gauge",
        ("chain",),
        "Height of the last message signed for the chain (the double-sign watermark).",
    ),
    MetricSpec(
        "kms_link_up",
        "gauge",
        ("chain", "link"),
        "1 while the connection to the validator node is established and authenticated, else 0.",
    ),
    MetricSpec(
        "kms_link_reconnects_total",
        "counter",
        ("chain", "link"),
        "Times the connection to the validator node was re-established after a loss.",
    ),
    MetricSpec(
        "kms_hsm_request_seconds",
        "histogram",
        ("replica",),
        "Latency of one HSM signing request (all results), per replica.",
    ),
    MetricSpec(
        "kms_hsm_requests_total",
        "counter",
        ("replica", "result"),
        "HSM requests by result (ok, error), per replica.",
    ),
    MetricSpec(
        "kms_hsm_healthy",
        "gauge",
        ("replica",),
        "1 when the replica answered its last request or health check, else 0.",
    ),
    MetricSpec(
        "kms_failovers_total",
        "counter",
        ("chain", "from", "to"),
        "Sign requests moved from a failed replica to another one.",
    ),
    MetricSpec(
        "kms_hedges_total",
        "counter",
        ("chain", "from", "to"),
        "Sign requests also sent to another replica because the first had not answered "
        "within its hedge delay.",
    ),
    MetricSpec(
        "kms_link_standby",
        "gauge",
        ("chain", "link"),
        "1 while the node takes our TCP connection but not the handshake: it serves another "
        "signer and this host waits as a standby.",
    ),
    MetricSpec(
        "kms_shared_state_total",
        "counter",
        ("chain", "result"),
        "Shared-watermark (etcd) gate events: committed, reused, refused, conflict, ambiguous, "
        "contention, unavailable, bad_record.",
    ),
    MetricSpec(
        "kms_metrics_write_errors_total",
        "counter",
        (),
        "Failed attempts to write the metrics textfile.",
    ),
)


MEDIAN_WINDOW = 1000
"""Signatures per chain behind kms_sign_latency_median_seconds."""


def metrics_table_markdown() -> str:
    """The markdown table of every metric (docs/metrics.md is this, checked by a test)."""
    rows = ["| name | type | labels | meaning |", "|---|---|---|---|"]
    for s in SPECS:
        labels = ", ".join(f"`{x}`" for x in s.labels) or "-"
        rows.append(f"| `{s.name}` | {s.kind} | {labels} | {s.help} |")
    return "\n".join(rows) + "\n"
