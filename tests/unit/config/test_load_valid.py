"""Configs that must load: tmkms's own forms, our multi-replica form, the shipped example."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kms.config import (
    Config,
    HttpAdapter,
    KeyFormat,
    UsbAdapter,
    YubiHsmKey,
    load_config,
    parse_config,
)
from kms.errors import ConfigError
from kms.identity import write_identity_key
from kms.keyfile import write_secret_file
from kms.privval.messages import Dialect
from tests.conftest import REPO_ROOT
from tests.unit.config.helpers import BASE, IDENTITY, SOFT_KEY, make_home, write_config

# As `tmkms init` writes it for a softsign testnet (validator.toml + softsign_consensus.toml).
TMKMS_SOFTSIGN = """
[[chain]]
id = "cosmoshub-3"
key_format = { type = "bech32", account_key_prefix = "cosmospub", consensus_key_prefix = "cosmosvalconspub" }
state_file = "state/cosmoshub-3-consensus.json"

[[validator]]
chain_id = "cosmoshub-3"
addr = "tcp://deadbeefdeadbeefdeadbeefdeadbeefdeadbeef@example1.example.com:26658"
secret_key = "secrets/id.key"
protocol_version = "v0.34"
reconnect = true

[[providers.softsign]]
chain_ids = ["cosmoshub-3"]
key_type = "consensus"
path = "secrets/chain-a.key"
"""

# tmkms's single-YubiHSM form, with the older inline password and the usb serial.
TMKMS_YUBIHSM = """
[[chain]]
id = "cosmoshub"
key_format = { type = "bech32", account_key_prefix = "cosmospub", consensus_key_prefix = "cosmosvalconspub" }
state_file = "cosmoshub_priv_validator_state.json"
sign_extensions = false

[[validator]]
addr = "tcp://F88883B673FC69D7869CAB098DE3BAFC2FF76EB8@127.0.0.1:23456"
chain_id = "cosmoshub"
reconnect = false
secret_key = "secrets/id.key"
protocol_version = "v0.34"
timeout = 10
max_height = "500000"

[[providers.yubihsm]]
adapter = { type = "usb", timeout_ms = 1000 }
auth = { key = 1, password = "password" }
keys = [{ chain_ids = ["cosmoshub"], key = 1, type = "consensus" }]
serial_number = "0123456789"
connector_server = { laddr = "tcp://127.0.0.1:12345", cli = { auth_key = 2 } }
"""

MULTI_REPLICA = """
[[chain]]
id = "cosmoshub-4"
key_format = { type = "cosmos-json" }
state_file = "/var/lib/kms/state/cosmoshub-4.json"
max_height = 25000000
audit_log = "audit/cosmoshub-4.jsonl"
raw_bytes = "prefixed"

[[chain]]
id = "osmosis-1"
key_format = { type = "hex" }
state_file = "state/osmosis-1.json"

[[validator]]
chain_id = "cosmoshub-4"
addr = "tcp://10.0.1.10:26658"
secret_key = "secrets/id.key"
protocol_version = "v1"
timeout = 2.5

[[validator]]
chain_id = "cosmoshub-4"
addr = "tcp://[fd00::11]:26658"
secret_key = "secrets/id.key"
protocol_version = "v0.37"

[[validator]]
chain_id = "osmosis-1"
addr = "unix:///run/osmosis/priv.sock"

[[providers.yubihsm]]
adapter = { type = "http", addr = "tcp://hsm-a.internal:12345" }
auth = { key = 4, password_file = "secrets/hsm-password" }
keys = [{ chain_ids = ["cosmoshub-4"], key = 1 }, { chain_ids = ["osmosis-1"], key = 2 }]

[[providers.yubihsm]]
adapter = { type = "http", addr = "http://hsm-b.internal:12345" }
auth = { key = 4, password_file = "secrets/hsm-password" }
keys = [{ chain_ids = ["cosmoshub-4", "osmosis-1"], key = 7 }]

[[providers.yubihsm]]
adapter = { type = "usb", serial_number = "0012345678" }
auth = { key = 4, password_file = "secrets/hsm-password" }
keys = [{ chain_ids = ["cosmoshub-4"], key = 1 }]

[hsm]
policy = "primary"
health_interval = 3
connect_timeout = 0.5
request_timeout = 1
hedge = false

