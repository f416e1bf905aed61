"""Validator and connector addresses as written in a kms config.

Owns: `host:port` parsing (IPv6 in brackets), the validator address forms
(`tcp://[id@]host:port`, `unix:///path`, `noise://peer-id@host:port`) with
`ParsedAddr`, the one-line reason a `noise://` address is malformed, the
yubihsm-connector address and the loopback rule for listeners. Pure: never
resolves names, opens sockets or reads files.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from kms.noise.peerid import parse_peer_id

_HOST_RE = re.compile(
    r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?):(?P<port>[0-9]{1,5})"
)
_NODE_ID_RE = re.compile(r"[0-9A-Fa-f]{40}")
VALIDATOR_ADDR_FORMS = (
    "tcp://[<node-id>@]host:port (node-id: 40 hex chars), unix:///absolute/path"
    " or noise://<validator-peer-id>@host:port (peer ID from cometbft show-node-id --libp2p)"
)


def host_port(text: str) -> tuple[str, int] | None:
    """'host:port' or '[v6]:port' -> (host without brackets, port); None if malformed."""
    m = _HOST_RE.fullmatch(text)
    if m is None:
        return None
    host, port = m["host"].lower(), int(m["port"])
    if not 0 < port <= 65535:
        return None
    if host.startswith("["):
        try:
            host = str(ipaddress.IPv6Address(host[1:-1]))
        except ValueError:
            return None
    return host, port


@dataclass(frozen=True, slots=True)
class ParsedAddr:
    """A validator address, split (see ValidatorConfig for the meaning of each field)."""

    scheme: Literal["tcp", "unix", "noise"]
    host: str = ""
    port: int = 0
    peer_id: str | None = None
    path: Path | None = None


def parse_validator_addr(addr: str) -> ParsedAddr | None:
    """Parse `tcp://[id@]host:port`, `unix:///abs/path` or `noise://peer-id@host:port`;
    None when malformed."""
    if addr.startswith("noise://"):
        return _parse_noise_addr(addr[len("noise://") :])
    if addr.startswith("unix://"):
        rest = addr[len("unix://") :]
        if not rest.startswith("/") or "\0" in rest or rest.rstrip("/") == "":
            return None
        return ParsedAddr("unix", path=Path(rest))
    if not addr.startswith("tcp://"):
        return None
    rest = addr[len("tcp://") :]
    peer_id: str | None = None
    if "@" in rest:
        peer_id, rest = rest.split("@", 1)
        if _NODE_ID_RE.fullmatch(peer_id) is None:
            return None
        peer_id = peer_id.lower()
    hp = host_port(rest)
    if hp is None:
        return None
    return ParsedAddr("tcp", host=hp[0], port=hp[1], peer_id=peer_id)


def _parse_noise_addr(rest: str) -> ParsedAddr | None:
    """`<peer-id>@host:port`: the peer ID is required (split at the last `@`, like cometbft)."""
    if "@" not in rest:
        return None
    peer_id, _, hostport = rest.rpartition("@")
    try:
        parse_peer_id(peer_id)
    except ValueError:
        return None
    hp = host_port(hostport)
    if hp is None:
        return None
    return ParsedAddr("noise", host=hp[0], port=hp[1], peer_id=peer_id)


def noise_addr_problem(addr: str) -> str | None:
    """Why a `noise://` address is malformed, in one line (None if it is fine or not noise)."""
    if not addr.startswith("noise://") or parse_validator_addr(addr) is not None:
        return None
    rest = addr[len("noise://") :]
    if "@" not in rest:
        return (
            "noise:// needs the validator's peer ID: noise://<peer-id>@host:port"
            " (cometbft show-node-id --libp2p)"
        )
    peer_id, _, hostport = rest.rpartition("@")
    try:
        parse_peer_id(peer_id)
    except ValueError as e:
        return f"validator peer ID {peer_id!r}: {e}"
    return f"{hostport!r} is not host:port"


def is_loopback(host: str) -> bool:
    """'localhost' or a loopback IP address (brackets and an IPv6 zone are ignored)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]").split("%")[0]).is_loopback
    except ValueError:
        return False


def connector_addr(text: str) -> tuple[str, int] | None:
    """A yubihsm-connector address `tcp://host:port` (or `http://`) -> (host, port)."""
    for scheme in ("tcp://", "http://"):
        if text.startswith(scheme):
            return host_port(text[len(scheme) :].rstrip("/"))
    return None
