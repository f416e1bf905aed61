"""The known-chains table and the forms of a consensus public key."""

from __future__ import annotations

import pytest

from kms.chains import known_prefixes, public_key_forms
from kms.config import KeyFormat
from kms.pubkey import bech32_decode, parse_public_key


@pytest.mark.parametrize(
    ("chain_id", "consensus"),
    [
        ("cosmoshub-4", "cosmosvalconspub"),
        ("theta-testnet-001", "cosmosvalconspub"),
        ("osmosis-1", "osmovalconspub"),
        ("osmo-test-5", "osmovalconspub"),
        ("celestia", "celestiavalconspub"),
        ("kava_2222-10", "kavavalconspub"),
        ("dydx-mainnet-1", "dydxvalconspub"),
    ],
)
def test_known_chains(chain_id: str, consensus: str) -> None:
    p = known_prefixes(chain_id)
    assert p is not None and p.consensus == consensus
    assert p.account == consensus.replace("valconspub", "pub")


@pytest.mark.parametrize("chain_id", ["mychain-1", "test-chain", "kms-demo-1", "c-1"])
def test_unknown_chains(chain_id: str) -> None:
    assert known_prefixes(chain_id) is None


def test_every_form_names_the_same_key() -> None:
    pub = bytes(range(32))
    forms = public_key_forms(pub, KeyFormat("bech32", "osmopub", "osmovalconspub"))
    for key in ("hex", "base64", "cosmos_json", "bech32"):
        assert parse_public_key(forms[key]) == pub, key
    hrp, data = bech32_decode(forms["bech32_address"])
    assert (hrp, data.hex().upper()) == ("osmovalcons", forms["address"])
    assert "bech32" not in public_key_forms(pub, KeyFormat("hex"))
