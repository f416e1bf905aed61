"""The benchmark suite's arithmetic and plumbing: percentiles, targets, config, a real floor run."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.__main__ import compute_targets, table
from bench.common import Section, Target, jsonable, percentile, summarize_ms
from bench.softsign import write_home
from tests.conftest import REPO_ROOT


def test_percentile_interpolates_linearly() -> None:
    values = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 50) == 3.0
    assert percentile(values, 100) == 5.0
    assert percentile(values, 25) == 2.0
    assert percentile(values, 99) == pytest.approx(4.96)
    assert percentile([7.0], 99) == 7.0
    assert math.isnan(percentile([], 50))


def test_summary_uses_every_sample_and_sorts() -> None:
    s = summarize_ms([5.0, 1.0, 3.0, 100.0])
    assert s.n == 4
    assert s.max == 100.0
    assert s.p50 == 4.0
    assert s.mean == pytest.approx(27.25)


@pytest.mark.parametrize(
    ("value", "limit", "kind", "met"),
    [
        (1.0, 2.0, "<=", True),
        (3.0, 2.0, "<=", False),
        (3.0, 2.0, ">=", True),
        (1.0, 2.0, ">=", False),
        (math.nan, 2.0, "<=", None),
        (1.0, math.nan, "<=", None),
    ],
)
def test_target_verdicts(value: float, limit: float, kind: str, met: bool | None) -> None:
    assert Target("t", value, limit, kind).met is met


def _sections(soft_p99: float, tm_p50: float, hsm3: float, hang_ms: float) -> dict[str, Section]:
    return {
        "floor": Section("floor", {"p50": 1.0, "p99": 4.0, "max": 5.0}),
        "softsign": Section(
            "softsign",
            {
                "1x1": {"p50": 0.9, "p99": soft_p99, "max": 9.0, "cpu_ms_per_request": 0.2},
                "50x2": {"p50": 1.0, "p99": 2.5},
            },
        ),
        "tmkms": Section(
            "tmkms",
            {"1x1": {"p50": tm_p50, "p99": 2.0}, "paired_1x1": {"median_ratio": 0.9 / tm_p50}},
        ),
        "hsm": Section(
            "hsm",
            {
                "device": {"signatures_per_s": 8.8},
                "1": {"signatures_per_s": 9.0},
                "3": {"signatures_per_s": hsm3},
            },
        ),
        "failover": Section(
            "failover",
            {
                "refused": {"p50": 110.0, "max": 120.0},
                "reset": {"p50": 110.0, "max": 115.0},
                "hang": {"p50": hang_ms, "max": hang_ms},
            },
        ),
        "extension": Section("extension", {"3": {"p50": 125.0}, "1": {"p50": 240.0}}),
    }


def test_targets_are_computed_from_the_same_run() -> None:
    by_label = {t.label: t for t in compute_targets(_sections(0.8, 1.2, 28.0, 260.0))}
    soft1 = by_label["softsign p99, 1 chain (ms) <= 1"]
    assert (soft1.value, soft1.limit, soft1.met) == (0.8, 1.0, True)
    assert by_label["softsign p99, 50x2 (ms) <= 3"].met is True
    ratio = by_label["softsign p50 / tmkms p50, 1 chain, paired runs (median) <= 1.0"]
    assert ratio.value == pytest.approx(0.9 / 1.2) and ratio.met is True
    assert by_label["CPU per request, softsign 1x1 (ms) <= 0.25"].met is True
    ext = by_label["precommit with extension, 3 replicas at 110 ms (ms, p50) <= 130"]
    assert (ext.value, ext.met) == (125.0, True)
    hsm3 = next(
        t for t in by_label.values() if t.label.startswith("hsm 3") and "nominal" in t.label
    )
    assert hsm3.limit == pytest.approx(0.95 * 3 / 0.110) and hsm3.met is True
    # and against what one device gives the bare library in the same run
    hsm3_dev = next(
        t for t in by_label.values() if t.label.startswith("hsm 3") and "bare" in t.label
    )
    assert hsm3_dev.limit == pytest.approx(0.95 * 3 * 8.8) and hsm3_dev.met is True
    assert by_label["hung replica -> signature (ms, max) <= 300"].met is True
    assert by_label["failover after refused connection (ms, max)"].met is True


def test_missed_targets_are_reported_as_missed() -> None:
    targets = compute_targets(_sections(1.5, 0.8, 20.0, 1060.0))
    missed = {t.label for t in targets if t.met is False}
    assert "softsign p99, 1 chain (ms) <= 1" in missed
    assert "softsign p50 / tmkms p50, 1 chain, paired runs (median) <= 1.0" in missed
    assert "hung replica -> signature (ms, max) <= 300" in missed
    assert any(label.startswith("hsm 3") for label in missed)
    assert "MISSED" in table(_sections(1.5, 0.8, 20.0, 1060.0), targets)


def test_missing_sections_give_unknown_verdicts_not_passes() -> None:
    targets = compute_targets({"floor": Section("floor", {"p99": 1.0})})
    assert all(t.met is None for t in targets)


def test_jsonable_replaces_nan_and_inf() -> None:
    doc = jsonable({"a": math.nan, "b": [math.inf, 1.234567891], "c": {"d": 2}})
    assert doc == {"a": None, "b": [None, 1.2346], "c": {"d": 2}}
    json.dumps(doc, allow_nan=False)


def test_signer_home_is_a_valid_kms_config(tmp_path: Path) -> None:
    from kms.config import load_config

    addrs = {"c-1": ["tcp://127.0.0.1:1", "tcp://127.0.0.1:2"], "c-2": ["tcp://127.0.0.1:3"]}
    home = write_home(tmp_path / "home", "kms", ["c-1", "c-2"], addrs)
    cfg = load_config(home.config)
    assert [c.id for c in cfg.chains] == ["c-1", "c-2"]
    assert len(cfg.validators) == 3
    assert all(c.sign_extensions for c in cfg.chains)
    for c in cfg.chains:
        assert c.state_file.is_file()  # kms fails closed without one
    assert os.stat(home.root / "secrets" / "consensus.key").st_mode & 0o077 == 0


def test_floor_only_run_writes_json_with_every_section_key(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--only",
            "floor",
            "--json",
            str(out),
            "--workdir",
            str(tmp_path / "work"),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    assert {"floor", "softsign", "hsm", "failover", "extension", "tmkms", "targets", "meta"} <= set(
        doc
    )
    assert doc["floor"]["n"] == 300
    assert 0 < doc["floor"]["p50"] <= doc["floor"]["p99"] <= doc["floor"]["max"]
    assert "floor (fsync + sign)" in r.stdout
    hop = doc["floor"]["state_write_hop"]
    assert hop["executor"]["cpu_us"] > 0 and hop["write_thread"]["cpu_us"] > 0
    assert "state-write hop" in r.stdout


def test_paired_cpu_row_shows_both_signers_and_the_load() -> None:
    sections = _sections(0.9, 1.0, 27.0, 200.0)
    sections["tmkms"].data["paired_1x1"].update(
        {
            "kms_cpu_ms": [0.9, 1.1],
            "tmkms_cpu_ms": [0.3, 0.25],
            "median_cpu_ratio": 3.7,
            "load_average": [6.5, 7.25],
        }
    )
    out = table(sections, compute_targets(sections))
    row = next(line for line in out.splitlines() if "paired CPU" in line)
    assert "ratio 3.70" in row and "0.900, 1.100" in row and "0.300, 0.250" in row
    assert "load average 6.5, 7.2" in row
