"""The objects `kms hsm setup` puts on every device: role auth keys and the wrap key.

Owns: the object ids, labels, capabilities, delegated capabilities and domains
of the provisioned layout (one home for them: setup, status and the docs read
them from here), and which secret of the phrase each object gets. Never talks
to a device.

Least privilege (a real device enforces each of these; the simulator does too):
- admin (2): everything, all domains. Used only for ceremonies.
- operator (3): generate/put Ed25519 keys, export and import under wrap; it can
  only create keys with sign-eddsa (+ exportable-under-wrap) in the validator
  domain.
- auditor (5): read the audit log and free it (SET_LOG_INDEX); nothing else.
- signer (4, tmkms's validator auth key id): sign-eddsa only, only keys in the
  validator domain, no delegation. This is the auth key `kms start` uses.
- wrap key (1, tmkms's convention): AES-256-CCM, export/import-wrapped, may only
  carry sign-eddsa + exportable-under-wrap keys.
The factory auth key (1, password "password") is deleted at the end.
"""

from __future__ import annotations

from dataclasses import dataclass

from yubihsm.defs import ALGORITHM, CAPABILITY, OBJECT

VALIDATOR_DOMAIN = 0x0001  # domain 1: the validator keys
ALL_DOMAINS = 0xFFFF
FACTORY_PASSWORD = "password"
FACTORY_LABEL = "DEFAULT AUTHKEY CHANGE THIS ASAP"
WRAP_KEY_ID = 1
VALIDATOR_KEY_CAPS = CAPABILITY.SIGN_EDDSA | CAPABILITY.EXPORTABLE_UNDER_WRAP

# Commands whose audit kms turns on (SIGN_EDDSA is what `kms hsm audit` reconciles).
AUDITED_COMMANDS = (
    0x6A,  # SIGN_EDDSA
    0x4A,  # EXPORT_WRAPPED
    0x4B,  # IMPORT_WRAPPED
    0x45,  # PUT_ASYMMETRIC_KEY
    0x46,  # GENERATE_ASYMMETRIC_KEY
    0x58,  # DELETE_OBJECT
    0x44,  # PUT_AUTHENTICATION_KEY
    0x4C,  # PUT_WRAP_KEY
    0x4F,  # SET_OPTION
    0x67,  # SET_LOG_INDEX
)


@dataclass(frozen=True, slots=True)
class PlannedObject:
    role: str  # "admin", "operator", "auditor", "signer" or "wrap"
    object_id: int
    object_type: OBJECT
    algorithm: ALGORITHM
    label: str
    capabilities: CAPABILITY
    delegated: CAPABILITY
    domains: int

    def describe(self) -> str:
        kind = "wrap key" if self.object_type == OBJECT.WRAP_KEY else "auth key"
        return (
            f"{kind} {self.object_id} {self.label!r}: capabilities {cap_names(self.capabilities)};"
            f" delegated {cap_names(self.delegated)}; domains {domain_list(self.domains)}"
        )


def cap_names(caps: int) -> str:
    if caps == 0:
        return "none"
    if caps & CAPABILITY.ALL == CAPABILITY.ALL:
        return "all"
    return ",".join(
        (c.name or "").lower().replace("_", "-")
        for c in CAPABILITY
        if c not in (CAPABILITY.NONE, CAPABILITY.ALL) and caps & c == c and bin(c).count("1") == 1
    )


def domain_list(domains: int) -> str:
    if domains == ALL_DOMAINS:
        return "all"
    return ",".join(str(i + 1) for i in range(16) if domains >> i & 1)


WRAP = PlannedObject(
    "wrap",
    WRAP_KEY_ID,
    OBJECT.WRAP_KEY,
    ALGORITHM.AES256_CCM_WRAP,
    "kms-wrap",
    CAPABILITY.EXPORT_WRAPPED | CAPABILITY.IMPORT_WRAPPED,
    VALIDATOR_KEY_CAPS,
    ALL_DOMAINS,
)

ROLES = (
    PlannedObject(
        "admin",
        2,
        OBJECT.AUTHENTICATION_KEY,
        ALGORITHM.AES128_YUBICO_AUTHENTICATION,
        "kms-admin",
        CAPABILITY.ALL,
        CAPABILITY.ALL,
        ALL_DOMAINS,
    ),
    PlannedObject(
        "operator",
        3,
        OBJECT.AUTHENTICATION_KEY,
        ALGORITHM.AES128_YUBICO_AUTHENTICATION,
        "kms-operator",
        CAPABILITY.GENERATE_ASYMMETRIC_KEY
        | CAPABILITY.PUT_ASYMMETRIC
        | CAPABILITY.EXPORT_WRAPPED
        | CAPABILITY.IMPORT_WRAPPED,
        VALIDATOR_KEY_CAPS,
        VALIDATOR_DOMAIN,
    ),
    PlannedObject(
        "signer",
        4,
        OBJECT.AUTHENTICATION_KEY,
        ALGORITHM.AES128_YUBICO_AUTHENTICATION,
        "kms-signer",
        CAPABILITY.SIGN_EDDSA,
        CAPABILITY.NONE,
        VALIDATOR_DOMAIN,
    ),
    PlannedObject(
        "auditor",
        5,
        OBJECT.AUTHENTICATION_KEY,
        ALGORITHM.AES128_YUBICO_AUTHENTICATION,
        "kms-auditor",
        CAPABILITY.GET_LOG_ENTRIES | CAPABILITY.GET_OPTION,
        CAPABILITY.NONE,
        ALL_DOMAINS,
    ),
)

ROLE_NAMES = tuple(r.role for r in ROLES)
PLAN = (WRAP, *ROLES)


def role(name: str) -> PlannedObject:
    for r in ROLES:
        if r.role == name:
            return r
    raise KeyError(name)
