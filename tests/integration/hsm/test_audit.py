"""`kms hsm audit`: device audit logs (read as the auditor) reconciled with kms's audit lines.

The device side is real: provisioned by `kms hsm setup`, signatures made through
the library with the signer role, logs read by the auditor role. The kms side is
kms's own audit-log format, written with kms.state.audit.AuditLog.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from yubihsm.backends.http import HttpBackend
from yubihsm.core import YubiHsm
from yubihsm.objects import AsymmetricKey

from kms.cli.main import cli
from kms.hsm import phrase
from kms.hsm.roles import VALIDATOR_KEY_CAPS
from kms.keyfile import write_secret_file
from kms.privval.messages import BlockID
from kms.sim.yubihsm import SimulatedHsm
from kms.state.audit import AuditEntry, AuditLog

KEY_ID = 7
CHAIN = "audit-1"


def run(*args: str | Path, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False)


class Fleet:
    def __init__(self, tmp_path: Path) -> None:
        self.sims = [SimulatedHsm().start() for _ in range(2)]
        self.tmp = tmp_path
        args: list[str | Path] = ["hsm", "setup"]
        for s in self.sims:
            args += ["--connector", s.url]
        res = run(*args)
        assert res.exit_code == 0, res.output
        words = re.findall(r"^((?:[a-z]+ ){23}[a-z]+)$", res.output, re.M)[0]
        self.entropy = phrase.from_phrase(words)
        for s in self.sims:
            s.device.put_ed25519_seed(KEY_ID, bytes(32), capabilities=int(VALIDATOR_KEY_CAPS))
        self.auditor_pw = tmp_path / "auditor.pw"
        write_secret_file(self.auditor_pw, phrase.role_password(self.entropy, "auditor").encode())
        self.signer_pw = tmp_path / "signer.pw"
        write_secret_file(self.signer_pw, phrase.role_password(self.entropy, "signer").encode())
        self.audit_log = tmp_path / "audit.jsonl"
        self.config = tmp_path / "kms.toml"
        text = (
            f'[[chain]]\nid = "{CHAIN}"\nkey_format = {{ type = "bech32",'
            ' account_key_prefix = "p", consensus_key_prefix = "pc" }\n'
            f'state_file = "{tmp_path}/state.json"\naudit_log = "{self.audit_log}"\n'
        )
        for s in self.sims:
            text += (
                f'[[providers.yubihsm]]\nadapter = {{ type = "http", addr = "tcp://127.0.0.1:{s.port}" }}\n'
                f'auth = {{ key = 4, password_file = "{self.signer_pw}" }}\n'
                f'keys = [{{ chain_ids = ["{CHAIN}"], key = {KEY_ID} }}]\n'
            )
        self.config.write_text(text)
        self.height = 0

    def name(self, i: int) -> str:
        return f"127.0.0.1:{self.sims[i].port}"

    def sign(self, i: int, *, record: bool = True, auth: tuple[int, str] | None = None) -> None:
        """One signature on device i (as the signer role), and kms's audit line for it."""
        key_id, role = auth or (4, "signer")
        hsm = YubiHsm(HttpBackend(self.sims[i].url, timeout=(1, 3)))
        s = hsm.create_session_derived(key_id, phrase.role_password(self.entropy, role))
        AsymmetricKey(s, KEY_ID).sign_eddsa(b"vote %d" % self.height)
        s.close()
        hsm.close()
        if record:
            self.record(i)

    def record(self, i: int, step: int = 1, also_sent_to: tuple[str, ...] = ()) -> None:
        self.height += 1
        log = AuditLog(self.audit_log)
        log.record(
            AuditEntry.make(
                time=datetime.now(UTC),
                chain=CHAIN,
                height=self.height,
                round=0,
                step=step,
                block_id=BlockID(b"\x01" * 32),
                sign_bytes=b"vote %d" % self.height,
                outcome="signed",
                replica=self.name(i),
                also_sent_to=also_sent_to,
            )
        )
        log.close()

    def audit(self) -> tuple[int, dict[str, object]]:
        res = run(
            "hsm", "audit", "-c", self.config, "--password-file", self.auditor_pw, "--json"
        )  # fmt: skip
        return res.exit_code, json.loads(res.output)

    def stop(self) -> None:
        for s in self.sims:
            s.stop()


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    f = Fleet(tmp_path)
    yield f
    f.stop()


