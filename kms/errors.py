"""The exception tree of `kms`, and `describe()`: any exception as one line for an operator.

One family per direction of failure: local errors (`LocalError`: kms itself was
about to do something invalid) apart from remote ones (`ProtocolError`: the peer
misbehaved), relabelled once at each layer's inbound boundary; then state, signer,
key and configuration errors. Layers raise the most specific class; the
boundaries (link, CLI) turn them into one clear message with `describe()`. A
refusal to sign is not an exception: it is a value (`kms.refusal.Refusal`).
"""

from __future__ import annotations

from typing import Protocol


class KmsError(Exception):
    """Base of every error `kms` raises on purpose."""


class FileStepError(OSError):
    """An OSError from a durable write (`kms.fsutil`), naming the step that failed.

    Stays an OSError: callers turn it into their own error naming their file.
    """

    def __init__(self, step: str, cause: OSError) -> None:
        super().__init__(cause.errno, cause.strerror or str(cause))
        self.step = step

    def __str__(self) -> str:
        return f"{self.step} failed: {self.strerror}"


# --- local: kms itself was about to do something invalid -------------------------
#
# Kept apart from the remote family below (ProtocolError: the peer misbehaved), as
# h11 keeps LocalProtocolError apart from RemoteProtocolError: a message we cannot
# encode is our bug and is logged as one, never blamed on the node.


class LocalError(KmsError):
    """kms (or its caller) did something invalid: a bug or a misuse, not the peer's fault."""


class EncodeError(LocalError):
    """A message or value cannot be encoded for sending (out of range, wrong dialect)."""


class ConfigError(KmsError):
    """The configuration is invalid; the message names the file, section and key."""


# --- transport and wire -------------------------------------------------------


class ProtocolError(KmsError):
    """The peer sent something we cannot accept; the connection must be closed.

    Remote by definition: raised only for bytes that came from the peer. Decoders
    relabel every low-level failure (ValueError, protobuf's DecodeError) as one of
    these at the one inbound boundary of their layer.
    """


class HandshakeError(ProtocolError):
    """The SecretConnection handshake failed (bad key, bad signature, wrong peer)."""


class PeerMismatch(HandshakeError):
    """The peer authenticated as someone other than the pinned peer ID (Noise links)."""


class HandshakeTimeout(HandshakeError):
    """The peer did not complete the transport handshake (SecretConnection or Noise) in time.

    A node that accepted our TCP connection but does not answer is serving another
    signer (the link reports it as a standby).
    """


class FrameError(ProtocolError):
    """A SecretConnection frame failed to authenticate or was malformed."""


class CodecError(ProtocolError):
    """A privval message could not be decoded (malformed, oversized, unknown)."""


class LinkClosed(KmsError):
    """The link's transport is closed (EOF or local close)."""


class NodeBusy(LinkClosed):
    """The node took the TCP connection but not the handshake: it serves another signer."""


# --- double-sign state ---------------------------------------------------------


class StateError(KmsError):
    """Double-sign state is unusable; the chain must not sign until an operator acts."""


class StateFileError(StateError):
    """A state file is missing, unreadable, corrupt or of the wrong shape."""


class StatePersistError(StateError):
    """Writing or syncing the state failed; the signature must not be released."""


class BadState(ValueError):
    """A shape error inside a state decoder (kms.state.format1/format2).

    Internal to the decoders' callers: the store and the CLI turn it into a
    StateFileError (or a usage error) naming the file.
    """


class AuditLogError(StateError):
    """An audit log cannot be written (at start-up) or read (a line is malformed)."""


class SharedStateError(StateError):
    """The shared (etcd) watermark cannot be used: unreachable, no quorum, auth, bad record."""


class SharedStateAmbiguous(SharedStateError):
    """An etcd write was sent but its outcome is unknown (timeout, connection lost)."""


# --- signers and keys ------------------------------------------------------------


class SignerError(KmsError):
    """A signer could not produce a signature."""


class HsmError(SignerError):
    """A YubiHSM2 (or its connector) failed; the message names the device and key."""


class HsmConnectionError(HsmError):
    """The connector could not be reached, or the connection broke."""


