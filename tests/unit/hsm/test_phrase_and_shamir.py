"""The recovery phrase (BIP-39), the derivation of wrap key and passwords, and Shamir over GF(256)."""

from __future__ import annotations

import hashlib
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kms.errors import RecoveryPhraseError
from kms.hsm import phrase, shamir


def test_wordlist_is_the_published_bip39_english_list() -> None:
    words = phrase.wordlist()
    assert len(words) == 2048 and words[0] == "abandon" and words[-1] == "zoo"
    # SHA-256 of the list as published in bitcoin/bips bip-0039/english.txt (one word a line)
    digest = hashlib.sha256(("\n".join(words) + "\n").encode()).hexdigest()
    assert digest == "2f5eed53a4727b4bf8880d8f3f199efc90e58503646d9ff8eff3a2ed3b24dbda"


def test_bip39_vector_round_trip() -> None:
    # BIP-39 test vector: entropy 0x00 * 32
    entropy = bytes(32)
    text = phrase.to_phrase(entropy)
    assert text.split() == ["abandon"] * 23 + ["art"]
    assert phrase.from_phrase("  " + text.upper() + "\n") == entropy


def test_a_wrong_word_or_checksum_is_one_clear_error() -> None:
    words = phrase.to_phrase(bytes(range(32))).split()
    with pytest.raises(RecoveryPhraseError, match="word 3") as e:
        phrase.from_phrase(" ".join([*words[:2], "abandom", *words[3:]]))
    assert "abandom" not in str(e.value)  # a near-miss of a secret word is never echoed
    swapped = [*words[:5], words[6], words[5], *words[7:]]
    with pytest.raises(RecoveryPhraseError, match="checksum"):
        phrase.from_phrase(" ".join(swapped))
    with pytest.raises(RecoveryPhraseError, match="24 words"):
        phrase.from_phrase(" ".join(words[:12]))


def test_derivation_is_deterministic_and_labels_are_distinct() -> None:
    e = bytes(range(32))
    assert phrase.wrap_key(e) == phrase.wrap_key(bytes(range(32)))
    assert len(phrase.wrap_key(e)) == 32
    pw = {r: phrase.role_password(e, r) for r in ("admin", "operator", "auditor", "signer")}
    assert len(set(pw.values())) == 4
    assert all(len(p) == 64 for p in pw.values())
    assert phrase.wrap_key(e).hex() not in pw.values()
    assert phrase.role_password(bytes(32), "signer") != pw["signer"]


def test_derivation_matches_hkdf_sha256_as_documented() -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    e = bytes(range(32))
    ref = HKDF(hashes.SHA256(), 32, b"kms-yubihsm-setup-v1", b"auth-password:signer").derive(e)
    assert phrase.role_password(e, "signer") == ref.hex()


def test_gf256_field_laws() -> None:
    assert shamir.gf_mul(0x53, 0xCA) == 0x01  # the AES field's textbook inverse pair
    for a in range(1, 256):
        assert shamir.gf_mul(a, shamir.gf_div(1, a)) == 1
        assert shamir.gf_div(shamir.gf_mul(a, 7), 7) == a


@settings(max_examples=30, deadline=None)
@given(secret=st.binary(min_size=32, max_size=32), m=st.integers(2, 5), extra=st.integers(0, 3))
def test_any_m_shares_recover_the_secret(secret: bytes, m: int, extra: int) -> None:
    n = m + extra
    shares = shamir.split(secret, m, n)
    for subset in itertools.combinations(shares, m):
        assert shamir.combine(list(subset)) == secret


def test_fewer_than_m_shares_do_not_give_the_secret() -> None:
    secret = bytes(range(32))
    shares = shamir.split(secret, 3, 5)
    assert shamir.combine(shares[:2]) != secret
    lines = [shamir.format_share(3, x, y) for x, y in shares]
    with pytest.raises(RecoveryPhraseError, match="need 3 shares"):
        shamir.recover(lines[:2])
    assert shamir.recover([lines[4], lines[0], lines[2]]) == secret


def test_share_text_is_checked() -> None:
    (x, y), *_ = shamir.split(bytes(32), 2, 2)
    line = shamir.format_share(2, x, y)
    assert line.startswith("2-1: ")
    assert shamir.parse_share(line) == (2, 1, y)
    with pytest.raises(RecoveryPhraseError, match="share 2-1"):
        shamir.parse_share(line.rsplit(" ", 1)[0] + " zoo zoo")
    with pytest.raises(RecoveryPhraseError, match="M-X"):
        shamir.parse_share("abandon " * 24)
    with pytest.raises(RecoveryPhraseError, match="2 <= M"):
        shamir.split(bytes(32), 1, 3)


def test_share_lines_are_text_shares_any_m_of_which_recover() -> None:
    entropy = bytes(range(32))
    lines = shamir.share_lines(entropy, 2, 3)
    assert [line.split(":")[0] for line in lines] == ["2-1", "2-2", "2-3"]
    for pair in itertools.combinations(lines, 2):
        assert shamir.recover_entropy(list(pair)) == entropy


def test_recover_entropy_takes_one_phrase_line_or_shares() -> None:
    entropy = bytes(range(32))
    text = phrase.to_phrase(entropy)
    assert shamir.recover_entropy([text]) == entropy
    with pytest.raises(RecoveryPhraseError, match="one recovery phrase line"):
        shamir.recover_entropy([text, text])
    with pytest.raises(RecoveryPhraseError, match="need 2 shares"):
        shamir.recover_entropy(shamir.share_lines(entropy, 2, 3)[:1])
