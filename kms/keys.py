"""Key formats and key files.

Owns: bech32 (BIP-173, written here) with the Amino ed25519 prefix, the other
public-key display formats (cosmos-json, hex, base64), the CometBFT validator
address, and reading/writing secret key files (base64 seeds and CometBFT's
`priv_validator_key.json`) with mode 0600.

Rules:
- A secret file is created with `os.open(..., 0o600)` and never chmod-ed
  afterwards (no window where it is readable by others); an existing file is
  never overwritten unless the caller says so.
- A secret file that is group- or world-accessible is refused when read, with
  a message naming the file, its mode and the `chmod 600` fix.
- Every malformed input raises `KeyFileError` naming the file and the problem.

Never touches devices, sockets or double-sign state.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from nacl.signing import SigningKey

from kms.errors import KeyFileError
from kms.fsutil import atomic_write

ED25519_SEED_LEN = 32
ED25519_PUBKEY_LEN = 32

# Amino prefix of a `tendermint/PubKeyEd25519` (4-byte type prefix + length 0x20),
# as cosmos-sdk's legacy bech32 consensus keys (and tmkms) encode them.
AMINO_ED25519_PUBKEY_PREFIX = bytes.fromhex("1624de6420")

COSMOS_JSON_TYPE = "/cosmos.crypto.ed25519.PubKey"
COMETBFT_PUBKEY_TYPE = "tendermint/PubKeyEd25519"
COMETBFT_PRIVKEY_TYPE = "tendermint/PrivKeyEd25519"

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


def generate_seed(randbytes: Callable[[int], bytes] = os.urandom) -> bytes:
    seed = randbytes(ED25519_SEED_LEN)
    if len(seed) != ED25519_SEED_LEN:
        raise ValueError("random source returned the wrong number of bytes")
    return seed


# --- secret files ---------------------------------------------------------------------


MAX_SECRET_FILE_LEN = 65536
"""Secret files (keys, passwords, priv_validator_key.json) are tiny; refuse to slurp big ones."""


def check_private_mode(path: Path) -> os.stat_result:
    """Require a regular file that no one but its owner can read, write or execute.

    Raises KeyFileError naming the path, the problem and the fix.
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        raise KeyFileError(f"{path}: file does not exist") from None
    except OSError as e:
        raise KeyFileError(f"{path}: cannot stat: {e.strerror or e}") from None
    if not stat.S_ISREG(st.st_mode):
        raise KeyFileError(f"{path}: not a regular file")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise KeyFileError(
            f"{path}: permissions {mode:04o} let group or other users read a secret; "
            f"run: chmod 600 {path}"
        )
    return st


def read_secret_file(path: Path, *, max_len: int = MAX_SECRET_FILE_LEN) -> bytes:
    """Read a small secret file after `check_private_mode`; KeyFileError on any failure."""
    path = Path(path)
    check_private_mode(path)
    try:
        with path.open("rb") as f:
            data = f.read(max_len + 1)
    except OSError as e:
        raise KeyFileError(f"{path}: cannot read: {e.strerror or e}") from None
    if len(data) > max_len:
        raise KeyFileError(f"{path}: file is larger than {max_len} bytes; not a key file")
    return data


def write_secret_file(path: Path, data: bytes, *, overwrite: bool = False) -> None:
    """Durably write `data` to a file created with mode 0600 (never chmod-ed).

    Refuses to replace an existing file unless `overwrite` (then the existing file
    must itself already be 0600). The content goes to a fresh temporary file that
    is renamed into place (kms.fsutil.atomic_write): never a symlink followed,
    never a half-written key, the old key intact if anything fails.
    """
    path = Path(path)
    if overwrite and path.exists():
        check_private_mode(path)
    try:
        atomic_write(path, data, mode=0o600, overwrite=overwrite)
    except FileExistsError:
        raise KeyFileError(f"{path}: already exists; refusing to overwrite a key file") from None
    except OSError as e:
        raise KeyFileError(f"{path}: cannot write: {e}") from None


