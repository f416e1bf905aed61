"""The optional host preference against real etcd: a hint that shapes races, never safety."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from kms.shared.etcd import EtcdClient
from kms.shared.preference import Preference
from kms.sim.etcd_cluster import EtcdCluster
from tests.shared.helpers import PREFIX, cand_vote, client_for, gate_for, init_record
from tests.unit.state.helpers import PREVOTE, block

DELAY = 0.3


@pytest.fixture
async def clients(etcd_cluster: EtcdCluster) -> AsyncIterator[tuple[EtcdClient, EtcdClient]]:
    a, b = client_for(etcd_cluster), client_for(etcd_cluster)
    yield a, b
    await a.close()
    await b.close()


def prefs(a: EtcdClient, b: EtcdClient, ttl: int = 2) -> tuple[Preference, Preference]:
    return (
        Preference(a, prefix=PREFIX, host_id="a", ttl=ttl, delay=DELAY),
        Preference(b, prefix=PREFIX, host_id="b", ttl=ttl, delay=DELAY),
    )


async def test_first_host_is_preferred_and_the_other_waits(
    clients: tuple[EtcdClient, EtcdClient],
) -> None:
    pa, pb = prefs(*clients)
    await pa.step()
    await pb.step()
    assert (pa.holder, pb.holder) == ("a", "a")
    assert (pa.delay(), pb.delay()) == (0.0, DELAY)


async def test_preferred_host_wins_a_conflicting_race(
    clients: tuple[EtcdClient, EtcdClient],
) -> None:
    ca, cb = clients
    await init_record(ca)
    pa, pb = prefs(ca, cb)
    await pa.step()
    await pb.step()
    ga, gb = gate_for(ca, "a"), gate_for(cb, "b")
    ga.preference, gb.preference = pa, pb
    await ga.load()
    await gb.load()
    for h in range(1, 6):
        t0 = time.monotonic()
        vb, va = await asyncio.gather(
            gb.authorize(cand_vote(PREVOTE, h, 0, block(2)), max_height=None),
            ga.authorize(cand_vote(PREVOTE, h, 0, block(1)), max_height=None),
        )
        assert time.monotonic() - t0 >= DELAY
        assert va.allowed and not vb.allowed and vb.error_code == 2, (h, va, vb)


async def test_preference_moves_when_the_lease_expires(
    clients: tuple[EtcdClient, EtcdClient],
) -> None:
    pa, pb = prefs(*clients, ttl=1)
    await pa.step()
    await pb.step()
    assert pb.holder == "a"
    deadline = time.monotonic() + 10  # a stops renewing (it died): b takes over after the TTL
    while pb.holder != "b":
        assert time.monotonic() < deadline, pb.holder
        await asyncio.sleep(0.3)
        await pb.step()
    assert pb.delay() == 0.0
    await pa.step()  # a comes back: its lease is gone, b stays preferred
    assert pa.holder == "b" and pa.delay() == DELAY


async def test_stopping_hands_over_at_once(clients: tuple[EtcdClient, EtcdClient]) -> None:
    pa, pb = prefs(*clients, ttl=30)
    stop = asyncio.Event()
    task = asyncio.create_task(pa.run(stop))
    while pa.holder != "a":
        await asyncio.sleep(0.05)
    stop.set()
    await task
    await pb.step()
    assert pb.holder == "b"


async def test_unknown_preference_means_no_wait(etcd_cluster: EtcdCluster) -> None:
    c = client_for(etcd_cluster, timeout=0.3)
    p = Preference(c, prefix=PREFIX, host_id="b", ttl=2, delay=DELAY)
    p.holder = "a"
    for m in etcd_cluster.members:
        etcd_cluster.kill(m)
    stop = asyncio.Event()
    task = asyncio.create_task(p.run(stop))
    await asyncio.sleep(1.5)
    assert p.holder is None and p.delay() == 0.0
    stop.set()
    await task
    await c.close()
