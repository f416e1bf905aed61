"""The node_exporter textfile writer: the rendered metrics, replaced atomically on a timer.

Owns: when the textfile is rewritten (now, every `interval` seconds, once more at
stop) and how a failed write is reported (logged and counted through `on_error`,
never raised: metrics must not stop a signer).

Never touches: the registry or the text format (it is handed a `render` callable), the
durable-write steps themselves (kms.fsutil.atomic_write: a hidden temporary file in the
same directory, which the textfile collector ignores, flushed, fsynced, renamed over
the target, so a reader sees the old file or the new one, never a torn one).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

from kms.errors import describe
from kms.fsutil import atomic_write

log = logging.getLogger("kms.metrics")


class TextfileWriter:
    """Writes `render()` to `path` atomically every `interval` seconds until stopped."""

    def __init__(
        self,
        path: Path,
        interval: float,
        render: Callable[[], str],
        *,
        on_error: Callable[[], None] | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.path = Path(path)
        self.interval = interval
        self._render = render
        self._on_error = on_error
        self.writes = 0

    def write_once(self, text: str | None = None) -> None:
        """Render (unless given) and replace the file atomically; raises OSError on failure.

        Mode 0644: node_exporter runs as another user. The temporary file is
        hidden, not ending in .prom (the textfile collector ignores it), and never
        opened through a name someone else could plant (kms.fsutil).
        """
        data = (self._render() if text is None else text).encode()
        atomic_write(self.path, data, mode=0o644)
        self.writes += 1

    async def _write(self) -> None:
        # render and write off the event loop: formatting 50 chains' series takes a few ms
        try:
            await asyncio.to_thread(self.write_once)
        except OSError as e:
            if self._on_error is not None:
                self._on_error()
            log.warning("metrics: cannot write textfile %s: %s", self.path, describe(e))

    async def run(self, stop: asyncio.Event) -> None:
        """Write now, then every `interval` seconds; a final write when `stop` is set."""
        while not stop.is_set():
            await self._write()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)
        await self._write()
