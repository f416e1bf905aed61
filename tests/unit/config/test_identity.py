"""The SecretConnection identity key file: tmkms's format in, tmkms's format out, private always."""

from __future__ import annotations

import base64
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from kms.errors import KeyFileError
from kms.identity import identity_public_key, load_identity_key, write_identity_key

SEED = bytes(range(100, 132))
PUB = bytes(SigningKey(SEED).verify_key)


@pytest.fixture
def no_umask() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def _private(path: Path, data: bytes) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path


def test_written_key_is_base64_seed_without_newline_like_tmkms(tmp_path: Path) -> None:
    path = tmp_path / "id.key"
    assert write_identity_key(path, SEED) == SEED
    assert path.read_bytes() == base64.b64encode(SEED)
    assert load_identity_key(path) == SEED


def test_written_key_is_0600_even_with_an_empty_umask(tmp_path: Path, no_umask: None) -> None:
    path = tmp_path / "id.key"
    write_identity_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_new_seed_comes_from_the_injected_randomness(tmp_path: Path) -> None:
    calls: list[int] = []

    def rand(n: int) -> bytes:
        calls.append(n)
        return SEED

    assert write_identity_key(tmp_path / "id.key", randbytes=rand) == SEED
    assert calls == [32]


def test_two_new_keys_differ(tmp_path: Path) -> None:
    assert write_identity_key(tmp_path / "a") != write_identity_key(tmp_path / "b")


def test_existing_key_file_is_never_overwritten(tmp_path: Path) -> None:
    path = _private(tmp_path / "id.key", b"old")
    with pytest.raises(KeyFileError, match="already exists"):
        write_identity_key(path, SEED)
    assert path.read_bytes() == b"old"


def test_symlink_at_the_target_is_not_followed(tmp_path: Path) -> None:
    victim = _private(tmp_path / "victim", b"keep")
    link = tmp_path / "id.key"
    link.symlink_to(victim)
    with pytest.raises(KeyFileError):
        write_identity_key(link, SEED)
    assert victim.read_bytes() == b"keep"


@pytest.mark.parametrize(
    "data",
    [
        base64.b64encode(SEED),
        base64.b64encode(SEED) + b"\n",  # hand-written with an editor
        base64.b64encode(SEED + PUB),  # Go/NaCl 64-byte layout
        SEED,  # raw binary seed
        json.dumps(
            {
                "priv_key": {
                    "type": "tendermint/PrivKeyEd25519",
                    "value": base64.b64encode(SEED + PUB).decode(),
                }
            }
        ).encode(),  # CometBFT node_key.json
    ],
    ids=["tmkms-base64", "base64-newline", "base64-64-bytes", "raw-seed", "node-key-json"],
)
def test_accepted_identity_formats_give_the_seed(tmp_path: Path, data: bytes) -> None:
    assert load_identity_key(_private(tmp_path / "id.key", data)) == SEED


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "file is empty"),
        (b"\n", "file is empty"),
        (b"!!!! not base64", "not valid Base64"),
        (base64.b64encode(SEED[:31]), "decodes to 31 bytes"),
        (base64.b64encode(SEED + bytes(32)), "does not match"),
        (
            b'{"priv_key": {"type": "tendermint/PrivKeySecp256k1", "value": "AA=="}}',
            "PrivKeyEd25519",
        ),
        (b'{"address": "x"}', "priv_key"),
        (b"\xff" * 40, "not a key file"),
        (b"A" * 5000, "larger than"),
    ],
    ids=[
        "empty",
        "newline-only",
        "garbage",
        "short",
        "mismatched-pub",
        "secp-json",
        "json-no-key",
        "binary",
        "huge",
    ],
)
def test_malformed_identity_key_is_refused(tmp_path: Path, data: bytes, problem: str) -> None:
    path = _private(tmp_path / "id.key", data)
    with pytest.raises(KeyFileError) as exc:
        load_identity_key(path)
    assert str(exc.value).startswith(f"{path}: ") and problem in str(exc.value)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o666])
def test_permissive_identity_key_is_refused(tmp_path: Path, mode: int) -> None:
    path = _private(tmp_path / "id.key", base64.b64encode(SEED))
    os.chmod(path, mode)
    with pytest.raises(KeyFileError, match=f"chmod 600 {path}"):
        load_identity_key(path)


def test_missing_identity_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="does not exist"):
        load_identity_key(tmp_path / "nope")


def test_identity_public_key_is_the_ed25519_public_key() -> None:
    assert identity_public_key(SEED) == PUB
    with pytest.raises(ValueError):
        identity_public_key(SEED[:31])


def test_failed_write_leaves_no_half_written_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full_disk(fd: int, data: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", full_disk)
    path = tmp_path / "id.key"
    with pytest.raises(KeyFileError, match="No space left"):
        write_identity_key(path, SEED)
    assert not path.exists()
