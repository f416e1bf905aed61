"""kms.pubkey (bech32, key formats, validator address) and kms.keyfile (secret files, 0600)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nacl.signing import SigningKey

from kms.errors import KeyFileError
from kms.keyfile import (
    parse_priv_validator_key,
    priv_validator_key_json,
    read_priv_validator_key,
    read_secret_file,
    write_base64_seed,
    write_priv_validator_key,
    write_secret_file,
)
from kms.pubkey import (
    KeyFormat,
    bech32_consensus_pubkey,
    bech32_decode,
    bech32_encode,
    format_public_key,
    parse_public_key,
    validator_address,
)

# A consensus key published on-chain (cosmos-sdk legacy bech32, Amino ed25519 prefix).
KNOWN_VALCONSPUB = (
    "cosmosvalconspub1zcjduepqf6kaq98x2kz4njrt5w24quz468e24pqevd0tk6ghzh2mhur0lexqvhgp4g"
)
KNOWN_PUBKEY_HEX = "4eadd014e6558559c86ba395507055d1f2aa8419635ebb691715d5bbf06ffe4c"

# RFC 8032 test 1
RFC_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC_PUB = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")


def test_bech32_matches_a_known_cosmosvalconspub_key() -> None:
    pub = bytes.fromhex(KNOWN_PUBKEY_HEX)
    assert bech32_consensus_pubkey(pub, "cosmosvalconspub") == KNOWN_VALCONSPUB
    hrp, data = bech32_decode(KNOWN_VALCONSPUB)
    assert hrp == "cosmosvalconspub"
    assert data == bytes.fromhex("1624de6420") + pub


def test_bech32_bip173_valid_vectors_decode() -> None:
    # BIP-173 valid test strings
    for s in [
        "A12UEL5L",
        "abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw",
        "split1checkupstagehandshakeupstreamerranterredcaperred2y9e3w",
        "?1ezyfcl",
    ]:
        hrp, data = bech32_decode(s)
        assert bech32_encode(hrp, data) == s.lower()


@pytest.mark.parametrize(
    "bad",
    [
        "cosmosvalconspub1zcjduepqf6kaq98x2kz4njrt5w24quz468e24pqevd0tk6ghzh2mhur0lexqvhgp4h",
        "Cosmosvalconspub1zcjduepqf6kaq98x2kz4njrt5w24quz468e24pqevd0tk6ghzh2mhur0lexqvhgp4g",
        "pzry9x0s0muk",
        "1pzry9x0s0muk",
        "x1b4n0q5v",
    ],
)
def test_bech32_rejects_bad_checksum_mixed_case_and_bad_chars(bad: str) -> None:
    with pytest.raises(ValueError):
        bech32_decode(bad)


@given(st.binary(min_size=0, max_size=60), st.sampled_from(["a", "cosmosvalconspub", "osmo"]))
def test_bech32_round_trips(data: bytes, hrp: str) -> None:
    assert bech32_decode(bech32_encode(hrp, data)) == (hrp, data)


def test_validator_address_is_first_20_bytes_of_sha256_upper_hex() -> None:
    addr = validator_address(RFC_PUB)
    assert addr == hashlib.sha256(RFC_PUB).hexdigest()[:40].upper()
    assert len(addr) == 40 and addr.isupper()


def test_key_formats_render_and_parse_back() -> None:
    pub = bytes.fromhex(KNOWN_PUBKEY_HEX)
    fmt = KeyFormat("bech32", "cosmospub", "cosmosvalconspub")
    rendered = {
        "bech32": format_public_key(pub, fmt),
        "cosmos-json": format_public_key(pub, KeyFormat("cosmos-json")),
        "hex": format_public_key(pub, "hex"),
        "base64": format_public_key(pub, "base64"),
    }
    assert rendered["bech32"] == KNOWN_VALCONSPUB
    assert json.loads(rendered["cosmos-json"]) == {
        "@type": "/cosmos.crypto.ed25519.PubKey",
        "key": base64.b64encode(pub).decode(),
    }
    assert rendered["hex"] == KNOWN_PUBKEY_HEX.upper()
    for text in rendered.values():
        assert parse_public_key(text) == pub
    with pytest.raises(ValueError):
        format_public_key(pub, "pem")


def test_priv_validator_key_json_round_trip_matches_cometbft_layout(tmp_path: Path) -> None:
    path = tmp_path / "priv_validator_key.json"
    write_priv_validator_key(path, RFC_SEED)
    doc = json.loads(path.read_text())
    assert doc["address"] == validator_address(RFC_PUB)
    assert doc["pub_key"] == {
        "type": "tendermint/PubKeyEd25519",
        "value": base64.b64encode(RFC_PUB).decode(),
    }
    assert doc["priv_key"]["type"] == "tendermint/PrivKeyEd25519"
    assert base64.b64decode(doc["priv_key"]["value"]) == RFC_SEED + RFC_PUB
    key = read_priv_validator_key(path)
    assert (key.seed, key.public_key) == (RFC_SEED, RFC_PUB)
    assert RFC_SEED.hex() not in repr(key)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.update(address="00" * 20), "address"),
        (lambda d: d["pub_key"].update(value=base64.b64encode(bytes(32)).decode()), "pub_key"),
        (lambda d: d["priv_key"].update(type="tendermint/PrivKeySecp256k1"), "priv_key.type"),
        (lambda d: d["priv_key"].update(value="!!"), "base64"),
        (lambda d: d["priv_key"].update(value=base64.b64encode(bytes(32)).decode()), "32 bytes"),
        (
            lambda d: d["priv_key"].update(value=base64.b64encode(RFC_SEED + bytes(32)).decode()),
            "public half",
        ),
        (lambda d: d.pop("priv_key"), "missing"),
    ],
)
def test_priv_validator_key_inconsistencies_are_refused(
    mutate: Callable[[dict[str, Any]], object], message: str
) -> None:
    doc = json.loads(priv_validator_key_json(RFC_SEED))
    mutate(doc)
    with pytest.raises(KeyFileError, match=message):
        parse_priv_validator_key(Path("k.json"), json.dumps(doc).encode())


def test_secret_file_is_created_0600_even_with_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = tmp_path / "seed.key"
        write_base64_seed(path, RFC_SEED)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert base64.b64decode(path.read_bytes()) == RFC_SEED


def test_secret_file_is_never_overwritten_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "seed.key"
    write_secret_file(path, b"one")
    with pytest.raises(KeyFileError, match="already exists"):
        write_secret_file(path, b"two")
    assert path.read_bytes() == b"one"
    write_secret_file(path, b"two", overwrite=True)
    assert path.read_bytes() == b"two"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o700 | 0o004])
def test_group_or_world_accessible_secret_file_is_refused_with_chmod_fix(
    tmp_path: Path, mode: int
) -> None:
    path = tmp_path / "seed.key"
    write_secret_file(path, b"x")
    path.chmod(mode)
    with pytest.raises(KeyFileError) as info:
        read_secret_file(path)
    msg = str(info.value)
    assert str(path) in msg and f"{mode:04o}" in msg and "chmod 600" in msg


def test_missing_secret_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="does not exist") as info:
        read_secret_file(tmp_path / "nope.key")
    assert str(tmp_path / "nope.key") in str(info.value)


def test_seed_helpers_agree_with_nacl() -> None:
    assert bytes(SigningKey(RFC_SEED).verify_key) == RFC_PUB
