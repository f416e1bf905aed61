"""`kms.errors.describe`: every exception as one operator-readable line."""

from __future__ import annotations

import pytest

from kms.errors import (
    DESCRIBE_LIMIT,
    FileStepError,
    HsmTimeoutError,
    KmsError,
    StateFileError,
    describe,
)


@pytest.mark.parametrize(
    ("exc", "line"),
    [
        # the standard library's timeouts say nothing, or say it differently per call site
        (TimeoutError(), "timed out"),
        (TimeoutError("timed out"), "timed out"),  # socket.timeout
        (TimeoutError(110, "Connection timed out"), "timed out"),
        # asyncio's refusal names the address, a bare socket's the errno
        (
            ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 26658)"),
            "connection refused",
        ),
        (ConnectionRefusedError(111, "Connection refused"), "connection refused"),
        # our own messages are written for operators: whole, folded to one line
        (
            StateFileError("state file /x is corrupt:\n  bad magic"),
            "state file /x is corrupt: bad magic",
        ),
        (HsmTimeoutError("hsm-a: no answer in 1.0 s"), "hsm-a: no answer in 1.0 s"),
        (KmsError(), "KmsError"),
        (
            FileStepError("fsync", OSError(5, "Input/output error")),
            "fsync failed: Input/output error",
        ),
        # an OSError: what failed and on which file, without "[Errno N]"
        (
            PermissionError(13, "Permission denied", "/var/lib/kms/x"),
            "/var/lib/kms/x: Permission denied",
        ),
        (OSError(98, "address already in use"), "address already in use"),
        # anything else was not expected: its type is shown
        (ValueError("bad\n\tthing"), "ValueError: bad thing"),
        (RuntimeError(), "RuntimeError"),
        (OSError("no errno"), "OSError: no errno"),
        (KeyError("k"), "KeyError: 'k'"),
    ],
)
def test_describe(exc: BaseException, line: str) -> None:
    assert describe(exc) == line


def test_a_foreign_text_is_cut_but_our_own_is_whole() -> None:
    long = "x" * 5000
    text = describe(ValueError(long))
    assert len(text) == len("ValueError: ") + DESCRIBE_LIMIT
    assert text.endswith("...")
    assert describe(KmsError(long)) == long


def test_never_empty_and_never_multi_line() -> None:
    for exc in (Exception(), Exception("\n"), OSError(), KmsError(" \n "), BaseException()):
        text = describe(exc)
        assert text and "\n" not in text, (exc, text)
