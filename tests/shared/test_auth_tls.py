"""etcd authentication and TLS, against real etcd: the right credentials work, anything
else is a refusal (SharedStateError), never a silent local fallback."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterator
from pathlib import Path

import grpc
import grpc.aio
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kms.errors import SharedStateError
from kms.shared.admin import push
from kms.shared.etcd import EtcdClient, TlsFiles
from kms.shared.gate import SharedGate
from kms.sim.etcd_cluster import EtcdCluster, ServerTls
from kms.state.machine import SignState
from tests.shared.conftest import etcd_binary
from tests.shared.helpers import cand_vote
from tests.unit.state.helpers import CHAIN, PREVOTE, block

# --- authentication ---------------------------------------------------------------------


def _varint(n: int) -> bytes:
    out = b""
    while True:
        b, n = n & 0x7F, n >> 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def _field(num: int, data: bytes | str | int) -> bytes:
    """One protobuf field: bytes/str length-delimited, int as a varint."""
    if isinstance(data, int):
        return _varint(num << 3) + _varint(data)
    raw = data.encode() if isinstance(data, str) else data
    return _varint(num << 3 | 2) + _varint(len(raw)) + raw


async def _auth_call(endpoint: str, method: str, body: bytes) -> None:
    async with grpc.aio.insecure_channel(endpoint.removeprefix("http://")) as ch:
        call = ch.unary_unary(
            f"/etcdserverpb.Auth/{method}",
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )
        await call(body, timeout=5)


async def enable_auth(ep: str, prefix: bytes, password: str) -> None:
    """Users root (root role) and kms (read-write on `prefix` only), then auth on."""
    end = prefix[:-1] + bytes([prefix[-1] + 1])
    perm = _field(1, 2) + _field(2, prefix) + _field(3, end)  # READWRITE on [prefix, end)
    await _auth_call(ep, "RoleAdd", _field(1, "kms-rw"))
    await _auth_call(ep, "RoleGrantPermission", _field(1, "kms-rw") + _field(2, perm))
    await _auth_call(ep, "UserAdd", _field(1, "kms") + _field(2, password))
    await _auth_call(ep, "UserGrantRole", _field(1, "kms") + _field(2, "kms-rw"))
    await _auth_call(ep, "UserAdd", _field(1, "root") + _field(2, "root-" + password))
    await _auth_call(ep, "UserGrantRole", _field(1, "root") + _field(2, "root"))
    await _auth_call(ep, "AuthEnable", b"")


async def test_authentication(etcd_cluster: EtcdCluster) -> None:
    await enable_auth(etcd_cluster.endpoints[0], b"/kms/auth/", "s3cret")
    good = EtcdClient(etcd_cluster.endpoints, timeout=1.0, username="kms", password="s3cret")
    await push(good, "/kms/auth", CHAIN, SignState.initial(), "init")
    gate = SharedGate(good, prefix="/kms/auth", chain_id=CHAIN, host_id="a")
    assert (await gate.authorize(cand_vote(PREVOTE, 1, 0, block(1)), max_height=None)).allowed

    for client, why in [
        (
            EtcdClient(etcd_cluster.endpoints, timeout=1.0, username="kms", password="x"),
            "authentication failed",
        ),
        (EtcdClient(etcd_cluster.endpoints, timeout=1.0), "user name is empty"),
    ]:
        g = SharedGate(client, prefix="/kms/auth", chain_id=CHAIN, host_id="b")
        with pytest.raises(SharedStateError, match=f"etcd refused access.*{why}"):
            await g.load()
        await client.close()
    # a prefix the user may not touch: refused
    other = SharedGate(good, prefix="/kms/other", chain_id=CHAIN, host_id="a")
    with pytest.raises(SharedStateError, match=r"etcd refused access.*permission denied"):
        await other.load()
    await good.close()


# --- TLS ----------------------------------------------------------------------------------


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.UTC)
    b = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer[0] if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        b = b.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return b.sign(issuer[1] if issuer else key, hashes.SHA256())


def _write(
    d: Path, name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> tuple[Path, Path]:
    c, k = d / f"{name}.pem", d / f"{name}.key"
    c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    k.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    k.chmod(0o600)
    return c, k


@pytest.fixture
def tls_cluster(tmp_path: Path) -> Iterator[tuple[EtcdCluster, Path]]:
    d = tmp_path / "pki"
    d.mkdir()
    ca_key = _key()
    ca = _cert("kms test CA", ca_key, None, ca=True)
    _write(d, "ca", ca, ca_key)
    issuer = (ca.subject, ca_key)
    s_key, c_key = _key(), _key()
    srv = _write(d, "server", _cert("etcd", s_key, issuer, server=True), s_key)
    cli = _write(d, "client", _cert("kms-a", c_key, issuer), c_key)
    other_key = _key()
    _write(d, "other-ca", _cert("other CA", other_key, None, ca=True), other_key)
    tls = ServerTls(srv[0], srv[1], d / "ca.pem", cli[0], cli[1])
    cluster = EtcdCluster(etcd_binary(), tmp_path / "etcd", size=3, tls=tls)
    try:
        cluster.start()
        yield cluster, d
    finally:
        cluster.stop()


async def test_tls_with_client_certificates(tls_cluster: tuple[EtcdCluster, Path]) -> None:
    cluster, d = tls_cluster
    assert all(e.startswith("https://") for e in cluster.endpoints)
    good = EtcdClient(
        cluster.endpoints, timeout=2.0,
        tls=TlsFiles(d / "ca.pem", d / "client.pem", d / "client.key"),
    )  # fmt: skip
    await push(good, "/kms/tls", CHAIN, SignState.initial(), "init")
    gate = SharedGate(good, prefix="/kms/tls", chain_id=CHAIN, host_id="a")
    assert (await gate.authorize(cand_vote(PREVOTE, 1, 0, block(1)), max_height=None)).allowed
    await good.close()
    for tls in (
        TlsFiles(d / "other-ca.pem", d / "client.pem", d / "client.key"),  # server not trusted
        TlsFiles(d / "ca.pem"),  # no client certificate
    ):
        bad = EtcdClient(cluster.endpoints, timeout=1.0, tls=tls)
        with pytest.raises(SharedStateError, match="etcd unavailable"):
            await SharedGate(bad, prefix="/kms/tls", chain_id=CHAIN, host_id="b").load()
        await bad.close()
