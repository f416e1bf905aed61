"""`addr = "noise://<validator-peer-id>@host:port"`: parsed, validated, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from kms.config import load_config, parse_validator_addr
from kms.errors import ConfigError
from tests.unit.config.helpers import BASE, make_home, write_config

PEER = "12D3KooWJ1TsijH7H5F74hfAD5XishQz3sxrmAtVY37GtNd9CqYf"
TCP = 'addr = "tcp://127.0.0.1:26658"'


def test_noise_addr_parses() -> None:
    a = parse_validator_addr(f"noise://{PEER}@127.0.0.1:26659")
    assert a is not None
    assert (a.scheme, a.host, a.port, a.peer_id) == ("noise", "127.0.0.1", 26659, PEER)
    v6 = parse_validator_addr(f"noise://{PEER}@[::1]:1")
    assert v6 is not None and v6.host == "::1"


def test_noise_validator_loads_with_the_identity_key(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home")
    noise = f'addr = "noise://{PEER}@10.0.0.7:26659"\nprotocol_version = "v0.40"'
    cfg = load_config(write_config(home, BASE.replace(TCP, noise)))
    v = cfg.validators[0]
    assert v.scheme == "noise" and v.peer_id == PEER and v.secret_key is not None


@pytest.mark.parametrize(
    ("addr", "word"),
    [
        ("noise://127.0.0.1:26659", "needs the validator's peer ID"),
        (f"noise://{'ab' * 20}@127.0.0.1:26659", "40-hex CometBFT node ID"),
        (f"noise://{PEER[:-1]}@127.0.0.1:26659", "not the peer ID of an Ed25519 key"),
        (f"noise://{PEER}@127.0.0.1", "is not host:port"),
        (f"noise://{PEER}@127.0.0.1:99999", "is not host:port"),
        (f"noise://x@{PEER}@127.0.0.1:1", "not a base58btc character"),
    ],
)
def test_bad_noise_addr_is_one_line(tmp_path: Path, addr: str, word: str) -> None:
    home = make_home(tmp_path / "home")
    path = write_config(home, BASE.replace(TCP, f'addr = "{addr}"'))
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    msg = str(exc.value)
    assert "\n" not in msg and "key 'addr'" in msg and word in msg, msg


@pytest.mark.parametrize("version", ["v0.38", "v1", "celestia", None])
def test_noise_needs_the_v0_40_dialect(tmp_path: Path, version: str | None) -> None:
    home = make_home(tmp_path / "home")
    line = f'\nprotocol_version = "{version}"' if version else ""
    text = BASE.replace(TCP, f'addr = "noise://{PEER}@127.0.0.1:1"{line}')
    with pytest.raises(
        ConfigError, match=r"key 'protocol_version'.*set protocol_version = \"v0.40\""
    ):
        load_config(write_config(home, text))


def test_noise_without_identity_key_is_refused(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home")
    text = BASE.replace(TCP, f'addr = "noise://{PEER}@127.0.0.1:1"').replace(
        'secret_key = "secrets/id.key"\n', "", 1
    )
    with pytest.raises(ConfigError, match=r"secret_key.*noise:// validator needs an identity key"):
        load_config(write_config(home, text))


# --- [[chain]] key_type: kms signs Ed25519 only ------------------------------------------

CHAIN_A_STATE = 'state_file = "state/chain-a.json"'


@pytest.mark.parametrize("key_type", ["secp256k1", "bls12381", "mldsa65", "secp256k1eth"])
def test_chain_for_another_key_type_is_refused(tmp_path: Path, key_type: str) -> None:
    home = make_home(tmp_path / "home")
    text = BASE.replace(CHAIN_A_STATE, f'{CHAIN_A_STATE}\nkey_type = "{key_type}"', 1)
    with pytest.raises(ConfigError) as exc:
        load_config(write_config(home, text))
    msg = str(exc.value)
    assert "\n" not in msg and "key 'key_type'" in msg
    assert f"{key_type} consensus keys are not supported: kms signs Ed25519 only" in msg


def test_chain_key_type_ed25519_is_accepted_and_nonsense_refused(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home")
    ok = BASE.replace(CHAIN_A_STATE, f'{CHAIN_A_STATE}\nkey_type = "ed25519"', 1)
    assert load_config(write_config(home, ok)).chains[0].id == "chain-a"
    bad = BASE.replace(CHAIN_A_STATE, f'{CHAIN_A_STATE}\nkey_type = "rsa"', 1)
    with pytest.raises(ConfigError, match="expected ed25519"):
        load_config(write_config(home, bad))
