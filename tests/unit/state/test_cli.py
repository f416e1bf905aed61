"""`kms state show|check|history|import|set` through click's CliRunner."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from kms.cli.main import cli
from kms.privval.messages import BlockID
from kms.state.audit import AuditEntry, AuditLog, Outcome
from kms.state.format1 import decode_foreign_state, encode_state
from kms.state.guard import ChainGuard, GuardResult
from kms.state.machine import SignCandidate, SignState, advance
from kms.state.store import StateStore
from tests.unit.state.helpers import CHAIN, NIL, PRECOMMIT, PREVOTE, SEED, SoftSigner, block, vote

A = block(0xAB)


def run(*args: str | Path, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, ["state", *map(str, args)], input=input)


def signed(h: int, r: int = 0, type_: int = PREVOTE, blk: BlockID = A) -> SignState:
    c = SignCandidate.for_vote(CHAIN, vote(type_, h, r, blk))
    return advance(
        c, SoftSigner().key.sign(c.sign_bytes).signature, datetime(2026, 1, 2, tzinfo=UTC)
    )


def one_error_line(r: Result) -> str:
    assert r.exit_code != 0
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert len(lines) == 1, r.output
    return lines[0]


# --- show / check ----------------------------------------------------------------------------


def test_show_prints_height_round_step_name_block_and_time(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    StateStore.create(path, signed(77, 2))
    r = run("show", path)
    assert r.exit_code == 0, r.output
    assert "height:      77" in r.output and "round:       2" in r.output
    assert "step:        1 (prevote)" in r.output
    assert "AB" * 32 in r.output
    assert "2026-01-02T00:00:00.000000Z" in r.output


def test_show_json(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    StateStore.create(path, SignState(5, 1, 2))
    r = run("show", path, "--json")
    out = json.loads(r.output)
    assert (out["height"], out["round"], out["step_name"], out["nil_block"]) == (
        5,
        1,
        "precommit",
        True,
    )
    assert out["has_sign_bytes"] is False and out["updated_at"] is None


def test_check_exits_zero_only_for_a_valid_file(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    StateStore.create(good, SignState(5, 0, 0))
    assert run("check", good).exit_code == 0
    for name, content in (
        ("empty.json", ""),
        ("trunc.json", '{"height": "5", "ro'),
        ("neg.json", '{"height": "-1", "round": "0", "step": 0}'),
    ):
        bad = tmp_path / name
        bad.write_text(content)
        line = one_error_line(run("check", bad))
        assert str(bad) in line
    line = one_error_line(run("check", tmp_path / "missing.json"))
    assert "missing.json" in line and "does not exist" in line


# --- history ---------------------------------------------------------------------------------


def test_history_lists_entries_and_filters_by_height(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    log = AuditLog(path)
    entries: list[tuple[int, Outcome]] = [(1, "signed"), (2, "signed"), (2, "refused")]
    for h, outcome in entries:
        log.record(
            AuditEntry.make(
                time=datetime(2026, 1, 1, tzinfo=UTC),
                chain=CHAIN,
                height=h,
                round=0,
                step=1,
                block_id=A if outcome == "signed" else NIL,
                sign_bytes=b"x",
                outcome=outcome,
                reason="double signing requested at height 2" if outcome == "refused" else None,
                replica="hsm-a" if outcome == "signed" else None,
            )
        )
    log.close()
    r = run("history", path)
    assert r.exit_code == 0 and len(r.output.splitlines()) == 3
    r = run("history", path, "--height", "2")
    lines = r.output.splitlines()
    assert len(lines) == 2 and all("2/0/prevote" in line for line in lines)
    assert "refused" in lines[1] and "double signing" in lines[1]
    assert "replica=hsm-a" in lines[0]
    assert "nope" in one_error_line(run("history", tmp_path / "nope.jsonl"))


# --- import ------------------------------------------------------------------------------------


def test_import_cometbft_state_creates_the_file_with_renumbered_steps(tmp_path: Path) -> None:
    ours = signed(1000, 1, PRECOMMIT)
    src = tmp_path / "priv_validator_state.json"
    src.write_text(
        json.dumps(
            {
                "height": "1000",
                "round": 1,
                "step": 3,
                "signature": base64.b64encode(ours.signature).decode(),
                "signbytes": ours.sign_bytes.hex().upper(),
            }
        )
    )
    dst = tmp_path / "new" / "chain.json"
    r = run("import", dst, "--from", src)
    assert r.exit_code == 0, r.output
    s = StateStore(dst).load()
    assert (s.hrs, s.block_id, s.sign_bytes, s.signature) == (
        (1000, 1, 2),
        A,
        ours.sign_bytes,
        ours.signature,
    )


@pytest.mark.parametrize(
    "block_id",
    [
        {"hash": "AB" * 32, "parts": {"total": 1, "hash": "AB" * 32}},
        {"hash": "ab" * 32, "part_set_header": {"total": "1", "hash": "ab" * 32}},
        {"hash": "AB" * 32, "partSetHeader": {"total": 1, "hash": "AB" * 32}},
    ],
    ids=["parts", "part_set_header-string-total", "camel"],
)
def test_import_tmkms_state_spellings(tmp_path: Path, block_id: dict[str, object]) -> None:
    src = tmp_path / "tmkms.json"
    src.write_text(json.dumps({"height": "50", "round": "0", "step": 1, "block_id": block_id}))
    dst = tmp_path / "chain.json"
    StateStore.create(dst, SignState(10, 0, 0))
    r = run("import", dst, "--from", src)
    assert r.exit_code == 0, r.output
    assert StateStore(dst).load() == SignState(
        50, 0, 1, A, updated_at=StateStore(dst).load().updated_at
    )


def test_import_refuses_to_lower_the_watermark(tmp_path: Path) -> None:
    src = tmp_path / "old.json"
    src.write_text(json.dumps({"height": "5", "round": 0, "step": 3}))
    dst = tmp_path / "chain.json"
    StateStore.create(dst, SignState(10, 0, 0))
    before = dst.read_bytes()
    line = one_error_line(run("import", dst, "--from", src))
    assert "refusing to lower" in line
    assert dst.read_bytes() == before


def test_import_refuses_conflicting_same_hrs(tmp_path: Path) -> None:
    src = tmp_path / "tmkms.json"
    src.write_text(json.dumps({"height": "10", "round": "0", "step": 1, "block_id": None}))
    dst = tmp_path / "chain.json"
    StateStore.create(dst, signed(10, 0, PREVOTE, A))
    assert "disagrees" in one_error_line(run("import", dst, "--from", src))


def test_import_refuses_while_kms_holds_the_state(tmp_path: Path) -> None:
    src = tmp_path / "old.json"
    src.write_text(json.dumps({"height": "50", "round": 0, "step": 3}))
    dst = tmp_path / "chain.json"
    store = StateStore.create(dst, SignState(10, 0, 0))
    with store.lock():
        assert "in use" in one_error_line(run("import", dst, "--from", src))


def test_import_rejects_garbage(tmp_path: Path) -> None:
    src = tmp_path / "junk.json"
    src.write_text('{"height": "x"}')
    assert "junk.json" in one_error_line(run("import", tmp_path / "c.json", "--from", src))
    assert not (tmp_path / "c.json").exists()


# --- set ------------------------------------------------------------------------------------------


def test_set_creates_and_raises(tmp_path: Path) -> None:
    path = tmp_path / "chain.json"
    assert run("set", path, "--height", "100", "--step", "prevote").exit_code == 0
    assert StateStore(path).load().hrs == (100, 0, 1)
    assert run("set", path, "--height", "100", "--round", "2", "--step", "0").exit_code == 0
    assert StateStore(path).load().hrs == (100, 2, 0)


def test_set_refuses_to_lower_without_force(tmp_path: Path) -> None:
    path = tmp_path / "chain.json"
    StateStore.create(path, SignState(100, 0, 2))
    assert "refusing to lower" in one_error_line(run("set", path, "--height", "99"))
    assert StateStore(path).load().hrs == (100, 0, 2)


def test_set_force_asks_and_respects_the_answer(tmp_path: Path) -> None:
    path = tmp_path / "chain.json"
    StateStore.create(path, SignState(100, 0, 2))
    no = run("set", path, "--height", "99", "--force", input="n\n")
    assert no.exit_code != 0 and StateStore(path).load().height == 100
    yes = run("set", path, "--height", "99", "--force", input="y\n")
    assert yes.exit_code == 0 and StateStore(path).load().hrs == (99, 0, 2)


def test_set_rejects_bad_step(tmp_path: Path) -> None:
    r = run("set", tmp_path / "c.json", "--height", "1", "--step", "commit")
    assert r.exit_code != 0 and "not a step" in r.output
    assert not (tmp_path / "c.json").exists()


def test_set_without_sign_bytes_makes_that_exact_hrs_refused(tmp_path: Path) -> None:
    path = tmp_path / "chain.json"
    run("set", path, "--height", "10", "--step", "prevote")

    async def both() -> tuple[GuardResult, GuardResult]:
        guard = ChainGuard(CHAIN, StateStore(path))
        try:
            same = await guard.sign_vote(vote(PREVOTE, 10, 0, A), SoftSigner(SEED))
            above = await guard.sign_vote(vote(PRECOMMIT, 10, 0, A), SoftSigner(SEED))
        finally:
            guard.close()
        return same, above

    same, above = asyncio.run(both())
    assert (same.outcome, same.error_code, above.outcome) == ("refused", 2, "signed")


# --- chain checks, format 2 and export ---------------------------------------------------


def _other_chain_state(h: int) -> SignState:
    c = SignCandidate.for_vote("other-chain-9", vote(PREVOTE, h, 0, A))
    return advance(c, SoftSigner().key.sign(c.sign_bytes).signature, datetime.now(UTC))


def test_import_refuses_a_watermark_of_another_chain_naming_both(tmp_path: Path) -> None:
    # Regression (issue 16, bug 3): sign bytes of another chain were imported silently.
    source = tmp_path / "source.json"
    source.write_bytes(encode_state(_other_chain_state(50)))
    target = tmp_path / "s.json"
    line = one_error_line(run("import", target, "--from", source, "--chain-id", CHAIN))
    assert "'other-chain-9'" in line and repr(CHAIN) in line
    assert not target.exists()
    # without --chain-id, the chain the destination already holds is the reference
    StateStore.create(target, signed(10))
    line = one_error_line(run("import", target, "--from", source))
    assert "'other-chain-9'" in line and repr(CHAIN) in line
    assert StateStore(target).load().height == 10


def test_set_force_replaces_an_unreadable_file_only_after_confirming(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    StateStore.create(path, signed(10))
    path.write_bytes(b"\x00" * 100)  # corrupt
    assert run("set", path, "--height", "5", "--force", input="n\n").exit_code != 0
    assert path.read_bytes() == b"\x00" * 100  # untouched when the answer is no
    r = run("set", path, "--height", "5", "--force", input="y\n")
    assert r.exit_code == 0, r.output
    assert StateStore(path).load().hrs == (5, 0, 2)


def test_export_writes_the_tmkms_format_and_show_names_format_and_chain(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    StateStore.create(path, signed(12))
    out = tmp_path / "tmkms-state.json"
    assert run("export", path, out).exit_code == 0
    doc = json.loads(out.read_text())
    assert (doc["height"], doc["round"], doc["step"]) == ("12", "0", 1)
    assert decode_foreign_state(out.read_bytes())[0] == StateStore(path).load()
    assert "already exists" in one_error_line(run("export", path, out))
    shown = json.loads(run("show", path, "--json").output)
    assert (shown["format"], shown["chain_id"]) == (2, CHAIN)


def test_import_takes_another_kms_hosts_format2_state_file(tmp_path: Path) -> None:
    # what a move between hosts does: host B imports host A's state file as it is
    a = tmp_path / "a.json"
    StateStore.create(a, signed(31))
    b = tmp_path / "b.json"
    r = run("import", b, "--from", a, "--chain-id", CHAIN)
    assert r.exit_code == 0, r.output
    assert "kms format 2" in r.output
    got, want = StateStore(b).load(), StateStore(a).load()
    assert (got.hrs, got.block_id, got.sign_bytes, got.signature) == (
        want.hrs,
        want.block_id,
        want.sign_bytes,
        want.signature,
    )
