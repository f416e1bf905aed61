"""The `[[chain]]` and `[[validator]]` sections: what to sign and for which node.

Owns: turning one `[[chain]]` table into a ChainConfig (chain ID, key format,
state file, audit log, raw-bytes policy, the refused state hook and consensus
key types) and one `[[validator]]` table into a ValidatorConfig (address,
identity key, protocol version). Never checks one section against another
(that is `kms.config.crosscheck`); the only files it reads are identity keys,
and only when `check_files` is set.
"""

from __future__ import annotations

import os
from pathlib import Path

from kms.config.addresses import VALIDATOR_ADDR_FORMS, noise_addr_problem, parse_validator_addr
from kms.config.model import ChainConfig, ValidatorConfig
from kms.config.schema import (
    AMINO_PROTOCOLS,
    CONSENSUS_KEY_TYPES,
    HEIGHT,
    MAX_UNIX_PATH,
    RAW_BYTES,
)
from kms.config.table import ParseContext, Table, valid_chain_id
from kms.errors import KeyFileError
from kms.identity import load_identity_key
from kms.privval.limits import MAX_CHAIN_ID_LEN, MAX_HEIGHT
from kms.privval.messages import Dialect
from kms.pubkey import KeyFormat, is_bech32_prefix

# --- [[chain]] -------------------------------------------------------------


def parse_chain(ctx: ParseContext, t: Table) -> ChainConfig:
    chain_id = t.text(
        "id", f"a chain ID (1 to {MAX_CHAIN_ID_LEN} printable characters)", check=valid_chain_id
    )
    key_format = _key_format(ctx, t)
    if t.has("state_file"):
        state_file = t.path("state_file")
    else:
        state_file = t.base / f"{chain_id}_priv_validator_state.json"
        ctx.warn(t, "state_file", f"not set; using {state_file} (tmkms's default name)")
    if t.has("state_hook"):
        _state_hook(ctx, t)
    audit_log = t.optional_path("audit_log")
    if audit_log is not None and ctx.check_files and not audit_log.parent.is_dir():
        t.fail(
            "audit_log",
            f"directory {audit_log.parent} does not exist; create it"
            f" (mkdir -m 700 {audit_log.parent}) or change audit_log",
        )
    _chain_key_type(t)
    return ChainConfig(
        id=chain_id,
        key_format=key_format,
        state_file=state_file,
        sign_extensions=t.boolean("sign_extensions", True),
        max_height=t.optional_integer("max_height", 1, MAX_HEIGHT, HEIGHT, strings=True),
        audit_log=audit_log,
        raw_bytes=t.choice("raw_bytes", RAW_BYTES, default="off"),
        shared_state=t.boolean("shared_state", True),
    )


def _chain_key_type(t: Table) -> None:
    """`key_type` of the chain's consensus key: only "ed25519" is accepted."""
    if not t.has("key_type"):
        return
    what = "ed25519 (kms signs Ed25519 consensus keys only)"
    key_type = t.text("key_type", what)
    if key_type == "ed25519":
        return
    if key_type in CONSENSUS_KEY_TYPES:
        t.fail(
            "key_type",
            f"{key_type} consensus keys are not supported: kms signs Ed25519 only"
            " (refusing to start rather than serve this chain)",
        )
    t.expected("key_type", what)


def _key_format(ctx: ParseContext, t: Table) -> KeyFormat:
    what = (
        'a table such as { type = "bech32", account_key_prefix = "cosmospub",'
        ' consensus_key_prefix = "cosmosvalconspub" }'
    )
    raw = t.data.get("key_format")
    if not isinstance(raw, dict):
        t.expected("key_format", what)
    kind = raw.get("type")
    if kind == "bech32":
        kf = t.sub("key_format", ("type", "account_key_prefix", "consensus_key_prefix"), what)
        prefix = "a bech32 prefix (lower-case letters and digits)"
        return KeyFormat(
            "bech32",
            kf.text("account_key_prefix", prefix, check=is_bech32_prefix),
            kf.text("consensus_key_prefix", prefix, check=is_bech32_prefix),
        )
    if kind in ("cosmos-json", "hex"):
        t.sub("key_format", ("type",), what)
        return KeyFormat("cosmos-json" if kind == "cosmos-json" else "hex")
    kf = Table(ctx.file, t.section, raw, tuple(raw), "key_format.")
    kf.expected("type", '"bech32", "cosmos-json" or "hex"')


