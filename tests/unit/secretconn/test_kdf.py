"""Key schedule: HKDF keys per side and the Merlin challenge, pinned by upstream vectors."""

from __future__ import annotations

from typing import Any

import pytest

from kms.secretconn.kdf import derive_secrets, merlin_challenge, sort_ephemeral_keys


def test_golden_file_has_32_rows(kdf_golden_rows: list[list[str]]) -> None:
    assert len(kdf_golden_rows) == 32
    assert all(len(row) == 5 for row in kdf_golden_rows)


@pytest.mark.parametrize("index", range(32))
def test_derive_secrets_matches_golden_row(index: int, kdf_golden_rows: list[list[str]]) -> None:
    dh, least, recv, send, legacy = kdf_golden_rows[index]
    assert least in ("true", "false")
    secrets = derive_secrets(bytes.fromhex(dh), least == "true")
    assert secrets.recv_key.hex() == recv
    assert secrets.send_key.hex() == send
    assert secrets.legacy_challenge.hex() == legacy


def test_upstream_kdf_vector_swaps_keys_by_loc_is_least(sc_vectors: dict[str, Any]) -> None:
    v = sc_vectors["upstream_kdf_and_frames"]
    ikm = bytes.fromhex(v["kdf_input_shared_secret"])
    for flag, name in ((True, "loc_is_least_true"), (False, "loc_is_least_false")):
        secrets = derive_secrets(ikm, flag)
        assert secrets.recv_key.hex() == v[name]["recv"]
        assert secrets.send_key.hex() == v[name]["send"]


def test_the_two_sides_of_one_dh_get_mirrored_keys() -> None:
    dh = bytes(range(32))
    low, high = derive_secrets(dh, True), derive_secrets(dh, False)
    assert low.send_key == high.recv_key and low.recv_key == high.send_key
    assert low.send_key != low.recv_key


def test_derive_secrets_rejects_a_short_dh_secret() -> None:
    with pytest.raises(ValueError):
        derive_secrets(bytes(31), True)


def test_secrets_repr_hides_keys() -> None:
    secrets = derive_secrets(bytes(range(32)), True)
    assert secrets.send_key.hex() not in repr(secrets)


def test_ephemeral_keys_sort_as_unsigned_bytes_not_integers() -> None:
    a = bytes([0x01] + [0xFF] * 31)  # as a little-endian integer this one is larger
    b = bytes([0x02] + [0x00] * 31)
    assert sort_ephemeral_keys(a, b) == (a, b, True)
    assert sort_ephemeral_keys(b, a) == (a, b, False)


def test_merlin_challenge_matches_the_derived_handshake(sc_vectors: dict[str, Any]) -> None:
    d = sc_vectors["derived_handshake"]
    challenge = merlin_challenge(
        bytes.fromhex(d["ephemeral_lower"]),
        bytes.fromhex(d["ephemeral_upper"]),
        bytes.fromhex(d["dh_shared_secret"]),
    )
    assert challenge.hex() == d["merlin_challenge_SECRET_CONNECTION_MAC"]


def test_derived_handshake_okm_and_keys(sc_vectors: dict[str, Any]) -> None:
    d = sc_vectors["derived_handshake"]
    dh = bytes.fromhex(d["dh_shared_secret"])
    alice = derive_secrets(dh, d["alice_is_least"])
    bob = derive_secrets(dh, not d["alice_is_least"])
    assert (alice.recv_key + alice.send_key + alice.legacy_challenge).hex() == d["hkdf_okm_96"]
    assert alice.send_key.hex() == d["alice_send_key"]
    assert alice.recv_key.hex() == d["alice_recv_key"]
    assert bob.send_key.hex() == d["bob_send_key"]
    assert bob.recv_key.hex() == d["bob_recv_key"]
