"""kms: a remote signer for CometBFT validators (YubiHSM2 replicas or a software key)."""

__version__ = "0.1.0"
