"""The daemon's top level: build everything from the config, run the links, shut down cleanly.

Owns: start-up order and its fail-closed checks, the task tree (links, HSM
health checks, metrics writer), signal handling and graceful shutdown. Never
answers requests itself.

Start-up refuses (raises, so `kms start` exits non-zero with one clear line) when
the config is bad, a state file is missing or corrupt, a signer cannot be opened
or replicas disagree on the public key. After start-up nothing takes the process
down: a link task that crashes is logged and restarted; a chain whose HSMs are
all down answers with RemoteSignerError until one comes back.

Shutdown (SIGTERM/SIGINT or `stop` set): every link finishes the request it is
answering, then closes; after `SHUTDOWN_GRACE` seconds whatever is left is
cancelled. Signers are closed last.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any

from kms.config import Config
from kms.identity import load_identity_key
from kms.link import Link
from kms.metrics import Metrics, run_metrics
from kms.service import Chain, SignService
from kms.shared.etcd import EtcdClient
from kms.shared.preference import Preference
from kms.shared.setup import open_gates
from kms.signer.base import Signer
from kms.signer.factory import build_signers
from kms.signer.replicas import ReplicaSet
from kms.state.guard import ChainGuard

log = logging.getLogger("kms.supervisor")

SHUTDOWN_GRACE = 3.0
RESTART_DELAY = 1.0


@dataclass
class Daemon:
    """Everything `kms start` runs; built by `build()`, driven by `run()`."""

    config: Config
    service: SignService
    links: list[Link]
    signers: dict[str, Signer]
    guards: dict[str, ChainGuard]
    metrics: Metrics
    stop_event: asyncio.Event = field(default_factory=asyncio.Event)
    etcd: EtcdClient | None = None  # [shared_state]: closed after the guards
    preference: Preference | None = None  # [shared_state] preference: a background job

    async def run(
        self, *, install_signals: bool = True, on_start: Callable[[], None] | None = None
    ) -> None:
        """Serve until stopped. `on_start` runs once SIGTERM/SIGINT already mean a clean
        shutdown (so whoever waits for what it logs may signal at once)."""
        loop = asyncio.get_running_loop()
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop_event.set)
        if on_start is not None:
            on_start()
        log.info(
            "kms started",
            extra={
                "fields": {
                    "chains": ",".join(c.id for c in self.config.chains),
                    "links": len(self.links),
                }
            },
        )
        link_tasks = [
            asyncio.create_task(self._supervise(lk.cfg.name, lk.run), name=f"link {lk.cfg.name}")
            for lk in self.links
        ]
        background = [
            asyncio.create_task(self._supervise(name, fn), name=name)
            for name, fn in self._background_jobs()
        ]
        try:
            await self.stop_event.wait()
            log.info("shutting down: finishing in-flight requests")
        finally:
            for lk in self.links:
                lk.stop()
            _, pending = (
                await asyncio.wait(link_tasks, timeout=SHUTDOWN_GRACE)
                if link_tasks
                else (set(), set())
            )
            for t in [*pending, *background]:
                t.cancel()
            await asyncio.gather(*link_tasks, *background, return_exceptions=True)
            await self.close()
            if install_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
            log.info("kms stopped")

    async def close(self) -> None:
        await _close_all(self.signers.values(), self.guards.values(), self.etcd)

    def _background_jobs(self) -> list[tuple[str, Callable[[], Coroutine[Any, Any, None]]]]:
        jobs: list[tuple[str, Callable[[], Coroutine[Any, Any, None]]]] = [
            (f"health {chain_id}", functools.partial(signer.run_health, self.stop_event))
            for chain_id, signer in self.signers.items()
            if isinstance(signer, ReplicaSet)
        ]
        if self.preference is not None:
            jobs.append(("preference", functools.partial(self.preference.run, self.stop_event)))
        m = self.config.metrics
        if m.textfile is not None or m.listen is not None:
            jobs.append(
                ("metrics", functools.partial(run_metrics, self.metrics, m, self.stop_event))
            )
        return jobs

    async def _supervise(self, name: str, fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run `fn` until stop; an unexpected crash is logged and the task restarted."""
        while True:
            try:
                await fn()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                if self.stop_event.is_set():
                    return
                log.exception("task crashed; restarting", extra={"fields": {"task": name}})
                await asyncio.sleep(RESTART_DELAY)


async def _close_all(
    signers: Iterable[Signer], guards: Iterable[ChainGuard], etcd: EtcdClient | None
) -> None:
    """Close signers, then guards (their state files and locks), then etcd (the guards'
    gates use it). A signer or etcd client that fails to close is skipped: the rest
    must still be released."""
    for s in signers:
        with contextlib.suppress(Exception):
            await s.close()
    for g in guards:
        g.close()
    if etcd is not None:
        with contextlib.suppress(Exception):
            await etcd.close()


async def build(config: Config, *, metrics: Metrics | None = None) -> Daemon:
    """Open state, signers and identities, failing closed with a clear error."""
    metrics = metrics or Metrics()
    guards: dict[str, ChainGuard] = {}
    etcd: EtcdClient | None = None
    opened: list[Signer] = []
    try:
        for c in config.chains:
            guards[c.id] = ChainGuard.open(c)
        floors = {cid: g.state for cid, g in guards.items()}
        etcd, gates = await open_gates(config, metrics, floors)
        for chain_id, gate in gates.items():
            guards[chain_id].gate = gate
        signers = build_signers(config)
        for signer in signers.values():
            if isinstance(signer, ReplicaSet):
                signer.observer = metrics
        for chain_id, signer in signers.items():
            await signer.open()
            opened.append(signer)
            log.info(
                "signer ready",
                extra={
                    "fields": {
                        "chain": chain_id,
                        "signer": signer.name,
                        "pubkey": signer.public_key.hex(),
                    }
                },
            )
        chains = {
            c.id: Chain(config=c, guard=guards[c.id], signer=signers[c.id]) for c in config.chains
        }
        service = SignService(chains, metrics=metrics)
        identities: dict[str, bytes] = {}
        links = []
        for v in config.validators:
            seed = None
            if v.scheme in ("tcp", "noise"):
                assert v.secret_key is not None
                key = str(v.secret_key)
                if key not in identities:
                    identities[key] = load_identity_key(v.secret_key)
                seed = identities[key]
            links.append(Link(v, service, identity_seed=seed, metrics=metrics))
    except BaseException:
        await _close_all(opened, guards.values(), etcd)
        raise
    return Daemon(
        config=config,
        service=service,
        links=links,
        signers=signers,
        guards=guards,
        metrics=metrics,
        etcd=etcd,
        preference=next((g.preference for g in gates.values() if g.preference), None),
    )
