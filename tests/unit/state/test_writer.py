"""kms.state.writer: WriteThread's rules on real threads.

Each test fails if its rule is dropped: order (one worker, FIFO), errors delivered
to the awaiting coroutine, work that outlives a cancelled awaiter, close() waiting
for queued work, no submit after close, and a closed loop not breaking the worker.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from kms.state.writer import WriteThread


@pytest.fixture
def writer() -> Iterator[WriteThread]:
    w = WriteThread("state-test")
    yield w
    w.close()


async def test_result_comes_back_from_another_thread(writer: WriteThread) -> None:
    main = threading.get_ident()
    ident = await writer.submit(threading.get_ident)
    assert ident != main
    assert await writer.submit(lambda: 42) == 42


async def test_one_worker_in_submission_order(writer: WriteThread) -> None:
    seen: list[int] = []
    running = 0
    overlap = False
    lock = threading.Lock()

    def work(i: int) -> int:
        nonlocal running, overlap
        with lock:
            running += 1
            overlap = overlap or running > 1
        seen.append(i)
        threading.Event().wait(0.001)
        with lock:
            running -= 1
        return i

    results = await asyncio.gather(*(writer.submit(functools.partial(work, i)) for i in range(50)))
    assert results == list(range(50))
    assert seen == list(range(50))
    assert not overlap


async def test_an_error_reaches_the_awaiting_coroutine(writer: WriteThread) -> None:
    def fail() -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        await writer.submit(fail)
    # the worker survives a failed item
    assert await writer.submit(lambda: "next") == "next"


async def test_work_outlives_a_cancelled_awaiter(writer: WriteThread, tmp_path: Path) -> None:
    started, release = threading.Event(), threading.Event()
    target = tmp_path / "written"

    def slow_write() -> None:
        started.set()
        release.wait(5)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.write(fd, b"done")
            os.fdatasync(fd)
        finally:
            os.close(fd)

    waiter = asyncio.ensure_future(asyncio.shield(writer.submit(slow_write)))
    await asyncio.to_thread(started.wait, 5)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    release.set()
    # the next item runs only after the cancelled one finished its write
    assert await writer.submit(target.read_bytes) == b"done"


async def test_a_cancelled_future_is_left_alone(writer: WriteThread) -> None:
    gate = threading.Event()
    fut = writer.submit(lambda: gate.wait(5))
    fut.cancel()
    gate.set()
    assert await writer.submit(lambda: "after") == "after"  # no InvalidStateError on the loop
    assert fut.cancelled()


async def test_close_waits_for_queued_work() -> None:
    w = WriteThread("state-close")
    release = threading.Event()
    done: list[int] = []

    def work(i: int) -> None:
        release.wait(5)
        done.append(i)

    futs = [w.submit(functools.partial(work, i)) for i in range(3)]
    threading.Timer(0.05, release.set).start()
    await asyncio.to_thread(w.close)
    assert done == [0, 1, 2]  # everything submitted ran before close() returned
    assert w.closed
    await asyncio.gather(*futs)
    w.close()  # idempotent


async def test_submit_after_close_is_refused() -> None:
    w = WriteThread("state-closed")
    w.close()
    with pytest.raises(RuntimeError, match="after close"):
        w.submit(lambda: None)


def test_a_closed_loop_does_not_break_the_worker() -> None:
    w = WriteThread("state-loop-gone")
    release = threading.Event()

    def work() -> int:
        release.wait(5)
        return 1

    async def submit_and_leave() -> None:
        w.submit(work)

    loop = asyncio.new_event_loop()
    loop.run_until_complete(submit_and_leave())
    loop.close()
    release.set()

    async def still_works() -> int:
        return await w.submit(lambda: 2)

    assert asyncio.run(still_works()) == 2
    w.close()
    assert not w._thread.is_alive()


async def test_writes_land_durably_in_order_and_submit_after_close_is_refused(
    tmp_path: Path,
) -> None:
    w = WriteThread("state-order")
    path = tmp_path / "f"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    def put(i: int) -> int:
        os.pwrite(fd, b"%04d" % i, 0)
        os.fdatasync(fd)
        return i

    try:
        assert await asyncio.gather(*(w.submit(functools.partial(put, i)) for i in range(20))) == [
            *range(20)
        ]
        assert path.read_bytes() == b"0019"
    finally:
        w.close()
        os.close(fd)
    assert w.closed
    with pytest.raises(RuntimeError, match="after close"):
        w.submit(lambda: None)