def test_every_signature_accounted_for_and_the_log_freed(fleet: Fleet) -> None:
    for i in (0, 1, 0, 0, 1):
        fleet.sign(i)
    code, doc = fleet.audit()
    assert code == 0 and doc["gaps"] == [], doc
    devices = doc["devices"]
    assert isinstance(devices, list)
    assert [(d["signatures"], d["kms_records"]) for d in devices] == [(3, 3), (2, 2)]
    used = [s.device.snapshot()["log"]["entries"] for s in fleet.sims]
    assert all(len(u) <= 1 for u in used), used  # read entries freed (the SET_LOG_INDEX line stays)
    cursor = json.loads((fleet.config.with_name("hsm-audit.json")).read_text())
    assert set(cursor["devices"]) == {str(s.device.serial) for s in fleet.sims}
    # a second audit continues the hash chain across the freed entries
    fleet.sign(1)
    code, doc = fleet.audit()
    assert code == 0, doc
    devices = doc["devices"]
    assert isinstance(devices, list)
    assert [(d["signatures"], d["kms_records"]) for d in devices] == [(0, 0), (1, 1)]


def test_a_signature_without_kms_record_is_a_gap(fleet: Fleet) -> None:
    fleet.sign(0)
    fleet.sign(1, record=False)  # signed with the signer's password, but not through kms
    code, doc = fleet.audit()
    assert code == 1
    assert doc["gaps"] == [
        "1 device signatures have no kms record (1 beyond kms's vote records; at most 0 are"
        " vote extensions or hedged and failed-over attempts)"
    ]


def test_a_hedged_request_signed_on_both_devices_is_not_a_gap(fleet: Fleet) -> None:
    fleet.sign(0, record=False)  # the stalled replica finished after all
    fleet.sign(1, record=False)  # the hedge that answered first
    fleet.record(1, also_sent_to=(fleet.name(0),))
    code, doc = fleet.audit()
    assert code == 0 and doc["gaps"] == [], doc


def test_without_the_hedge_noted_the_same_signatures_are_a_gap(fleet: Fleet) -> None:
    fleet.sign(0, record=False)
    fleet.sign(1, record=False)
    fleet.record(1)
    code, doc = fleet.audit()
    assert code == 1, doc
    gaps = doc["gaps"]
    assert isinstance(gaps, list) and "1 device signatures have no kms record" in gaps[0], doc


def test_a_non_nil_precommit_allows_one_extension_signature(fleet: Fleet) -> None:
    fleet.sign(0)
    fleet.record(1, step=2)  # kms signed a precommit on device 1 ...
    fleet.sign(1, record=False)
    fleet.sign(1, record=False)  # ... and its vote extension
    code, doc = fleet.audit()
    assert code == 0, doc
    assert doc["extension_allowance"] == 1


def test_a_kms_record_without_device_entry_is_a_gap(fleet: Fleet) -> None:
    fleet.record(0)
    code, doc = fleet.audit()
    assert code == 1
    assert doc["gaps"] == [f"{fleet.name(0)}: kms recorded 1 signatures here, the device log has 0"]


def test_signing_with_another_auth_key_is_a_gap(fleet: Fleet) -> None:
    fleet.sign(0, record=False, auth=(2, "admin"))
    code, doc = fleet.audit()
    assert code == 1
    gaps = doc["gaps"]
    assert isinstance(gaps, list) and len(gaps) == 1
    assert "SIGN_EDDSA by auth key 2 with key 7, outside kms" in gaps[0]


def test_a_tampered_device_log_breaks_the_chain(fleet: Fleet) -> None:
    fleet.sign(0)
    assert fleet.audit()[0] == 0
    fleet.sign(0)
    log = fleet.sims[0].device._log
    entry = bytearray(log.entries[-1])
    entry[14] ^= 1  # the tick: an edited entry
    log.entries[-1] = bytes(entry)
    code, doc = fleet.audit()
    assert code == 1
    gaps = doc["gaps"]
    assert isinstance(gaps, list)
    assert any("hash chain broken" in g for g in gaps), doc


def test_an_overflowed_log_reports_lost_entries(fleet: Fleet) -> None:
    fleet.sign(0)
    assert fleet.audit()[0] == 0
    for _ in range(70):  # more than the 62-entry log holds, no forced audit
        fleet.sign(0)
    code, doc = fleet.audit()
    assert code == 1
    gaps = doc["gaps"]
    assert isinstance(gaps, list)
    assert any("were lost (log overflowed)" in g for g in gaps), doc


def test_a_baseline_starts_the_window_and_later_audits_count_from_there(fleet: Fleet) -> None:
    fleet.sign(0, record=False)  # history from before kms kept records (or before this audit)
    fleet.record(1)
    assert fleet.audit()[0] == 1  # without a baseline: gaps
    fleet.config.with_name("hsm-audit.json").unlink()  # start over, with a baseline this time
    res = run(
        "hsm", "audit", "-c", fleet.config, "--password-file", fleet.auditor_pw, "--baseline",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    fleet.sign(1)
    code, doc = fleet.audit()
    assert code == 0, doc