# --- base64 seed files -----------------------------------------------------------------


def decode_base64_key(path: Path, raw: bytes) -> bytes:
    """Decode the base64 content of a softsign key file (whitespace around it allowed)."""
    try:
        return base64.b64decode(raw.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KeyFileError(f"{path}: not valid base64") from None


def write_base64_seed(path: Path, seed: bytes, *, overwrite: bool = False) -> None:
    """Write a 32-byte seed as base64 (tmkms's softsign `base64` format), mode 0600."""
    if len(seed) != ED25519_SEED_LEN:
        raise ValueError("an Ed25519 seed is 32 bytes")
    write_secret_file(path, base64.b64encode(seed) + b"\n", overwrite=overwrite)


# --- CometBFT priv_validator_key.json ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class PrivValidatorKey:
    """The content of a CometBFT `priv_validator_key.json` (seed and derived values)."""

    seed: bytes
    public_key: bytes
    address: str

    def __repr__(self) -> str:  # never print the seed
        return f"PrivValidatorKey(address={self.address!r})"


def parse_priv_validator_key(path: Path, raw: bytes) -> PrivValidatorKey:
    """Parse and cross-check a `priv_validator_key.json` (address, pub_key, priv_key)."""
    try:
        obj: Any = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise KeyFileError(f"{path}: not valid JSON ({e})") from None
    try:
        priv = obj["priv_key"]
        ptype, pvalue = priv["type"], priv["value"]
    except (TypeError, KeyError):
        raise KeyFileError(f"{path}: missing priv_key.type / priv_key.value") from None
    if ptype != COMETBFT_PRIVKEY_TYPE:
        raise KeyFileError(
            f"{path}: priv_key.type is {ptype!r}, expected {COMETBFT_PRIVKEY_TYPE!r}"
        )
    try:
        secret = base64.b64decode(pvalue, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise KeyFileError(f"{path}: priv_key.value is not valid base64") from None
    if len(secret) != 64:
        raise KeyFileError(f"{path}: priv_key.value is {len(secret)} bytes, expected 64")
    seed, pub_in_priv = secret[:32], secret[32:]
    public_key = public_key_from_seed(seed)
    if pub_in_priv != public_key:
        raise KeyFileError(f"{path}: priv_key.value's public half does not match its seed")
    pub = obj.get("pub_key")
    if pub is not None:
        if not isinstance(pub, dict) or pub.get("type") != COMETBFT_PUBKEY_TYPE:
            raise KeyFileError(f"{path}: pub_key.type must be {COMETBFT_PUBKEY_TYPE!r}")
        try:
            pub_bytes = base64.b64decode(pub.get("value", ""), validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise KeyFileError(f"{path}: pub_key.value is not valid base64") from None
        if pub_bytes != public_key:
            raise KeyFileError(f"{path}: pub_key does not match priv_key")
    address = validator_address(public_key)
    declared = obj.get("address")
    if declared is not None and str(declared).upper() != address:
        raise KeyFileError(f"{path}: address {declared} does not match the key ({address})")
    return PrivValidatorKey(seed=seed, public_key=public_key, address=address)


def read_priv_validator_key(path: Path) -> PrivValidatorKey:
    path = Path(path)
    return parse_priv_validator_key(path, read_secret_file(path))


def priv_validator_key_json(seed: bytes) -> bytes:
    public_key = public_key_from_seed(seed)
    doc = {
        "address": validator_address(public_key),
        "pub_key": {"type": COMETBFT_PUBKEY_TYPE, "value": base64.b64encode(public_key).decode()},
        "priv_key": {
            "type": COMETBFT_PRIVKEY_TYPE,
            "value": base64.b64encode(seed + public_key).decode(),
        },
    }
    return (json.dumps(doc, indent=2) + "\n").encode()


def write_priv_validator_key(path: Path, seed: bytes, *, overwrite: bool = False) -> None:
    write_secret_file(path, priv_validator_key_json(seed), overwrite=overwrite)
