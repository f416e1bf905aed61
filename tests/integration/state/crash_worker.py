"""Crash-test helper: a fork server whose children sign in a loop until they are killed.

Run as ``python -m tests.integration.state.crash_worker STATE_FILE``. It imports
everything once, then serves commands on stdin, one per line:

* ``run SEED OUTFILE`` forks a worker and prints its pid once the worker has
  opened its guard (or died trying), so that the caller's kill delay is spent
  signing, not starting. The worker opens a
  ChainGuard on STATE_FILE (real files, real fsync) and sends random votes and
  proposals around the current watermark (advances, repeats, conflicts,
  regressions); after the guard returns a signature it appends one JSON line to
  OUTFILE with a single write(2), i.e. a signature counts as emitted only
  once it was handed out.
* ``reap PID`` waits for that worker and prints its wait status (-9 when killed).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys

from kms.privval.messages import Proposal, Vote
from kms.state.guard import ChainGuard
from kms.state.store import StateStore
from tests.unit.state.helpers import CHAIN, NIL, SoftSigner, block, proposal, vote

BLOCKS = [NIL, block(0xA1), block(0xB2)]
MAX_REQUESTS = 2000


def _next_request(rng: random.Random, hrs: tuple[int, int, int]) -> Vote | Proposal:
    h, r, s = hrs
    h = max(h, 1)
    choice = rng.random()
    if choice < 0.45:  # move forward
        h, r, s = rng.choice([(h, r, s + 1), (h, r + 1, rng.randint(0, 2)), (h + 1, 0, 0)])
        s = min(s, 2)
    elif choice < 0.9:  # same HRS: repeat, new timestamp or conflict
        pass
    else:  # regression
        h, r, s = rng.choice([(h - 1, r, s), (h, max(r - 1, 0), s), (h, r, max(s - 1, 0))])
        h = max(h, 1)
    t = rng.randint(1, 3)
    if s == 0:
        return proposal(h, r, rng.choice(BLOCKS[1:]), rng.choice([-1, 0]) if r else -1, t=t)
    return vote(s, h, r, rng.choice(BLOCKS), t=t)


async def _work(state_file: str, seed: int, out_path: str, ready: int) -> None:
    rng = random.Random(seed)
    signer = SoftSigner()
    out = os.open(out_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    guard = ChainGuard(CHAIN, StateStore(state_file))
    os.write(ready, b"r")
    os.close(ready)
    for _ in range(MAX_REQUESTS):
        msg = _next_request(rng, guard.state.hrs)
        if isinstance(msg, Vote):
            result = await guard.sign_vote(msg, signer)
        else:
            result = await guard.sign_proposal(msg, signer)
        if result.outcome != "refused":
            line = {
                "outcome": result.outcome,
                "sign_bytes": result.sign_bytes.hex(),
                "signature": result.signature.hex(),
            }
            os.write(out, (json.dumps(line) + "\n").encode())


def main() -> None:
    state_file = sys.argv[1]
    for command in sys.stdin:
        parts = command.split()
        if parts[0] == "run":
            ready_r, ready_w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(ready_r)
                code = 0
                try:
                    asyncio.run(_work(state_file, int(parts[1]), parts[2], ready_w))
                except BaseException as e:  # report, never fall back into the server loop
                    print(f"worker failed: {e!r}", file=sys.stderr, flush=True)
                    code = 1
                os._exit(code)
            os.close(ready_w)
            os.read(ready_r, 1)  # b"r" when ready, b"" if the worker died first
            os.close(ready_r)
            print(pid, flush=True)
        elif parts[0] == "reap":
            _, status = os.waitpid(int(parts[1]), 0)
            print(os.waitstatus_to_exitcode(status), flush=True)


if __name__ == "__main__":
    main()
