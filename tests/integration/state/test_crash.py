"""kill -9 at random moments while signing: the state always loads and nothing emitted is
contradicted, neither by a later signature nor by the watermark on disk.

A fork server (crash_worker.py) keeps the imports warm; each round forks a worker
that signs through a ChainGuard with real fsync and is SIGKILLed after a random
delay. KMS_CRASH_KILLS sets the number of kills that must land while a worker is
signing (default 200). The test counts what happened, not how fast: the delay
grows while workers are killed before they hand out anything (a loaded machine)
and shrinks back once they do.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from nacl.signing import SigningKey

from kms.state.machine import SignState
from kms.state.store import StateStore
from tests.conftest import REPO_ROOT
from tests.integration.state.checker import Checker
from tests.unit.state.helpers import CHAIN, SEED

KILLS = int(os.environ.get("KMS_CRASH_KILLS", "200"))


def test_sigkill_while_signing_never_loses_or_contradicts_a_signature(tmp_path: Path) -> None:
    state_path = tmp_path / "state" / "chain.json"
    StateStore.create(state_path, SignState.initial())
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.state.crash_worker", str(state_path)],
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdin is not None and server.stdout is not None
    rng = random.Random(int(os.environ.get("KMS_CRASH_SEED", "0")) or None)
    checker = Checker(SigningKey(SEED).verify_key, CHAIN)
    previous = (0, 0, 0)
    kills = rounds = completed = 0
    mid_signing = 0  # kills of a worker that had handed out at least one signature
    max_delay = 0.03
    try:
        while mid_signing < KILLS:
            assert rounds < 20 * KILLS, f"only {mid_signing} of {rounds} kills hit a signing worker"
            rounds += 1
            out = tmp_path / f"emitted-{rounds}.jsonl"
            server.stdin.write(f"run {rng.randrange(2**32)} {out}\n")
            server.stdin.flush()
            pid = int(server.stdout.readline())
            time.sleep(rng.uniform(0, max_delay))
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            server.stdin.write(f"reap {pid}\n")
            server.stdin.flush()
            code = int(server.stdout.readline())
            assert code in (-signal.SIGKILL, 0), f"worker failed (exit {code}); see stderr"
            kills += code == -signal.SIGKILL
            completed += code == 0

            # everything the worker handed out, in order (a torn last line was never emitted)
            emitted = 0
            if out.exists():
                for line in out.read_text().splitlines(keepends=True):
                    if line.endswith("\n"):
                        item = json.loads(line)
                        checker.emitted(
                            bytes.fromhex(item["sign_bytes"]), bytes.fromhex(item["signature"])
                        )
                        emitted += 1
            if code == -signal.SIGKILL and emitted:
                mid_signing += 1
                max_delay = max(0.03, max_delay / 2)
            elif not emitted:
                max_delay = min(1.0, max_delay * 2)
            # the state loads after every crash, never goes backwards, and covers all emitted
            state = StateStore(state_path).load()
            assert state.hrs >= previous
            assert state.hrs >= checker.highest()
            previous = state.hrs
    finally:
        server.stdin.close()
        server.wait(timeout=10)
    assert checker.count >= mid_signing  # the workers really signed between the kills
    print(
        f"{kills} kills ({mid_signing} while signing), {completed} workers finished, "
        f"{checker.count} signatures emitted, final state {previous}"
    )
