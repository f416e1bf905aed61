"""Operator commands against a real etcd cluster: push, show --shared, hand-over, start-up refusal."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from kms.cli.main import cli
from kms.sim.etcd_cluster import EtcdCluster
from kms.state.machine import SignState
from kms.state.store import StateStore
from tests.integration.daemon.harness import Home, make_home, run_kms_start

CHAIN = "cli-chain"


def config(home: Home, endpoints: list[str], prefix: str, extra: str = "") -> Path:
    eps = ", ".join(f'"{e}"' for e in endpoints)
    text = home.chain_section(CHAIN, extra)
    text += home.validator_section(CHAIN, "tcp://127.0.0.1:1", home.identity, "v0.38")
    text += home.softsign_section([CHAIN])
    text += f'[shared_state]\nendpoints = [{eps}]\nprefix = "{prefix}"\nhost_id = "h1"\ninsecure = true\n'
    return home.write_config(text)


def kms(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(cli, list(args))
    return r.exit_code, r.output


def set_state(home: Home, state: SignState) -> None:
    path = home.state_file(CHAIN)
    path.unlink()
    StateStore.create(path, state)


def test_start_refuses_without_a_record_and_names_state_push(
    etcd_cluster: EtcdCluster, tmp_path: Path
) -> None:
    home = make_home(tmp_path / "h", [CHAIN])
    cfg = config(home, etcd_cluster.endpoints, "/kms/cli")
    r = run_kms_start(cfg)
    assert r.returncode != 0
    assert f"kms state push -c CONFIG --chain-id {CHAIN}" in r.stderr
    assert "Traceback" not in r.stderr


def test_start_refuses_when_etcd_is_down(etcd_cluster: EtcdCluster, tmp_path: Path) -> None:
    home = make_home(tmp_path / "h", [CHAIN])
    cfg = config(home, etcd_cluster.endpoints, "/kms/cli")
    assert kms("state", "push", "-c", str(cfg), "--chain-id", CHAIN)[0] == 0
    etcd_cluster.stop()
    r = run_kms_start(cfg)
    assert r.returncode != 0 and "etcd unavailable" in r.stderr and "Traceback" not in r.stderr


def test_push_show_never_lowers(etcd_cluster: EtcdCluster, tmp_path: Path) -> None:
    home = make_home(tmp_path / "h", [CHAIN])
    cfg = str(config(home, etcd_cluster.endpoints, "/kms/cli"))
    code, out = kms("state", "show", "--shared", "-c", cfg)
    assert code == 0 and "no shared watermark" in out
    set_state(home, SignState(100, 2, 1))
    code, out = kms("state", "push", "-c", cfg, "--chain-id", CHAIN)
    assert code == 0 and "set to 100/2/1" in out, out
    set_state(home, SignState(90, 0, 0))
    code, out = kms("state", "push", "-c", cfg, "--chain-id", CHAIN)
    assert code == 0 and "left unchanged" in out, out
    code, out = kms("state", "show", "--shared", "-c", cfg, "--chain-id", CHAIN, "--json")
    doc = json.loads(out)[CHAIN]
    assert (doc["height"], doc["round"], doc["step"], doc["host"]) == ("100", "2", 1, "h1")
    code, out = kms("state", "push", "-c", cfg, "--chain-id", "other")
    assert code != 0 and "not a [shared_state] chain" in out


def test_push_ignores_a_chain_that_opts_out(etcd_cluster: EtcdCluster, tmp_path: Path) -> None:
    home = make_home(tmp_path / "h", [CHAIN])
    cfg = str(config(home, etcd_cluster.endpoints, "/kms/cli", "shared_state = false"))
    code, out = kms("state", "push", "-c", cfg, "--chain-id", CHAIN)
    assert code != 0 and "not a [shared_state] chain" in out


def test_handover_between_two_clusters(etcd_cluster: EtcdCluster, tmp_path: Path) -> None:
    """Region A seals and exports; region B (another prefix = another record set) imports."""
    home = make_home(tmp_path / "h", [CHAIN])
    a = str(
        config(
            home,
            etcd_cluster.endpoints,
            "/kms/region-a",
        )
    )
    b = str(
        home.write_config(Path(a).read_text().replace("/kms/region-a", "/kms/region-b"), "b.toml")
    )
    set_state(home, SignState(500, 0, 2))
    assert kms("state", "push", "-c", a, "--chain-id", CHAIN)[0] == 0
    out_file = tmp_path / "handover.json"
    code, out = kms("handover", "export", "-c", a, str(out_file))
    assert code != 0 and "not sealed" in out
    code, out = kms("handover", "seal", "-c", a, "--at-height", "499")
    assert code != 0 and "already signed at height 500" in out
    code, out = kms("handover", "seal", "-c", a, "--at-height", "510")
    assert code == 0 and "sealed at height 510" in out
    code, out = kms("handover", "export", "-c", a, str(out_file))
    assert code == 0 and out_file.stat().st_mode & 0o077 == 0
    code, out = kms("handover", "import", "-c", b, str(out_file))
    assert code == 0 and "signs only above height 510" in out, out
    code, out = kms("state", "show", "--shared", "-c", b, "--json")
    doc = json.loads(out)[CHAIN]
    assert doc["height"] == "510" and doc["sign_bytes"] == ""
    # pushing a state above the seal in region A is refused
    set_state(home, SignState(600, 0, 0))
    code, out = kms("state", "push", "-c", a, "--chain-id", CHAIN)
    assert code != 0 and "sealed at height 510" in out
    # B already above the seal (regions overlapped): import refuses
    assert kms("state", "push", "-c", b, "--chain-id", CHAIN)[0] == 0  # B now at 600
    code, out = kms("handover", "import", "-c", b, str(out_file))
    assert code != 0 and "overlapped" in out


@pytest.mark.parametrize(
    "doc", ["{}", "not json", '{"kind": "kms-handover", "v": 1, "chains": {}}']
)
def test_import_refuses_a_bad_file(etcd_cluster: EtcdCluster, tmp_path: Path, doc: str) -> None:
    home = make_home(tmp_path / "h", [CHAIN])
    cfg = str(config(home, etcd_cluster.endpoints, "/kms/x"))
    f = tmp_path / "bad.json"
    f.write_text(doc)
    code, out = kms("handover", "import", "-c", cfg, str(f))
    assert code != 0 and "error:" in out.lower() and "Traceback" not in out


async def test_start_raises_a_record_below_the_local_state(
    etcd_cluster: EtcdCluster, tmp_path: Path
) -> None:
    """A host whose state file is above the shared record (a rebuilt cluster) raises it at
    start, so no other host can sign what this one already signed."""
    from kms.config import load_config
    from kms.shared.admin import read
    from kms.shared.setup import open_gates

    home = make_home(tmp_path / "h", [CHAIN])
    cfg = config(home, etcd_cluster.endpoints, "/kms/floor")
    set_state(home, SignState(5, 0, 1))
    code, _ = await asyncio.to_thread(kms, "state", "push", "-c", str(cfg), "--chain-id", CHAIN)
    assert code == 0
    local = SignState(40, 1, 2)
    client, gates = await open_gates(load_config(cfg), None, {CHAIN: local})
    assert client is not None
    got = await read(client, "/kms/floor", CHAIN)
    assert got is not None and got[0].hrs == (40, 1, 2) and gates[CHAIN].cached == got[0]
    # never lowered: a host with an older state changes nothing
    other, _ = await open_gates(load_config(cfg), None, {CHAIN: SignState(3, 0, 0)})
    assert other is not None
    await other.close()
    got = await read(client, "/kms/floor", CHAIN)
    assert got is not None and got[0].hrs == (40, 1, 2)
    await client.close()
