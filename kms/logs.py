"""Logging set-up for the daemon: one line per event, as text or JSON.

Owns: the log format. Callers pass structured fields through `extra={"fields": {...}}`;
the formatter renders them as `key=value` pairs (text) or JSON members. Nothing
secret is ever passed here: keys, passwords and seeds never reach a logger.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, Literal

LogFormat = Literal["text", "json"]
LOG_LEVELS = ("debug", "info", "warning", "error")  # `--log-level` choices (case-insensitive)


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    value = getattr(record, "fields", None)
    return value if isinstance(value, dict) else {}


def _text_value(v: Any) -> str:
    s = str(v)
    if s == "" or any(c.isspace() for c in s) or '"' in s or "=" in s:
        return json.dumps(s)
    return s


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        ms = int(record.msecs)
        parts = [f"{ts}.{ms:03d}Z", f"{record.levelname:<5}", record.getMessage()]
        parts += [f"{k}={_text_value(v)}" for k, v in fields_of(record).items()]
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k, v in fields_of(record).items():
            doc.setdefault(k, v if isinstance(v, int | float | bool | None) else str(v))
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, separators=(",", ":"))


def setup_logging(fmt: LogFormat = "text", level: str = "INFO") -> None:
    """Route every logger to stderr in `fmt`; `level` is one of LOG_LEVELS (ValueError otherwise)."""
    if level.lower() not in LOG_LEVELS:
        raise ValueError(f"log level {level!r}: expected one of {', '.join(LOG_LEVELS)}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.setLevel(level.upper())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
