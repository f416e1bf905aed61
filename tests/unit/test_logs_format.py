"""The text log format: key=value fields, quoted only when a value needs it."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from kms.logs import _SHOWN_ENTRIES, _SHOWN_MAX_LEN, JsonFormatter, TextFormatter


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


def test_a_remembered_value_is_shown_the_same_every_time() -> None:
    f = TextFormatter()
    record = logging.LogRecord("kms.service", logging.INFO, __file__, 1, "signed", None, None)
    record.fields = {"chain": "bench-1", "reason": 'a "b"', "empty": ""}
    first = f.format(record)
    assert first.endswith('chain=bench-1 reason="a \\"b\\"" empty=""')
    assert f.format(record) == first


def test_the_memory_of_shown_values_is_bounded() -> None:
    # values a peer chooses (a chain id, a refusal reason) must not grow it without end
    f = TextFormatter()
    record = logging.LogRecord("kms.service", logging.INFO, __file__, 1, "refused", None, None)
    for i in range(3 * _SHOWN_ENTRIES):
        record.fields = {"chain": f"c-{i}", "reason": "x" * (_SHOWN_MAX_LEN + 1) + str(i)}
        assert f.format(record).endswith(f"chain=c-{i} reason={'x' * (_SHOWN_MAX_LEN + 1)}{i}")
    shown = f._shown
    assert len(shown) == _SHOWN_ENTRIES
    assert all(len(v) <= _SHOWN_MAX_LEN for v in shown)


def test_json_lines_are_compact_and_typed() -> None:
    record = logging.LogRecord("kms.service", logging.INFO, __file__, 1, "signed", None, None)
    record.created = 1_700_000_000.25
    record.fields = {"height": 12, "ok": True, "none": None, "ms": 0.5, "path": Path("/x y")}
    out = JsonFormatter().format(record)
    assert out == (
        '{"ts":1700000000.25,"level":"info","logger":"kms.service","msg":"signed",'
        '"height":12,"ok":true,"none":null,"ms":0.5,"path":"/x y"}'
    )
    assert json.loads(out)["path"] == "/x y"
