"""Double-sign protection: pure decision (machine), durable state (store), the
per-chain guard that orders decide -> sign -> persist (guard), and the audit log.

Never touches sockets, the privval wire format or key material.
"""

from __future__ import annotations

from kms.state.audit import AuditEntry, AuditLog, read_audit
from kms.state.guard import ChainGuard, GuardResult
from kms.state.machine import Action, Decision, SignCandidate, SignState, Step, decide
from kms.state.store import FileOps, StateStore

__all__ = [
    "Action",
    "AuditEntry",
    "AuditLog",
    "ChainGuard",
    "Decision",
    "FileOps",
    "GuardResult",
    "SignCandidate",
    "SignState",
    "StateStore",
    "Step",
    "decide",
    "read_audit",
]
