"""The text log format: key=value fields, quoted only when a value needs it."""

from __future__ import annotations

import logging

from kms.logs import TextFormatter


def line(**fields: object) -> str:
    record = logging.LogRecord("kms.service", logging.INFO, __file__, 1, "signed", None, None)
    record.created = 1_700_000_000.25
    record.msecs = 250.0
    record.fields = fields
    return TextFormatter().format(record)


def test_numbers_and_plain_words_are_bare_everything_else_is_quoted() -> None:
    out = line(
        height=12, latency_ms=0.42, ext=True, chain="bench-1", reason='a "b"', empty="", eq="a=b"
    )
    assert out == (
        "2023-11-14T22:13:20.250Z INFO  signed height=12 latency_ms=0.42 ext=True chain=bench-1 "
        'reason="a \\"b\\"" empty="" eq="a=b"'
    )


def test_white_space_of_any_kind_is_quoted() -> None:
    assert line(x="a b").endswith('x="a b"')
    assert line(x="a\tb").endswith('x="a\\tb"')
    assert line(x="a\u00a0b").endswith('x="a\\u00a0b"')


def test_the_second_is_formatted_again_when_it_changes() -> None:
    f = TextFormatter()
    r1 = logging.LogRecord("k", logging.INFO, __file__, 1, "m", None, None)
    r1.created, r1.msecs = 1_700_000_000.5, 500.0
    r2 = logging.LogRecord("k", logging.INFO, __file__, 1, "m", None, None)
    r2.created, r2.msecs = 1_700_000_001.0, 0.0
    assert f.format(r1).startswith("2023-11-14T22:13:20.500Z")
    assert f.format(r2).startswith("2023-11-14T22:13:21.000Z")
