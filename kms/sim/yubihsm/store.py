"""The simulator's optional JSON state file.

Owns: reading and atomically writing one JSON document (temporary file in the
same directory, fsync, rename over the target, fsync the directory). The
document's shape belongs to `device.py`. Never touches sessions (they are never
persisted: a restart is a power cycle). The file holds keys in the clear: it is
for simulators only, never for secrets from real devices.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


class StateFileError(ValueError):
    """The state file exists but cannot be used."""


class StateFile:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def load(self) -> dict[str, Any] | None:
        """The stored document, or None when the file does not exist."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as e:
            raise StateFileError(f"{self.path}: cannot read: {e}") from e
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise StateFileError(f"{self.path}: not JSON: {e}") from e
        if not isinstance(doc, dict) or doc.get("format") != 1:
            raise StateFileError(f"{self.path}: not a simulator state file (format 1)")
        return doc

    def save(self, doc: dict[str, Any]) -> None:
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(doc, f, indent=1, sort_keys=True)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
