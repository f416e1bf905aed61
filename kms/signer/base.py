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
from collections.abc import Sequence
from dataclasses import dataclass

from kms.errors import SignerError


@dataclass(frozen=True, slots=True)
class Signature:
    """A signature and the name of what produced it (a replica name, or 'softsign')."""

    signature: bytes
    by: str


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

    async def sign_all(
        self, messages: Sequence[bytes], *, timeout: float | None = None
    ) -> list[Signature | SignerError]:
        """Sign several messages; each gets its signature or the SignerError it met.

        One after the other here; a signer with several devices (`ReplicaSet`)
        signs them at once on different devices. Nothing else is signed.
        """
        results: list[Signature | SignerError] = []
        for m in messages:
            try:
                results.append(await self.sign_traced(m, timeout=timeout))
            except SignerError as e:
                results.append(e)
        return results

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
