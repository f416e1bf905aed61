"""Process hardening: no core dumps, no ptrace-readable memory.

Owns: what a process that holds key material does to itself before it touches a
key. A core dump (or `gcore`) of a softsign daemon contains the consensus key,
and of an HSM daemon the derived session keys, which are enough to sign through
the HSM. So every `kms` command, before anything else:
- sets RLIMIT_CORE to 0 (soft and hard: the kernel writes no core file), and
- clears the "dumpable" flag (prctl PR_SET_DUMPABLE 0): no core dump even
  through a core_pattern pipe, and other processes of the same user can neither
  ptrace it nor read its /proc memory.

Never touches files, sockets or keys. On a platform without prctl (not Linux)
only the rlimit is set.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import resource
import sys

PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3


def _prctl(option: int, arg: int) -> int:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    result: int = libc.prctl(option, arg, 0, 0, 0)
    if result < 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}) failed")
    return result


def disable_core_dumps() -> None:
    """Make this process undumpable (see the module docstring); raises OSError on failure."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if sys.platform.startswith("linux"):
        _prctl(PR_SET_DUMPABLE, 0)


def is_dumpable() -> bool:
    """Whether this process could still be dumped or ptraced by its user."""
    if resource.getrlimit(resource.RLIMIT_CORE) != (0, 0):
        return True
    return sys.platform.startswith("linux") and _prctl(PR_GET_DUMPABLE, 0) != 0
