"""Known chains and the ways an operator writes a consensus public key for them.

Owns: the table of well-known chain IDs -> bech32 prefixes (so `kms init` writes the
right `key_format` without the operator looking it up) and `public_key_forms`, every
form of a consensus key an operator needs for `create-validator` or to compare with
`<appd> tendermint show-validator` (hex, base64, cosmos JSON, bech32 consensus pubkey,
validator address in hex and bech32). Never reads keys or configs itself.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Any

from kms.pubkey import (
    KeyFormat,
    bech32_consensus_pubkey,
    bech32_encode,
    cosmos_json_pubkey,
    validator_address,
)


@dataclass(frozen=True, slots=True)
class Bech32Prefixes:
    account: str  # e.g. "cosmospub" (account public keys)
    consensus: str  # e.g. "cosmosvalconspub" (consensus public keys)

    @property
    def consensus_address(self) -> str:
        """The prefix of a validator's consensus address, e.g. "cosmosvalcons"."""
        return self.consensus.removesuffix("pub")


def _sdk(hrp: str) -> Bech32Prefixes:
    """The Cosmos SDK convention: <hrp>pub and <hrp>valconspub."""
    return Bech32Prefixes(f"{hrp}pub", f"{hrp}valconspub")


# chain ID without its trailing revision number ("osmosis-1" -> "osmosis") -> prefixes.
# Main networks and their long-lived public testnets; anything else needs explicit flags.
KNOWN_CHAINS: dict[str, Bech32Prefixes] = {
    "cosmoshub": _sdk("cosmos"),
    "theta-testnet": _sdk("cosmos"),
    "provider": _sdk("cosmos"),  # Interchain Security testnet
    "osmosis": _sdk("osmo"),
    "osmo-test": _sdk("osmo"),
    "juno": _sdk("juno"),
    "akashnet": _sdk("akash"),
    "stargaze": _sdk("stars"),
    "celestia": _sdk("celestia"),
    "mocha": _sdk("celestia"),
    "dydx-mainnet": _sdk("dydx"),
    "injective": _sdk("inj"),
    "neutron": _sdk("neutron"),
    "pion": _sdk("neutron"),
    "stride": _sdk("stride"),
    "noble": _sdk("noble"),
    "axelar-dojo": _sdk("axelar"),
    "kava_2222": _sdk("kava"),
    "secret": _sdk("secret"),
    "phoenix": _sdk("terra"),
    "regen": _sdk("regen"),
    "sommelier": _sdk("somm"),
    "core": _sdk("persistence"),
    "agoric": _sdk("agoric"),
    "irishub": _sdk("iaa"),
    "evmos_9001": _sdk("evmos"),
    "pacific": _sdk("sei"),
    "laozi-mainnet": _sdk("band"),
    "crypto-org-chain-mainnet": _sdk("cro"),
    "kaiyo": _sdk("kujira"),
    "umee": _sdk("umee"),
    "archway": _sdk("archway"),
    "mantra": _sdk("mantra"),
}

_REVISION = re.compile(r"[-_]?\d+$")


def known_prefixes(chain_id: str) -> Bech32Prefixes | None:
    """The bech32 prefixes of a well-known chain, or None (the operator must say)."""
    base = chain_id.lower()
    for candidate in (base, _REVISION.sub("", base)):
        if candidate in KNOWN_CHAINS:
            return KNOWN_CHAINS[candidate]
    # "cosmoshub-4", "theta-testnet-001", "osmo-test-5": strip one more "-<n>" step
    stripped = _REVISION.sub("", _REVISION.sub("", base))
    return KNOWN_CHAINS.get(stripped)


def public_key_forms(public_key: bytes, key_format: KeyFormat | None = None) -> dict[str, Any]:
    """Every form of a consensus public key; the bech32 ones when the chain uses bech32."""
    forms: dict[str, Any] = {
        "hex": public_key.hex().upper(),
        "base64": base64.b64encode(public_key).decode(),
        "cosmos_json": cosmos_json_pubkey(public_key),
        "address": validator_address(public_key),
    }
    if key_format is not None and key_format.type == "bech32":
        p = Bech32Prefixes(key_format.account_key_prefix, key_format.consensus_key_prefix)
        forms["bech32"] = bech32_consensus_pubkey(public_key, p.consensus)
        forms["bech32_address"] = bech32_encode(
            p.consensus_address, bytes.fromhex(forms["address"])
        )
    return forms


FORM_LABELS = (
    ("hex", "public key (hex)"),
    ("base64", "public key (base64)"),
    ("cosmos_json", "public key (JSON)"),
    ("bech32", "public key (bech32)"),
    ("address", "validator address"),
    ("bech32_address", "consensus address"),
)


def render_forms(forms: dict[str, Any], indent: str = "") -> list[str]:
    """Aligned `label: value` lines for the forms present."""
    width = max(len(label) for _, label in FORM_LABELS)
    return [
        f"{indent}{label + ':':<{width + 1}} {forms[key]}"
        for key, label in FORM_LABELS
        if key in forms
    ]
