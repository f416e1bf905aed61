"""`spread` counts work per device: chains sharing devices do not pile onto one of them."""

from __future__ import annotations

import asyncio

from nacl.signing import SigningKey

from kms.signer.base import Signature, Signer
from kms.signer.replicas import ReplicaSet

SEED = b"\x07" * 32


class Device:
    def __init__(self) -> None:
        self.pending = 0
        self.served = 0
        self.key = SigningKey(SEED)


class SharedDeviceSigner(Signer):
    """One chain's handle on a device that other chains use too."""

    def __init__(self, name: str, device: Device) -> None:
        self.name = name
        self.device = device

    @property
    def public_key(self) -> bytes:
        return bytes(self.device.key.verify_key)

    @property
    def load(self) -> int | None:
        return self.device.pending

    async def sign_traced(self, message: bytes, *, timeout: float | None = None) -> Signature:
        self.device.pending += 1
        try:
            await asyncio.sleep(0.02)
            self.device.served += 1
            return Signature(self.device.key.sign(message).signature, self.name)
        finally:
            self.device.pending -= 1


async def test_chains_sharing_devices_spread_by_device_load() -> None:
    a, b = Device(), Device()
    # chain 1 is busy on device a; chain 2 must go to b even though *its own* count is 0 on both
    chain1 = ReplicaSet("chain-1", [SharedDeviceSigner("a", a), SharedDeviceSigner("b", b)])
    chain2 = ReplicaSet(
        "chain-2", [SharedDeviceSigner("a", a), SharedDeviceSigner("b", b)], policy="spread"
    )
    await chain1.open()
    await chain2.open()
    a.pending += 5  # other chains' work queued on device a
    sig = await chain2.sign_traced(b"msg")
    assert sig.by == "b"
    a.pending -= 5
    # and under concurrent load from many chains both devices serve about half
    sets = [chain1, chain2]
    await asyncio.gather(*(sets[i % 2].sign(f"m{i}".encode()) for i in range(40)))
    assert abs(a.served - b.served) <= 4, (a.served, b.served)
