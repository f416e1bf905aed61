"""The simulator's optional JSON state file.

Owns: reading and atomically writing one JSON document (through
`kms.fsutil.atomic_write`, mode 0600). The
document's shape belongs to `device.py`. Never touches sessions (they are never
persisted: a restart is a power cycle). The file holds keys in the clear: it is
for simulators only, never for secrets from real devices.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kms.errors import SimStateFileError
from kms.fsutil import atomic_write


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
            raise SimStateFileError(f"{self.path}: cannot read: {e}") from e
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise SimStateFileError(f"{self.path}: not JSON: {e}") from e
        if not isinstance(doc, dict) or doc.get("format") != 1:
            raise SimStateFileError(f"{self.path}: not a simulator state file (format 1)")
        return doc

    def save(self, doc: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode("utf-8")
        atomic_write(self.path, data, mode=0o600)
