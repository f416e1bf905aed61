"""An inline HSM password never appears in an error, a log line or a repr (issue 11, item 5).

Regression: `password = 73519246` (a number, not a quoted string) used to be echoed
in the config error ("got 73519246"), and repr() of the provider config showed the
password.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kms.config import load_config
from kms.errors import ConfigError
from tests.conftest import REPO_ROOT
from tests.unit.config.helpers import BASE, HSM_PASSWORD, make_home, write_config

SECRET = "73519246"
PASSWORD_FILE = f'password_file = "{HSM_PASSWORD}"'


def _config(home: Path, password_toml: str) -> Path:
    return write_config(home, BASE.replace(PASSWORD_FILE, password_toml))


def _kms(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "kms", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize(
    "password_toml",
    [
        f"password = {SECRET}",
        f"password = {SECRET}.5",
        f'password = ["{SECRET}"]',
        f'password = {{ value = "{SECRET}" }}',
        f"password = 0x{SECRET}",
    ],
    ids=["integer", "float", "list", "table", "hex-integer"],
)
def test_a_malformed_inline_password_is_not_echoed_in_the_error(
    tmp_path: Path, password_toml: str
) -> None:
    home = make_home(tmp_path)
    cfg = _config(home, password_toml)
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    assert "auth.password" in str(e.value) and "not shown" in str(e.value)
    assert SECRET not in str(e.value)


def test_kms_start_with_a_malformed_password_prints_no_secret(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    cfg = _config(home, f"password = {SECRET}")
    r = _kms("start", "-c", str(cfg), cwd=home)
    assert r.returncode == 2
    assert "auth.password" in r.stderr
    assert SECRET not in r.stdout + r.stderr
    assert "Traceback" not in r.stderr


def test_a_valid_inline_password_is_in_no_repr_warning_or_start_up_output(
    tmp_path: Path,
) -> None:
    home = make_home(tmp_path)
    cfg = _config(home, f'password = "{SECRET}"')
    config = load_config(cfg)
    (provider,) = config.yubihsm
    assert provider.password == SECRET  # it is loaded...
    assert SECRET not in repr(provider) and SECRET not in repr(config)  # ...never shown
    assert SECRET not in str(provider)
    assert all(SECRET not in w for w in config.warnings)
    # kms start (the HSM at 127.0.0.1:12345 is not there: start-up refuses) and a
    # listing that uses the password: neither prints it.
    for args in (["start", "-c", str(cfg)], ["keys", "list", "-c", str(cfg)]):
        r = _kms(*args, cwd=home)
        assert r.returncode != 0
        assert SECRET not in r.stdout + r.stderr, args
