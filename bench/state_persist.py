"""Cost of one durable state update, next to the floor it is built on.

Prints p50/p99 (milliseconds) of, all in the same directory:
  bare fsync      write 200 bytes to an open file + fsync
  bare atomic     create temp, write, fsync, rename, fsync dir with raw os calls
                  (the floor of a crash-atomic replace: what format 1 paid per save)
  state save      StateStore.save(): format 2, pwrite of one slot in place + fdatasync
  guard sign      ChainGuard.sign_vote() end to end with a software Ed25519 key
                  (decide + sign + save in the executor), one vote per height

Usage: python -m bench.state_persist [--dir DIR] [-n N]
(DIR defaults to a temporary directory under the current one, so it measures
the disk you run it on, not tmpfs.)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

from nacl.signing import SigningKey

from bench.common import summarize_ms
from kms.privval.messages import BlockID, PartSetHeader, Timestamp, Vote
from kms.signer.base import Signature
from kms.state.guard import ChainGuard
from kms.state.machine import SignState
from kms.state.store import StateStore


def _report(name: str, samples_s: list[float]) -> None:
    s = summarize_ms([x * 1e3 for x in samples_s])
    print(
        f"{name:<12} n={s.n:<6} p50={s.p50:7.3f} ms  p99={s.p99:7.3f} ms  "
        f"max={s.max:7.3f} ms  mean={s.mean:7.3f} ms"
    )


def bare_fsync(directory: Path, n: int) -> list[float]:
    fd = os.open(directory / "bare", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    out = []
    try:
        for i in range(n):
            t = time.perf_counter()
            os.pwrite(fd, b"%199d" % i, 0)
            os.fsync(fd)
            out.append(time.perf_counter() - t)
    finally:
        os.close(fd)
    return out


def bare_atomic(directory: Path, n: int) -> list[float]:
    """A crash-atomic whole-file replace with raw os calls (what a format-1 save cost)."""
    target = directory / "atomic"
    payload = b"x" * 400
    out = []
    for i in range(n):
        tmp = directory / f".atomic.{i}.tmp"
        t = time.perf_counter()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, payload)
        os.fsync(fd)
        os.close(fd)
        os.replace(tmp, target)
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        os.fsync(dfd)
        os.close(dfd)
        out.append(time.perf_counter() - t)
    return out


def state_save(directory: Path, n: int) -> list[float]:
    store = StateStore.create(directory / "save.json", SignState.initial())
    out = []
    for i in range(n):
        s = SignState(i + 1, 0, 1, sign_bytes=b"", signature=b"")
        t = time.perf_counter()
        store.save(s)
        out.append(time.perf_counter() - t)
    return out


async def guard_sign(directory: Path, n: int) -> list[float]:
    path = directory / "guard.json"
    StateStore.create(path, SignState.initial())
    guard = ChainGuard("bench-chain", StateStore(path))
    key = SigningKey(bytes(32))

    async def sign(message: bytes) -> Signature:
        return Signature(key.sign(message).signature, "softsign")

    block = BlockID(b"\xab" * 32, PartSetHeader(1, b"\xcd" * 32))
    out = []
    try:
        for i in range(n):
            vote = Vote(type=1, height=i + 1, round=0, block_id=block, timestamp=Timestamp(i, 0))
            t = time.perf_counter()
            r = await guard.sign_vote(vote, sign)
            out.append(time.perf_counter() - t)
            assert r.outcome == "signed"
    finally:
        guard.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--dir", type=Path, default=Path.cwd())
    ap.add_argument("-n", type=int, default=1000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="kms-bench-", dir=args.dir) as d:
        directory = Path(d)
        print(f"directory: {directory}")
        _report("bare fsync", bare_fsync(directory, args.n))
        _report("bare atomic", bare_atomic(directory, args.n))
        _report("state save", state_save(directory, args.n))
        _report("guard sign", asyncio.run(guard_sign(directory, args.n)))


if __name__ == "__main__":
    main()
