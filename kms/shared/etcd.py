"""A minimal asyncio client for etcd's v3 gRPC API: exactly what the gate needs.

Owns: channels to the configured endpoints, endpoint failover, authentication
tokens, and the calls: a linearizable `get` (Range), `cas` (Txn: if
mod_revision(key) == rev then Put else Range), `status`, and leases
(`lease_grant`, `lease_keepalive`, `lease_revoke`, `create_with_lease`) for the
optional host preference. Never decides
anything about watermarks and never interprets values (that is `kms.shared.record` / `kms.shared.gate`).

Why grpc.aio with our own subset of etcd's rpc.proto (proto/etcdserverpb/), and
not the JSON gateway or an existing Python etcd client:
- grpcio is Google's maintained gRPC runtime (already used to build our
  protos), with TLS and client certificates, a deadline per call, and no
  retries when `grpc.enable_retries` is 0. The JSON gateway would need another
  HTTP client dependency plus base64/JSON mapping of every field, for the same
  calls; the Python etcd3 packages are unmaintained or retry on their own.
- Failover is ours and explicit: a read (Range, Status) moves on to the next
  endpoint when one fails; a Txn is NEVER re-sent. Any failure after a Txn was
  handed to gRPC raises SharedStateAmbiguous, and the gate resolves it by
  reading the key back (HA.md §3.5). The client then prefers the next endpoint.
- A deadline per call (`timeout`); a blackholed endpoint costs one timeout.

Errors: every failure is a SharedStateError whose message names the endpoint
and etcd's own text (e.g. "etcdserver: no leader", "authentication failed").
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
import grpc.aio

from kms._proto.etcdserverpb import rpc_pb2 as _rpc_pb2
from kms.errors import SharedStateAmbiguous, SharedStateError

log = logging.getLogger(__name__)
pb: Any = _rpc_pb2  # generated code has no type information

_Msg = TypeVar("_Msg")

# gRPC channel options: no retries of any kind (a Txn must reach etcd at most once
# per call) and quick reconnects after a member comes back.
_CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.enable_retries", 0),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.max_receive_message_length", 4 * 1024 * 1024),
)
# Answers that mean "credentials or permissions", not "cannot reach etcd".
_ACCESS_CODES = frozenset(
    {
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
    }
)
_RANGE = "/etcdserverpb.KV/Range"
_TXN = "/etcdserverpb.KV/Txn"
_STATUS = "/etcdserverpb.Maintenance/Status"
_AUTH = "/etcdserverpb.Auth/Authenticate"
_LEASE_GRANT = "/etcdserverpb.Lease/LeaseGrant"
_LEASE_REVOKE = "/etcdserverpb.Lease/LeaseRevoke"
_LEASE_KEEPALIVE = "/etcdserverpb.Lease/LeaseKeepAlive"


@dataclass(frozen=True, slots=True)
class TlsFiles:
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None


@dataclass(frozen=True, slots=True)
class KeyValue:
    """One key as read from etcd (mod_revision 0 and value b"" never occur for a real key)."""

    key: bytes
    value: bytes
    mod_revision: int


@dataclass(frozen=True, slots=True)
class CasResult:
    """A Txn answer: committed at `revision`, or not, with the key as it now is."""

    succeeded: bool
    revision: int  # the store revision after the Txn (the new mod_revision on success)
    current: KeyValue | None  # on failure: the key now (None if it does not exist)


@dataclass(frozen=True, slots=True)
class MemberStatus:
    endpoint: str
    version: str
    member_id: int
    leader: int
    raft_term: int
    errors: tuple[str, ...]


def _describe(e: grpc.aio.AioRpcError) -> str:
    """`CODE: details`, with gRPC's connection chatter cut to its last clause
    ("failed to connect to all addresses; last error: ...: Connection refused")."""
    details = (e.details() or "").strip()
    if "last error:" in details:
        details = details.rsplit(": ", 1)[-1]
    return f"{e.code().name}: {details}" if details else e.code().name


class EtcdClient:
    """Calls to one etcd cluster through any of its endpoints; see the module docstring."""

    def __init__(
        self,
        endpoints: list[str],
        *,
        timeout: float,
        tls: TlsFiles | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        if not endpoints:
            raise SharedStateError("no etcd endpoints configured")
        self.endpoints = list(endpoints)
        self.timeout = timeout
        self._username = username
        self._password = password
        self._creds = (
            self._credentials(tls) if any(e.startswith("https://") for e in endpoints) else None
        )
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._calls: dict[tuple[str, str], Any] = {}  # (endpoint, method) -> multicallable
        self._tokens: dict[str, str] = {}  # simple tokens are per member
        self._preferred = 0

    @staticmethod
    def _credentials(tls: TlsFiles | None) -> grpc.ChannelCredentials:
        def read(p: Path | None) -> bytes | None:
            return p.read_bytes() if p is not None else None

        tls = tls or TlsFiles()
        try:
            return grpc.ssl_channel_credentials(
                root_certificates=read(tls.ca_file),
                private_key=read(tls.key_file),
                certificate_chain=read(tls.cert_file),
            )
        except OSError as e:
            raise SharedStateError(f"cannot read etcd TLS file: {e}") from None

    def _channel(self, endpoint: str) -> grpc.aio.Channel:
        ch = self._channels.get(endpoint)
        if ch is None:
            scheme, _, target = endpoint.partition("://")
            target = target.rstrip("/")
            if scheme == "https":
                assert self._creds is not None
                ch = grpc.aio.secure_channel(target, self._creds, options=_CHANNEL_OPTIONS)
            else:
                ch = grpc.aio.insecure_channel(target, options=_CHANNEL_OPTIONS)
            self._channels[endpoint] = ch
        return ch

    def _order(self) -> list[str]:
        n = len(self.endpoints)
        return [self.endpoints[(self._preferred + i) % n] for i in range(n)]

    def _demote(self, endpoint: str) -> None:
        """After a failure on `endpoint`, prefer the one after it."""
        if self.endpoints[self._preferred] == endpoint:
            self._preferred = (self._preferred + 1) % len(self.endpoints)

    async def _metadata(self, endpoint: str) -> tuple[tuple[str, str], ...] | None:
        if self._username is None:
            return None
        token = self._tokens.get(endpoint)
        if token is None:
            req = pb.AuthenticateRequest(name=self._username, password=self._password or "")
            resp = await self._raw(endpoint, _AUTH, req, pb.AuthenticateResponse, None)
            token = resp.token
            self._tokens[endpoint] = token
        return (("token", token),)

    async def _raw(
        self,
        endpoint: str,
        method: str,
        req: Any,
        resp_type: Callable[[], _Msg],
        metadata: tuple[tuple[str, str], ...] | None,
    ) -> _Msg:
        call = self._calls.get((endpoint, method))
        if call is None:
            call = self._channel(endpoint).unary_unary(
                method,
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=resp_type.FromString,  # type: ignore[attr-defined]
            )
            self._calls[(endpoint, method)] = call
        result: _Msg = await call(req, timeout=self.timeout, metadata=metadata)
        return result

    async def _call(
        self, endpoint: str, method: str, req: Any, resp_type: Callable[[], _Msg]
    ) -> _Msg:
        md = await self._metadata(endpoint)
        try:
            return await self._raw(endpoint, method, req, resp_type, md)
        except grpc.aio.AioRpcError as e:
            if "invalid auth token" in (e.details() or ""):
                self._tokens.pop(endpoint, None)  # re-authenticate on the next call
            raise

    async def _read(self, method: str, req: Any, resp_type: Callable[[], _Msg]) -> _Msg:
        """An idempotent read: try each endpoint once, preferred first."""
        errors = []
        refused = False
        for ep in self._order():
            try:
                return await self._call(ep, method, req, resp_type)
            except grpc.aio.AioRpcError as e:
                errors.append(f"{ep}: {_describe(e)}")
                refused = refused or e.code() in _ACCESS_CODES
                self._demote(ep)
        what = "etcd refused access" if refused else "etcd unavailable"
        raise SharedStateError(f"{what} (" + "; ".join(errors) + ")")

    # --- the calls ------------------------------------------------------------------

    async def get(self, key: bytes) -> KeyValue | None:
        """Linearizable read of one key (None if it does not exist)."""
        resp = await self._read(_RANGE, pb.RangeRequest(key=key), pb.RangeResponse)
        return _kv(resp.kvs[0]) if resp.kvs else None

    async def cas(self, key: bytes, mod_revision: int, value: bytes) -> CasResult:
        """Txn(If mod_revision(key) == mod_revision Then Put Else Range), sent once.

        mod_revision 0 means "the key does not exist" (etcd's own convention).
        Raises SharedStateAmbiguous when the outcome is unknown.
        """
        txn = pb.TxnRequest(
            compare=[
                pb.Compare(
                    result=pb.Compare.EQUAL,
                    target=pb.Compare.MOD,
                    key=key,
                    mod_revision=mod_revision,
                )
            ],
            success=[pb.RequestOp(request_put=pb.PutRequest(key=key, value=value))],
            failure=[pb.RequestOp(request_range=pb.RangeRequest(key=key))],
        )
        resp = await self._txn_once(txn)
        if resp.succeeded:
            return CasResult(True, resp.header.revision, None)
        current = None
        if resp.responses and resp.responses[0].HasField("response_range"):
            kvs = resp.responses[0].response_range.kvs
            current = _kv(kvs[0]) if kvs else None
        return CasResult(False, resp.header.revision, current)

    async def _txn_once(self, txn: pb.TxnRequest) -> pb.TxnResponse:
        """Send `txn` once, to the preferred endpoint: never re-sent elsewhere, since a
        failure after sending leaves the outcome unknown (SharedStateAmbiguous)."""
        ep = self._order()[0]
        try:
            return await self._call(ep, _TXN, txn, pb.TxnResponse)
        except grpc.aio.AioRpcError as e:
            self._demote(ep)
            raise SharedStateAmbiguous(f"etcd {ep}: write outcome unknown ({_describe(e)})") from e

    async def create_with_lease(self, key: bytes, value: bytes, lease: int) -> KeyValue | None:
        """Put `key` bound to `lease` only if it does not exist; None if we created it,
        else the key as it is. Sent once (an unknown outcome raises SharedStateAmbiguous)."""
        txn = pb.TxnRequest(
            compare=[
                pb.Compare(
                    result=pb.Compare.EQUAL, target=pb.Compare.CREATE, key=key, create_revision=0
                )
            ],
            success=[pb.RequestOp(request_put=pb.PutRequest(key=key, value=value, lease=lease))],
            failure=[pb.RequestOp(request_range=pb.RangeRequest(key=key))],
        )
        resp = await self._txn_once(txn)
        if resp.succeeded:
            return None
        kvs = resp.responses[0].response_range.kvs if resp.responses else []
        return _kv(kvs[0]) if kvs else KeyValue(key, b"", 0)

    async def lease_grant(self, ttl: int) -> int:
        """A new lease of `ttl` seconds; its ID."""
        resp = await self._read(_LEASE_GRANT, pb.LeaseGrantRequest(TTL=ttl), pb.LeaseGrantResponse)
        if resp.error:
            raise SharedStateError(f"etcd lease grant: {resp.error}")
        return int(resp.ID)

    async def lease_keepalive(self, lease: int) -> int:
        """Renew a lease once; its remaining TTL (0: it has expired)."""
        errors = []
        for ep in self._order():
            md = await self._metadata(ep)
            call = self._channel(ep).stream_stream(
                _LEASE_KEEPALIVE,
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=pb.LeaseKeepAliveResponse.FromString,
            )
            stream = call(
                iter([pb.LeaseKeepAliveRequest(ID=lease)]), timeout=self.timeout, metadata=md
            )
            try:
                async for resp in stream:
                    return int(resp.TTL)
                errors.append(f"{ep}: no answer")
            except grpc.aio.AioRpcError as e:
                errors.append(f"{ep}: {_describe(e)}")
                self._demote(ep)
            finally:
                stream.cancel()
        raise SharedStateError("etcd unavailable (" + "; ".join(errors) + ")")

    async def lease_revoke(self, lease: int) -> None:
        await self._read(_LEASE_REVOKE, pb.LeaseRevokeRequest(ID=lease), pb.LeaseRevokeResponse)

    async def status(self, endpoint: str) -> MemberStatus:
        """Status of one member (raises SharedStateError if it does not answer)."""
        try:
            r = await self._call(endpoint, _STATUS, pb.StatusRequest(), pb.StatusResponse)
        except grpc.aio.AioRpcError as e:
            raise SharedStateError(f"etcd {endpoint}: {_describe(e)}") from None
        return MemberStatus(
            endpoint, r.version, r.header.member_id, r.leader, r.raftTerm, tuple(r.errors)
        )

    async def close(self) -> None:
        for ch in self._channels.values():
            await ch.close()
        self._channels.clear()
        self._calls.clear()


def _kv(kv: Any) -> KeyValue:
    return KeyValue(bytes(kv.key), bytes(kv.value), int(kv.mod_revision))
