"""Micro-benchmark of SecretConnection: handshake latency and per-message seal+open cost.

Run: python bench/micro_secretconn.py [--handshakes N] [--messages M]

Measures, in-process and without sockets (the sans-IO core the daemon runs per request):
- a full in-memory handshake between two `Handshake` machines (X25519, Merlin over
  pure-Python Keccak, HKDF, Ed25519 sign + verify, AuthSig frames): p50 / p99 / mean;
- seal on one side + open on the other for a ~200-byte privval message (one frame) and
  for a 10 KiB message (10 frames): mean, p50, p99 in microseconds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

from kms.secretconn.handshake import Handshake
from kms.secretconn.stream import SecretStream


def _handshake_once() -> float:
    start = time.perf_counter()
    a, b = Handshake(os.urandom(32)), Handshake(os.urandom(32))
    a_first, b_first = a.data_to_send(), b.data_to_send()
    a.receive_data(b_first)
    b.receive_data(a_first)
    a_auth, b_auth = a.data_to_send(), b.data_to_send()
    a.receive_data(b_auth)
    b.receive_data(a_auth)
    elapsed = time.perf_counter() - start
    assert a.done and b.done
    return elapsed


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _time_calls(fn: Callable[[], object], n: int) -> list[float]:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def _report(name: str, samples: list[float], unit: str, scale: float) -> None:
    print(
        f"{name:<34} n={len(samples):<6} "
        f"p50={_percentile(samples, 0.50) * scale:9.1f} {unit}  "
        f"p99={_percentile(samples, 0.99) * scale:9.1f} {unit}  "
        f"mean={statistics.fmean(samples) * scale:9.1f} {unit}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--handshakes", type=int, default=300)
    parser.add_argument("--messages", type=int, default=20000)
    args = parser.parse_args()

    for _ in range(10):  # warm-up
        _handshake_once()
    handshakes = [_handshake_once() for _ in range(args.handshakes)]
    _report("handshake (both sides, in-memory)", handshakes, "ms", 1e3)

    key = os.urandom(32)
    sender = SecretStream(key, os.urandom(32))
    receiver = SecretStream(os.urandom(32), key)
    for size, label in ((200, "seal+open 200 B message"), (10 * 1024, "seal+open 10 KiB message")):
        message = os.urandom(size)

        def round_trip(message: bytes = message) -> None:
            if receiver.receive_data(sender.seal(message)) != message:
                raise AssertionError("round trip mismatch")

        for _ in range(200):
            round_trip()
        count = args.messages if size <= 1024 else max(1, args.messages // 4)
        _report(label, _time_calls(round_trip, count), "us", 1e6)


if __name__ == "__main__":
    main()
