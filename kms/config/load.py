"""Finding, reading and parsing the config file.

Owns: where the config file is (`-c FILE`, $KMS_CONFIG_FILE, $TMKMS_CONFIG_FILE,
./tmkms.toml), reading it (UTF-8 TOML), the check that a file holding an inline
password is private, and logging the load warnings. Never interprets a section
itself (that is `kms.config.parser` and the section modules).
"""

from __future__ import annotations

import logging
import os
import stat
import tomllib
from collections.abc import Mapping
from pathlib import Path

from kms.config.model import Config
from kms.config.parser import parse_document
from kms.config.table import one_line
from kms.errors import ConfigError

CONFIG_FILE_NAME = "tmkms.toml"
CONFIG_ENV_VARS = ("KMS_CONFIG_FILE", "TMKMS_CONFIG_FILE")  # first set (non-empty) wins

_log = logging.getLogger("kms.config")  # the name operators filter on


def config_path_from_env(
    cli_value: str | Path | None,
    environ: Mapping[str, str] | None = None,
) -> Path:
    """`-c FILE`, else $KMS_CONFIG_FILE, else $TMKMS_CONFIG_FILE, else ./tmkms.toml.

    Empty values count as unset. `environ` defaults to `os.environ`.
    """
    if cli_value is not None and str(cli_value) != "":
        return Path(cli_value)
    env = os.environ if environ is None else environ
    for var in CONFIG_ENV_VARS:
        value = env.get(var, "")
        if value:
            return Path(value)
    return Path(CONFIG_FILE_NAME)


def load_config(path: Path, *, check_files: bool = True) -> Config:
    """Read, parse and fully validate the config file at `path`.

    `check_files=False` skips the secret-file checks (for tools that create those
    files); `kms start` always checks. Raises ConfigError (one line).
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: config file not found (give -c FILE, or set $KMS_CONFIG_FILE"
            " or $TMKMS_CONFIG_FILE)"
        ) from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config file: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start})") from None
    config = parse_config(text, path, check_files=check_files)
    inline = [i for i, p in enumerate(config.yubihsm, 1) if p.password is not None]
    if inline and check_files:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise ConfigError(
                f"{path}: [[providers.yubihsm]] #{inline[0]}: key 'auth.password':"
                f" the config file holds a password but has permissions {mode:04o};"
                f" run: chmod 600 {path} (better: move it to auth.password_file)"
            )
    return config


def parse_config(text: str, path: Path, *, check_files: bool = True) -> Config:
    """Parse config `text` as if read from `path` (names errors, anchors relative paths)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {one_line(str(e))}") from None
    config = parse_document(doc, path, check_files=check_files)
    for w in config.warnings:
        _log.warning("%s", w)
    return config
