"""`kms start` as an operator meets it: what start-up logs, and an audit log that cannot be
written is refused at start-up and never dropped silently at run time."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from kms import __version__
from kms.privval.messages import Dialect
from kms.sim.validator import SimulatedValidator
from tests.integration.daemon.harness import KmsProcess, make_home, run_kms_start, wait_until

CHAIN = "ux-chain-1"


def _config(home_root: Path, addr: str, audit: str, dialect: str = "v0.37") -> Path:
    home = make_home(home_root, [CHAIN])
    text = home.chain_section(CHAIN, f'audit_log = "{audit}"')
    text += home.validator_section(CHAIN, addr, home.identity, dialect)
    text += home.softsign_section([CHAIN])
    return home.write_config(text)


def _one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, stderr
    return errors[0]


def test_audit_log_in_a_missing_directory_is_a_config_error(tmp_path: Path) -> None:
    cfg = _config(tmp_path / "kms", "tcp://127.0.0.1:1", str(tmp_path / "nope" / "a.jsonl"))
    r = run_kms_start(cfg)
    assert r.returncode == 2, r.stderr
    line = _one_error_line(r.stderr)
    assert "key 'audit_log'" in line and "mkdir -m 700" in line


def test_audit_log_that_cannot_be_opened_is_refused_at_start_up(tmp_path: Path) -> None:
    (tmp_path / "a-dir.jsonl").mkdir()  # exists, but is a directory: cannot be appended to
    cfg = _config(tmp_path / "kms", "tcp://127.0.0.1:1", str(tmp_path / "a-dir.jsonl"))
    r = run_kms_start(cfg)
    assert r.returncode == 1, r.stderr
    assert "cannot write" in _one_error_line(r.stderr)


async def test_start_up_logs_version_config_watermark_and_dialect(tmp_path: Path) -> None:
    (tmp_path / "audit").mkdir()
    cfg = _config(tmp_path / "kms", "tcp://127.0.0.1:1", str(tmp_path / "audit" / "a.jsonl"))
    kms = KmsProcess(cfg)
    try:
        await wait_until(lambda: "link configured" in kms.log(), 20)
    finally:
        assert kms.terminate() == 0, kms.log()
    lines = [json.loads(x) for x in kms.log().splitlines() if x.startswith("{")]
    by_msg = {x["msg"]: x for x in lines}
    assert by_msg["kms starting"]["version"] == __version__
    assert by_msg["kms starting"]["config"] == str(cfg)
    mark = by_msg["chain watermark"]
    assert (mark["chain"], mark["height"], mark["round"], mark["step"]) == (CHAIN, 0, 0, "proposal")
    assert by_msg["link configured"]["protocol_version"] == "v0.37"


async def test_audit_records_that_could_not_be_written_are_logged_and_fail_the_exit_code(
    tmp_path: Path,
) -> None:
    audit_dir = tmp_path / "audit"
    audit_dir.mkdir()
    node = SimulatedValidator(CHAIN, Dialect.V0_37)
    await node.start()
    kms = KmsProcess(_config(tmp_path / "kms", node.addr, str(audit_dir / "a.jsonl")))
    try:
        await node.wait_connected(20)
        shutil.rmtree(audit_dir)  # the audit log breaks at run time
        reports = await node.run_heights(2)
        assert [r.height for r in reports] == [1, 2]  # signing goes on
    finally:
        await node.close()
        code = kms.terminate()
    log = kms.log()
    assert code == 1, log
    written_off = [x for x in log.splitlines() if "record not written: {" in x]
    assert len(written_off) == 6  # 2 heights x proposal, prevote, precommit: each in the log
    assert "audit records not written" in log
