"""build_signers: one ReplicaSet per chain in config order, one device per section."""

from __future__ import annotations

from pathlib import Path

import pytest

from kms.config import (
    ChainConfig,
    Config,
    HsmPolicy,
    HttpAdapter,
    KeyFormat,
    MetricsConfig,
    SoftsignProvider,
    UsbAdapter,
    YubiHsmKey,
    YubiHsmProvider,
)
from kms.errors import ConfigError, KeyFileError
from kms.keyfile import write_base64_seed, write_secret_file
from kms.signer.factory import build_signers, read_password_file
from kms.signer.replicas import ReplicaSet
from kms.signer.softsign import SoftSigner
from kms.signer.yubihsm import YubiHsmSigner
from kms.signer.yubihsm_session import Credentials, HttpConnector, UsbConnector


def chain(cid: str) -> ChainConfig:
    return ChainConfig(cid, KeyFormat(), Path(f"/tmp/{cid}.json"))


def provider(name: str, keys: tuple[YubiHsmKey, ...], password: str = "pw") -> YubiHsmProvider:
    host, port = name.split(":")
    return YubiHsmProvider(name, HttpAdapter(host, int(port)), 4, None, password, keys)


def config(
    yubihsm: tuple[YubiHsmProvider, ...] = (),
    softsign: tuple[SoftsignProvider, ...] = (),
    policy: HsmPolicy | None = None,
) -> Config:
    return Config(
        Path("kms.toml"),
        (chain("a-1"), chain("b-1"), chain("t-1")),
        (),
        yubihsm,
        softsign,
        policy or HsmPolicy(),
        MetricsConfig(),
    )


class CountingDerive:
    def __init__(self) -> None:
        self.calls: list[tuple[int, str]] = []

    def __call__(self, auth_key_id: int, password: str) -> Credentials:
        self.calls.append((auth_key_id, password))
        return Credentials(auth_key_id, b"e" * 16, b"m" * 16)


def test_replicas_of_a_chain_form_one_set_in_config_order_with_hsm_policy() -> None:
    derive = CountingDerive()
    cfg = config(
        yubihsm=(
            provider("hsm-b:1", (YubiHsmKey(("a-1",), 7),)),
            provider("hsm-a:2", (YubiHsmKey(("a-1",), 7),)),
        ),
        policy=HsmPolicy(policy="primary", health_interval=3.0, request_timeout=1.5),
    )
    signers = build_signers(cfg, derive=derive)
    rs = signers["a-1"]
    assert isinstance(rs, ReplicaSet)
    assert [r.name for r in rs.replicas] == ["hsm-b:1", "hsm-a:2"]
    assert (rs.policy, rs.pool.health_interval, rs.attempt_timeout) == ("primary", 3.0, None)
    members = rs.replicas
    assert all(isinstance(m, YubiHsmSigner) and m.key_id == 7 for m in members)
    first = members[0]
    assert isinstance(first, YubiHsmSigner)
    assert first.device.connector == HttpConnector("http://hsm-b:1")
    assert first.device.call_timeout == pytest.approx(1.0 + 1.5 + 0.5)


def test_one_device_serving_two_chains_shares_one_session_and_thread() -> None:
    derive = CountingDerive()
    cfg = config(yubihsm=(provider("hsm-a:1", (YubiHsmKey(("a-1",), 1), YubiHsmKey(("b-1",), 2))),))
    signers = build_signers(cfg, derive=derive)
    a, b = signers["a-1"], signers["b-1"]
    assert isinstance(a, ReplicaSet) and isinstance(b, ReplicaSet)
    sa, sb = a.replicas[0], b.replicas[0]
    assert isinstance(sa, YubiHsmSigner) and isinstance(sb, YubiHsmSigner)
    assert sa.device is sb.device
    assert (sa.key_id, sb.key_id) == (1, 2)
    assert len(derive.calls) == 1


def test_account_keys_are_skipped_and_softsign_chains_get_a_soft_signer(tmp_path: Path) -> None:
    key = tmp_path / "t.key"
    write_base64_seed(key, bytes(32))
    cfg = config(
        yubihsm=(provider("hsm-a:1", (YubiHsmKey(("b-1",), 1, key_type="account"),)),),
        softsign=(SoftsignProvider(("t-1",), "consensus", "base64", key),),
    )
    signers = build_signers(cfg, derive=CountingDerive())
    assert set(signers) == {"t-1"}
    assert isinstance(signers["t-1"], SoftSigner)


def test_chain_with_softsign_and_hsm_keys_is_refused(tmp_path: Path) -> None:
    key = tmp_path / "t.key"
    write_base64_seed(key, bytes(32))
    cfg = config(
        yubihsm=(provider("hsm-a:1", (YubiHsmKey(("t-1",), 1),)),),
        softsign=(SoftsignProvider(("t-1",), "consensus", "base64", key),),
    )
    with pytest.raises(ConfigError, match="t-1"):
        build_signers(cfg, derive=CountingDerive())


def test_usb_adapter_becomes_usb_connector() -> None:
    p = YubiHsmProvider("usb:17", UsbAdapter("17"), 4, None, "pw", (YubiHsmKey(("a-1",), 1),))
    rs = build_signers(config(yubihsm=(p,)), derive=CountingDerive())["a-1"]
    assert isinstance(rs, ReplicaSet)
    s = rs.replicas[0]
    assert isinstance(s, YubiHsmSigner) and s.device.connector == UsbConnector(17)


def test_password_file_must_be_private_and_non_empty(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    write_secret_file(pw, b"secret\n")
    assert read_password_file(pw) == "secret"
    pw.chmod(0o640)
    with pytest.raises(KeyFileError, match="chmod 600"):
        read_password_file(pw)
    empty = tmp_path / "empty"
    write_secret_file(empty, b"\n")
    with pytest.raises(KeyFileError, match="empty"):
        read_password_file(empty)


def test_hedging_is_on_by_default_and_follows_hsm_hedge() -> None:
    keys = (YubiHsmKey(("a-1",), 7),)
    members = (provider("hsm-a:1", keys), provider("hsm-b:2", keys))
    for policy, enabled in ((HsmPolicy(), True), (HsmPolicy(hedge=False), False)):
        rs = build_signers(config(yubihsm=members, policy=policy), derive=CountingDerive())["a-1"]
        assert isinstance(rs, ReplicaSet) and rs.hedge.enabled is enabled
