"""Reading one TOML table with one-line errors, and the state the section parsers share.

Owns: `Table` (a TOML table plus the file and section it came from; every getter
checks one value and fails with a one-line ConfigError naming file, section, key,
what was expected and what was found), the small value checks several sections
use (chain IDs, durations, serial numbers) and `ParseContext`
(the file, whether secret files are checked, and the warnings collected).
Never knows which section allows which key (that is `kms.config.schema` and the
section parsers) and never touches the file system beyond resolving paths.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NoReturn, TypeVar

from kms.errors import ConfigError
from kms.privval.limits import MAX_CHAIN_ID_LEN

REQUIRED = object()
_T = TypeVar("_T")


def one_line(text: str) -> str:
    return " ".join(text.split())


def show(value: object) -> str:
    """A short, one-line rendering of a found value for error messages."""
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return "an array of tables"
    if isinstance(value, bool):
        return "true" if value else "false"
    shown = repr(value)
    return shown if len(shown) <= 80 else shown[:77] + "..."


class Table:
    """One TOML table plus where it came from; every getter fails with a one-line ConfigError."""

    def __init__(
        self,
        file: Path,
        section: str,
        data: Mapping[str, object],
        allowed: tuple[str, ...],
        prefix: str = "",
        unsupported: Mapping[str, str] | None = None,
    ) -> None:
        self.file, self.section, self.data, self.prefix = file, section, data, prefix
        self.base = file.parent.resolve()
        for k in data:
            if k in (unsupported or {}):
                self.fail(k, (unsupported or {})[k])
            if k not in allowed:
                self.fail(k, f"unknown key; expected one of: {', '.join(allowed)}")

    def where(self, key: str) -> str:
        return f"{self.file}: {self.section}: key '{self.prefix}{key}'"

    def fail(self, key: str, message: str) -> NoReturn:
        raise ConfigError(f"{self.where(key)}: {one_line(message)}")

    def expected(self, key: str, what: str) -> NoReturn:
        if key not in self.data:
            self.fail(key, f"missing; expected {what}")
        self.fail(key, f"expected {what}, got {show(self.data[key])}")

    def has(self, key: str) -> bool:
        return key in self.data

    def _get(self, key: str, default: object, what: str) -> object:
        if key in self.data:
            return self.data[key]
        if default is REQUIRED:
            self.expected(key, what)
        return default

    def text(
        self,
        key: str,
        what: str = "a non-empty string",
        default: object = REQUIRED,
        check: Callable[[str], bool] = bool,
    ) -> str:
        value = self._get(key, default, what)
        if key in self.data and not (isinstance(value, str) and check(value)):
            self.expected(key, what)
        assert isinstance(value, str)
        return value

    def secret_text(self, key: str, what: str) -> str:
        """Like text(), but a wrong value is described by its type only: it may be a secret."""
        value = self.data.get(key)
        if not (isinstance(value, str) and value):
            found = (
                f"got {type(value).__name__} (value not shown: it may be a secret)"
                if key in self.data
                else "missing"
            )
            self.fail(key, f"expected {what}; {found}")
        return value

    def choice(self, key: str, choices: tuple[_T, ...], default: object = REQUIRED) -> _T:
        what = " or ".join(f'"{c}"' for c in choices)
        value = self._get(key, default, what)
        for c in choices:
            if value == c:
                return c
        self.expected(key, what)

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key, default, "true or false")
        if not isinstance(value, bool):
            self.expected(key, "true or false")
        return value

    def integer(
        self,
        key: str,
        lo: int,
        hi: int,
        what: str,
        default: object = REQUIRED,
        strings: bool = False,
    ) -> int:
        value = self._get(key, default, what)
        if strings and isinstance(value, str) and re.fullmatch(r"[0-9]{1,19}", value):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            self.expected(key, what)
        return value

    def optional_integer(
        self, key: str, lo: int, hi: int, what: str, strings: bool = False
    ) -> int | None:
        if key not in self.data:
            return None
        return self.integer(key, lo, hi, what, strings=strings)

    def seconds(self, key: str, default: float) -> float:
        what = "a number of seconds greater than 0"
        value = self._get(key, default, what)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value <= 0
        ):
            self.expected(key, what)
        return float(value)

    def path(self, key: str, default: object = REQUIRED) -> Path:
        what = "a file path"
        value = self._get(key, default, what)
        if isinstance(value, Path):
            return value
        if not isinstance(value, str) or not value.strip() or "\0" in value:
            self.expected(key, what)
        try:
            p = Path(value).expanduser()
        except RuntimeError:  # ~user of an unknown user
            self.expected(key, "a file path (cannot expand ~ here)")
        return p if p.is_absolute() else self.base / p

    def optional_path(self, key: str) -> Path | None:
        return self.path(key) if key in self.data else None

    def chain_ids(self, key: str) -> tuple[str, ...]:
        what = "a non-empty list of chain IDs"
        value = self._get(key, REQUIRED, what)
        if not isinstance(value, list) or not value:
            self.expected(key, what)
        for item in value:
            if not isinstance(item, str) or not valid_chain_id(item):
                self.fail(key, f"expected a list of chain IDs, got {show(item)} in the list")
        if len(set(value)) != len(value):
            self.fail(key, "lists a chain ID twice")
        return tuple(value)

    def sub(self, key: str, allowed: tuple[str, ...], what: str) -> Table:
        value = self._get(key, REQUIRED, what)
        if not isinstance(value, dict):
            self.expected(key, what)
        return Table(self.file, self.section, value, allowed, f"{self.prefix}{key}.")

    def array(self, key: str, what: str) -> list[dict[str, object]]:
        """An array of tables (`[[key]]` or `key = [{...}]`); absent -> []."""
        value = self._get(key, [], what)
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            self.expected(key, what)
        return value


def valid_chain_id(text: str) -> bool:
    return 0 < len(text) <= MAX_CHAIN_ID_LEN and re.fullmatch(r"[\x21-\x7e]+", text) is not None


def duration(t: Table, key: str, default: float) -> float:
    """Seconds as a number, or a string such as "1s", "500ms"."""
    value = t.data.get(key, default)
    if isinstance(value, str):
        m = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)(ms|s)", value.strip())
        if m is None or float(m[1]) <= 0:
            t.expected(key, 'a duration such as "1s" or "500ms", or a number of seconds')
        return float(m[1]) / (1000 if m[2] == "ms" else 1)
    return t.seconds(key, default)


def is_serial(text: str) -> bool:
    return re.fullmatch(r"[0-9]{1,10}", text) is not None


class ParseContext:
    """What every section parser shares: the file, `check_files`, the warnings so far."""

    def __init__(self, file: Path, check_files: bool) -> None:
        self.file = file
        self.check_files = check_files
        self.warnings: list[str] = []
        self.validator_max_height: list[int | None] = []  # by [[validator]] position

    def warn(self, t: Table, key: str, message: str) -> None:
        self.warnings.append(f"{t.where(key)}: {message}")
