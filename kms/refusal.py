"""A refusal to sign: one value carried from the rule that made it to the reply, the log and the metric.

Owns: the `RemoteSignerError` codes kms sends, the metric labels of
`kms_refusals_total{reason=...}`, and `Refusal`, the
value that carries all three from where a request is refused (the double-sign
rules in `kms.state.machine`, the shared watermark in `kms.shared.gate`, the
request checks in `kms.service`) to the reply, the log line and the metric.

Never decides anything itself and never sends: deciders build a `Refusal`,
`kms.service` turns it into a `RemoteSignerError` and a metric label. A refusal
is a value, not an exception (`kms.errors` holds the exceptions).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from kms.privval.messages import RemoteSignerError


class Code(enum.IntEnum):
    """RemoteSignerError codes (tmkms uses 2 for double signing; nodes only log them)."""

    GENERIC = 0
    INVALID = 1
    DOUBLE_SIGN = 2
    REGRESSION = 3
    MAX_HEIGHT = 4


class Label(enum.StrEnum):
    """The `reason` label of kms_refusals_total: a small closed set, so the metric stays bounded."""

    CHAIN_ID = "chain_id"  # the request names another chain
    INVALID = "invalid"  # malformed or out-of-range request
    RAW_BYTES = "raw_bytes"  # raw-bytes signing disabled or not allowed here
    DOUBLE_SIGN = "double_sign"  # same height/round/step, different message
    REGRESSION = "regression"  # below the watermark
    MAX_HEIGHT = "max_height"  # above the configured (or hand-over) ceiling
    REFUSED = "refused"  # any other rule (e.g. the shared watermark kept moving)
    SIGNER_ERROR = "signer_error"  # no signature could be made
    STATE_ERROR = "state_error"  # the local state file cannot be used
    SHARED_STATE = "shared_state"  # the shared (etcd) watermark cannot be used


_LABEL_OF_CODE = {
    Code.INVALID: Label.INVALID,
    Code.DOUBLE_SIGN: Label.DOUBLE_SIGN,
    Code.REGRESSION: Label.REGRESSION,
    Code.MAX_HEIGHT: Label.MAX_HEIGHT,
}


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request gets a RemoteSignerError instead of a signature.

    `rule` names the rule that refused (e.g. 'height-regression', 'same-hrs-conflict'),
    `reason` is the text the node and the log see, `code` goes into the
    RemoteSignerError and `label` into the metric. `error` marks failures (signer,
    state) as opposed to refusals the rules call for: they are logged as errors.
    """

    rule: str
    reason: str
    code: Code = Code.GENERIC
    label: Label = Label.REFUSED
    error: bool = False

    @classmethod
    def by_rule(cls, rule: str, reason: str, code: Code) -> Refusal:
        """A refusal of the double-sign rules: the label follows from the code."""
        return cls(rule, reason, code, _LABEL_OF_CODE.get(code, Label.REFUSED))

    def remote_error(self) -> RemoteSignerError:
        """What the node receives."""
        return RemoteSignerError(int(self.code), self.reason)


class RefusalCarrier:
    """Read-only views of the `refusal` a decision value carries (None: not refused).

    Mixed into the values that pass a refusal along (kms.state.machine.Decision,
    kms.shared.gate.GateVerdict, kms.state.guard.GuardResult), which each declare
    the `refusal` field themselves.
    """

    __slots__ = ()
    refusal: Refusal | None

    @property
    def reason(self) -> str | None:
        return self.refusal.reason if self.refusal is not None else None

    @property
    def error_code(self) -> int:
        return self.refusal.code if self.refusal is not None else 0
