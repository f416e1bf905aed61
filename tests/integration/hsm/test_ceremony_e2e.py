"""The whole ceremony on three `kms hsm-sim` processes, each step through kms's own commands.

setup -> password files from the phrase -> keygen as the operator (cloned to all,
wrapped backup) -> status -> `kms start` signing with the signer role for a
simulated node -> audit (zero gaps) -> one replica factory-reset (RESET_DEVICE
as the admin), rebuilt from the phrase and the wrapped backup alone, rejoins
and signs -> audit again (zero gaps, the reset noted) -> the signer role cannot
export, delete or sign with another key.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from yubihsm.backends.http import HttpBackend
from yubihsm.core import AuthSession, YubiHsm
from yubihsm.defs import ALGORITHM, CAPABILITY, ERROR
from yubihsm.exceptions import YubiHsmDeviceError
from yubihsm.objects import AsymmetricKey, WrapKey

from kms.cli.main import cli
from kms.hsm import phrase
from kms.privval.messages import Dialect
from kms.sim.validator import SimulatedValidator
from tests.conftest import REPO_ROOT
from tests.integration.daemon.harness import KmsProcess, make_home

CHAIN = "ceremony-1"
KEY_ID = 7


def run(*args: str | Path | int, input: str | None = None) -> Result:
    res = CliRunner().invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False)
    return res


def ok(*args: str | Path | int, input: str | None = None) -> Result:
    res = run(*args, input=input)
    assert res.exit_code == 0, (args, res.output)
    return res


@pytest.fixture
def hsm_sims(tmp_path: Path) -> Iterator[list[str]]:
    procs = []
    urls = []
    for i in range(3):
        p = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kms",
                "hsm-sim",
                "--port",
                "0",
                "--state",
                str(tmp_path / f"hsm{i}.json"),
            ],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        procs.append(p)
        assert p.stdout is not None
        deadline = time.monotonic() + 20
        while True:
            line = p.stdout.readline()
            if line.startswith("listening on "):
                urls.append(line.split("listening on ", 1)[1].strip())
                break
            assert line and time.monotonic() < deadline, "hsm-sim did not start"
    yield urls
    for p in procs:
        p.terminate()
        p.wait(10)


def session(url: str, entropy: bytes, role: str, key_id: int) -> tuple[YubiHsm, AuthSession]:
    hsm = YubiHsm(HttpBackend(url, timeout=(1, 5)))
    return hsm, hsm.create_session_derived(key_id, phrase.role_password(entropy, role))


def replica_counts(kms: KmsProcess) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in kms.log().splitlines():
        if line.startswith("{"):
            doc = json.loads(line)
            if doc.get("msg") == "signed" and doc.get("replica"):
                counts[doc["replica"]] = counts.get(doc["replica"], 0) + 1
    return counts


def wait_audit_lines(path: Path, n: int) -> None:
    deadline = time.monotonic() + 10
    while not path.exists() or len(path.read_text().splitlines()) < n:
        assert time.monotonic() < deadline, "kms audit lines missing"
        time.sleep(0.05)


async def test_ceremony_keygen_sign_audit_reset_rejoin(tmp_path: Path, hsm_sims: list[str]) -> None:
    urls = hsm_sims
    names = [u.removeprefix("http://") for u in urls]
    conns = [x for u in urls for x in ("--connector", u)]
    signer_pw = tmp_path / "signer.pw"
    setup = ok("hsm", "setup", *conns, "--signer-password-file", signer_pw)
    words = re.findall(r"^((?:[a-z]+ ){23}[a-z]+)$", setup.output, re.M)
    assert len(words) == 1
    text = words[0] + "\n"
    entropy = phrase.from_phrase(text)
    op_pw, aud_pw = tmp_path / "operator.pw", tmp_path / "auditor.pw"
    ok("hsm", "password", "operator", "--out", op_pw, input=text)
    ok("hsm", "password", "auditor", "--out", aud_pw, input=text)

    home = make_home(tmp_path / "kms", [CHAIN])
    audit_log = tmp_path / "kms" / "audit.jsonl"
    async with SimulatedValidator(CHAIN, Dialect.V0_38) as node:
        cfg_text = home.chain_section(CHAIN, f'audit_log = "{audit_log}"') + home.validator_section(
            CHAIN, node.addr, home.identity, "v0.38"
        )
        for n in names:
            cfg_text += (
                f'[[providers.yubihsm]]\nadapter = {{ type = "http", addr = "tcp://{n}" }}\n'
                f'auth = {{ key = 4, password_file = "{signer_pw}" }}\n'
                f'keys = [{{ chain_ids = ["{CHAIN}"], key = {KEY_ID} }}]\n\n'
            )
        cfg_text += '[hsm]\npolicy = "spread"\nhealth_interval = 1\n'
        cfg = home.write_config(cfg_text)
        backup = tmp_path / "backup.json"
        gen = ok(
            "keygen", "-c", cfg, "--auth-key", "3", "--password-file", op_pw,
            "--key-id", KEY_ID, "--backup", backup,
        )  # fmt: skip
        assert all(n in gen.output for n in names)
        status = ok("hsm", "status", "-c", cfg)
        assert "WARNING" not in status.output and status.output.count(f"key {KEY_ID} ") == 3

        kms = KmsProcess(cfg)
        try:
            await node.wait_connected(20)
            await node.run_heights(4)
            wait_audit_lines(audit_log, 12)
            audit = run("hsm", "audit", "-c", cfg, "--password-file", aud_pw)
            assert audit.exit_code == 0, audit.output
            assert "audit: no gaps" in audit.output

            # replica 3 is wiped (RESET_DEVICE as the admin) ...
            hsm, admin = session(urls[2], entropy, "admin", 2)
            admin.reset_device()
            hsm.close()
            await node.run_heights(2, start_height=5)  # the other two carry on
            # ... rebuilt from the phrase and the wrapped backup alone ...
            ok("hsm", "setup", "--connector", urls[2], "--recover", input=text)
            ok(
                "import", "--connector", urls[2], "--auth-key", "3", "--password-file", op_pw,
                "--key-id", KEY_ID, backup,
            )  # fmt: skip
            # ... and rejoins: it signs again
            before = replica_counts(kms).get(names[2], 0)
            h = 7
            deadline = time.monotonic() + 30
            while replica_counts(kms).get(names[2], 0) == before:
                assert time.monotonic() < deadline, kms.log()[-3000:]
                await node.run_heights(1, start_height=h)
                h += 1
            wait_audit_lines(audit_log, 3 * (h - 1))
            await asyncio.sleep(0.3)
            audit = run("hsm", "audit", "-c", cfg, "--password-file", aud_pw, "--json")
            doc = json.loads(audit.output)
            assert audit.exit_code == 0 and doc["gaps"] == [], audit.output
            notes = [d["notes"] for d in doc["devices"]]
            assert notes[2] and "factory-reset" in notes[2][0] and notes[:2] == [[], []]
            assert sum(d["kms_records"] for d in doc["devices"]) > 0
        finally:
            assert kms.terminate() == 0, kms.log()[-3000:]

    # the signer role on the rebuilt replica: only sign-eddsa with the validator key
    hsm, admin = session(urls[2], entropy, "admin", 2)
    AsymmetricKey.generate(admin, 8, "other", 0b10, CAPABILITY.SIGN_EDDSA, ALGORITHM.EC_ED25519)
    hsm.close()
    hsm, signer = session(urls[2], entropy, "signer", 4)
    AsymmetricKey(signer, KEY_ID).sign_eddsa(b"allowed")
    for attempt, code in (
        (
            lambda: WrapKey(signer, 1).export_wrapped(AsymmetricKey(signer, KEY_ID)),
            ERROR.INSUFFICIENT_PERMISSIONS,
        ),
        (lambda: AsymmetricKey(signer, KEY_ID).delete(), ERROR.INSUFFICIENT_PERMISSIONS),
        (lambda: AsymmetricKey(signer, 8).sign_eddsa(b"x"), ERROR.OBJECT_NOT_FOUND),
    ):
        with pytest.raises(YubiHsmDeviceError) as e:
            attempt()
        assert e.value.code == code
    hsm.close()
