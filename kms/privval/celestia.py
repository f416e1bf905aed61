"""The Celestia fork's raw-bytes signing (protocol_version = "celestia"), pure.

Owns: the checks on a `SignRawBytesRequest`. The bytes the fork's validators sign for
it are built by `kms.privval.canonical.raw_bytes_sign_bytes` (the home of every kind of
sign bytes); what they are is recorded here. celestia-core (main @ dda8d507b6b82689f818d1b7ea2e74a498fa06c3,
`types/priv_validator.go` RawBytesMessageSignBytes) signs

    "COMET::RAW_BYTES::SIGN" || uvarint(len(P)) || P
    P = protobuf SignRawBytesRequest{chain_id = 1, raw_bytes = 2, unique_id = 3}

and refuses an empty chain ID, unique ID or payload; so do we. The prefix keeps these
bytes apart from every canonical vote/proposal (a canonical message cannot start with
it: 'O' = 0x4f would be field 9 with the invalid wire type 7).

The dialect is only ever chosen by configuration, never inferred from a message: on
any other v0.x dialect a SignRawBytesRequest is refused (kms.service).

Never touches: sockets, keys, signing state.
"""

from __future__ import annotations

from kms.privval.messages import SignRawBytesRequest

__all__ = ["raw_bytes_problem"]


def raw_bytes_problem(req: SignRawBytesRequest) -> str | None:
    """Why the fork would refuse to sign `req`, or None."""
    missing = [
        name
        for name, value in (
            ("chain_id", req.chain_id),
            ("raw_bytes", req.raw_bytes),
            ("unique_id", req.unique_id),
        )
        if not value
    ]
    if missing:
        return f"SignRawBytesRequest with empty {', '.join(missing)}"
    return None
