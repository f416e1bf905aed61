"""SCP03 secure-channel primitives, device side, as pure functions.

Owns: password -> static keys (PBKDF2), the SP 800-108 / AES-CMAC KDF, session
key and cryptogram derivation, AES-CMAC MAC chaining, IV-from-counter, ISO/IEC
7816-4 padding, and the encrypt/decrypt of one SESSION_MESSAGE. Never touches
sessions, objects, clocks or sockets; every function is deterministic given its
inputs (randomness is passed in). See YUBIHSM.md §3; the §3.6 vectors pin it.
"""

from __future__ import annotations

import hmac
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives import cmac, hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from kms.errors import SimPaddingError

KDF_S_ENC = 0x04
KDF_S_MAC = 0x06
KDF_S_RMAC = 0x07
KDF_CARD_CRYPTOGRAM = 0x00
KDF_HOST_CRYPTOGRAM = 0x01

BLOCK = 16
MAC_LEN = 8


@dataclass(frozen=True, slots=True)
class SessionKeys:
    s_enc: bytes
    s_mac: bytes
    s_rmac: bytes


def password_to_key(password: str) -> tuple[bytes, bytes]:
    """K-ENC, K-MAC from a password: PBKDF2-HMAC-SHA256, salt b"Yubico", 10000 rounds."""
    dk = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=b"Yubico", iterations=10000).derive(
        password.encode("utf-8")
    )
    return dk[:16], dk[16:]


def aes_cmac(key: bytes, *parts: bytes) -> bytes:
    c = cmac.CMAC(algorithms.AES(key))
    for part in parts:
        c.update(part)
    return c.finalize()


def derive(key: bytes, constant: int, context: bytes, bits: int = 128) -> bytes:
    """SCP03 KDF: AES-CMAC(key, 00*11 || const || 00 || L(2) || 01 || context)[: L/8]."""
    if bits not in (64, 128):
        raise ValueError("bits must be 64 or 128")
    data = b"\0" * 11 + struct.pack("!BBHB", constant, 0, bits, 1) + context
    return aes_cmac(key, data)[: bits // 8]


def session_keys(k_enc: bytes, k_mac: bytes, context: bytes) -> SessionKeys:
    return SessionKeys(
        s_enc=derive(k_enc, KDF_S_ENC, context),
        s_mac=derive(k_mac, KDF_S_MAC, context),
        s_rmac=derive(k_mac, KDF_S_RMAC, context),
    )


def card_cryptogram(s_mac: bytes, context: bytes) -> bytes:
    return derive(s_mac, KDF_CARD_CRYPTOGRAM, context, 64)


def host_cryptogram(s_mac: bytes, context: bytes) -> bytes:
    return derive(s_mac, KDF_HOST_CRYPTOGRAM, context, 64)


def iv_for(s_enc: bytes, counter: int) -> bytes:
    enc = Cipher(algorithms.AES(s_enc), modes.ECB()).encryptor()
    return enc.update(counter.to_bytes(16, "big")) + enc.finalize()


def pad(data: bytes) -> bytes:
    """ISO/IEC 7816-4: always append 0x80, then zeros to a multiple of 16 (1..16 bytes added)."""
    padded = data + b"\x80"
    return padded + b"\0" * (-len(padded) % BLOCK)


def unpad(data: bytes) -> bytes:
    stripped = data.rstrip(b"\0")
    if not stripped or stripped[-1] != 0x80 or len(data) - len(stripped) >= BLOCK:
        raise SimPaddingError("bad ISO/IEC 7816-4 padding")
    return stripped[:-1]


def cbc_encrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return enc.update(data) + enc.finalize()


def cbc_decrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    dec = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    return dec.update(data) + dec.finalize()


def mac_ok(expected: bytes, got: bytes) -> bool:
    return hmac.compare_digest(expected, got)


def authenticate_mac(s_mac: bytes, sid: int, host_crypto: bytes) -> bytes:
    """The full 16-byte CMAC over an AUTHENTICATE_SESSION message (chain starts at zeros)."""
    hdr = struct.pack("!BHB", 0x04, 1 + 8 + 8, sid)
    return aes_cmac(s_mac, b"\0" * BLOCK, hdr, host_crypto)


def command_mac(s_mac: bytes, chain: bytes, sid: int, ciphertext: bytes) -> bytes:
    """The full 16-byte C-MAC over a SESSION_MESSAGE (header || ciphertext), chained."""
    hdr = struct.pack("!BHB", 0x05, 1 + len(ciphertext) + MAC_LEN, sid)
    return aes_cmac(s_mac, chain, hdr, ciphertext)


def wrap_response(
    keys: SessionKeys, counter: int, cmd_mac_full: bytes, sid: int, inner: bytes
) -> bytes:
    """Encrypt and R-MAC an inner response: 0x85 || LEN || sid || ct || R-MAC(8)."""
    ct = cbc_encrypt(keys.s_enc, iv_for(keys.s_enc, counter), pad(inner))
    hdr = struct.pack("!BHB", 0x85, 1 + len(ct) + MAC_LEN, sid)
    rmac = aes_cmac(keys.s_rmac, cmd_mac_full, hdr, ct)[:MAC_LEN]
    return hdr + ct + rmac


def wrap_command(
    keys: SessionKeys, counter: int, chain: bytes, sid: int, inner: bytes
) -> tuple[bytes, bytes]:
    """Client side of a SESSION_MESSAGE (used by tests and vectors): (message, full C-MAC)."""
    ct = cbc_encrypt(keys.s_enc, iv_for(keys.s_enc, counter), pad(inner))
    full = command_mac(keys.s_mac, chain, sid, ct)
    return struct.pack("!BHB", 0x05, 1 + len(ct) + MAC_LEN, sid) + ct + full[:MAC_LEN], full
