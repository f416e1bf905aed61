"""The state-write hop: what handing a blocking call to a thread and back costs the event loop.

Owns: timing N round trips of a no-op from a coroutine to a worker thread and back,
by the two routes a chain guard can take: `ThreadPoolExecutor.submit` awaited
through `asyncio.shield(asyncio.wrap_future(...))`, and `kms.state.writer.WriteThread`.
Reports wall and process CPU (all threads) per hop in microseconds. Never touches
a file: the disk's own cost is the floor section's in-place fdatasync.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

from kms.state.writer import WriteThread


def _noop() -> None:
    return None


async def _executor_route(n: int) -> None:
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="bench-hop") as ex:
        for _ in range(n):
            await asyncio.shield(asyncio.wrap_future(ex.submit(_noop)))


async def _write_thread_route(n: int) -> None:
    writer = WriteThread("bench-hop")
    try:
        for _ in range(n):
            await asyncio.shield(writer.submit(_noop))
    finally:
        writer.close()


def _per_hop(route: Callable[[int], Coroutine[Any, Any, None]], n: int) -> dict[str, float]:
    # on a thread of its own with a fresh loop: the caller may be inside a running loop
    runner = threading.Thread(target=asyncio.run, args=(route(n),), name="bench-hop-loop")
    cpu0, t0 = time.process_time(), time.perf_counter()
    runner.start()
    runner.join()
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {"wall_us": wall / n * 1e6, "cpu_us": cpu / n * 1e6}


def measure_hops(n: int) -> dict[str, Any]:
    """Per-hop wall and CPU of both routes (each run twice, the better run kept)."""
    out: dict[str, Any] = {"n": n}
    for name, route in (("executor", _executor_route), ("write_thread", _write_thread_route)):
        runs = [_per_hop(route, n) for _ in range(2)]
        out[name] = min(runs, key=lambda r: r["cpu_us"])
    return out
