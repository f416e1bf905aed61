"""The floor: what one signature must cost at least, measured on this machine in this run.

Owns: timing one fsync of a small new file in the state directory plus one
Ed25519 signature (libsodium through PyNaCl, as the softsign signer does), each
alone and back to back. Also times other ways to make a state write durable (the
daemon's temp + fsync + rename + directory fsync; an O_TRUNC rewrite; an in-place
same-size overwrite + fdatasync) so the softsign numbers can be read against them,
and the state-write hop (`bench.hop`: handing the write to a thread and back).
Never touches kms state files: it writes its own scratch files.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from nacl.signing import SigningKey

from bench.common import Section, summarize_ms
from bench.hop import measure_hops

# a precommit's sign bytes are ~110-160 bytes; the state file ~400 bytes
_MESSAGE = bytes(range(256))[:150]
_STATE = b'{"height": "123456789", "round": "0", "step": 2, "block_id": {}}' + b" " * 320


def _write_fsync(path: Path, payload: bytes, *, new: bool = False) -> None:
    """Write `payload` to `path` and fsync it: a fresh file (`new`, O_EXCL) or truncated."""
    mode = os.O_EXCL if new else os.O_TRUNC
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | mode, 0o600)
    try:
        os.write(fd, payload)
        os.fsync(fd)
    finally:
        os.close(fd)


def _durable_replace(path: Path, payload: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    _write_fsync(tmp, payload)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _time_ms(fn: Callable[[int], object], n: int) -> list[float]:
    out: list[float] = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def run_floor(state_dir: Path, iterations: int) -> Section:
    """p50/p99 (ms) of the floor and of the write patterns a state store could use."""
    state_dir.mkdir(parents=True, exist_ok=True)
    scratch = state_dir / "bench-floor.json"
    key = SigningKey(os.urandom(32))
    for i in range(20):  # warm the page cache, the journal and libsodium
        _write_fsync(scratch.with_name(f".bench-warm-{i}"), _STATE, new=True)
        scratch.with_name(f".bench-warm-{i}").unlink()
        key.sign(_MESSAGE)
    fsync_ms: list[float] = []
    sign_ms: list[float] = []
    both_ms: list[float] = []
    clock = time.perf_counter
    for i in range(iterations):
        tmp = scratch.with_name(f".bench-floor-{i}")
        payload = _STATE[:-10] + f"{i:010d}".encode()
        t0 = clock()
        _write_fsync(tmp, payload, new=True)
        t1 = clock()
        key.sign(_MESSAGE + payload[-10:])
        t2 = clock()
        tmp.unlink()
        fsync_ms.append((t1 - t0) * 1e3)
        sign_ms.append((t2 - t1) * 1e3)
        both_ms.append((t2 - t0) * 1e3)
    extra = max(iterations // 2, 10)
    replace_ms = _time_ms(lambda i: _durable_replace(scratch, _STATE[:-10] + b"%010d" % i), extra)
    rewrite_ms = _time_ms(lambda i: _write_fsync(scratch, _STATE[:-10] + b"%010d" % i), extra)
    fd = os.open(scratch, os.O_RDWR)
    try:
        inplace_ms = _time_ms(lambda i: _pwrite_datasync(fd, _STATE[:-10] + b"%010d" % i), extra)
    finally:
        os.close(fd)
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
        "rewrite_truncate_fsync": summarize_ms(rewrite_ms).as_dict(),
        "pwrite_fdatasync_in_place": summarize_ms(inplace_ms).as_dict(),
        "state_dir": str(state_dir),
        "state_write_hop": measure_hops(max(iterations, 500)),
    }
    sec.notes.append(
        "floor = create + write + fsync of a small new file in the state directory, then "
        "one Ed25519 signature (PyNaCl), timed together. For reading the softsign numbers: "
        "durable_replace = temp file + fsync + rename over + directory fsync (what kms did "
        "per signature before state format 2; creating a state file still does); "
        "rewrite_truncate_fsync = O_TRUNC rewrite + fsync; "
        "pwrite_fdatasync_in_place = same-size overwrite of an allocated block + fdatasync "
        "(no metadata change: what a format-2 state save costs per signature); "
        "state_write_hop = wall and CPU (us) of one round trip loop -> thread -> loop, via "
        "ThreadPoolExecutor + wrap_future and via kms.state.writer.WriteThread"
    )
    return sec


def _pwrite_datasync(fd: int, payload: bytes) -> None:
    os.pwrite(fd, payload, 0)
    os.fdatasync(fd)
