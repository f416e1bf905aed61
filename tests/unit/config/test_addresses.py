"""Validator addresses: tcp://[<node-id>@]host:port and unix:///absolute/path, nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kms.config import ParsedAddr, parse_validator_addr

NODE_ID = "f88883b673fc69d7869cab098de3bafc2ff76eb8"


@pytest.mark.parametrize(
    ("addr", "parsed"),
    [
        ("tcp://127.0.0.1:26658", ParsedAddr("tcp", "127.0.0.1", 26658)),
        ("tcp://Node-1.Example.com:1", ParsedAddr("tcp", "node-1.example.com", 1)),
        (f"tcp://{NODE_ID.upper()}@10.0.0.1:65535", ParsedAddr("tcp", "10.0.0.1", 65535, NODE_ID)),
        ("tcp://[::1]:26658", ParsedAddr("tcp", "::1", 26658)),
        ("tcp://[FD00:0::11]:26658", ParsedAddr("tcp", "fd00::11", 26658)),
        ("unix:///run/kms/val.sock", ParsedAddr("unix", path=Path("/run/kms/val.sock"))),
    ],
)
def test_valid_addresses_parse(addr: str, parsed: ParsedAddr) -> None:
    assert parse_validator_addr(addr) == parsed


@pytest.mark.parametrize(
    "addr",
    [
        "",
        "127.0.0.1:26658",
        "tcp://127.0.0.1",
        "tcp://127.0.0.1:0",
        "tcp://127.0.0.1:65536",
        "tcp://127.0.0.1:26658/",
        "tcp://:26658",
        "tcp://-bad.host:26658",
        "tcp://host_name:26658",
        "tcp://[::1:26658",
        "tcp://[not-v6]:26658",
        "tcp://::1:26658",
        f"tcp://{NODE_ID[:-1]}@127.0.0.1:26658",
        f"tcp://{NODE_ID}0@127.0.0.1:26658",
        "tcp://@127.0.0.1:26658",
        f"tcp://{NODE_ID}@{NODE_ID}@127.0.0.1:26658",
        "unix://relative/path.sock",
        "unix://",
        "unix:///",
        "udp://127.0.0.1:26658",
        "grpc://127.0.0.1:26658",
        " tcp://127.0.0.1:26658",
    ],
)
def test_malformed_addresses_are_rejected(addr: str) -> None:
    assert parse_validator_addr(addr) is None


@given(
    peer=st.one_of(st.none(), st.text("0123456789abcdef", min_size=40, max_size=40)),
    octets=st.tuples(*[st.integers(0, 255)] * 4),
    port=st.integers(1, 65535),
)
def test_any_well_formed_tcp_address_round_trips(
    peer: str | None, octets: tuple[int, int, int, int], port: int
) -> None:
    host = ".".join(map(str, octets))
    addr = f"tcp://{peer + '@' if peer else ''}{host}:{port}"
    assert parse_validator_addr(addr) == ParsedAddr("tcp", host, port, peer)


@given(st.text(max_size=60))
def test_parser_never_raises_on_arbitrary_text(text: str) -> None:
    parsed = parse_validator_addr(text)
    if parsed is not None:
        assert text.startswith(("tcp://", "unix:///"))
