"""The `[[providers.yubihsm]]`, `[[providers.softsign]]` and `[hsm]` sections.

Owns: one YubiHSM table -> YubiHsmProvider (adapter, auth key, password file or
inline password, keys), one softsign table -> SoftsignProvider, `[hsm]` ->
HsmPolicy, and the password-file check shared with `[shared_state]`. Never
opens a device or connector; the only files it reads are the secret files a
section names, and only when `check_files` is set.
"""

from __future__ import annotations

from pathlib import Path

from kms.config.addresses import connector_addr
from kms.config.model import (
    HsmPolicy,
    HttpAdapter,
    SoftsignProvider,
    UsbAdapter,
    YubiHsmKey,
    YubiHsmProvider,
)
from kms.config.schema import (
    HSM_SESSION_IDLE_LIMIT,
    KEY_TYPES,
    MAX_OBJECT_ID,
    MAX_SOFTSIGN_FILE,
    MIN_OBJECT_ID,
    OBJECT_ID,
    POLICIES,
    SOFT_FORMATS,
)
from kms.config.table import ParseContext, Table, is_serial
from kms.errors import KeyFileError
from kms.keyfile import read_secret_file

# --- [[providers.yubihsm]] -------------------------------------------------


def parse_yubihsm(ctx: ParseContext, t: Table) -> YubiHsmProvider:
    adapter_what = '{ type = "http", addr = "tcp://host:port" } or { type = "usb" }'
    raw = t.data.get("adapter")
    if not isinstance(raw, dict):
        t.expected("adapter", adapter_what)
    serial: str | None = None
    if t.has("serial_number"):
        serial = t.text("serial_number", "a device serial number (digits)", check=is_serial)
    adapter: HttpAdapter | UsbAdapter
    if raw.get("type") == "http":
        a = t.sub("adapter", ("type", "addr"), adapter_what)
        where = "tcp://host:port (the yubihsm-connector address)"
        hp = connector_addr(a.text("addr", where))
        if hp is None:
            a.expected("addr", where)
        adapter = HttpAdapter(hp[0], hp[1])
        name = f"{hp[0]}:{hp[1]}" if ":" not in hp[0] else f"[{hp[0]}]:{hp[1]}"
        if serial is not None:
            ctx.warn(t, "serial_number", "ignored with an http adapter (the connector picks)")
    elif raw.get("type") == "usb":
        a = t.sub("adapter", ("type", "timeout_ms", "serial_number"), adapter_what)
        if a.has("serial_number"):
            if serial is not None:
                a.fail("serial_number", "also set as serial_number; set it once")
            serial = a.text("serial_number", "a device serial number (digits)", check=is_serial)
        timeout_ms = a.optional_integer("timeout_ms", 1, 3_600_000, "milliseconds (> 0)")
        adapter = UsbAdapter(serial_number=serial, timeout_ms=timeout_ms)
        name = f"usb:{serial}" if serial else "usb"
    else:
        a = Table(ctx.file, t.section, raw, tuple(raw), "adapter.")
        a.expected("type", '"http" or "usb"')

    auth = t.sub(
        "auth",
        ("key", "password_file", "password"),
        "{ key = <auth key id>, password_file = <path> }",
    )
    auth_key = auth.integer("key", MIN_OBJECT_ID, MAX_OBJECT_ID, OBJECT_ID)
    password_file: Path | None = None
    password: str | None = None
    if auth.has("password_file") == auth.has("password"):
        auth.fail("password_file", "expected exactly one of password_file or password")
    if auth.has("password_file"):
        password_file = auth.path("password_file")
        if ctx.check_files:
            check_password_file(auth, password_file)
    else:
        password = auth.secret_text("password", "a non-empty password string (quoted)")
        ctx.warn(auth, "password", "password inline in the config; prefer password_file")

    keys: list[YubiHsmKey] = []
    for i, item in enumerate(t.array("keys", "a list of { chain_ids = [...], key = N }"), 1):
        k = Table(ctx.file, t.section, item, ("chain_ids", "key", "type"), f"keys[{i}].")
        key_type = k.choice("type", KEY_TYPES, default="consensus")
        if key_type == "account":
            ctx.warn(k, "type", "account keys are not used by kms (consensus only)")
        keys.append(
            YubiHsmKey(
                chain_ids=k.chain_ids("chain_ids"),
                key=k.integer("key", MIN_OBJECT_ID, MAX_OBJECT_ID, OBJECT_ID),
                key_type=key_type,
            )
        )
    if not keys:
        ctx.warn(t, "keys", "no keys listed; this device is not used")
    if t.has("connector_server"):
        t.sub("connector_server", ("laddr", "cli"), "a table { laddr = ... }")
        ctx.warn(t, "connector_server", "ignored: kms never listens (outbound-only zone)")
    return YubiHsmProvider(
        name=name,
        adapter=adapter,
        auth_key=auth_key,
        password_file=password_file,
        password=password,
        keys=tuple(keys),
    )


def check_password_file(auth: Table, path: Path) -> None:
    """The password file `auth.password_file` names must be private and not empty."""
    try:
        data = read_secret_file(path)
    except KeyFileError as e:
        auth.fail("password_file", str(e))
    if not data.strip():
        auth.fail("password_file", f"{path}: file is empty; expected the auth key password")


# --- [[providers.softsign]] ------------------------------------------------


def parse_softsign(ctx: ParseContext, t: Table) -> SoftsignProvider:
    key_type = t.choice("key_type", KEY_TYPES, default="consensus")
    if key_type == "account":
        ctx.warn(t, "key_type", "account keys are not used by kms (consensus only)")
    path = t.path("path")
    if ctx.check_files:
        try:
            read_secret_file(path, max_len=MAX_SOFTSIGN_FILE)
        except KeyFileError as e:
            t.fail("path", str(e))
    return SoftsignProvider(
        chain_ids=t.chain_ids("chain_ids"),
        key_type=key_type,
        key_format=t.choice("key_format", SOFT_FORMATS, default="base64"),
        path=path,
    )


# --- [hsm] ----------------------------------------------------------------------


def parse_hsm(ctx: ParseContext, t: Table) -> HsmPolicy:
    d = HsmPolicy()
    policy = HsmPolicy(
        policy=t.choice("policy", POLICIES, default=d.policy),
        health_interval=t.seconds("health_interval", d.health_interval),
        connect_timeout=t.seconds("connect_timeout", d.connect_timeout),
        request_timeout=t.seconds("request_timeout", d.request_timeout),
        hedge=t.boolean("hedge", d.hedge),
    )
    if policy.health_interval >= HSM_SESSION_IDLE_LIMIT:
        ctx.warn(
            t,
            "health_interval",
            f"{policy.health_interval:g} s is not below the device's"
            f" {HSM_SESSION_IDLE_LIMIT:g} s session idle limit; idle sessions will expire",
        )
    return policy
