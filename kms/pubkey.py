"""Consensus public keys as operators and chains write them.

Owns: bech32 (BIP-173, written here) and what a bech32 prefix may be, the Amino
ed25519 prefix, `KeyFormat` (a chain's `key_format`) and the display formats
(bech32, cosmos-json, hex, base64) both ways, the CometBFT validator address,
and the public key of an Ed25519 seed. Pure: never reads or writes files, never
touches devices, sockets or double-sign state (secret key files are
`kms.keyfile`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from nacl.signing import SigningKey

ED25519_SEED_LEN = 32
ED25519_PUBKEY_LEN = 32

# Amino prefix of a `tendermint/PubKeyEd25519` (4-byte type prefix + length 0x20),
# as cosmos-sdk's legacy bech32 consensus keys (and tmkms) encode them.
AMINO_ED25519_PUBKEY_PREFIX = bytes.fromhex("1624de6420")

COSMOS_JSON_TYPE = "/cosmos.crypto.ed25519.PubKey"

# --- bech32 (BIP-173) -----------------------------------------------------------

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
# cosmos-sdk allows longer strings than BIP-173's 90 characters (bech32 keys are ~83,
# but multisig and module addresses are longer); 1023 is the spec's checksum limit.
_BECH32_MAX_LEN = 1023


def _polymod(values: Sequence[int]) -> int:
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i, g in enumerate(_GENERATOR):
            if (top >> i) & 1:
                chk ^= g
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convert_bits(data: Sequence[int], from_bits: int, to_bits: int, pad: bool) -> list[int]:
    acc = 0
    bits = 0
    out: list[int] = []
    maxv = (1 << to_bits) - 1
    for value in data:
        if value < 0 or value >> from_bits:
            raise ValueError("invalid value for bit conversion")
        acc = (acc << from_bits) | value
        bits += from_bits
        while bits >= to_bits:
            bits -= to_bits
            out.append((acc >> bits) & maxv)
    if pad:
        if bits:
            out.append((acc << (to_bits - bits)) & maxv)
    elif bits >= from_bits or ((acc << (to_bits - bits)) & maxv):
        raise ValueError("invalid padding in bech32 data")
    return out


def bech32_encode(hrp: str, data: bytes) -> str:
    """Encode bytes as bech32 (lower case) with the human-readable part `hrp`."""
    if not hrp or any(ord(c) < 33 or ord(c) > 126 for c in hrp) or hrp.lower() != hrp:
        raise ValueError(f"invalid bech32 prefix {hrp!r}")
    five = _convert_bits(data, 8, 5, True)
    polymod = _polymod([*_hrp_expand(hrp), *five, 0, 0, 0, 0, 0, 0]) ^ 1
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_CHARSET[d] for d in five + checksum)


def bech32_decode(text: str) -> tuple[str, bytes]:
    """Decode a bech32 string into (hrp, bytes); raise ValueError if invalid."""
    if len(text) > _BECH32_MAX_LEN:
        raise ValueError("bech32 string too long")
    if text.lower() != text and text.upper() != text:
        raise ValueError("bech32 string mixes upper and lower case")
    text = text.lower()
    pos = text.rfind("1")
    if pos < 1 or pos + 7 > len(text):
        raise ValueError("bech32 separator missing or checksum too short")
    hrp, rest = text[:pos], text[pos + 1 :]
    if any(ord(c) < 33 or ord(c) > 126 for c in hrp):
        raise ValueError("invalid character in bech32 prefix")
    try:
        values = [_CHARSET.index(c) for c in rest]
    except ValueError:
        raise ValueError("invalid character in bech32 data") from None
    if _polymod([*_hrp_expand(hrp), *values]) != 1:
        raise ValueError("bech32 checksum mismatch")
    return hrp, bytes(_convert_bits(values[:-6], 5, 8, False))


_HRP = re.compile(r"[a-z0-9]{1,83}")


def is_bech32_prefix(text: str) -> bool:
    """A bech32 human-readable part as kms accepts it (lower-case letters and digits)."""
    return _HRP.fullmatch(text) is not None


# --- public key formats ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyFormat:
    """How a chain displays its consensus public key (a `[[chain]] key_format` table)."""

    type: Literal["bech32", "cosmos-json", "hex"] = "bech32"
    account_key_prefix: str = "cosmospub"
    consensus_key_prefix: str = "cosmosvalconspub"


def _check_pubkey(public_key: bytes) -> None:
    if len(public_key) != ED25519_PUBKEY_LEN:
        raise ValueError(f"an Ed25519 public key is 32 bytes, got {len(public_key)}")


def validator_address(public_key: bytes) -> str:
    """CometBFT validator address: first 20 bytes of SHA-256(pubkey), upper-case hex."""
    _check_pubkey(public_key)
    return hashlib.sha256(public_key).digest()[:20].hex().upper()


def bech32_consensus_pubkey(public_key: bytes, prefix: str) -> str:
    """Legacy Amino bech32 consensus key, e.g. `cosmosvalconspub1zcjduepq...`."""
    _check_pubkey(public_key)
    return bech32_encode(prefix, AMINO_ED25519_PUBKEY_PREFIX + public_key)


def cosmos_json_pubkey(public_key: bytes) -> str:
    _check_pubkey(public_key)
    key = base64.b64encode(public_key).decode()
    return json.dumps({"@type": COSMOS_JSON_TYPE, "key": key}, separators=(",", ":"))


_FORMATTERS: dict[str, Callable[[bytes, KeyFormat], str]] = {
    "bech32": lambda pk, fmt: bech32_consensus_pubkey(pk, fmt.consensus_key_prefix),
    "cosmos-json": lambda pk, fmt: cosmos_json_pubkey(pk),
    "hex": lambda pk, fmt: pk.hex().upper(),
    "base64": lambda pk, fmt: base64.b64encode(pk).decode(),
}


def format_public_key(public_key: bytes, key_format: KeyFormat | str) -> str:
    """Render a consensus public key in a chain's key format (or 'base64'/'hex')."""
    _check_pubkey(public_key)
    fmt = key_format if isinstance(key_format, KeyFormat) else None
    name = key_format.type if isinstance(key_format, KeyFormat) else key_format
    if name not in _FORMATTERS:
        raise ValueError(f"unknown key format {name!r} (expected one of {sorted(_FORMATTERS)})")
    return _FORMATTERS[name](public_key, fmt or KeyFormat())


