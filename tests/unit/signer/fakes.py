"""A scriptable fake signer for replica-set tests (real Ed25519, fake device behaviour)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from nacl.signing import SigningKey

from kms.errors import HsmConnectionError, HsmDeviceError, HsmTimeoutError
from kms.signer.base import Signature, Signer


class FakeReplica(Signer):
    """Signs with a real key; `mode` decides how it misbehaves.

    modes: "ok", "refused" (HsmConnectionError), "device" (HsmDeviceError),
    "hang" (never answers), "garbage" (returns a wrong signature).
    """

    def __init__(
        self,
        name: str,
        seed: bytes,
        *,
        latency: float = 0.0,
        serial: bool = False,
        hang_timeout: float | None = None,
    ) -> None:
        self.name = name
        # serial: one request at a time, like a device; hang_timeout: a hang ends in
        # HsmTimeoutError after this long, like the HTTP read timeout of a real signer
        self._lock = asyncio.Lock() if serial else None
        self.hang_timeout = hang_timeout
        self._key = SigningKey(seed)
        self.latency = latency
        self.mode = "ok"
        self.open_mode = "ok"
        self.signed: list[bytes] = []
        self.pings = 0
        self.opens = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.on_sign: Callable[[], None] | None = None
        self.fail_next = 0  # the next N signatures fail with a device error, then "ok"

    @property
    def public_key(self) -> bytes:
        return bytes(self._key.verify_key)

    def set_key(self, seed: bytes) -> None:
        self._key = SigningKey(seed)

    async def open(self) -> None:
        self.opens += 1
        if self.open_mode != "ok":
            raise HsmConnectionError(f"{self.name}: connection refused")

    async def _misbehave(self) -> None:
        if self.mode == "refused":
            raise HsmConnectionError(f"{self.name}: connection refused")
        if self.mode == "device":
            raise HsmDeviceError(f"{self.name}: device error INVALID_SESSION")
        if self.mode == "hang":
            if self.hang_timeout is None:
                await asyncio.Event().wait()
            else:
                await asyncio.sleep(self.hang_timeout)
            raise HsmTimeoutError(f"{self.name}: read timed out")

    async def sign_traced(self, message: bytes, *, timeout: float | None = None) -> Signature:
        if self._lock is None:
            return await self._sign(message)
        async with self._lock:
            return await self._sign(message)

    async def _sign(self, message: bytes) -> Signature:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.on_sign:
                self.on_sign()
            if self.fail_next:
                self.fail_next -= 1
                raise HsmDeviceError(f"{self.name}: device error INVALID_SESSION")
            await self._misbehave()
            if self.latency:
                await asyncio.sleep(self.latency)
            self.signed.append(message)
            sig = bytes(self._key.sign(message).signature)
            if self.mode == "garbage":
                sig = bytes(64)
            return Signature(sig, self.name)
        finally:
            self.in_flight -= 1

    async def ping(self, *, timeout: float | None = None) -> None:
        self.pings += 1
        await self._misbehave()