[metrics]
textfile = "metrics/kms.prom"
listen = "[::1]:9464"
interval = 1
"""


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return make_home(tmp_path / "home")


def test_tmkms_softsign_config_loads_unchanged(home: Path) -> None:
    cfg = load_config(write_config(home, TMKMS_SOFTSIGN))
    (chain,) = cfg.chains
    assert chain.id == "cosmoshub-3"
    assert chain.key_format == KeyFormat("bech32", "cosmospub", "cosmosvalconspub")
    assert chain.state_file == home / "state/cosmoshub-3-consensus.json"
    assert chain.sign_extensions is True  # kms's default, unlike tmkms
    (v,) = cfg.validators
    assert (v.scheme, v.host, v.port) == ("tcp", "example1.example.com", 26658)
    assert v.peer_id == "deadbeef" * 5
    assert v.secret_key == home / IDENTITY
    assert v.protocol_version is Dialect.V0_34
    assert v.timeout == 5.0
    (s,) = cfg.softsign
    assert (s.chain_ids, s.key_type, s.key_format, s.path) == (
        ("cosmoshub-3",),
        "consensus",
        "base64",
        home / SOFT_KEY,
    )
    assert cfg.yubihsm == ()
    assert cfg.warnings == ()


def test_tmkms_single_yubihsm_config_loads_with_warnings(home: Path) -> None:
    cfg = load_config(write_config(home, TMKMS_YUBIHSM))
    (p,) = cfg.yubihsm
    assert p.adapter == UsbAdapter(serial_number="0123456789", timeout_ms=1000)
    assert p.name == "usb:0123456789"
    assert (p.auth_key, p.password, p.password_file) == (1, "password", None)
    assert p.keys == (YubiHsmKey(("cosmoshub",), 1, "consensus"),)
    (v,) = cfg.validators
    assert v.peer_id == "f88883b673fc69d7869cab098de3bafc2ff76eb8"  # lower-cased
    assert v.protocol_version is Dialect.V0_34
    assert (v.reconnect, v.timeout) == (False, 10.0)
    (chain,) = cfg.chains
    assert chain.sign_extensions is False
    assert chain.max_height == 500000  # the validator's tmkms max_height, folded into the chain
    joined = "\n".join(cfg.warnings)
    for key in ("'auth.password'", "'connector_server'", "'max_height'"):
        assert key in joined


def test_multi_replica_config_loads(home: Path) -> None:
    (home / "audit").mkdir()
    cfg = load_config(write_config(home, MULTI_REPLICA))
    assert [c.id for c in cfg.chains] == ["cosmoshub-4", "osmosis-1"]
    hub = cfg.chain("cosmoshub-4")
    assert hub.state_file == Path("/var/lib/kms/state/cosmoshub-4.json")
    assert hub.audit_log == home / "audit/cosmoshub-4.jsonl"
    assert (hub.max_height, hub.raw_bytes) == (25000000, "prefixed")
    assert hub.key_format.type == "cosmos-json"
    v1, v2, v3 = cfg.validators
    assert (v1.protocol_version, v1.timeout) == (Dialect.V1, 2.5)
    assert (v2.host, v2.port, v2.protocol_version) == ("fd00::11", 26658, Dialect.V0_37)
    assert (v3.scheme, v3.path, v3.secret_key) == ("unix", Path("/run/osmosis/priv.sock"), None)
    a, b, usb = cfg.yubihsm
    assert a.adapter == HttpAdapter("hsm-a.internal", 12345)
    assert a.adapter.url == "http://hsm-a.internal:12345"
    assert b.adapter == HttpAdapter("hsm-b.internal", 12345)
    assert [a.name, b.name, usb.name] == [
        "hsm-a.internal:12345",
        "hsm-b.internal:12345",
        "usb:0012345678",
    ]
    assert b.keys == (YubiHsmKey(("cosmoshub-4", "osmosis-1"), 7),)
    assert a.password_file == home / "secrets/hsm-password"
    assert (cfg.hsm.policy, cfg.hsm.health_interval) == ("primary", 3.0)
    assert (cfg.hsm.connect_timeout, cfg.hsm.request_timeout, cfg.hsm.hedge) == (0.5, 1.0, False)
    assert cfg.metrics.listen == ("::1", 9464)
    assert cfg.metrics.textfile == home / "metrics/kms.prom"
    assert cfg.metrics.interval == 1.0
    assert cfg.warnings == ()


def test_defaults_when_optional_keys_are_absent(home: Path) -> None:
    cfg = load_config(write_config(home, BASE.replace('[metrics]\nlisten = "127.0.0.1:9464"', "")))
    v = cfg.validators[0]
    assert (v.protocol_version, v.reconnect, v.timeout) == (Dialect.V0_38, True, 5.0)
    c = cfg.chain("chain-a")
    assert (c.sign_extensions, c.max_height, c.audit_log, c.raw_bytes) == (True, None, None, "off")
    assert cfg.metrics.listen is None and cfg.metrics.textfile is None
    assert cfg.hsm.policy == "spread"


def test_relative_paths_resolve_against_the_config_directory_not_the_cwd(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config(write_config(home, BASE))
    assert cfg.chain("chain-a").state_file == home.resolve() / "state/chain-a.json"
    assert cfg.validators[0].secret_key == home.resolve() / IDENTITY


def test_missing_state_file_key_defaults_to_tmkms_name_next_to_config(home: Path) -> None:
    cfg = load_config(write_config(home, BASE.replace('state_file = "state/chain-a.json"\n', "")))
    assert cfg.chain("chain-a").state_file == home.resolve() / "chain-a_priv_validator_state.json"
    assert any("'state_file'" in w for w in cfg.warnings)


def test_lowest_max_height_of_chain_and_its_validators_wins(home: Path) -> None:
    text = BASE.replace(
        'state_file = "state/chain-a.json"', 'state_file = "state/chain-a.json"\nmax_height = 900'
    ).replace('addr = "tcp://127.0.0.1:26658"', 'addr = "tcp://127.0.0.1:26658"\nmax_height = 800')
    cfg = load_config(write_config(home, text))
    assert cfg.chain("chain-a").max_height == 800
    assert cfg.chain("chain-b").max_height is None


def test_secret_key_of_a_unix_validator_is_ignored_with_a_warning(home: Path) -> None:
    text = BASE.replace(
        'addr = "unix:///run/val-b.sock"',
        f'addr = "unix:///run/val-b.sock"\nsecret_key = "{IDENTITY}"',
    )
    cfg = load_config(write_config(home, text))
    assert cfg.validators[1].secret_key is None
    assert any("[[validator]] #2" in w and "'secret_key'" in w for w in cfg.warnings)


def test_state_hook_that_fails_open_is_accepted_and_ignored(home: Path) -> None:
    text = BASE.replace(
        'key_format = { type = "hex" }',
        'key_format = { type = "hex" }\nstate_hook = { cmd = ["/bin/height"], fail_closed = false }',
    )
    cfg = load_config(write_config(home, text))
    assert any("[[chain]] #2" in w and "'state_hook'" in w for w in cfg.warnings)


def test_account_keys_are_accepted_and_do_not_count_as_the_chains_key(home: Path) -> None:
    text = BASE + '\n[[providers.softsign]]\nchain_ids = ["chain-b"]\nkey_type = "account"\n'
    text += f'path = "{SOFT_KEY}"\n'
    cfg = load_config(write_config(home, text))  # chain-b stays on its YubiHSM, no conflict
    assert [s.key_type for s in cfg.softsign] == ["consensus", "account"]


def test_parse_config_can_skip_secret_file_checks(tmp_path: Path) -> None:
    cfg = parse_config(BASE, tmp_path / "tmkms.toml", check_files=False)
    assert isinstance(cfg, Config)
    with pytest.raises(ConfigError, match="secret_key"):
        parse_config(BASE, tmp_path / "tmkms.toml")


def test_chain_lookup_raises_keyerror_for_unknown_chain(home: Path) -> None:
    cfg = load_config(write_config(home, BASE))
    with pytest.raises(KeyError):
        cfg.chain("nope")


def test_shipped_example_loads_once_its_paths_exist(tmp_path: Path) -> None:
    text = (REPO_ROOT / "tmkms.toml.example").read_text()
    root = tmp_path / "var-lib-kms"
    (root / "secrets").mkdir(parents=True, mode=0o700)
    write_identity_key(root / "secrets/kms-identity.key")
    write_secret_file(root / "secrets/hsm-password", b"hunter2\n")
    assert "/var/lib/kms/" in text
    path = write_config(tmp_path, text.replace("/var/lib/kms/", f"{root}/"))
    cfg = load_config(path)
    assert [c.id for c in cfg.chains] == ["cosmoshub-4"]
    assert len(cfg.validators) == 2 and len(cfg.yubihsm) == 2
    assert {p.name for p in cfg.yubihsm} == {"hsm-a.internal:12345", "hsm-b.internal:12345"}
    assert cfg.chains[0].state_file == root / "state/cosmoshub-4.json"
    assert cfg.warnings == ()


def test_shipped_example_documents_every_key_the_loader_accepts() -> None:
    from kms.config import schema as c

    text = (REPO_ROOT / "tmkms.toml.example").read_text()
    keys = {
        *c.CHAIN_KEYS,
        *c.VALIDATOR_KEYS,
        *c.YUBIHSM_KEYS,
        *c.SOFTSIGN_KEYS,
        *c.HSM_KEYS,
        *c.METRICS_KEYS,
        *c.SHARED_KEYS,
    }
    missing = sorted(k for k in keys if re.search(rf"(^|[#\s]){k}( =|:)", text, re.M) is None)
    assert missing == []


def test_yubihsm_without_keys_and_slow_health_checks_are_warned_about(home: Path) -> None:
    text = BASE.replace('policy = "spread"', 'policy = "spread"\nhealth_interval = 30')
    text += '\n[[providers.yubihsm]]\nadapter = { type = "http", addr = "tcp://10.9.9.9:1" }\n'
    text += 'auth = { key = 1, password_file = "secrets/hsm-password" }\n'
    cfg = load_config(write_config(home, text))
    assert cfg.yubihsm[1].keys == ()
    assert any("[[providers.yubihsm]] #2: key 'keys'" in w for w in cfg.warnings)
    assert any("[hsm]: key 'health_interval'" in w for w in cfg.warnings)


def test_config_without_chains_loads_with_a_warning(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path, ""))
    assert cfg.chains == () and cfg.validators == ()
    assert any("top level: key 'chain'" in w for w in cfg.warnings)
