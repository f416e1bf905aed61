"""`[shared_state]` in the config: parsed fully, plain http refused unless insecure."""

from __future__ import annotations

from pathlib import Path

import pytest

from kms.config import Config, load_config
from kms.errors import ConfigError
from tests.unit.config.helpers import BASE, HSM_PASSWORD, make_home, write_config


def load(tmp_path: Path, shared: str, chain_extra: str = "") -> Config:
    home = make_home(tmp_path / "home")
    text = BASE.replace(
        'state_file = "state/chain-b.json"\n', f'state_file = "state/chain-b.json"\n{chain_extra}'
    )
    return load_config(write_config(home, text + "\n[shared_state]\n" + shared))


def test_full_section(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        'endpoints = ["https://10.0.0.1:2379", "https://[::1]:2379"]\nprefix = "/kms/prod/"\n'
        'host_id = "kms-a"\ntimeout = "250ms"\n'
        f'auth = {{ username = "kms", password_file = "{HSM_PASSWORD}" }}\n'
        'tls = { ca_file = "ca.pem", cert_file = "c.pem", key_file = "k.pem" }\n',
        chain_extra="shared_state = false\n",
    )
    s = cfg.shared_state
    assert s is not None
    assert s.endpoints == ("https://10.0.0.1:2379", "https://[::1]:2379")
    assert (s.prefix, s.host_id, s.timeout, s.username) == ("/kms/prod", "kms-a", 0.25, "kms")
    assert s.ca_file is not None and s.ca_file.name == "ca.pem" and not s.insecure
    assert [c.shared_state for c in cfg.chains] == [True, False]


def test_no_section_means_nothing_shared(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home")
    assert load_config(write_config(home, BASE)).shared_state is None


@pytest.mark.parametrize(
    ("shared", "match"),
    [
        ('endpoints = ["http://127.0.0.1:2379"]\nprefix = "/k"\n', "plain http"),
        ('endpoints = []\nprefix = "/k"\n', "non-empty list"),
        ('endpoints = ["ftp://x:1"]\nprefix = "/k"\n', "etcd URLs"),
        ('endpoints = ["https://x"]\nprefix = "/k"\n', "etcd URLs"),
        ('endpoints = ["https://x:1"]\nprefix = "k"\n', "prefix"),
        ('endpoints = ["https://x:1"]\nprefix = "/k"\ntimeout = "soon"\n', "duration"),
        ('endpoints = ["https://x:1"]\nprefix = "/k"\nbackend = "consul"\n', "etcd"),
        ('endpoints = ["https://x:1"]\nprefix = "/k"\nlease = true\n', "unknown key"),
        (
            'endpoints = ["https://x:1"]\nprefix = "/k"\ntls = { cert_file = "c" }\n',
            "go together",
        ),
    ],
)
def test_bad_section_is_one_clear_error(tmp_path: Path, shared: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as e:
        load(tmp_path, shared)
    assert "[shared_state]" in str(e.value) and "\n" not in str(e.value)


def test_http_allowed_with_insecure(tmp_path: Path) -> None:
    cfg = load(tmp_path, 'endpoints = ["http://127.0.0.1:2379"]\nprefix = "/k"\ninsecure = true\n')
    assert cfg.shared_state is not None and cfg.shared_state.insecure


def test_preference(tmp_path: Path) -> None:
    base = 'endpoints = ["https://x:1"]\nprefix = "/k"\n'
    cfg = load(tmp_path, base + 'preference = { ttl = 3, delay = "50ms" }\n')
    s = cfg.shared_state
    assert s is not None
    assert (s.preference_ttl, s.preference_delay) == (3, 0.05)
    plain = load(tmp_path / "2", base).shared_state
    assert plain is not None and plain.preference_ttl is None
    with pytest.raises(ConfigError, match="ttl"):
        load(tmp_path / "3", base + "preference = { ttl = 0 }\n")
