"""Per-dialect message caps: v0.40 reads what v0.40 allows, older dialects 10 KiB."""

from __future__ import annotations

import pytest

from kms.errors import CodecError
from kms.privval.framing import (
    MAX_MESSAGE_SIZE_LEGACY,
    MAX_MESSAGE_SIZE_V0_40,
    MessageReader,
    frame,
    max_message_size,
)
from kms.privval.messages import Dialect
from kms.varint import encode_uvarint


def test_v0_40_cap_is_the_nodes_max_remote_signer_msg_size() -> None:
    # types.MaxVoteExtensionSize + 2 * types.MaxSignatureSize (ML-DSA-65: 3309) + 1024
    assert MAX_MESSAGE_SIZE_V0_40 == 1024 * 1024 + 2 * 3309 + 1024 == 1_056_218
    assert max_message_size(Dialect.V0_40) == MAX_MESSAGE_SIZE_V0_40


@pytest.mark.parametrize("dialect", [Dialect.V0_34, Dialect.V0_37, Dialect.V0_38, Dialect.V1])
def test_older_dialects_keep_10_kib(dialect: Dialect) -> None:
    assert max_message_size(dialect) == MAX_MESSAGE_SIZE_LEGACY == 10240


@pytest.mark.parametrize("dialect", list(Dialect))
def test_reader_takes_exactly_the_cap_and_refuses_one_more_before_buffering(
    dialect: Dialect,
) -> None:
    cap = max_message_size(dialect)
    assert MessageReader(cap).feed(frame(b"\x1a" * cap)) == [b"\x1a" * cap]
    reader = MessageReader(cap)
    with pytest.raises(CodecError, match=f"exceeds the limit of {cap} bytes"):
        reader.feed(encode_uvarint(cap + 1))
    assert reader.buffered == 0


def test_v0_39_is_an_alias_of_v0_38() -> None:
    assert Dialect.parse("v0.39") is Dialect.V0_38
    assert Dialect.parse("0.40") is Dialect.V0_40
    assert Dialect.V0_40.has_vote_extensions and not Dialect.V0_40.v1_pubkey_layout
