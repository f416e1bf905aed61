"""The optional host preference: one host is preferred, the others answer a little later.

Owns: the key `<prefix>/preferred` (the preferred host's ID, bound to an etcd
lease), taking it when it is free, keeping our lease alive, and telling the gate
how long a non-preferred host waits before it competes (`delay()`).

A hint, never a fence: safety never depends on it. The gate's compare-and-swap
is what stops a double sign; this only makes the preferred host usually win the
race, so the others mostly find the record already written (and then sign the
same bytes, or refuse) instead of racing it on every request and loading their
HSMs for nothing. When the preferred host dies its lease expires after `ttl`
seconds and another host takes the key; until then the others still answer, only
`delay` later. When etcd cannot be read, nobody is known to be preferred and
nobody waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from kms.errors import SharedStateError
from kms.shared.etcd import EtcdClient

log = logging.getLogger(__name__)


class Preference:
    def __init__(
        self, client: EtcdClient, *, prefix: str, host_id: str, ttl: int, delay: float
    ) -> None:
        self.client = client
        self.key = f"{prefix.rstrip('/')}/preferred".encode()
        self.host_id = host_id
        self.ttl = ttl
        self._delay = delay
        self.holder: str | None = None  # the preferred host as last seen; None = unknown
        self._lease: int | None = None

    def delay(self) -> float:
        """Seconds to wait before competing for a new signature (0 when we are preferred)."""
        return self._delay if self.holder not in (None, self.host_id) else 0.0

    async def run(self, stop: asyncio.Event) -> None:
        """Hold or watch the preference until `stop`; then give it up."""
        last: str | None = "?"
        try:
            while not stop.is_set():
                try:
                    await self.step()
                except SharedStateError as e:
                    self.holder, self._lease = None, None
                    log.warning("host preference unknown: %s", e)
                if self.holder != last:
                    log.info("preferred host: %s", self.holder or "unknown")
                    last = self.holder
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.ttl / 3)
        finally:
            if self._lease is not None:
                with contextlib.suppress(SharedStateError):
                    await self.client.lease_revoke(self._lease)  # hand over at once

    async def step(self) -> None:
        if self._lease is not None:
            if await self.client.lease_keepalive(self._lease) > 0:
                self.holder = self.host_id
                return
            self._lease = None
        kv = await self.client.get(self.key)
        if kv is not None:
            self.holder = kv.value.decode(errors="replace") or None
            return
        lease = await self.client.lease_grant(self.ttl)
        current = await self.client.create_with_lease(self.key, self.host_id.encode(), lease)
        if current is None:
            self._lease, self.holder = lease, self.host_id
            return
        await self.client.lease_revoke(lease)
        self.holder = current.value.decode(errors="replace") or None
