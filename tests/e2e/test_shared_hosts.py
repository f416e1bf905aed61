"""Two kms hosts, one validator key, one etcd watermark, real CometBFT nodes.

A 4-validator network; validator "ours" runs on an active/standby-style pair of nodes
(ours-a, ours-b, both with a remote signer, fed different transactions so they propose
different blocks). Two kms hosts, each with its own state file, dial both nodes and
share one three-member etcd cluster ([shared_state]). Mid-run one kms host is killed
(kill -9), later one etcd member: the chain keeps committing with our signature, no
block carries duplicate-vote evidence, and across both hosts' audit logs no
(height, round, step) was signed for two blocks. The control runs two kms hosts
WITHOUT the shared state, each serving one of the two nodes: evidence must appear.

Run on v0.38 and v1.0 (the lines the issue names) to bound CI time; all lines pass
with KMS_SHARED_E2E_LINES.
"""

from __future__ import annotations

import os
import warnings

import pytest

from kms.sim.etcd_cluster import EtcdCluster
from tests.shared.conftest import etcd_binary

from .kmsproc import KmsHost, conflicting_signatures, kms_cli
from .scenarios import Rig, first_evidence, key_on_two_nodes, send_tx
from .test_two_nodes_one_key import feed_until
from .verify import check_commits, evidence_in

pytestmark = pytest.mark.e2e

BLOCKS = 24
# KMS_SHARED_E2E_LINES=v0.34,v0.37,v0.38,v0.40,v1.0 runs it on more lines.
LINES = tuple(os.environ.get("KMS_SHARED_E2E_LINES", "v0.38,v1.0").split(","))


class _Etcd:
    """Procs adapter: the cluster is stopped with everything else."""

    def __init__(self, cluster: EtcdCluster) -> None:
        self.cluster = cluster

    def stop(self, sig: int = 15, timeout: float = 0) -> int | None:
        self.cluster.stop()
        return 0

    def describe(self) -> str:
        return "\n".join(
            f"--- etcd {m.name}\n{self.cluster.log_tail(m)}" for m in self.cluster.members
        )


def _shared_toml(cluster: EtcdCluster, host: str) -> str:
    eps = ", ".join(f'"{e}"' for e in cluster.endpoints)
    return (
        f'\n[shared_state]\nendpoints = [{eps}]\nprefix = "/kms/e2e"\nhost_id = "{host}"\n'
        'timeout = "500ms"\ninsecure = true\n'
    )


@pytest.mark.lines(*LINES)  # (CI time: the shared watermark does not depend on the line)
def test_two_hosts_share_one_watermark(rig: Rig) -> None:
    rig.describe("two-kms-hosts-shared-etcd", "tcp", "softsign x2 + etcd")
    cluster = EtcdCluster(etcd_binary(), rig.tmp_path / "etcd", size=3)
    rig.procs.add(_Etcd(cluster))
    cluster.start()
    net, laddrs = key_on_two_nodes(rig, "ours")
    ours, ours_a = net.keys["ours"], net.node("ours-a")
    hosts: list[KmsHost] = []
    for name in ("kms-a", "kms-b"):
        h = rig.softsign_host(name, net.chain_id, list(laddrs.values()), ours_a, ours)
        h.extra_toml = _shared_toml(cluster, name)
        h.write_config()
        hosts.append(h)
    kms_cli("state", "push", "-c", str(hosts[0].config_path), "--chain-id", net.chain_id)
    for h in hosts:
        h.start()  # returns once started: a node waits only 3 s for its signer at start-up
    net.start()
    watcher = net.node("v1")
    feed_until(ours_a, watcher, BLOCKS // 3, timeout=120, alive=lambda: None)
    # Kill the host that is serving (the other one waits as a standby at the nodes).
    a, b = sorted(hosts, key=lambda h: -sum(e.get("msg") == "signed" for e in h.log_events()))
    a.kill()
    killed_at = watcher.height()
    feed_until(ours_a, watcher, 2 * BLOCKS // 3, timeout=120, alive=b.assert_alive)
    cluster.kill(cluster.members[0])
    etcd_down_at = watcher.height()
    feed_until(ours_a, watcher, BLOCKS + 4, timeout=150, alive=b.assert_alive)
    net.wait(BLOCKS + 1, timeout=60, alive=[b.assert_alive])
    last = watcher.height()

    report = check_commits(
        watcher, range(1, BLOCKS + 1), net.chain_id, ours.public_key, ours.address
    )
    entries = [e for h in hosts for e in h.audit_entries()]
    after_kill = [
        e for e in b.audit_entries() if e["outcome"] == "signed" and int(e["height"]) > killed_at
    ]
    rig.record.blocks = BLOCKS
    rig.record.notes.update(
        {
            "our_signatures_in_commits": len(report.signed),
            "killed_host": a.host_name,
            "host_killed_at": killed_at,
            "etcd_member_killed_at": etcd_down_at,
            "signed_by_host": {
                h.host_name: sum(e["outcome"] == "signed" for e in h.audit_entries()) for h in hosts
            },
        }
    )
    standby = [
        e
        for h in hosts
        for e in h.log_events()
        if str(e.get("msg", "")).startswith("standby for node")
    ]
    rig.record.notes["standby_log_lines"] = len(standby)
    assert not report.bad, report.summary()
    assert len(report.signed) >= BLOCKS // 2, report.summary()
    # A real node serves one signer at a time, so the other host usually logs that it
    # waits; whether its connection ever sits a whole second unanswered depends on who
    # dialed first (a full CI run once saw none). The visibility itself is asserted
    # deterministically in tests/shared/test_standby.py; here it is recorded.
    if not standby:
        warnings.warn("no host reported itself as a standby in this run", stacklevel=1)
    assert after_kill, f"{b.host_name} never signed after {a.host_name} was killed"
    assert any(c.height > etcd_down_at for c in report.signed), report.summary()
    for node in net.nodes:
        evidence = evidence_in(node, range(1, min(last, node.height()) + 1))
        assert evidence == [], f"{node.name}: {evidence}"
    assert conflicting_signatures(entries) == []


@pytest.mark.lines("v0.38")  # (CI time)
def test_two_hosts_without_shared_state_double_sign(rig: Rig) -> None:
    """Control: two kms hosts with their own state files only, one per node: they sign
    different blocks at one height and the evidence check must find it."""
    rig.describe("negative-two-kms-hosts-no-shared-state", "tcp", "softsign x2, local state only")
    net, laddrs = key_on_two_nodes(rig, "ours")
    ours, ours_a = net.keys["ours"], net.node("ours-a")
    for name, node in (("kms-a", "ours-a"), ("kms-b", "ours-b")):
        h = rig.softsign_host(name, net.chain_id, [laddrs[node]], ours_a, ours)
        h.start()
    net.start()
    found, checked = first_evidence(net.node("v1"), lambda n: send_tx(ours_a, n), timeout=120)
    assert found, f"no evidence in {checked} blocks"
    rig.record.notes["evidence_at_height"] = found[0].height
    assert ours.address in found[0].addresses, found[0].raw
