"""`run_metrics`: the daemon's metrics job, the textfile writer and/or the listener a config asks for.

Owns: which outputs run for a `[metrics]` section and their lifetime (until `stop`).

Never touches: the registry, the text format, the HTTP details (kms.metrics.listener),
the write steps (kms.metrics.textfile).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from kms.metrics.listener import MetricsServer
from kms.metrics.recorder import Metrics
from kms.metrics.textfile import TextfileWriter

if TYPE_CHECKING:
    from kms.config import MetricsConfig

log = logging.getLogger("kms.metrics")


async def run_metrics(metrics: Metrics, cfg: MetricsConfig, stop: asyncio.Event) -> None:
    """Run the textfile writer and the optional listener until `stop` is set.

    Raises MetricsError at once if `cfg.listen` is not loopback or cannot be bound.
    Textfile errors are logged and counted (kms_metrics_write_errors_total), never raised.
    With neither configured, simply waits for `stop`.
    """
    server: MetricsServer | None = None
    if cfg.listen is not None:
        host, port = cfg.listen
        server = MetricsServer(metrics.render, host, port)
        await server.start()
        log.info("metrics: serving http://%s:%d/metrics", server.host, server.port)
    try:
        if cfg.textfile is not None:
            writer = TextfileWriter(
                cfg.textfile,
                cfg.interval,
                metrics.render,
                on_error=lambda: metrics.write_errors.inc(),
            )
            await writer.run(stop)
        else:
            await stop.wait()
    finally:
        if server is not None:
            await server.close()
