"""Secret files named by the config must exist, be readable and be private to the kms user."""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any

import pytest

from kms.config import load_config
from kms.errors import ConfigError
from tests.unit.config.helpers import (
    BASE,
    HSM_PASSWORD,
    IDENTITY,
    SOFT_KEY,
    make_home,
    write_config,
)

# (secret, section, key) for each secret file the base config names
SECRETS = [
    (IDENTITY, "[[validator]] #1", "secret_key"),
    (HSM_PASSWORD, "[[providers.yubihsm]] #1", "auth.password_file"),
    (SOFT_KEY, "[[providers.softsign]] #1", "path"),
]


def _load_error(home: Path, text: str = BASE) -> str:
    path = write_config(home, text)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644, 0o610])
@pytest.mark.parametrize(("secret", "section", "key"), SECRETS)
def test_group_or_world_accessible_secret_is_refused_with_the_chmod_fix(
    tmp_path: Path, secret: str, section: str, key: str, mode: int
) -> None:
    home = make_home(tmp_path / "home")
    os.chmod(home / secret, mode)
    msg = _load_error(home)
    assert f": {section}: key '{key}': " in msg
    assert f"{mode:04o}" in msg
    assert f"chmod 600 {home / secret}" in msg


@pytest.mark.parametrize("mode", [0o600, 0o400])
@pytest.mark.parametrize(("secret", "section", "key"), SECRETS)
def test_owner_only_secret_is_accepted(
    tmp_path: Path, secret: str, section: str, key: str, mode: int
) -> None:
    home = make_home(tmp_path / "home")
    os.chmod(home / secret, mode)
    load_config(write_config(home, BASE))


@pytest.mark.parametrize(("secret", "section", "key"), SECRETS)
def test_missing_secret_file_is_refused(
    tmp_path: Path, secret: str, section: str, key: str
) -> None:
    home = make_home(tmp_path / "home")
    (home / secret).unlink()
    msg = _load_error(home)
    assert f": {section}: key '{key}': {home / secret}: file does not exist" in msg


@pytest.mark.parametrize(("secret", "section", "key"), SECRETS)
def test_directory_instead_of_secret_file_is_refused(
    tmp_path: Path, secret: str, section: str, key: str
) -> None:
    home = make_home(tmp_path / "home")
    (home / secret).unlink()
    (home / secret).mkdir(mode=0o700)
    assert "not a regular file" in _load_error(home)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
@pytest.mark.parametrize(("secret", "section", "key"), SECRETS)
def test_unreadable_secret_file_is_refused(
    tmp_path: Path, secret: str, section: str, key: str
) -> None:
    home = make_home(tmp_path / "home")
    os.chmod(home / secret, 0o000)
    assert f"key '{key}': {home / secret}: cannot read" in _load_error(home)


def test_unreadable_secret_file_is_refused_even_for_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = make_home(tmp_path / "home")
    real_open = Path.open

    def deny(
        self: Path,
        mode: str = "r",
        buffering: int = -1,
        encoding: str | None = None,
        errors: str | None = None,
        newline: str | None = None,
    ) -> IO[Any]:
        if self.name == "hsm-password":
            raise PermissionError(13, "Permission denied")
        return real_open(self, mode, buffering, encoding, errors, newline)

    monkeypatch.setattr(Path, "open", deny)
    msg = _load_error(home)
    assert "key 'auth.password_file'" in msg and "cannot read: Permission denied" in msg


def test_empty_password_file_is_refused(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home")
    (home / HSM_PASSWORD).write_bytes(b"\n")
    assert "key 'auth.password_file'" in _load_error(home)


def test_malformed_identity_key_is_refused_at_load(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home")
    (home / IDENTITY).write_bytes(b"not a key")
    msg = _load_error(home)
    assert "[[validator]] #1: key 'secret_key'" in msg and "Base64" in msg


INLINE = BASE.replace(f'password_file = "{HSM_PASSWORD}"', 'password = "hunter2"')


def test_inline_password_needs_a_private_config_file(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home")
    path = write_config(home, INLINE)
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    msg = str(exc.value)
    assert msg.startswith(f"{path}: [[providers.yubihsm]] #1: key 'auth.password': ")
    assert f"chmod 600 {path}" in msg and "\n" not in msg
    os.chmod(path, 0o600)
    cfg = load_config(path)
    assert cfg.yubihsm[0].password == "hunter2"
    assert any("'auth.password'" in w for w in cfg.warnings)


def test_config_without_secrets_may_be_world_readable(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home")
    path = write_config(home, BASE)
    os.chmod(path, 0o644)
    load_config(path)
