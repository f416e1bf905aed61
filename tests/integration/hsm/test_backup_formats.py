"""kms import / export with the wrapped-key files tmkms and yubihsm-shell write (detected by content)."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from nacl.signing import SigningKey
from yubihsm.backends.http import HttpBackend
from yubihsm.core import YubiHsm
from yubihsm.defs import CAPABILITY
from yubihsm.objects import AsymmetricKey, WrapKey

from kms.cli.main import cli
from kms.hsm.backup import RawWrapped, detect_raw_wrapped
from kms.hsm.keyfiles import SeedSource, read_key_source
from kms.keyfile import write_secret_file
from kms.pubkey import validator_address
from kms.sim.yubihsm import SimulatedHsm
from tests.yubihsm_typed import ed25519_public_key

SEED = bytes(range(7, 39))
PUB = bytes(SigningKey(SEED).verify_key)
WRAP = bytes(range(32))
KEY_ID = 12


def run(*args: str | Path | int) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def sims() -> Iterator[list[SimulatedHsm]]:
    started = []
    for _ in range(3):
        s = SimulatedHsm().start()
        s.device.put_wrap_key(1, WRAP)
        started.append(s)
    started[0].device.put_ed25519_seed(
        KEY_ID, SEED, capabilities=CAPABILITY.SIGN_EDDSA | CAPABILITY.EXPORTABLE_UNDER_WRAP
    )
    yield started
    for s in started:
        s.stop()


def library_blob(sim: SimulatedHsm) -> bytes:
    """What tmkms and yubihsm-shell obtain: EXPORT_WRAPPED through Yubico's library."""
    hsm = YubiHsm(HttpBackend(sim.url, timeout=(1, 3)))
    s = hsm.create_session_derived(1, "password")
    blob = WrapKey(s, 1).export_wrapped(AsymmetricKey(s, KEY_ID))
    s.close()
    hsm.close()
    return bytes(blob)


def flags(sims: list[SimulatedHsm], pw: Path) -> list[str | Path]:
    out: list[str | Path] = []
    for s in sims:
        out += ["--connector", s.url]
    return [*out, "--auth-key", "1", "--password-file", pw]


@pytest.fixture
def pw(tmp_path: Path) -> Path:
    path = tmp_path / "pw"
    write_secret_file(path, b"password")
    return path


@pytest.mark.parametrize(
    "encode",
    [
        pytest.param(lambda b: base64.b64encode(b), id="tmkms-base64"),
        pytest.param(lambda b: base64.b64encode(b) + b"\n", id="yubihsm-shell-base64"),
        pytest.param(lambda b: b, id="yubihsm-shell-binary"),
    ],
)
def test_a_library_made_blob_imports_into_every_replica(
    sims: list[SimulatedHsm], pw: Path, tmp_path: Path, encode: Callable[[bytes], bytes]
) -> None:
    path = tmp_path / "key.wrap"
    path.write_bytes(encode(library_blob(sims[0])))
    os.chmod(path, 0o644)  # encrypted: no 0600 needed
    res = run("import", *flags(sims[1:], pw), "--key-id", KEY_ID, path)
    assert res.exit_code == 0, res.output
    out = res.output
    assert "tmkms / yubihsm-shell format" in out
    address = validator_address(PUB)
    # shown once after the first device imported it, and again at the end for all
    first = out.index(address)
    assert out.index(f"imported key {KEY_ID} first on") < first < out.rindex("imported key")
    for s in sims[1:]:
        obj = s.device.get_object(KEY_ID, 3)
        assert obj is not None and obj.public_key() == PUB


def test_export_in_tmkms_format_is_what_the_library_imports(
    sims: list[SimulatedHsm], pw: Path, tmp_path: Path
) -> None:
    out = tmp_path / "backup.b64"
    res = run("export", *flags(sims[:1], pw), "--key-id", KEY_ID, "--format", "tmkms", out)
    assert res.exit_code == 0, res.output
    blob = base64.b64decode(out.read_bytes())  # tmkms: base64::decode, then import_wrapped
    hsm = YubiHsm(HttpBackend(sims[2].url, timeout=(1, 3)))
    s = hsm.create_session_derived(1, "password")
    key = WrapKey(s, 1).import_wrapped(blob)
    assert key.id == KEY_ID and ed25519_public_key(key).public_bytes_raw() == PUB
    hsm.close()
    assert isinstance(read_key_source(out), RawWrapped)


def test_a_blob_under_another_wrap_key_is_one_clear_error_and_changes_nothing(
    sims: list[SimulatedHsm], pw: Path, tmp_path: Path
) -> None:
    path = tmp_path / "key.wrap"
    path.write_bytes(base64.b64encode(library_blob(sims[0])))
    sims[1].device.delete_object(1, 4)
    sims[1].device.put_wrap_key(1, bytes(32))
    res = run("import", *flags(sims[1:2], pw), "--key-id", KEY_ID, path)
    assert res.exit_code == 1
    assert res.output.count("\n") == 2  # the "wrapped key ..." notice and one error line
    assert "does not decrypt under wrap key 1" in res.output
    assert sims[1].device.get_object(KEY_ID, 3) is None


def test_detection_by_content(tmp_path: Path) -> None:
    assert detect_raw_wrapped(base64.b64encode(SEED)) is None  # a base64 seed
    assert detect_raw_wrapped(base64.b64encode(SEED + PUB)) is None  # seed || public key
    assert detect_raw_wrapped(b'{"priv_key": {}}') is None
    assert detect_raw_wrapped(b"not base64 at all, just text that is long enough " * 3) is None
    blob = os.urandom(13 + 59 + 96 + 16)
    found = detect_raw_wrapped(base64.b64encode(blob))
    assert found is not None and found.blob == blob and found.could_be_ed25519
    assert detect_raw_wrapped(blob) == RawWrapped(blob, "binary")
    seed_file = tmp_path / "seed"
    write_secret_file(seed_file, base64.b64encode(SEED))
    assert read_key_source(seed_file) == SeedSource(SEED)
