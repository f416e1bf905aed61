"""Where the config comes from: -c FILE, else $KMS_CONFIG_FILE, else $TMKMS_CONFIG_FILE, else ./tmkms.toml."""

from __future__ import annotations

from pathlib import Path

import pytest

from kms.config import config_path_from_env

BOTH = {"KMS_CONFIG_FILE": "/etc/kms.toml", "TMKMS_CONFIG_FILE": "/etc/tmkms.toml"}


@pytest.mark.parametrize(
    ("cli", "env", "expected"),
    [
        ("/cli.toml", BOTH, "/cli.toml"),
        (Path("rel/cli.toml"), BOTH, "rel/cli.toml"),
        (None, BOTH, "/etc/kms.toml"),
        (None, {"TMKMS_CONFIG_FILE": "/etc/tmkms.toml"}, "/etc/tmkms.toml"),
        (None, {}, "tmkms.toml"),
        # empty values count as unset
        ("", BOTH, "/etc/kms.toml"),
        (None, {"KMS_CONFIG_FILE": "", "TMKMS_CONFIG_FILE": "/etc/tmkms.toml"}, "/etc/tmkms.toml"),
        (None, {"KMS_CONFIG_FILE": "", "TMKMS_CONFIG_FILE": ""}, "tmkms.toml"),
    ],
)
def test_config_path_fallback_order(
    cli: str | Path | None, env: dict[str, str], expected: str
) -> None:
    assert config_path_from_env(cli, env) == Path(expected)


def test_config_path_reads_the_process_environment_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KMS_CONFIG_FILE", raising=False)
    monkeypatch.setenv("TMKMS_CONFIG_FILE", "/from/tmkms/env.toml")
    assert config_path_from_env(None) == Path("/from/tmkms/env.toml")
    monkeypatch.setenv("KMS_CONFIG_FILE", "/from/kms/env.toml")
    assert config_path_from_env(None) == Path("/from/kms/env.toml")
    monkeypatch.delenv("KMS_CONFIG_FILE")
    monkeypatch.delenv("TMKMS_CONFIG_FILE")
    assert config_path_from_env(None) == Path("tmkms.toml")
