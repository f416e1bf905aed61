"""SoftSigner and load_softsign: RFC 8032 results, accepted file forms, refusals."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest

from kms.errors import KeyFileError
from kms.keyfile import write_base64_seed, write_priv_validator_key, write_secret_file
from kms.signer.softsign import SoftSigner, load_softsign

# RFC 8032 section 7.1, tests 1 and 2
RFC = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
]


@pytest.mark.parametrize("seed, pub, msg, sig", RFC)
async def test_softsigner_reproduces_rfc8032_vectors(
    seed: str, pub: str, msg: str, sig: str
) -> None:
    s = SoftSigner(bytes.fromhex(seed))
    assert s.public_key.hex() == pub
    out = await s.sign_traced(bytes.fromhex(msg))
    assert out.signature.hex() == sig
    assert out.by == "softsign"


@pytest.mark.parametrize("seed, pub, msg, sig", RFC)
async def test_expanded_key_signs_identically_to_seed(
    seed: str, pub: str, msg: str, sig: str
) -> None:
    s = SoftSigner.from_expanded(hashlib.sha512(bytes.fromhex(seed)).digest())
    assert s.public_key.hex() == pub
    assert (await s.sign(bytes.fromhex(msg))).hex() == sig


async def test_load_base64_seed_file(tmp_path: Path) -> None:
    seed = bytes.fromhex(RFC[0][0])
    path = tmp_path / "k"
    write_base64_seed(path, seed)
    s = load_softsign(path, "base64")
    assert s.public_key.hex() == RFC[0][1]


async def test_load_64_byte_seed_plus_public_key_and_tmkms_expanded_forms(tmp_path: Path) -> None:
    seed, pub = bytes.fromhex(RFC[1][0]), bytes.fromhex(RFC[1][1])
    pair = tmp_path / "pair"
    write_secret_file(pair, base64.b64encode(seed + pub))
    expanded = tmp_path / "expanded"
    write_secret_file(expanded, base64.b64encode(hashlib.sha512(seed).digest()))
    h = hashlib.sha512(seed).digest()
    clamped = bytearray(h[:32])
    clamped[0] &= 248
    clamped[31] = (clamped[31] & 127) | 64
    yubi = tmp_path / "yubi"
    write_secret_file(yubi, base64.b64encode(bytes(clamped)[::-1] + h[32:] + pub))
    for p in (pair, expanded, yubi):
        s = load_softsign(p)
        assert s.public_key == pub
        assert (await s.sign(b"\x72")).hex() == RFC[1][3]


def test_96_byte_form_with_wrong_public_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "k"
    write_secret_file(path, base64.b64encode(bytes(range(96))))
    with pytest.raises(KeyFileError, match="does not match"):
        load_softsign(path)


def test_load_priv_validator_key_json(tmp_path: Path) -> None:
    path = tmp_path / "priv_validator_key.json"
    write_priv_validator_key(path, bytes.fromhex(RFC[0][0]))
    assert load_softsign(path, "json").public_key.hex() == RFC[0][1]


@pytest.mark.parametrize(
    "content, match",
    [
        (b"not base64!!", "base64"),
        (base64.b64encode(bytes(31)), "31 bytes"),
        (b"", "0 bytes"),
    ],
)
def test_malformed_base64_key_files_are_refused(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "k"
    write_secret_file(path, content)
    with pytest.raises(KeyFileError, match=match):
        load_softsign(path)


def test_world_readable_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "k"
    write_base64_seed(path, bytes(32))
    path.chmod(0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_softsign(path)


def test_unknown_key_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "k"
    write_base64_seed(path, bytes(32))
    with pytest.raises(KeyFileError, match="key_format"):
        load_softsign(path, "pem")  # type: ignore[arg-type]  # deliberately not a known format
