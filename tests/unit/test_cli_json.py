"""`--json` on keygen, import, state check and state history: one parseable document."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from click.testing import CliRunner

from kms.cli.main import cli
from kms.keyfile import write_base64_seed
from kms.pubkey import public_key_from_seed
from kms.state.audit import AuditEntry, AuditLog
from kms.state.machine import SignState
from kms.state.store import StateStore
from tests.unit.state.helpers import NIL, block


def invoke(*args: str) -> dict[str, object]:
    r = CliRunner().invoke(cli, list(args))
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert isinstance(doc, dict)
    return doc


def test_keygen_softsign_json_names_the_key_it_wrote(tmp_path: Path) -> None:
    doc = invoke("keygen", "--softsign", str(tmp_path / "k"), "--json")
    seed = base64.b64decode((tmp_path / "k").read_text().strip())
    forms = doc["public_key"]
    assert isinstance(forms, dict)
    assert forms["hex"] == public_key_from_seed(seed[:32]).hex().upper()
    assert doc["written_to"] == [str(tmp_path / "k")]


def test_import_softsign_json(tmp_path: Path) -> None:
    seed = bytes(range(7, 39))
    write_base64_seed(tmp_path / "src", seed)
    doc = invoke("import", "--softsign", str(tmp_path / "dst"), "--json", str(tmp_path / "src"))
    forms = doc["public_key"]
    assert isinstance(forms, dict)
    assert forms["base64"] == base64.b64encode(public_key_from_seed(seed)).decode()


def test_state_check_json(tmp_path: Path) -> None:
    StateStore.create(tmp_path / "s.json", SignState(42, 1, 1))
    doc = invoke("state", "check", "--json", str(tmp_path / "s.json"))
    assert (doc["ok"], doc["height"], doc["round"], doc["step_name"]) == (True, 42, 1, "prevote")


def test_state_history_json_lines(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    log = AuditLog(tmp_path / "a.jsonl")
    for h in (1, 2):
        log.record(
            AuditEntry.make(
                time=datetime(2026, 1, 1, tzinfo=UTC),
                chain="c",
                height=h,
                round=0,
                step=2,
                block_id=block(1) if h == 1 else NIL,
                sign_bytes=b"x",
                outcome="signed",
            )
        )
    log.close()
    r = CliRunner().invoke(cli, ["state", "history", "--json", str(tmp_path / "a.jsonl")])
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [(x["height"], x["step_name"]) for x in rows] == [("1", "precommit"), ("2", "precommit")]
