"""The signer seam: what the service needs from anything that holds the consensus key.

Owns: the `Signer` interface and the health value it reports. Never touches
state, sockets or the privval protocol. Implementations: `kms.signer.softsign`
(a key file), `kms.signer.yubihsm` (one device), `kms.signer.replicas` (devices
holding the same key, with failover and load spread).

Ed25519 is deterministic: the same message gives the same signature from every
implementation and every replica. That is what makes retries and failover safe.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

_RUNNING: set[asyncio.Task[None]] = set()


@dataclass(frozen=True, slots=True)
class Signature:
    """A signature and the name of what produced it (a replica name, or 'softsign')."""

    signature: bytes
    by: str
    # other replicas this message was also sent to (a hedge, or a failover after an
    # attempt whose outcome is unknown): their device logs may hold it too
    also_sent_to: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Health:
    healthy: bool
    detail: str = ""


class Signer(abc.ABC):
    """An Ed25519 key that can sign. `open()` before use, `close()` when done."""

    name: str = "signer"

    @property
    @abc.abstractmethod
    def public_key(self) -> bytes:
        """The 32-byte Ed25519 public key (valid after `open()`)."""

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Connect, authenticate and verify the key; raise SignerError on failure."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release devices and threads."""

    @abc.abstractmethod
    async def sign_traced(self, message: bytes, *, timeout: float | None = None) -> Signature:
        """Sign `message`; raise SignerError (never return a partial result)."""

    async def sign(self, message: bytes, *, timeout: float | None = None) -> bytes:
        return (await self.sign_traced(message, timeout=timeout)).signature

    @property
    def parallel_capacity(self) -> int:
        """How many messages this signer can sign at the same time (healthy devices)."""
        return 1

    def start_signing(
        self, messages: Sequence[bytes], *, timeout: float | None = None
    ) -> list[asyncio.Future[Signature]]:
        """Start signing every message now; one future per message, in order, each with
        its signature or the error it met (a SignerError). Cancelling a future stops
        that message (if it has not been signed yet).

        Here one after the other; a signer with several devices (`ReplicaSet`) signs
        them at once on different devices, so each future can complete on its own.
        """
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Signature]] = [loop.create_future() for _ in messages]

        async def run() -> None:
            for message, fut in zip(messages, futures, strict=True):
                if fut.done():  # cancelled by the caller
                    continue
                try:
                    sig = await self.sign_traced(message, timeout=timeout)
                except Exception as e:
                    if not fut.done():
                        fut.set_exception(e)
                    continue
                if not fut.done():
                    fut.set_result(sig)

        task = asyncio.ensure_future(run())
        _RUNNING.add(task)  # the loop keeps only a weak reference to a task
        task.add_done_callback(_RUNNING.discard)
        return futures

    def health(self) -> Health:
        return Health(True)

    @property
    def load(self) -> int | None:
        """Requests in flight on the device behind this signer, from every chain that
        shares it (queued or running); None when the signer cannot tell."""
        return None

    @property
    def last_answer(self) -> float | None:
        """time.monotonic() when the device behind this signer last answered any call
        (from any chain); None when the signer cannot tell."""
        return None

    @property
    def last_service_time(self) -> float | None:
        """Seconds the device spent on its last call, queueing excluded; None when unknown."""
        return None
