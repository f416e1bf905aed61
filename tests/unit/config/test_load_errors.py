"""Broken configs: each is refused with one line naming the file, the section and the key."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

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

Edit = Callable[[str], str]


def sub(old: str, new: str) -> Edit:
    def edit(text: str) -> str:
        assert old in text, old
        return text.replace(old, new, 1)

    return edit


def add(extra: str) -> Edit:
    return lambda text: text + "\n" + extra + "\n"


def both(first: Edit, second: Edit) -> Edit:
    return lambda text: second(first(text))


def prepend(extra: str) -> Edit:
    return lambda text: extra + "\n" + text


CHAIN_A_STATE = 'state_file = "state/chain-a.json"'
CHAIN_B_FORMAT = 'key_format = { type = "hex" }'
VAL_A_ADDR = 'addr = "tcp://127.0.0.1:26658"'
VAL_B_ADDR = 'addr = "unix:///run/val-b.sock"'
SOFT_CHAINS = 'chain_ids = ["chain-a"]'
HSM_ADAPTER = 'adapter = { type = "http", addr = "tcp://127.0.0.1:12345" }'
HSM_AUTH = f'auth = {{ key = 1, password_file = "{HSM_PASSWORD}" }}'
HSM_KEYS = 'keys = [{ chain_ids = ["chain-b"], key = 1 }]'
SECOND_SOFTSIGN = f'[[providers.softsign]]\nchain_ids = ["chain-a"]\npath = "{SOFT_KEY}"'

# (id, edit, section, key, a word the explanation must contain)
CASES: list[tuple[str, Edit, str, str, str]] = [
    ("unknown-top-level-key", prepend("colour = 1"), "top level", "colour", "unknown"),
    (
        "unsupported-tx-signer",
        add("[[tx_signer]]\nchain_id = 'x'"),
        "top level",
        "tx_signer",
        "not supported",
    ),
    ("hsm-as-array", sub("[hsm]", "[[hsm]]"), "top level", "hsm", "[hsm]"),
    (
        "unknown-chain-key",
        sub(CHAIN_A_STATE, CHAIN_A_STATE + "\ncolour = 1"),
        "[[chain]] #1",
        "colour",
        "unknown",
    ),
    ("chain-id-missing", sub('id = "chain-a"\n', ""), "[[chain]] #1", "id", "missing"),
    (
        "chain-id-too-long",
        sub('id = "chain-b"', f'id = "{"x" * 51}"'),
        "[[chain]] #2",
        "id",
        "chain ID",
    ),
    (
        "chain-id-with-space",
        sub('id = "chain-b"', 'id = "chain b"'),
        "[[chain]] #2",
        "id",
        "chain ID",
    ),
    (
        "key-format-type",
        sub(CHAIN_B_FORMAT, 'key_format = { type = "base58" }'),
        "[[chain]] #2",
        "key_format.type",
        "bech32",
    ),
    ("key-format-missing", sub(CHAIN_B_FORMAT + "\n", ""), "[[chain]] #2", "key_format", "missing"),
    (
        "bech32-prefix-missing",
        sub(', consensus_key_prefix = "cosmosvalconspub"', ""),
        "[[chain]] #1",
        "key_format.consensus_key_prefix",
        "missing",
    ),
    (
        "hex-format-extra-key",
        sub(CHAIN_B_FORMAT, 'key_format = { type = "hex", upper = true }'),
        "[[chain]] #2",
        "key_format.upper",
        "unknown",
    ),
    (
        "sign-extensions-string",
        sub(CHAIN_A_STATE, CHAIN_A_STATE + '\nsign_extensions = "yes"'),
        "[[chain]] #1",
        "sign_extensions",
        "true or false",
    ),
    (
        "max-height-negative",
        sub(CHAIN_A_STATE, CHAIN_A_STATE + '\nmax_height = "-5"'),
        "[[chain]] #1",
        "max_height",
        "block height",
    ),
    (
        "max-height-zero",
        sub(CHAIN_A_STATE, CHAIN_A_STATE + "\nmax_height = 0"),
        "[[chain]] #1",
        "max_height",
        "block height",
    ),
    (
        "raw-bytes-on",
        sub(CHAIN_A_STATE, CHAIN_A_STATE + '\nraw_bytes = "on"'),
        "[[chain]] #1",
        "raw_bytes",
        "prefixed",
    ),
    (
        "audit-log-number",
        sub(CHAIN_A_STATE, CHAIN_A_STATE + "\naudit_log = 5"),
        "[[chain]] #1",
        "audit_log",
        "path",
    ),
    (
        "state-hook-fail-closed",
        sub(CHAIN_B_FORMAT, CHAIN_B_FORMAT + '\nstate_hook = { cmd = ["h"], fail_closed = true }'),
        "[[chain]] #2",
        "state_hook",
        "kms state set",
    ),
    (
        "duplicate-chain-id",
        sub('id = "chain-b"', 'id = "chain-a"'),
        "[[chain]] #2",
        "id",
        "already defined",
    ),
    (
        "chain-without-key-but-with-a-validator",
        add(
            '[[chain]]\nid = "chain-c"\nkey_format = { type = "hex" }\nstate_file = "c.json"\n'
            '[[validator]]\nchain_id = "chain-c"\naddr = "unix:///run/c.sock"'
        ),
        "[[chain]] #3",
        "id",
        "no consensus key",
    ),
    (
        "validator-unknown-chain",
        sub('chain_id = "chain-a"', 'chain_id = "chain-z"'),
        "[[validator]] #1",
        "chain_id",
        "chain-z",
    ),
    (
        "validator-unknown-key",
        sub(VAL_A_ADDR, VAL_A_ADDR + "\nheartbeat = 1"),
        "[[validator]] #1",
        "heartbeat",
        "unknown",
    ),
    (
        "addr-http-scheme",
        sub(VAL_A_ADDR, 'addr = "http://127.0.0.1:26658"'),
        "[[validator]] #1",
        "addr",
        "tcp://",
    ),
    (
        "addr-short-peer-id",
        sub(VAL_A_ADDR, f'addr = "tcp://{"a" * 39}@127.0.0.1:26658"'),
        "[[validator]] #1",
        "addr",
        "40 hex",
    ),
    (
        "addr-non-hex-peer-id",
        sub(VAL_A_ADDR, f'addr = "tcp://{"g" * 40}@127.0.0.1:26658"'),
        "[[validator]] #1",
        "addr",
        "40 hex",
    ),
    (
        "addr-port-out-of-range",
        sub(VAL_A_ADDR, 'addr = "tcp://127.0.0.1:70000"'),
        "[[validator]] #1",
        "addr",
        "host:port",
    ),
    (
        "addr-no-port",
        sub(VAL_A_ADDR, 'addr = "tcp://127.0.0.1"'),
        "[[validator]] #1",
        "addr",
        "host:port",
    ),
    (
        "addr-unix-relative",
        sub(VAL_B_ADDR, 'addr = "unix://run/val.sock"'),
        "[[validator]] #2",
        "addr",
        "absolute",
    ),
    (
        "addr-duplicate",
        add(f'[[validator]]\nchain_id = "chain-a"\n{VAL_A_ADDR}\nsecret_key = "{IDENTITY}"'),
        "[[validator]] #3",
        "addr",
        "already used",
    ),
    (
        "tcp-without-secret-key",
        sub(f'secret_key = "{IDENTITY}"\n', ""),
        "[[validator]] #1",
        "secret_key",
        "identity key",
    ),
    (
        "protocol-version-unknown",
        sub(VAL_A_ADDR, VAL_A_ADDR + '\nprotocol_version = "v0.36"'),
        "[[validator]] #1",
        "protocol_version",
        "v0.38",
    ),
    (
        "protocol-version-legacy",
        sub(VAL_A_ADDR, VAL_A_ADDR + '\nprotocol_version = "legacy"'),
        "[[validator]] #1",
        "protocol_version",
        '"v0.34", "v0.37", "v0.38", "v0.40", "v1", "celestia"',
    ),
    (
        "protocol-version-v0.33",
        sub(VAL_A_ADDR, VAL_A_ADDR + '\nprotocol_version = "v0.33"'),
        "[[validator]] #1",
        "protocol_version",
        "amino",
    ),
    (
        "unix-path-longer-than-the-socket-limit",
        sub(VAL_B_ADDR, f'addr = "unix:///run/{"s" * 100}.sock"'),
        "[[validator]] #2",
        "addr",
        "at most 107 bytes",
    ),
    (
        "audit-log-directory-missing",
        sub(CHAIN_A_STATE, CHAIN_A_STATE + '\naudit_log = "no-such-dir/a.jsonl"'),
        "[[chain]] #1",
        "audit_log",
        "mkdir -m 700",
    ),
    (
        "timeout-zero",
        sub(VAL_A_ADDR, VAL_A_ADDR + "\ntimeout = 0"),
        "[[validator]] #1",
        "timeout",
        "greater than 0",
    ),
    (
        "timeout-string",
        sub(VAL_A_ADDR, VAL_A_ADDR + '\ntimeout = "5"'),
        "[[validator]] #1",
        "timeout",
        "seconds",
    ),
    (
        "timeout-bool",
        sub(VAL_A_ADDR, VAL_A_ADDR + "\ntimeout = true"),
        "[[validator]] #1",
        "timeout",
        "seconds",
    ),
    (
        "timeout-nan",
        sub(VAL_A_ADDR, VAL_A_ADDR + "\ntimeout = nan"),
        "[[validator]] #1",
        "timeout",
        "seconds",
    ),
    (
        "reconnect-number",
        sub(VAL_A_ADDR, VAL_A_ADDR + "\nreconnect = 1"),
        "[[validator]] #1",
        "reconnect",
        "true or false",
    ),
    (
        "softsign-unknown-chain",
        sub(SOFT_CHAINS, 'chain_ids = ["chain-a", "chain-z"]'),
        "[[providers.softsign]] #1",
        "chain_ids",
        "chain-z",
    ),
    (
        "softsign-empty-chain-ids",
        sub(SOFT_CHAINS, "chain_ids = []"),
        "[[providers.softsign]] #1",
        "chain_ids",
        "non-empty",
    ),
    (
        "softsign-twice-for-chain",
        add(SECOND_SOFTSIGN),
        "[[providers.softsign]] #2",
        "chain_ids",
        "already has a softsign key",
    ),
    (
        "softsign-key-format",
        sub(SOFT_CHAINS, SOFT_CHAINS + '\nkey_format = "pem"'),
        "[[providers.softsign]] #1",
        "key_format",
        "base64",
    ),
    (
        "softsign-unknown-key",
        sub(SOFT_CHAINS, SOFT_CHAINS + '\nkey_path = "x"'),
        "[[providers.softsign]] #1",
        "key_path",
        "unknown",
    ),
    (
        "softsign-and-yubihsm-for-chain",
        sub(HSM_KEYS, 'keys = [{ chain_ids = ["chain-b", "chain-a"], key = 1 }]'),
        "[[providers.yubihsm]] #1",
        "keys[1].chain_ids",
        "softsign",
    ),
    (
        "yubihsm-key-unknown-chain",
        sub(
            HSM_KEYS,
            HSM_KEYS.replace("chain-b", "chain-z")[:-1] + ', { chain_ids = ["chain-b"], key = 2 }]',
        ),
        "[[providers.yubihsm]] #1",
        "keys[1].chain_ids",
        "chain-z",
    ),
    (
        "yubihsm-two-keys-for-chain-on-one-device",
        sub(
            HSM_KEYS,
            'keys = [{ chain_ids = ["chain-b"], key = 1 }, { chain_ids = ["chain-b"], key = 2 }]',
        ),
        "[[providers.yubihsm]] #1",
        "keys[2].chain_ids",
        "already uses key 1",
    ),
    (
        "yubihsm-key-id-too-big",
        sub(HSM_KEYS, 'keys = [{ chain_ids = ["chain-b"], key = 70000 }]'),
        "[[providers.yubihsm]] #1",
        "keys[1].key",
        "object ID",
    ),
    (
        "yubihsm-key-label",
        sub(HSM_KEYS, 'keys = [{ chain_ids = ["chain-b"], key = 1, label = "x" }]'),
        "[[providers.yubihsm]] #1",
        "keys[1].label",
        "unknown",
    ),
    (
        "yubihsm-adapter-type",
        sub(HSM_ADAPTER, 'adapter = { type = "pcsc" }'),
        "[[providers.yubihsm]] #1",
        "adapter.type",
        "usb",
    ),
    (
        "yubihsm-http-addr-without-scheme",
        sub(HSM_ADAPTER, 'adapter = { type = "http", addr = "127.0.0.1:12345" }'),
        "[[providers.yubihsm]] #1",
        "adapter.addr",
        "tcp://host:port",
    ),
    (
        "yubihsm-usb-serial-letters",
        sub(HSM_ADAPTER, 'adapter = { type = "usb", serial_number = "abc" }'),
        "[[providers.yubihsm]] #1",
        "adapter.serial_number",
        "digits",
    ),
    (
        "yubihsm-auth-key-zero",
        sub(HSM_AUTH, f'auth = {{ key = 0, password_file = "{HSM_PASSWORD}" }}'),
        "[[providers.yubihsm]] #1",
        "auth.key",
        "object ID",
    ),
    (
        "yubihsm-auth-both-passwords",
        sub(HSM_AUTH, f'auth = {{ key = 1, password = "p", password_file = "{HSM_PASSWORD}" }}'),
        "[[providers.yubihsm]] #1",
        "auth.password_file",
        "exactly one",
    ),
    (
        "yubihsm-auth-no-password",
        sub(HSM_AUTH, "auth = { key = 1 }"),
        "[[providers.yubihsm]] #1",
        "auth.password_file",
        "exactly one",
    ),
    (
        "yubihsm-same-device-twice",
        add(f"[[providers.yubihsm]]\n{HSM_ADAPTER}\n{HSM_AUTH}\n{HSM_KEYS}"),
        "[[providers.yubihsm]] #2",
        "adapter",
        "already configured",
    ),
    (
        "two-usb-devices-without-serial",
        both(
            sub(HSM_ADAPTER, 'adapter = { type = "usb" }'),
            add(f'[[providers.yubihsm]]\nadapter = {{ type = "usb" }}\n{HSM_AUTH}\n{HSM_KEYS}'),
        ),
        "[[providers.yubihsm]] #2",
        "adapter",
        "already configured",
    ),
    (
        "provider-ledger-unsupported",
        add('[[providers.ledgertm]]\nchain_ids = ["chain-a"]'),
        "[providers]",
        "ledgertm",
        "not supported",
    ),
    ("hsm-policy", sub('policy = "spread"', 'policy = "random"'), "[hsm]", "policy", "primary"),
    (
        "hsm-health-interval-negative",
        sub('policy = "spread"', 'policy = "spread"\nhealth_interval = -1'),
        "[hsm]",
        "health_interval",
        "greater than 0",
    ),
    (
        "hsm-request-timeout-zero",
        sub('policy = "spread"', 'policy = "spread"\nrequest_timeout = 0'),
        "[hsm]",
        "request_timeout",
        "greater than 0",
    ),
    (
        "metrics-listen-any-address",
        sub('listen = "127.0.0.1:9464"', 'listen = "0.0.0.0:9464"'),
        "[metrics]",
        "listen",
        "loopback",
    ),
    (
        "metrics-listen-lan-address",
        sub('listen = "127.0.0.1:9464"', 'listen = "10.0.0.5:9464"'),
        "[metrics]",
        "listen",
        "loopback",
    ),
    (
        "metrics-listen-hostname",
        sub('listen = "127.0.0.1:9464"', 'listen = "metrics.internal:9464"'),
        "[metrics]",
        "listen",
        "loopback",
    ),
    (
        "metrics-unknown-key",
        sub('listen = "127.0.0.1:9464"', 'listen = "127.0.0.1:9464"\nport = 1'),
        "[metrics]",
        "port",
        "unknown",
    ),
]


@pytest.mark.parametrize(
    ("edit", "section", "key", "word"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_broken_config_is_refused_with_one_line_naming_file_section_and_key(
    tmp_path: Path, edit: Edit, section: str, key: str, word: str
) -> None:
    home = make_home(tmp_path / "home")
    path = write_config(home, edit(BASE))
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    msg = str(exc.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}: {section}: key '{key}': "), msg
    assert word in msg, msg


def test_base_config_of_the_table_is_valid(tmp_path: Path) -> None:
    """Guards the table: every case above breaks a config that loads."""
    home = make_home(tmp_path / "home")
    cfg = load_config(write_config(home, BASE))
    assert [c.id for c in cfg.chains] == ["chain-a", "chain-b"]


def test_invalid_toml_names_the_file_and_the_line(tmp_path: Path) -> None:
    path = write_config(make_home(tmp_path), BASE + "\n[[validator]\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    msg = str(exc.value)
    assert msg.startswith(f"{path}: invalid TOML") and "line" in msg and "\n" not in msg


def test_missing_config_file_names_the_file_and_the_ways_to_point_at_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"not found.*KMS_CONFIG_FILE"):
        load_config(tmp_path / "nope.toml")


def test_config_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tmkms.toml"
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="UTF-8"):
        load_config(path)
