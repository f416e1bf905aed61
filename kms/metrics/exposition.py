"""The Prometheus text exposition format (version 0.0.4): pure functions from values to lines.

Owns: how a family's HELP/TYPE header, its samples and their labels are spelled (escaping,
special float values, histogram `_bucket`/`_sum`/`_count` series, the sort order of
series) and the content type a scrape answers with.

Never touches: the registry's values or lock (callers pass plain snapshots), files,
sockets, clocks. Nothing here runs on the request path: formatting happens only when a
scrape or a textfile write renders.

Rules:
- label values are escaped (backslash, double quote, newline); HELP text escapes
  backslash and newline; a label value that is not a string is shown as `str()` of it
  (a caller bug must not break a render);
- histograms render cumulative `_bucket` series with `le` (ending with `+Inf`, equal to
  `_count`), then `_sum` and `_count`;
- series are sorted by their label values as text, so a render is deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""What a `/metrics` response declares."""

LabelValues = tuple[str, ...]


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    """A sample value as the exposition format spells it (+Inf, -Inf, NaN, ints without .0)."""
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def format_le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(float(bound))


def label_block(names: Sequence[str], values: Sequence[str]) -> str:
    if not names:
        return ""
    inner = ",".join(
        f'{n}="{escape_label_value(v if isinstance(v, str) else str(v))}"'
        for n, v in zip(names, values, strict=True)
    )
    return "{" + inner + "}"


def series_order(item: tuple[Any, ...]) -> tuple[str, ...]:
    """Sort series (label values first) by their label values as text, whatever their type."""
    return tuple(v if isinstance(v, str) else str(v) for v in item[0])


def cumulative(counts: Iterable[int]) -> list[int]:
    """Per-bucket counts -> the cumulative counts `_bucket` series show."""
    out: list[int] = []
    total = 0
    for c in counts:
        total += c
        out.append(total)
    return out


def header(name: str, kind: str, help_text: str) -> list[str]:
    return [f"# HELP {name} {escape_help(help_text)}", f"# TYPE {name} {kind}"]


def scalar_lines(
    name: str,
    kind: str,
    help_text: str,
    labelnames: Sequence[str],
    items: Iterable[tuple[LabelValues, float]],
) -> list[str]:
    """HELP, TYPE and one sample per series of a counter or gauge."""
    return header(name, kind, help_text) + [
        f"{name}{label_block(labelnames, k)} {format_value(v)}"
        for k, v in sorted(items, key=series_order)
    ]


def histogram_lines(
    name: str,
    help_text: str,
    labelnames: Sequence[str],
    bounds: Sequence[float],
    series: Iterable[tuple[LabelValues, list[int], float, int]],
) -> list[str]:
    """HELP, TYPE and, per series, its cumulative buckets, `_sum` and `_count`.

    `series` holds (label values, per-bucket counts, sum, count); the last bound is +Inf.
    """
    lines = header(name, "histogram", help_text)
    names = (*labelnames, "le")
    les = [format_le(b) for b in bounds]
    for key, buckets, total, count in sorted(series, key=series_order):
        for le, cum in zip(les, cumulative(buckets), strict=True):
            block = label_block(names, (*key, le))
            lines.append(f"{name}_bucket{block} {cum}")
        block = label_block(labelnames, key)
        lines.append(f"{name}_sum{block} {format_value(total)}")
        lines.append(f"{name}_count{block} {count}")
    return lines
