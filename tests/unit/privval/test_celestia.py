"""protocol_version = "celestia": SignRawBytesRequest at tags 9/10, signed with the fork's
domain separation (celestia-core types.RawBytesMessageSignBytes), empty fields refused,
and never on a validator that is not configured as celestia."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from kms.config import ChainConfig, KeyFormat
from kms.privval.canonical import raw_bytes_sign_bytes
from kms.privval.celestia import raw_bytes_problem
from kms.privval.codec import decode_request, encode
from kms.privval.framing import max_message_size
from kms.privval.messages import (
    Dialect,
    SignedRawBytesResponse,
    SignRawBytesRequest,
)
from kms.service import Chain, LinkInfo, SignService
from kms.signer.softsign import SoftSigner
from kms.state.guard import ChainGuard
from kms.state.machine import SignState
from kms.state.store import StateStore

CHAIN = "mocha-4"
SEED = bytes(range(32))


def test_sign_bytes_match_the_forks_layout_built_by_hand() -> None:
    req = SignRawBytesRequest(CHAIN, b"payload", "id-1")
    body = b"\x0a\x07mocha-4" + b"\x12\x07payload" + b"\x1a\x04id-1"
    assert (
        raw_bytes_sign_bytes(req, Dialect.CELESTIA)
        == b"COMET::RAW_BYTES::SIGN" + bytes([len(body)]) + body
    )


def test_long_payload_gets_a_multi_byte_length() -> None:
    req = SignRawBytesRequest(CHAIN, b"x" * 300, "u")
    out = raw_bytes_sign_bytes(req, Dialect.CELESTIA)
    body_len = 2 + 7 + 3 + 300 + 3
    assert out[22:24] == bytes([body_len & 0x7F | 0x80, body_len >> 7])


@pytest.mark.parametrize(
    ("req", "missing"),
    [
        (SignRawBytesRequest("", b"x", "u"), "chain_id"),
        (SignRawBytesRequest(CHAIN, b"", "u"), "raw_bytes"),
        (SignRawBytesRequest(CHAIN, b"x", ""), "unique_id"),
        (SignRawBytesRequest("", b"", ""), "chain_id, raw_bytes, unique_id"),
    ],
)
def test_empty_fields_are_refused(req: SignRawBytesRequest, missing: str) -> None:
    assert raw_bytes_problem(req) == f"SignRawBytesRequest with empty {missing}"
    with pytest.raises(ValueError):
        raw_bytes_sign_bytes(req, Dialect.CELESTIA)


def test_wire_tags_9_10_and_the_cap() -> None:
    req = SignRawBytesRequest(CHAIN, b"payload", "id-1")
    body = encode(req, Dialect.CELESTIA)
    assert body[0] == 9 << 3 | 2
    assert decode_request(body, Dialect.CELESTIA) == req
    assert encode(SignedRawBytesResponse(signature=b"s"), Dialect.CELESTIA)[0] == 10 << 3 | 2
    assert max_message_size(Dialect.CELESTIA) == 10 * 1024  # celestia-core is v0.38-based
    assert Dialect.parse("celestia") is Dialect.CELESTIA


@pytest.fixture
def service(tmp_path: Path) -> Iterator[SignService]:
    state = tmp_path / "state.json"
    StateStore.create(state, SignState.initial())
    cfg = ChainConfig(id=CHAIN, key_format=KeyFormat(), state_file=state, raw_bytes="prefixed")
    guard = ChainGuard(CHAIN, StateStore(state))
    try:
        yield SignService({CHAIN: Chain(cfg, guard, SoftSigner(SEED))})
    finally:
        guard.close()


async def test_celestia_validator_signs_the_forks_bytes(service: SignService) -> None:
    req = SignRawBytesRequest(CHAIN, b"blob commitment", "fibre/pp:v0")
    r = await service.handle(req, LinkInfo(CHAIN, Dialect.CELESTIA, "celestia-link"))
    assert isinstance(r, SignedRawBytesResponse) and r.error is None
    SigningKey(SEED).verify_key.verify(raw_bytes_sign_bytes(req, Dialect.CELESTIA), r.signature)


@pytest.mark.parametrize("dialect", [Dialect.V0_34, Dialect.V0_37, Dialect.V0_38, Dialect.V0_40])
async def test_other_dialects_never_sign_raw_bytes(service: SignService, dialect: Dialect) -> None:
    req = SignRawBytesRequest(CHAIN, b"blob commitment", "fibre/pp:v0")
    r = await service.handle(req, LinkInfo(CHAIN, dialect, "link"))
    assert isinstance(r, SignedRawBytesResponse) and not r.signature
    assert r.error is not None and 'protocol_version = "celestia"' in r.error.description


async def test_celestia_refuses_empty_unique_id_without_signing(service: SignService) -> None:
    r = await service.handle(
        SignRawBytesRequest(CHAIN, b"data", ""), LinkInfo(CHAIN, Dialect.CELESTIA, "l")
    )
    assert isinstance(r, SignedRawBytesResponse) and not r.signature
    assert r.error is not None and "empty unique_id" in r.error.description


def test_median_signing_latency_is_exported_per_chain() -> None:
    from kms.metrics import MEDIAN_WINDOW, Metrics

    m = Metrics(clock=lambda: 0.0)
    for ms in [1, 2, 3, 50, 4]:  # one slow outlier does not move the median
        m.signature(CHAIN, "raw_bytes", "signed", ms / 1000, None)
    m.signature(CHAIN, "prevote", "refused", 9.0, None)  # refusals are not signatures
    text = m.render()
    assert f'kms_sign_latency_median_seconds{{chain="{CHAIN}"}} 0.003' in text
    for _ in range(MEDIAN_WINDOW):  # the window forgets old signatures
        m.signature(CHAIN, "precommit", "signed", 0.007, None)
    assert f'kms_sign_latency_median_seconds{{chain="{CHAIN}"}} 0.007' in m.render()
