"""kms/_proto/ is exactly what scripts/gen-proto produces, and only the codec imports it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

GENERATED = REPO_ROOT / "kms" / "_proto"
SCRIPT = REPO_ROOT / "scripts" / "gen-proto"
ALLOWED_IMPORTER = REPO_ROOT / "kms" / "privval" / "codec.py"
# The etcd v3 API messages (proto/etcdserverpb) have their own single home.
ETCD_IMPORTER = REPO_ROOT / "kms" / "shared" / "etcd.py"


def _tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_generated_code_is_not_stale(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools", reason="grpcio-tools (dev extra) is needed to regenerate")
    out = tmp_path / "_proto"
    subprocess.run([sys.executable, str(SCRIPT), str(out)], check=True, capture_output=True)
    fresh, committed = _tree(out), _tree(GENERATED)
    assert sorted(fresh) == sorted(committed), "kms/_proto file list differs: run scripts/gen-proto"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"stale generated files (run scripts/gen-proto): {stale}"


_PROTO_IMPORT = re.compile(
    r"^\s*(from\s+kms\._proto|import\s+kms\._proto|from\s+kms\s+import\s+_proto|from\s+\.+_proto)",
    re.M,
)


def test_only_the_codec_imports_generated_protobuf_classes() -> None:
    offenders = [
        p.relative_to(REPO_ROOT).as_posix()
        for p in sorted((REPO_ROOT / "kms").rglob("*.py"))
        if GENERATED not in p.parents
        and p not in (ALLOWED_IMPORTER, ETCD_IMPORTER)
        and _PROTO_IMPORT.search(p.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def test_the_codec_does_import_them() -> None:
    assert _PROTO_IMPORT.search(ALLOWED_IMPORTER.read_text(encoding="utf-8"))