def parse_public_key(text: str) -> bytes:
    """Parse a public key written in any of the formats above (for comparisons)."""
    text = text.strip()
    if text.startswith("{"):
        obj = json.loads(text)
        if obj.get("@type") != COSMOS_JSON_TYPE:
            raise ValueError(f"not an ed25519 cosmos-json key: {obj.get('@type')!r}")
        raw = base64.b64decode(obj["key"], validate=True)
    elif _is_hex(text) and len(text) == 2 * ED25519_PUBKEY_LEN:
        raw = bytes.fromhex(text)
    else:
        try:
            _, data = bech32_decode(text)
        except ValueError:
            raw = base64.b64decode(text, validate=True)
        else:
            if not data.startswith(AMINO_ED25519_PUBKEY_PREFIX):
                raise ValueError("bech32 key is not an Amino ed25519 public key")
            raw = data[len(AMINO_ED25519_PUBKEY_PREFIX) :]
    _check_pubkey(raw)
    return raw


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)


# --- Ed25519 helpers ---------------------------------------------------------------


def public_key_from_seed(seed: bytes) -> bytes:
    if len(seed) != ED25519_SEED_LEN:
        raise ValueError(f"an Ed25519 seed is 32 bytes, got {len(seed)}")
    return bytes(SigningKey(seed).verify_key)
