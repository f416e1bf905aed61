"""`kms keys list` on a softsign config shows the key (it printed nothing before)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from kms.cli.main import cli
from kms.pubkey import bech32_consensus_pubkey, public_key_from_seed, validator_address
from tests.unit.config.helpers import BASE, SOFT_KEY, make_home, write_config

SEED = bytes(range(1, 33))  # the softsign key make_home writes


def test_softsign_key_is_listed_in_every_form(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home")
    path = write_config(home, BASE)
    pub = public_key_from_seed(SEED)
    r = CliRunner().invoke(cli, ["keys", "list", "-c", str(path), "--json"])
    soft = [d for d in json.loads(r.stdout)["devices"] if d["device"].startswith("softsign")]
    (entry,) = soft
    assert entry["device"] == f"softsign {home / SOFT_KEY}"
    (key,) = entry["keys"]
    assert key["chains"] == ["chain-a"]
    forms = key["forms"]
    assert forms["hex"] == pub.hex().upper()
    assert forms["bech32"] == bech32_consensus_pubkey(pub, "cosmosvalconspub")
    assert forms["address"] == validator_address(pub)
    assert forms["bech32_address"].startswith("cosmosvalcons1")


def test_softsign_only_config_lists_its_key_as_text(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home")
    path = write_config(home, _softsign_only())
    r = CliRunner().invoke(cli, ["keys", "list", "-c", str(path)])
    assert r.exit_code == 0, r.output
    pub = public_key_from_seed(SEED)
    assert bech32_consensus_pubkey(pub, "cosmosvalconspub") in r.output
    assert validator_address(pub) in r.output
    assert pub.hex().upper() in r.output


def _softsign_only() -> str:
    return f"""
[[chain]]
id = "chain-a"
key_format = {{ type = "bech32", account_key_prefix = "cosmospub", consensus_key_prefix = "cosmosvalconspub" }}
state_file = "state/chain-a.json"

[[validator]]
chain_id = "chain-a"
addr = "unix:///run/a.sock"

[[providers.softsign]]
chain_ids = ["chain-a"]
path = "{SOFT_KEY}"
"""
