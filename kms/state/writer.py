"""Where a chain's blocking file work runs: on its own thread, cheaply.

Owns: `WriteThread` (one worker thread, the FIFO of work handed to it, delivering
each result to an asyncio future on the loop that submitted it). Never knows what
the work is (the guard hands it `StateStore.save`/`load`), never opens a file and
never decides anything.

Not inline on the loop, although for a process serving one chain that measured
about a fifth less CPU per request: DESIGN §2 keeps fsync off the event loop, so a
stalled disk never freezes metrics, pings or signal handling.

Why not `ThreadPoolExecutor.submit` + `asyncio.wrap_future`: a state write is on
the path of every signature, and that route costs two futures chained across
threads, a condition variable, the executor's idle-semaphore bookkeeping and a
`shield` around the wrapper. Here the worker blocks on a `SimpleQueue` and
resolves the asyncio future with one `call_soon_threadsafe`: measured on the
2-core bench machine, about 60 us of CPU per hop instead of 140 us (bench.floor,
"state-write hop").

Rules:
- Work runs one item at a time, in submission order, on the one thread: two
  writes of one state file never overlap.
- Work once submitted always runs to its end, even if whoever awaited the
  future was cancelled (a half-done write is never abandoned mid-way; the
  caller's own bookkeeping decides what a cancelled write means).
- `close()` runs everything already submitted, then stops and joins the thread:
  when it returns, no write is running or will run (the guard releases the
  state file's lock only after this). `submit()` after `close()` is an error.
- A result for a loop that has been closed in the meantime is dropped, never
  raised on the worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["WriteThread"]

T = TypeVar("T")

_Item = tuple[Callable[[], Any], asyncio.Future[Any], asyncio.AbstractEventLoop]


class WriteThread:
    """A single worker thread for one chain's file work (see the module rules)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._closed = False
        self._close_lock = threading.Lock()
        # A daemon thread: if the owner never closes it, interpreter exit does not
        # hang on a worker blocked in get(). Owners close it (the guard does).
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"WriteThread({self.name!r}, {state})"

    @property
    def closed(self) -> bool:
        return self._closed

    def submit(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """Queue `fn`; its result or exception arrives in the returned future.

        Call it from a coroutine running on the loop that will await the future.
        """
        if self._closed:
            raise RuntimeError(f"{self.name}: submit after close")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._queue.put((fn, fut, loop))
        return fut

    def close(self) -> None:
        """Run what is queued, stop the thread and wait for it (idempotent)."""
        with self._close_lock:
            if not self._closed:
                self._closed = True
                self._queue.put(None)
        if self._thread is not threading.current_thread():
            self._thread.join()

    # --- the worker thread ---------------------------------------------------------

    def _run(self) -> None:
        get = self._queue.get
        while True:
            item = get()
            if item is None:
                return
            fn, fut, loop = item
            try:
                result = fn()
            except BaseException as e:  # delivered to the awaiting coroutine, not lost
                self._deliver(loop, fut, None, e)
            else:
                self._deliver(loop, fut, result, None)
            del item, fn, fut  # drop references before blocking again

    @staticmethod
    def _deliver(
        loop: asyncio.AbstractEventLoop,
        fut: asyncio.Future[Any],
        result: Any,
        error: BaseException | None,
    ) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            loop.call_soon_threadsafe(_settle, fut, result, error)


def _settle(fut: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    """On the loop: complete `fut` unless its awaiter gave up on it (cancelled it)."""
    if fut.done():
        return
    if error is None:
        fut.set_result(result)
    else:
        fut.set_exception(error)
