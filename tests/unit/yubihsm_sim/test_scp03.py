"""SCP03 primitives against the YUBIHSM.md §3.6 vectors (computed with the library's own code)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kms.errors import SimPaddingError
from kms.sim.yubihsm import scp03

HOST = bytes.fromhex("0001020304050607")
CARD = bytes.fromhex("08090a0b0c0d0e0f")
CONTEXT = HOST + CARD


def test_default_password_gives_factory_static_keys() -> None:
    enc, mac = scp03.password_to_key("password")
    assert enc.hex() == "090b47dbed595654901dee1cc655e420"
    assert mac.hex() == "592fd483f759e29909a04c4505d2ce0a"


def test_session_keys_and_cryptograms_match_vectors() -> None:
    keys = scp03.session_keys(*scp03.password_to_key("password"), CONTEXT)
    assert keys.s_enc.hex() == "6a7481280688c6e0acf6226085a33167"
    assert keys.s_mac.hex() == "4387b8a1aef81f16782246452c6485c1"
    assert keys.s_rmac.hex() == "3a5b6bcce25badb45333b40160557a67"
    assert scp03.card_cryptogram(keys.s_mac, CONTEXT).hex() == "0d89ea51bf1bf533"
    assert scp03.host_cryptogram(keys.s_mac, CONTEXT).hex() == "b01410d72022ed0e"


def test_authenticate_mac_is_the_initial_chain() -> None:
    keys = scp03.session_keys(*scp03.password_to_key("password"), CONTEXT)
    host = scp03.host_cryptogram(keys.s_mac, CONTEXT)
    full = scp03.authenticate_mac(keys.s_mac, 0, host)
    assert full.hex() == "c1e620c499fbf1a9430c6f8678618bdb"
    msg = bytes.fromhex("04001100") + host + full[:8]
    assert msg.hex() == "04001100b01410d72022ed0ec1e620c499fbf1a9"


def test_session_message_and_response_match_vectors() -> None:
    keys = scp03.session_keys(*scp03.password_to_key("password"), CONTEXT)
    chain = bytes.fromhex("c1e620c499fbf1a9430c6f8678618bdb")
    assert scp03.iv_for(keys.s_enc, 1).hex() == "acd472272db65af95e7cd64c0f888bbc"
    inner = b"\x01\x00\x02hi"
    assert scp03.pad(inner).hex() == "01000268698000000000000000000000"
    msg, full = scp03.wrap_command(keys, 1, chain, 0, inner)
    assert msg.hex() == "05001900dfaeaaab8b2a997e0ca963ac834cbd0a0f709344da410952"
    assert full.hex() == "0f709344da4109522be35f5996041d06"
    resp = scp03.wrap_response(keys, 1, full, 0, b"\x81\x00\x02hi")
    assert resp.hex() == "85001900139656777a5cb7fe9fca0ccae9dc61c1c2d94c8f9894b68e"


def test_derive_refuses_lengths_the_library_does_not_support() -> None:
    with pytest.raises(ValueError):
        scp03.derive(b"\0" * 16, 4, CONTEXT, 96)


@given(st.binary(max_size=100))
def test_padding_always_adds_one_to_sixteen_bytes_and_round_trips(data: bytes) -> None:
    padded = scp03.pad(data)
    assert len(padded) % 16 == 0
    assert 1 <= len(padded) - len(data) <= 16
    assert scp03.unpad(padded) == data


@pytest.mark.parametrize(
    "block",
    [
        b"\0" * 16,  # no 0x80 marker at all
        b"abc" + b"\x81" + b"\0" * 12,  # wrong marker byte
        b"\x80" + b"\0" * 31,  # 31 zero bytes of padding: more than a block
    ],
)
def test_unpad_rejects_malformed_padding(block: bytes) -> None:
    with pytest.raises(SimPaddingError):
        scp03.unpad(block)