def _state_hook(ctx: ParseContext, t: Table) -> None:
    hook = t.sub("state_hook", ("cmd", "timeout_secs", "fail_closed"), "a table { cmd = [...] }")
    if hook.boolean("fail_closed", False):
        t.fail(
            "state_hook",
            "kms does not run state hooks and this one has fail_closed = true; carry the"
            " watermark with `kms state set` / `kms state import`, then remove state_hook",
        )
    ctx.warn(t, "state_hook", "ignored: kms does not run state hooks (fail_closed = false)")


# --- [[validator]] ---------------------------------------------------------


def parse_validator(ctx: ParseContext, t: Table) -> ValidatorConfig:
    chain_id = t.text("chain_id", "a chain ID", check=valid_chain_id)
    addr_text = t.text("addr", VALIDATOR_ADDR_FORMS)
    addr = parse_validator_addr(addr_text)
    if addr is None:
        problem = noise_addr_problem(addr_text)
        if problem is not None:
            t.fail("addr", problem)
        t.expected("addr", VALIDATOR_ADDR_FORMS)
    if addr.path is not None and len(os.fsencode(addr.path)) > MAX_UNIX_PATH:
        t.fail(
            "addr",
            f"the socket path is {len(os.fsencode(addr.path))} bytes; a unix socket path"
            f" can be at most {MAX_UNIX_PATH} bytes: use a shorter path (on the node too)",
        )
    secret_key: Path | None = t.optional_path("secret_key")
    if addr.scheme in ("tcp", "noise"):
        if secret_key is None:
            t.fail(
                "secret_key",
                f"missing; a {addr.scheme}:// validator needs an identity key file"
                " (create one with `kms init`)",
            )
        if ctx.check_files:
            try:
                load_identity_key(secret_key)
            except KeyFileError as e:
                t.fail("secret_key", str(e))
    elif secret_key is not None:
        ctx.warn(t, "secret_key", "ignored for a unix:// validator")
        secret_key = None
    ctx.validator_max_height.append(
        t.optional_integer("max_height", 1, MAX_HEIGHT, HEIGHT, strings=True)
    )
    dialect = Dialect.V0_38
    if t.has("protocol_version"):
        what = "one of " + ", ".join(f'"{d.value}"' for d in Dialect)
        version = t.text("protocol_version", what)
        if version.strip().lower() in AMINO_PROTOCOLS:
            t.fail(
                "protocol_version",
                f"{version!r} is an amino-era protocol (Tendermint v0.33 and older), which kms"
                f" does not speak; expected {what} (the node's CometBFT version)",
            )
        try:
            dialect = Dialect.parse(version)
        except ValueError:
            t.expected("protocol_version", what)
    if addr.scheme == "noise" and dialect is not Dialect.V0_40:
        t.fail(
            "protocol_version",
            f"{dialect.value} with a noise:// address: noise:// is CometBFT v0.40's"
            ' transport; set protocol_version = "v0.40"',
        )
    return ValidatorConfig(
        chain_id=chain_id,
        addr=addr_text,
        scheme=addr.scheme,
        host=addr.host,
        port=addr.port,
        peer_id=addr.peer_id,
        path=addr.path,
        secret_key=secret_key,
        protocol_version=dialect,
        reconnect=t.boolean("reconnect", True),
        timeout=t.seconds("timeout", 5.0),
    )
