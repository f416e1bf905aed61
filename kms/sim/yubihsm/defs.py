"""Wire constants of the YubiHSM2 as the simulator uses them.

Owns: command, error, object-type, algorithm, capability, option and origin
numbers (values as in Yubico's `yubihsm.defs`, 3.1.2), and the small tables the
device consults (which capability a command needs, which capability deletes a
type, key sizes per algorithm). Never touches I/O or state. The simulator does
not import the `yubihsm` library at run time: the library is the client under
test, so the device keeps its own copy of the numbers.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final


class Cmd(IntEnum):
    ECHO = 0x01
    CREATE_SESSION = 0x03
    AUTHENTICATE_SESSION = 0x04
    SESSION_MESSAGE = 0x05
    DEVICE_INFO = 0x06
    RESET_DEVICE = 0x08
    CLOSE_SESSION = 0x40
    GET_STORAGE_INFO = 0x41
    PUT_OPAQUE = 0x42
    GET_OPAQUE = 0x43
    PUT_AUTHENTICATION_KEY = 0x44
    PUT_ASYMMETRIC_KEY = 0x45
    GENERATE_ASYMMETRIC_KEY = 0x46
    LIST_OBJECTS = 0x48
    EXPORT_WRAPPED = 0x4A
    IMPORT_WRAPPED = 0x4B
    PUT_WRAP_KEY = 0x4C
    GET_LOG_ENTRIES = 0x4D
    GET_OBJECT_INFO = 0x4E
    SET_OPTION = 0x4F
    GET_OPTION = 0x50
    GET_PSEUDO_RANDOM = 0x51
    GET_PUBLIC_KEY = 0x54
    DELETE_OBJECT = 0x58
    GENERATE_WRAP_KEY = 0x5B
    SET_LOG_INDEX = 0x67
    SIGN_EDDSA = 0x6A
    CHANGE_AUTHENTICATION_KEY = 0x6C
    ERROR = 0x7F


class Err(IntEnum):
    OK = 0x00
    INVALID_COMMAND = 0x01
    INVALID_DATA = 0x02
    INVALID_SESSION = 0x03
    AUTHENTICATION_FAILED = 0x04
    SESSIONS_FULL = 0x05
    SESSION_FAILED = 0x06
    STORAGE_FAILED = 0x07
    WRONG_LENGTH = 0x08
    INSUFFICIENT_PERMISSIONS = 0x09
    LOG_FULL = 0x0A
    OBJECT_NOT_FOUND = 0x0B
    INVALID_ID = 0x0C
    SSH_CA_CONSTRAINT_VIOLATION = 0x0E
    INVALID_OTP = 0x0F
    DEMO_MODE = 0x10
    OBJECT_EXISTS = 0x11
    ALGORITHM_DISABLED = 0x12
    COMMAND_UNEXECUTED = 0xFF


class ObjType(IntEnum):
    OPAQUE = 0x01
    AUTHENTICATION_KEY = 0x02
    ASYMMETRIC_KEY = 0x03
    WRAP_KEY = 0x04
    HMAC_KEY = 0x05
    TEMPLATE = 0x06
    OTP_AEAD_KEY = 0x07
    SYMMETRIC_KEY = 0x08
    PUBLIC_WRAP_KEY = 0x09


class Alg(IntEnum):
    AES128_CCM_WRAP = 29
    OPAQUE_DATA = 30
    OPAQUE_X509_CERTIFICATE = 31
    AES128_YUBICO_AUTHENTICATION = 38
    AES192_CCM_WRAP = 41
    AES256_CCM_WRAP = 42
    EC_ED25519 = 46


class Option(IntEnum):
    FORCE_AUDIT = 0x01
    COMMAND_AUDIT = 0x03
    ALGORITHM_TOGGLE = 0x04
    FIPS_MODE = 0x05


class Audit(IntEnum):
    OFF = 0
    ON = 1
    FIXED = 2


class Origin(IntEnum):
    GENERATED = 0x01
    IMPORTED = 0x02
    IMPORTED_WRAPPED = 0x10


class Cap:
    """Capability bits (64-bit mask, big-endian on the wire)."""

    GET_OPAQUE: Final = 1 << 0x00
    PUT_OPAQUE: Final = 1 << 0x01
    PUT_AUTHENTICATION_KEY: Final = 1 << 0x02
    PUT_ASYMMETRIC: Final = 1 << 0x03
    GENERATE_ASYMMETRIC_KEY: Final = 1 << 0x04
    SIGN_EDDSA: Final = 1 << 0x08
    EXPORT_WRAPPED: Final = 1 << 0x0C
    IMPORT_WRAPPED: Final = 1 << 0x0D
    PUT_WRAP_KEY: Final = 1 << 0x0E
    GENERATE_WRAP_KEY: Final = 1 << 0x0F
    EXPORTABLE_UNDER_WRAP: Final = 1 << 0x10
    SET_OPTION: Final = 1 << 0x11
    GET_OPTION: Final = 1 << 0x12
    GET_PSEUDO_RANDOM: Final = 1 << 0x13
    GET_LOG_ENTRIES: Final = 1 << 0x18
    RESET_DEVICE: Final = 1 << 0x1C
    DELETE_OPAQUE: Final = 1 << 0x27
    DELETE_AUTHENTICATION_KEY: Final = 1 << 0x28
    DELETE_ASYMMETRIC_KEY: Final = 1 << 0x29
    DELETE_WRAP_KEY: Final = 1 << 0x2A
    DELETE_HMAC_KEY: Final = 1 << 0x2B
    DELETE_TEMPLATE: Final = 1 << 0x2C
    DELETE_OTP_AEAD_KEY: Final = 1 << 0x2D
    CHANGE_AUTHENTICATION_KEY: Final = 1 << 0x2E
    DELETE_SYMMETRIC_KEY: Final = 1 << 0x31
    PUBLIC_WRAP_KEY_DELETE: Final = 1 << 0x37
    ALL: Final = (1 << 0x38) - 1  # bits 0..0x37, as yubihsm.defs.CAPABILITY.ALL


# Capability the *session* needs before a command runs (0: none needed).
SESSION_CAPABILITY: Final[dict[int, int]] = {
    Cmd.PUT_OPAQUE: Cap.PUT_OPAQUE,
    Cmd.GET_OPAQUE: Cap.GET_OPAQUE,
    Cmd.PUT_AUTHENTICATION_KEY: Cap.PUT_AUTHENTICATION_KEY,
    Cmd.PUT_ASYMMETRIC_KEY: Cap.PUT_ASYMMETRIC,
    Cmd.GENERATE_ASYMMETRIC_KEY: Cap.GENERATE_ASYMMETRIC_KEY,
    Cmd.SIGN_EDDSA: Cap.SIGN_EDDSA,
    Cmd.EXPORT_WRAPPED: Cap.EXPORT_WRAPPED,
    Cmd.IMPORT_WRAPPED: Cap.IMPORT_WRAPPED,
    Cmd.PUT_WRAP_KEY: Cap.PUT_WRAP_KEY,
    Cmd.GENERATE_WRAP_KEY: Cap.GENERATE_WRAP_KEY,
    Cmd.SET_OPTION: Cap.SET_OPTION,
    Cmd.GET_OPTION: Cap.GET_OPTION,
    Cmd.GET_PSEUDO_RANDOM: Cap.GET_PSEUDO_RANDOM,
    Cmd.GET_LOG_ENTRIES: Cap.GET_LOG_ENTRIES,
    Cmd.SET_LOG_INDEX: Cap.GET_LOG_ENTRIES,
    Cmd.RESET_DEVICE: Cap.RESET_DEVICE,
    Cmd.CHANGE_AUTHENTICATION_KEY: Cap.CHANGE_AUTHENTICATION_KEY,
}

# DELETE_OBJECT: the session capability needed per object type.
DELETE_CAPABILITY: Final[dict[int, int]] = {
    ObjType.OPAQUE: Cap.DELETE_OPAQUE,
    ObjType.AUTHENTICATION_KEY: Cap.DELETE_AUTHENTICATION_KEY,
    ObjType.ASYMMETRIC_KEY: Cap.DELETE_ASYMMETRIC_KEY,
    ObjType.WRAP_KEY: Cap.DELETE_WRAP_KEY,
    ObjType.HMAC_KEY: Cap.DELETE_HMAC_KEY,
    ObjType.TEMPLATE: Cap.DELETE_TEMPLATE,
    ObjType.OTP_AEAD_KEY: Cap.DELETE_OTP_AEAD_KEY,
    ObjType.SYMMETRIC_KEY: Cap.DELETE_SYMMETRIC_KEY,
    ObjType.PUBLIC_WRAP_KEY: Cap.PUBLIC_WRAP_KEY_DELETE,
}

WRAP_KEY_LENGTHS: Final[dict[int, int]] = {
    Alg.AES128_CCM_WRAP: 16,
    Alg.AES192_CCM_WRAP: 24,
    Alg.AES256_CCM_WRAP: 32,
}

# Algorithms advertised by DEVICE_INFO: 1..55, every value yubihsm 3.1.2 knows, so the
# library parses them all as known enum members.
ADVERTISED_ALGORITHMS: Final[tuple[int, ...]] = tuple(range(1, 56))

# Every command code yubihsm 3.1.2 knows (0x40..0x77 are contiguous there).
LIBRARY_COMMANDS: Final[tuple[int, ...]] = (
    0x01,
    0x03,
    0x04,
    0x05,
    0x06,
    0x08,
    0x0A,
    *range(0x40, 0x78),
)
# Commands whose audit setting can be changed; upstream device tests skip exactly these
# five when they turn auditing on for "all" commands [TEST tests/device/test_logs.py].
AUDITABLE_COMMANDS: Final[tuple[int, ...]] = tuple(
    c
    for c in LIBRARY_COMMANDS
    if c not in (Cmd.ERROR, Cmd.DEVICE_INFO, Cmd.GET_LOG_ENTRIES, Cmd.ECHO, Cmd.SESSION_MESSAGE)
)

LABEL_LENGTH: Final = 40
MAX_SESSIONS: Final = 16
SESSION_TIMEOUT_S: Final = 30.0
LOG_CAPACITY: Final = 62
DEFAULT_AUTH_KEY_ID: Final = 1
DEFAULT_AUTH_LABEL: Final = "DEFAULT AUTHKEY CHANGE THIS ASAP"
DEFAULT_PASSWORD: Final = "password"
MIN_ID: Final = 0x0001
MAX_ID: Final = 0xFFFE
# GET_STORAGE_INFO: a YubiHSM2 has 256 object records and 1024 pages of 126 bytes [DOC]
STORAGE_RECORDS: Final = 256
STORAGE_PAGES: Final = 1024
STORAGE_PAGE_SIZE: Final = 126
