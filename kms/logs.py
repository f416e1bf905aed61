"""Logging set-up for the daemon: one line per event, as text or JSON.

Owns: the log format. Callers pass structured fields through `extra={"fields": {...}}`;
the formatter renders them as `key=value` pairs (text) or JSON members. Nothing
secret is ever passed here: keys, passwords and seeds never reach a logger.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any, Literal

LogFormat = Literal["text", "json"]
LOG_LEVELS = ("debug", "info", "warning", "error")  # `--log-level` choices (case-insensitive)


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    value = getattr(record, "fields", None)
    return value if isinstance(value, dict) else {}


# a value is quoted when it is empty or holds white space, a quote or "="
_NEEDS_QUOTES = re.compile(r'[\s"=]|^$')
# the text form of string values is remembered per formatter: the same few (chain, type,
# replica, link) come back on every line, and the quoting check is most of a field's cost;
# bounded in entries and in length, so values a peer chooses cannot grow it
_SHOWN_ENTRIES = 1024
_SHOWN_MAX_LEN = 64


def _text_value(v: Any) -> str:
    if type(v) is int or type(v) is float or type(v) is bool:  # the hot path: numbers
        return str(v)
    s = str(v)
    if _NEEDS_QUOTES.search(s) is not None:
        return json.dumps(s)
    return s


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        self._second = -1  # the last second formatted, and its text (one signature
        self._second_text = ""  # per block or more: the same second comes back often)
        self._shown: dict[str, str] = {}

    def _value(self, v: Any) -> str:
        if type(v) is not str:
            return _text_value(v)
        text = self._shown.get(v)
        if text is None:
            text = _text_value(v)
            if len(v) <= _SHOWN_MAX_LEN and len(self._shown) < _SHOWN_ENTRIES:
                self._shown[v] = text
        return text

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        ms = int(record.msecs)
        parts = [f"{self._second_text}.{ms:03d}Z", f"{record.levelname:<5}", record.getMessage()]
        value = self._value
        parts += [f"{k}={value(v)}" for k, v in fields_of(record).items()]
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


# one encoder for every line: json.dumps with `separators` builds a new one per call
_JSON = json.JSONEncoder(separators=(",", ":"))
_JSON_SCALARS = (int, float, bool, type(None))  # shown as JSON values; anything else as str()


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k, v in fields_of(record).items():
            doc.setdefault(k, v if isinstance(v, _JSON_SCALARS) else str(v))
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return _JSON.encode(doc)


def setup_logging(fmt: LogFormat = "text", level: str = "INFO") -> None:
    """Route every logger to stderr in `fmt`; `level` is one of LOG_LEVELS (ValueError otherwise)."""
    if level.lower() not in LOG_LEVELS:
        raise ValueError(f"log level {level!r}: expected one of {', '.join(LOG_LEVELS)}")
    # nothing we format needs the caller's file/line, thread or process: not computing
    # them saves a stack walk and several calls per line (the logging HOWTO's
    # "Optimization" settings); every signature is logged, so this is the hot path
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.setLevel(level.upper())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
