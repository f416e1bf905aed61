"""Fixtures for the end-to-end tests against real CometBFT nodes.

Owns: parametrizing tests over the installed cometbft lines (skipping with a clear message
when none is installed), the per-test registry of processes that must always be stopped,
printing node/kms logs when a test fails, the results recorder behind docs/compat.md, the
per-version timing summary, and the `rig` that bundles them. Never edits kms code or config.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections import defaultdict
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from . import results
from .cometbft import INSTALL_HINT, CometBFT, Node, Procs, discover, root_dir
from .scenarios import Rig


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "vote_extensions: run only on cometbft lines with vote extensions (v0.38+, v1)",
    )
    config.addinivalue_line("markers", "noise: run only on cometbft lines with noise:// (v0.40)")
    config.addinivalue_line(
        "markers",
        "lines(*names): run only on these cometbft lines (the others are not collected,"
        " rather than collected and skipped)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "cometbft" not in metafunc.fixturenames:
        return
    found = discover()
    if metafunc.definition.get_closest_marker("vote_extensions"):
        found = [c for c in found if c.has_vote_extensions]
    if metafunc.definition.get_closest_marker("noise"):
        found = [c for c in found if c.has_noise]
    only = metafunc.definition.get_closest_marker("lines")
    if only is not None:
        found = [c for c in found if c.line in only.args]
    if found:
        metafunc.parametrize("cometbft", found, ids=[c.line for c in found], indirect=True)
    else:
        metafunc.parametrize("cometbft", [None], ids=["no-cometbft"], indirect=True)


@pytest.fixture
def cometbft(request: pytest.FixtureRequest) -> CometBFT:
    param: CometBFT | None = request.param
    if param is None:
        go = shutil.which("go") or (
            "/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None
        )
        why = "Go is not installed either" if go is None else f"Go found at {go}"
        message = f"no suitable cometbft binaries under {root_dir()} ({why}); {INSTALL_HINT}"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            # CI installs them (.ci/run runs scripts/install-cometbft): never skip there
            pytest.fail(message)
        pytest.skip(message)
    return param


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    return rep


def _failed(request: pytest.FixtureRequest) -> bool:
    node = request.node
    return any(
        getattr(node, f"rep_{when}", None) is not None and getattr(node, f"rep_{when}").failed
        for when in ("setup", "call")
    )


@pytest.fixture
def procs(request: pytest.FixtureRequest) -> Iterator[Procs]:
    p = Procs()
    try:
        yield p
    finally:
        p.stop_all()
        if _failed(request):
            print(p.describe())


@pytest.fixture
def make_node(cometbft: CometBFT, tmp_path: Path, procs: Procs) -> Callable[[str], Node]:
    """Create (init) a node home under tmp_path; the node is always stopped afterwards."""

    def make(name: str = "node") -> Node:
        node = Node(cometbft, tmp_path / name, name)
        node.init()
        procs.add(node)
        return node

    return make


@pytest.fixture
def rig(
    cometbft: CometBFT,
    make_node: Callable[[str], Node],
    procs: Procs,
    tmp_path: Path,
    record: results.Result,
) -> Rig:
    """All of the above in one value, for the scenario builders in scenarios.py."""
    return Rig(cometbft, make_node, procs, tmp_path, record)


# --- results -----------------------------------------------------------------------------


_timings: dict[str, float] = defaultdict(float)


@pytest.fixture
def record(request: pytest.FixtureRequest, cometbft: CometBFT) -> Iterator[results.Result]:
    """The test fills in dimensions and measurements; the outcome is stored at teardown."""
    name = request.node.originalname.removeprefix("test_").replace("_", "-")
    res = results.Result(line=cometbft.line, tag=cometbft.tag, scenario=name)
    t0 = time.monotonic()
    yield res
    res.duration_s = round(time.monotonic() - t0, 1)
    rep = getattr(request.node, "rep_call", None)
    res.outcome = "failed" if _failed(request) else (rep.outcome if rep is not None else "skipped")
    if res.outcome != "skipped":
        results.store(res)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "tests/e2e/" not in report.nodeid or "[" not in report.nodeid:
        return
    m = re.search(r"\[(?:.*-)?(v\d+\.\d+)(?:-.*)?\]$", report.nodeid)
    if m:
        _timings[m.group(1)] += report.duration


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _timings:
        return
    terminalreporter.section("e2e time per cometbft line")
    for line, secs in sorted(_timings.items()):
        terminalreporter.write_line(f"{line:>8}: {secs:7.1f} s")
    terminalreporter.write_line(f"results: {results.results_path()}")
