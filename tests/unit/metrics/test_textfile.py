"""The textfile writer: atomic replacement, periodic and final writes, errors never raised."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import pytest

from kms.config import MetricsConfig
from kms.metrics import Metrics, TextfileWriter, run_metrics
from tests.unit.metrics.promparse import parse


def test_write_produces_a_parseable_file(tmp_path: Path) -> None:
    m = Metrics()
    m.signature("c", "prevote", "signed", 0.001, None)
    target = tmp_path / "kms.prom"
    TextfileWriter(target, 1.0, m.render).write_once()
    fams = parse(target.read_text())
    assert fams["kms_signatures_total"].value(chain="c", type="prevote", outcome="signed") == 1
    assert oct(target.stat().st_mode & 0o777) == oct(0o644)


def test_a_failed_write_leaves_the_previous_file_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "kms.prom"
    w = TextfileWriter(target, 1.0, lambda: "old_total 1\n")
    w.write_once()
    real_write = os.write
    calls = 0

    def half_then_fail(fd: int, data: bytes | memoryview) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            return real_write(fd, bytes(data)[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_fail)
    with pytest.raises(OSError):
        w.write_once("new_total " + "9" * 10_000 + "\n")
    monkeypatch.undo()
    assert target.read_text() == "old_total 1\n"
    assert [p.name for p in tmp_path.iterdir()] == ["kms.prom"], "temporary file left behind"


def test_temporary_file_is_hidden_and_not_a_prom_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[Path] = []
    real_open = os.open

    def spy(path: str, flags: int, mode: int = 0o777) -> int:
        opened.append(Path(path))
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", spy)
    TextfileWriter(tmp_path / "kms.prom", 1.0, lambda: "").write_once()
    tmp = opened[0]
    assert tmp.parent == tmp_path  # same directory: rename is atomic
    assert tmp.name.startswith(".") and not tmp.name.endswith(".prom")


def test_a_symlink_planted_at_the_old_predictable_temp_name_is_not_followed(
    tmp_path: Path,
) -> None:
    # Regression (issue 11, item 4): the temporary file used to be
    # ".kms.prom.<pid>.tmp" opened with O_TRUNC, so anyone who could write the
    # directory could make kms truncate and overwrite any file it can write.
    victim = tmp_path / "state.json"
    victim.write_text("precious\n")
    (tmp_path / f".kms.prom.{os.getpid()}.tmp").symlink_to(victim)
    TextfileWriter(tmp_path / "kms.prom", 1.0, lambda: "x_total 1\n").write_once()
    assert victim.read_text() == "precious\n"
    assert (tmp_path / "kms.prom").read_text() == "x_total 1\n"


def test_concurrent_reader_never_sees_a_torn_file(tmp_path: Path) -> None:
    target = tmp_path / "kms.prom"
    versions = [("a" * 200_000) + "\n", ("b" * 300_000) + "\n"]
    w = TextfileWriter(target, 1.0, lambda: versions[0])
    w.write_once()
    stop = threading.Event()
    bad: list[int] = []

    def reader() -> None:
        while not stop.is_set():
            text = target.read_text()
            if text not in versions:
                bad.append(len(text))

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(60):
            w.write_once(versions[i % 2])
    finally:
        stop.set()
        t.join()
    assert bad == []


async def test_run_writes_periodically_and_once_more_on_stop(tmp_path: Path) -> None:
    target = tmp_path / "kms.prom"
    state = {"n": 0}

    def render() -> str:
        state["n"] += 1
        return f"renders_total {state['n']}\n"

    w = TextfileWriter(target, 0.02, render)
    stop = asyncio.Event()
    task = asyncio.create_task(w.run(stop))
    for _ in range(200):
        await asyncio.sleep(0.01)
        if w.writes >= 3:
            break
    assert w.writes >= 3
    stop.set()
    await asyncio.wait_for(task, 2)
    assert target.read_text() == f"renders_total {state['n']}\n"  # the final snapshot


async def test_run_metrics_counts_write_errors_and_keeps_going(tmp_path: Path) -> None:
    m = Metrics()
    cfg = MetricsConfig(textfile=tmp_path / "missing-dir" / "kms.prom", interval=0.01)
    stop = asyncio.Event()
    task = asyncio.create_task(run_metrics(m, cfg, stop))
    for _ in range(200):
        await asyncio.sleep(0.01)
        if m.write_errors.value() >= 2:
            break
    assert m.write_errors.value() >= 2
    (tmp_path / "missing-dir").mkdir()
    for _ in range(200):
        await asyncio.sleep(0.01)
        if cfg.textfile is not None and cfg.textfile.exists():
            break
    stop.set()
    await asyncio.wait_for(task, 2)
    assert cfg.textfile is not None
    fams = parse(cfg.textfile.read_text())
    assert fams["kms_metrics_write_errors_total"].value() >= 2


async def test_run_metrics_without_outputs_waits_for_stop() -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(run_metrics(Metrics(), MetricsConfig(), stop))
    await asyncio.sleep(0.05)
    assert not task.done()
    stop.set()
    await asyncio.wait_for(task, 1)


def test_interval_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        TextfileWriter(tmp_path / "x.prom", 0, lambda: "")


async def test_a_write_error_is_logged_as_one_line_naming_the_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    target = tmp_path / "missing-dir" / "kms.prom"
    w = TextfileWriter(target, 1.0, lambda: "x_total 1\n")
    stop = asyncio.Event()
    stop.set()
    with caplog.at_level("WARNING", logger="kms.metrics"):
        await asyncio.wait_for(w.run(stop), 2)  # stop already set: the one final write
    (record,) = [r for r in caplog.records if r.name == "kms.metrics"]
    line = record.getMessage()
    assert line.startswith(f"metrics: cannot write textfile {target}: ")
    assert "No such file or directory" in line
    assert "Errno" not in line and "\n" not in line
