"""M-of-N Shamir secret sharing of the recovery phrase's entropy, over GF(256).

Owns: the field arithmetic (the AES field, x^8 + x^4 + x^3 + x + 1), splitting a
secret byte-wise with a random polynomial of degree M-1 per byte, recombining
M shares by Lagrange interpolation at x = 0, and the text form of a share.
Never prints or stores anything.

A share of the 32-byte entropy is written as `M-X: <24 BIP-39 words>`: M is the
threshold, X the share's x coordinate (1..255), and the words encode the 32
share bytes with BIP-39's own checksum, so a mistyped word is caught per share.
Fewer than M shares reveal nothing about the secret (information-theoretic);
they are refused rather than combined into a wrong phrase.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence

from kms.errors import RecoveryPhraseError
from kms.hsm import phrase

_EXP = [0] * 512
_LOG = [0] * 256


def _init_tables() -> None:
    x = 1
    for i in range(255):
        _EXP[i] = x
        _LOG[x] = i
        # multiply by the generator 3: x*2 (reduced) xor x
        x2 = (x << 1) ^ (0x11B if x & 0x80 else 0)
        x = x2 ^ x
    for i in range(255, 512):
        _EXP[i] = _EXP[i - 255]


_init_tables()


def gf_mul(a: int, b: int) -> int:
    if a == 0 or b == 0:
        return 0
    return _EXP[_LOG[a] + _LOG[b]]


def gf_div(a: int, b: int) -> int:
    if b == 0:
        raise ZeroDivisionError("division by zero in GF(256)")
    if a == 0:
        return 0
    return _EXP[(_LOG[a] - _LOG[b]) % 255]


def _eval(coeffs: Sequence[int], x: int) -> int:
    y = 0
    for c in reversed(coeffs):  # Horner
        y = gf_mul(y, x) ^ c
    return y


def split(
    secret: bytes, threshold: int, count: int, random_bytes: Callable[[int], bytes] = os.urandom
) -> list[tuple[int, bytes]]:
    """`count` shares (x, y-bytes), any `threshold` of which give back `secret`."""
    if not 2 <= threshold <= count <= 255:
        raise RecoveryPhraseError(f"need 2 <= M <= N <= 255, got {threshold}-of-{count}")
    shares: list[tuple[int, bytearray]] = [(x, bytearray()) for x in range(1, count + 1)]
    for byte in secret:
        coeffs = [byte, *random_bytes(threshold - 1)]
        for x, ys in shares:
            ys.append(_eval(coeffs, x))
    return [(x, bytes(ys)) for x, ys in shares]


def combine(shares: Sequence[tuple[int, bytes]]) -> bytes:
    """The secret at x = 0 from exactly the given shares (Lagrange interpolation)."""
    xs = [x for x, _ in shares]
    if len(set(xs)) != len(xs) or any(not 1 <= x <= 255 for x in xs):
        raise RecoveryPhraseError("shares must have distinct numbers 1..255")
    lengths = {len(y) for _, y in shares}
    if len(lengths) != 1:
        raise RecoveryPhraseError("shares have different lengths")
    out = bytearray()
    for i in range(lengths.pop()):
        acc = 0
        for j, (xj, yj) in enumerate(shares):
            num, den = 1, 1
            for m, (xm, _) in enumerate(shares):
                if m != j:
                    num = gf_mul(num, xm)
                    den = gf_mul(den, xm ^ xj)
            acc ^= gf_mul(yj[i], gf_div(num, den))
        out.append(acc)
    return bytes(out)


# --- text form ---------------------------------------------------------------------

_SHARE_RE = re.compile(r"^\s*(\d+)-(\d+)\s*:\s*(.+?)\s*$")


def format_share(threshold: int, x: int, y: bytes) -> str:
    return f"{threshold}-{x}: {phrase.to_phrase(y)}"


def parse_share(text: str) -> tuple[int, int, bytes]:
    """(threshold, x, y) from `M-X: words`."""
    m = _SHARE_RE.match(text)
    if m is None:
        raise RecoveryPhraseError("a share looks like 'M-X: word1 ... word24'")
    threshold, x = int(m.group(1)), int(m.group(2))
    if not 2 <= threshold <= 255 or not 1 <= x <= 255:
        raise RecoveryPhraseError(f"share {threshold}-{x}: threshold 2..255 and number 1..255")
    try:
        y = phrase.from_phrase(m.group(3))
    except RecoveryPhraseError as e:
        raise RecoveryPhraseError(f"share {threshold}-{x}: {e}") from None
    return threshold, x, y


def recover(lines: Sequence[str]) -> bytes:
    """The entropy from share lines; refuses fewer than the threshold or mixed sets."""
    parsed = [parse_share(line) for line in lines if line.strip()]
    if not parsed:
        raise RecoveryPhraseError("no shares given")
    thresholds = {t for t, _, _ in parsed}
    if len(thresholds) != 1:
        raise RecoveryPhraseError("shares come from different splits (thresholds differ)")
    threshold = thresholds.pop()
    if len(parsed) < threshold:
        raise RecoveryPhraseError(f"need {threshold} shares, got {len(parsed)}")
    return combine([(x, y) for _, x, y in parsed[:threshold]])


def share_lines(entropy: bytes, threshold: int, count: int) -> list[str]:
    """`count` share lines, any `threshold` of which rebuild `entropy`; self-tested (the
    first and the last `threshold` shares) before anyone relies on them."""
    lines = [format_share(threshold, x, y) for x, y in split(entropy, threshold, count)]
    if recover(lines[:threshold]) != entropy or recover(lines[-threshold:]) != entropy:
        raise RecoveryPhraseError("internal error: the shares do not recombine")
    return lines


def recover_entropy(lines: Sequence[str]) -> bytes:
    """The phrase's entropy from what the operator typed: one phrase line, or share lines."""
    if ":" in lines[0]:
        return recover(lines)
    if len(lines) != 1:
        raise RecoveryPhraseError("expected one recovery phrase line")
    return phrase.from_phrase(lines[0])
