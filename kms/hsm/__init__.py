"""HSM administration flows: provisioning ceremony, device status, audit, backup formats.

Owns the operator-facing YubiHSM2 administration (`kms hsm ...`); never the signing path
(kms/signer/) nor double-sign state.
"""
