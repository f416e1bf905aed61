"""Small durable-file primitives shared by key files, the identity key and the metrics textfile.

Owns: writing a whole buffer to a file descriptor and fsyncing a directory.
(The state store has its own injectable copy of these steps for fault tests.)
"""

from __future__ import annotations

import os
from pathlib import Path


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of `data` (os.write may write less than asked)."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def fsync_dir(directory: Path) -> None:
    """fsync a directory so that a create or rename in it is durable; raises OSError."""
    dfd = os.open(directory if str(directory) else Path("."), os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