class HsmTimeoutError(HsmError):
    """The device did not answer in time."""


class HsmDeviceError(HsmError):
    """The device answered with an error code."""


class KeyMismatchError(SignerError):
    """Replicas (or a key and a config) disagree on the public key."""


class NoHealthyReplicaError(SignerError):
    """No replica could sign within the deadline."""


class KeyFileError(KmsError):
    """A key file is missing, malformed, or has permissive file modes."""


class InitError(KmsError):
    """`kms init` cannot create the home as asked (existing files, bad chain ID, I/O)."""


class HsmAdminError(KmsError):
    """An HSM administration command (`kms hsm ...`) cannot proceed or found a problem."""


class RecoveryPhraseError(HsmAdminError):
    """A recovery phrase or Shamir share is malformed (bad word, checksum, share set)."""


# --- HSM signer and key administration (kms/signer/yubihsm*, kms/hsm/key*) ----------


class HsmAuthError(HsmDeviceError):
    """Session authentication failed: wrong password or auth key id."""


class HsmKeyError(HsmDeviceError):
    """The key is missing, not Ed25519, or lacks a capability it needs."""


class KeyCommandError(KmsError):
    """A key command cannot proceed; nothing was changed unless the message says so."""


# --- simulators (kms.sim: peers for tests and demos, never in the signing path) ---


class SimulatorError(KmsError):
    """Base of the errors the simulators (YubiHSM2, validator node) raise to their user."""


class SimPaddingError(SimulatorError, ValueError):
    """A decrypted SCP03 message does not carry valid ISO/IEC 7816-4 padding.

    The simulated device answers it as a session-level INVALID_DATA; a ValueError, as
    any malformed input to the `scp03` primitives.
    """


class SimObjectFormatError(SimulatorError, ValueError):
    """A simulated HSM object's body, wrap blob, label or state entry is not valid.

    A ValueError: provisioning (`SimDevice.put_*`) documents ValueError for bad input.
    """


class SimWrapAuthError(SimObjectFormatError):
    """A wrap blob failed AES-CCM authentication under the simulated wrap key."""


class SimStateFileError(SimulatorError, ValueError):
    """The simulated HSM's JSON state file exists but cannot be used."""


class ValidatorSimError(SimulatorError):
    """The signer answered something a real node would reject."""


class _RemoteSignerErrorLike(Protocol):
    # kms.privval.messages.RemoteSignerError, named structurally: this module imports
    # nothing from kms, so every module can import it without a cycle
    @property
    def code(self) -> int: ...

    @property
    def description(self) -> str: ...


class SignerRefused(SimulatorError):
    """The signer answered the simulated validator with a RemoteSignerError (`.error`)."""

    def __init__(self, error: _RemoteSignerErrorLike) -> None:
        super().__init__(f"signer refused (code {error.code}): {error.description}")
        self.error = error


# --- metrics ---------------------------------------------------------------------


class MetricsError(KmsError):
    """The metrics listener cannot be started (non-loopback address, bind failure)."""


# --- exception to text (one helper for every log line and message that shows an error) ---

DESCRIBE_LIMIT = 200
"""Characters kept of a foreign exception's text (a library's message can be a page)."""


def describe(exc: BaseException) -> str:
    """`exc` as one line for an operator: never empty, never a traceback.

    - a timeout is "timed out" and a refused connection "connection refused" (the
      standard library's texts for them vary with the call site and are often empty);
    - our own errors (KmsError, FileStepError) carry messages written for operators:
      their text, whole;
    - another OSError: its strerror, after the file it names if it names one;
    - anything else (a library's error, or a bug of ours) is "TypeName: text", cut at
      DESCRIBE_LIMIT characters, so a reader sees it was not an expected failure.
    White space, newlines included, is folded to single spaces.
    """
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    name = type(exc).__name__
    if isinstance(exc, KmsError | FileStepError):
        return " ".join(str(exc).split()) or name
    if isinstance(exc, OSError) and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
        return " ".join(text.split())
    text = " ".join(str(exc).split())
    if len(text) > DESCRIBE_LIMIT:
        text = text[: DESCRIBE_LIMIT - 3] + "..."
    return f"{name}: {text}" if text else name
