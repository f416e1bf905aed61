"""The exception tree of `kms`, and nothing else.

One family per direction of failure. Layers raise the most specific class; the
boundaries (link, CLI) turn them into one clear message. A refusal to sign is
not an exception: it is a decision value (see `kms.state.machine`).
"""

from __future__ import annotations


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


class ConfigError(KmsError):
    """The configuration is invalid; the message names the file, section and key."""


# --- transport and wire -------------------------------------------------------


class ProtocolError(KmsError):
    """The peer sent something we cannot accept; the connection must be closed."""


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
