"""The floor: what one signature must cost at least, measured on this machine in this run.

Owns: timing one fsync of a small file in the state directory plus one Ed25519
signature (libsodium through PyNaCl, as the softsign signer does), each alone and
back to back. Also times the full durable-state sequence the daemon performs
(write temp, fsync, rename, fsync directory) so the softsign numbers can be read
against it. Never touches kms state files: it writes its own scratch file.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from nacl.signing import SigningKey

from bench.common import Section, summarize_ms

# a precommit's sign bytes are ~110-160 bytes; the state file ~400 bytes
_MESSAGE = bytes(range(256))[:150]
_STATE = b'{"height": "123456789", "round": "0", "step": 2, "block_id": {}}' + b" " * 320


def _fsync_once(path: Path, payload: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, payload)
        os.fsync(fd)
    finally:
        os.close(fd)


def _durable_replace(path: Path, payload: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    _fsync_once(tmp, payload)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def run_floor(state_dir: Path, iterations: int) -> Section:
    """p50/p99 (ms) of fsync, sign, fsync+sign, and the durable replace sequence."""
    state_dir.mkdir(parents=True, exist_ok=True)
    scratch = state_dir / "bench-floor.json"
    key = SigningKey(os.urandom(32))
    for _ in range(20):  # warm the page cache, the journal and libsodium
        _fsync_once(scratch, _STATE)
        key.sign(_MESSAGE)
    fsync_ms: list[float] = []
    sign_ms: list[float] = []
    both_ms: list[float] = []
    replace_ms: list[float] = []
    clock = time.perf_counter
    for i in range(iterations):
        payload = _STATE[:-10] + f"{i:010d}".encode()
        t0 = clock()
        _fsync_once(scratch, payload)
        t1 = clock()
        key.sign(_MESSAGE + payload[-10:])
        t2 = clock()
        fsync_ms.append((t1 - t0) * 1e3)
        sign_ms.append((t2 - t1) * 1e3)
        both_ms.append((t2 - t0) * 1e3)
    for i in range(max(iterations // 2, 10)):
        t0 = clock()
        _durable_replace(scratch, _STATE[:-10] + f"{i:010d}".encode())
        replace_ms.append((clock() - t0) * 1e3)
    for p in (scratch, scratch.with_name(scratch.name + ".tmp")):
        p.unlink(missing_ok=True)
    floor = summarize_ms(both_ms)
    sec = Section("floor")
    sec.data = {
        "p50": floor.p50,
        "p99": floor.p99,
        "max": floor.max,
        "n": floor.n,
        "fsync": summarize_ms(fsync_ms).as_dict(),
        "sign": summarize_ms(sign_ms).as_dict(),
        "durable_replace": summarize_ms(replace_ms).as_dict(),
        "state_dir": str(state_dir),
    }
    sec.notes.append(
        "floor = one write+fsync of a small file in the state directory followed by one "
        "Ed25519 signature (PyNaCl), timed together; durable_replace = temp write + fsync "
        "+ rename + directory fsync (what the daemon does per signature)"
    )
    return sec
