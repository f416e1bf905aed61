"""tmkms's own example configs load unchanged (an operator migrating from tmkms starts here).

The fixtures in tests/fixtures/tmkms/ follow the shape tmkms documents. Their secret
files do not exist (the example names /path/to/password), so the shape is loaded with
`check_files=False`; `kms start` (check_files=True) then names the first missing file.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from kms.config import UsbAdapter, load_config
from kms.errors import ConfigError
from tests.conftest import REPO_ROOT

FIXTURES = REPO_ROOT / "tests" / "fixtures" / "tmkms"


def _copy(name: str, tmp_path: Path) -> Path:
    path = tmp_path / name
    shutil.copyfile(FIXTURES / name, path)
    os.chmod(path, 0o600)  # configs with an inline password must be private
    return path


def test_tmkms_toml_example_loads_with_its_spare_chains_as_warnings(tmp_path: Path) -> None:
    cfg = load_config(_copy("tmkms.toml.example", tmp_path), check_files=False)
    assert [c.id for c in cfg.chains] == ["cosmoshub-3"]
    (v,) = cfg.validators
    assert (v.chain_id, v.host, v.port) == ("cosmoshub-3", "example1.example.com", 26658)
    (hsm,) = cfg.yubihsm
    assert hsm.adapter == UsbAdapter()
    (soft,) = cfg.softsign
    assert soft.chain_ids == ("cosmoshub-3",)
    joined = "\n".join(cfg.warnings)
    for spare in ("irishub", "agoricdev-4"):
        assert f"no consensus key serves chain '{spare}'; it is ignored" in joined
    assert "also has a softsign key" in joined  # both kinds of key: `kms start` refuses


def test_tmkms_toml_example_is_refused_by_start_only_for_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="secret_key"):
        load_config(_copy("tmkms.toml.example", tmp_path))


@pytest.mark.parametrize("name", ["yubihsm-setup.toml", "yubihsm-connector-server.toml"])
def test_readme_yubihsm_configs_load_unchanged(name: str, tmp_path: Path) -> None:
    cfg = load_config(_copy(name, tmp_path))
    (hsm,) = cfg.yubihsm
    assert (hsm.auth_key, hsm.password, hsm.keys) == (1, "password", ())
    assert cfg.chains == ()
    assert any("'auth.password'" in w for w in cfg.warnings)
