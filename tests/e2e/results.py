"""The results file the end-to-end tests write, read by `scripts/compat-table`.

Owns: the JSON shape of one result (version x scenario, with the dimensions the
compatibility table shows) and merging results into the file, so that running a
subset of the suite only updates the entries it ran. Never runs tests or nodes.

File: $KMS_E2E_RESULTS, else <tmp>/kms-e2e-results.json. Format:
  {"format": 1, "results": {"<line>::<scenario>": {...entry...}}}
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

FORMAT = 1


def results_path() -> Path:
    env = os.environ.get("KMS_E2E_RESULTS")
    return Path(env) if env else Path(tempfile.gettempdir()) / "kms-e2e-results.json"


@dataclass
class Result:
    line: str  # "v0.38"
    tag: str  # "v0.38.26"
    scenario: str  # e.g. "single-softsign-tcp"
    transport: str = ""  # "tcp" | "unix" | "own-key"
    signer: str = ""  # "softsign" | "hsm-sim x2" | "own-key"
    extensions: bool = False  # vote extensions enabled in the genesis
    outcome: str = "unknown"  # passed | failed | skipped
    duration_s: float = 0.0
    blocks: int = 0
    notes: dict[str, Any] = field(default_factory=dict)
    when: str = ""

    @property
    def key(self) -> str:
        return f"{self.line}::{self.scenario}"


def load(path: Path | None = None) -> dict[str, Result]:
    p = path or results_path()
    try:
        doc = json.loads(p.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    if doc.get("format") != FORMAT:
        return {}
    return {k: Result(**v) for k, v in doc.get("results", {}).items()}


def store(result: Result, path: Path | None = None) -> None:
    """Merge one result into the file (atomic replace; last writer wins per key)."""
    p = path or results_path()
    result.when = result.when or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    current = load(p)
    current[result.key] = result
    doc = {"format": FORMAT, "results": {k: asdict(v) for k, v in sorted(current.items())}}
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    tmp.replace(p)
