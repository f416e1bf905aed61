"""`kms init [DIR]`: a new kms home with a config skeleton, an identity key and state/.

Owns: the layout of a fresh kms home and the config skeleton written there.
Never touches HSMs (keys inside devices come from `kms keygen` / `kms import`)
and never overwrites anything: if any file it would write exists, it refuses
before writing a single byte.

Layout (paths in the config are relative to DIR, so the home can be moved)::

    DIR/                    0700
      tmkms.toml            0600  the config; fill in the validator address
      secrets/              0700
        kms-identity.key    0600  SecretConnection identity (Base64 Ed25519 seed, tmkms format)
        <chain>-consensus.key     with --softsign: a new software consensus key
      state/                0700
        <chain>.json              with --fresh-state: height 0, created on purpose
      audit/                0700  the audit log the skeleton enables (one JSON line per signature)

The bech32 prefixes in `key_format` come from the known-chains table (kms.chains);
for a chain it does not know, --account-prefix and --consensus-prefix are required.
With --softsign the new key's public key is printed in every form `create-validator`
and `show-validator` use.

Without --fresh-state there is no state file, and `kms start` refuses the chain
until the operator creates one (`kms state import` / `kms state set`): a fresh
watermark is a decision, never a default.
"""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

import click

from kms.chains import (
    KNOWN_CHAINS,
    Bech32Prefixes,
    known_prefixes,
    public_key_forms,
    render_forms,
)
from kms.config import KeyFormat
from kms.errors import InitError
from kms.identity import identity_public_key, load_identity_key, write_identity_key
from kms.keyfile import decode_base64_key, read_secret_file, write_secret_file
from kms.noise.peerid import peer_id_from_ed25519
from kms.pubkey import is_bech32_prefix, public_key_from_seed

CONFIG_NAME = "tmkms.toml"
IDENTITY_KEY = Path("secrets") / "kms-identity.key"
DEFAULT_CHAIN_ID = "cosmoshub-4"
VALIDATOR_ADDR_PLACEHOLDER = "tcp://<validator-host>:26658"
_SAFE_CHAIN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,49}")


@dataclass(frozen=True, slots=True)
class InitPlan:
    """What `kms init` will create, decided before anything is written."""

    home: Path
    chain_id: str
    softsign: bool
    fresh_state: bool
    prefixes: Bech32Prefixes = KNOWN_CHAINS["cosmoshub"]

    @property
    def config(self) -> Path:
        return self.home / CONFIG_NAME

    @property
    def identity_key(self) -> Path:
        return self.home / IDENTITY_KEY

    @property
    def softsign_key(self) -> Path:
        return self.home / "secrets" / f"{self.chain_id}-consensus.key"

    @property
    def state_file(self) -> Path:
        return self.home / "state" / f"{self.chain_id}.json"

    @property
    def files(self) -> tuple[Path, ...]:
        out = [self.config, self.identity_key]
        if self.softsign:
            out.append(self.softsign_key)
        if self.fresh_state:
            out.append(self.state_file)
        return tuple(out)


_CONFIG_TEMPLATE = """\
# kms configuration (tmkms format), written by `kms init`.
# Relative paths are resolved against the directory of this file.
# Every option is explained in tmkms.toml.example in the kms sources.
#
# Before `kms start -c {config}`:
#   1. set [[validator]] addr to the node's priv_validator_laddr (one section per node);
{steps}
## Chains ####################################################################

[[chain]]
id = "{chain_id}"
key_format = {{ type = "bech32", account_key_prefix = "{account_prefix}", consensus_key_prefix = "{consensus_prefix}" }}  # or {{ type = "cosmos-json" }} | {{ type = "hex" }}
state_file = "state/{chain_id}.json"
sign_extensions = true          # sign vote extensions of non-nil precommits (v0.38+, v1)
# max_height = "25000000"       # refuse to sign above this height (planned hand-over)
audit_log = "audit/{chain_id}.jsonl"     # one JSON line per signature, refusal or error

## Validator nodes (kms dials out to each) ###################################

[[validator]]
chain_id = "{chain_id}"
addr = "{placeholder}"   # FILL IN: tcp://[<node-id>@]host:port, unix:///path or noise://<node-peer-id>@ip:port (v0.40)
secret_key = "{identity}"
protocol_version = "v0.38"      # v0.34 | v0.37 | v0.38 (also v0.39) | v0.40 | v1 | celestia
reconnect = true
timeout = 5                     # seconds, read/write deadline

## Signing key ###############################################################

{provider}
# [hsm]
# policy = "spread"             # spread | primary
# health_interval = 10          # seconds

# [metrics]
# textfile = "/var/lib/node_exporter/textfile/kms.prom"
# listen = "127.0.0.1:9464"     # loopback only
"""

_YUBIHSM_PROVIDER = """\
[[providers.yubihsm]]           # add one section per replica device holding the same key
adapter = {{ type = "http", addr = "tcp://127.0.0.1:12345" }}   # yubihsm-connector; or {{ type = "usb", serial_number = "0123456789" }}
auth = {{ key = 1, password_file = "secrets/hsm-password" }}
keys = [{{ chain_ids = ["{chain_id}"], key = 1 }}]
"""

_SOFTSIGN_PROVIDER = """\
[[providers.softsign]]          # a key file: for testnets; prefer YubiHSM2 for real value
chain_ids = ["{chain_id}"]
key_type = "consensus"
key_format = "base64"           # or "json" (priv_validator_key.json)
path = "secrets/{chain_id}-consensus.key"
"""


def render_config(plan: InitPlan) -> str:
    """The config skeleton text for `plan` (pure)."""
    steps: list[str] = []
    if plan.softsign:
        provider = _SOFTSIGN_PROVIDER.format(chain_id=plan.chain_id)
    else:
        provider = _YUBIHSM_PROVIDER.format(chain_id=plan.chain_id)
        steps.append(
            "#   2. write the HSM auth key password to secrets/hsm-password (chmod 600) and"
            " set the connector address;"
        )
        steps.append("#   3. put the consensus key in the HSM (`kms keygen` or `kms import`);")
    if not plan.fresh_state:
        steps.append(
            f"#   {len(steps) + 2}. create state/{plan.chain_id}.json on purpose"
            " (`kms state import` / `kms state set`)."
        )
    return _CONFIG_TEMPLATE.format(
        config=plan.config,
        steps="".join(s + "\n" for s in steps),
        chain_id=plan.chain_id,
        placeholder=VALIDATOR_ADDR_PLACEHOLDER,
        identity=IDENTITY_KEY.as_posix(),
        provider=provider,
        account_prefix=plan.prefixes.account,
        consensus_prefix=plan.prefixes.consensus,
    )


def _make_private_dir(path: Path, notes: list[str]) -> None:
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        if not path.is_dir():
            raise InitError(f"{path} exists and is not a directory") from None
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            notes.append(f"note: {path} has permissions {mode:04o}; consider chmod 700 {path}")
    except OSError as e:
        raise InitError(f"cannot create {path}: {e.strerror or e}") from None


def _write_fresh_state(path: Path) -> None:
    """Height 0, created on purpose: through the state store when it is available."""
    try:
        from kms.state.machine import SignState
        from kms.state.store import StateStore
    except ImportError:
        doc = {"height": "0", "round": "0", "step": 0, "block_id": None}
        write_secret_file(path, json.dumps(doc).encode() + b"\n")
        return
    StateStore.create(path, SignState.initial())


def run_init(plan: InitPlan) -> list[str]:
    """Create the home described by `plan`; return notes for the operator.

    Refuses (InitError) if any file it would write exists; nothing is written then.
    """
    if _SAFE_CHAIN_ID.fullmatch(plan.chain_id) is None:
        raise click.BadParameter(
            f"chain ID {plan.chain_id!r}: expected 1-50 characters from A-Z a-z 0-9 . _ -"
            " (it names files)",
            param_hint="'--chain-id'",
        )
    existing = [p for p in plan.files if os.path.lexists(p)]
    if existing:
        raise InitError(
            "refusing to overwrite existing files: " + ", ".join(str(p) for p in existing)
        )
    notes: list[str] = []
    if not plan.home.exists():
        try:
            plan.home.mkdir(mode=0o700, parents=True)
        except OSError as e:
            raise InitError(f"cannot create {plan.home}: {e.strerror or e}") from None
    else:
        _make_private_dir(plan.home, notes)
    _make_private_dir(plan.home / "secrets", notes)
    _make_private_dir(plan.home / "state", notes)
    _make_private_dir(plan.home / "audit", notes)
    write_identity_key(plan.identity_key)
    if plan.softsign:
        write_identity_key(plan.softsign_key)  # same format: Base64 of a 32-byte seed
    if plan.fresh_state:
        _write_fresh_state(plan.state_file)
    write_secret_file(plan.config, render_config(plan).encode())
    return notes


@click.command("init")
@click.argument(
    "home", required=False, default=".", type=click.Path(file_okay=False, path_type=Path)
)
@click.option(
    "--chain-id", default=None, help=f"Chain ID to configure (default {DEFAULT_CHAIN_ID})."
)
@click.option(
    "--fresh-state",
    is_flag=True,
    help="Create the chain's state file at height 0 (only for a key that has never signed).",
)
@click.option(
    "--softsign", is_flag=True, help="Generate a software consensus key instead of using YubiHSM2."
)
@click.option(
    "--account-prefix",
    default=None,
    help="Bech32 prefix of account public keys, e.g. osmopub (default: from the known chains).",
)
@click.option(
    "--consensus-prefix",
    default=None,
    help="Bech32 prefix of consensus public keys, e.g. osmovalconspub (default: known chains).",
)
def init(
    home: Path,
    chain_id: str | None,
    fresh_state: bool,
    softsign: bool,
    account_prefix: str | None,
    consensus_prefix: str | None,
) -> None:
    """Create a kms home: config skeleton, identity key (0600), secrets/, state/, audit/ (0700)."""
    if fresh_state and chain_id is None:
        raise click.UsageError("--fresh-state needs an explicit --chain-id")
    chain = chain_id or DEFAULT_CHAIN_ID
    plan = InitPlan(
        home=home,
        chain_id=chain,
        softsign=softsign,
        fresh_state=fresh_state,
        prefixes=_prefixes(chain, account_prefix, consensus_prefix),
    )
    notes = run_init(plan)
    for f in plan.files:
        click.echo(f"created {f}")
    pub = identity_public_key(load_identity_key(plan.identity_key))
    click.echo(f"kms libp2p peer ID (for noise:// on CometBFT v0.40): {peer_id_from_ed25519(pub)}")
    for n in notes:
        click.echo(n, err=True)
    if plan.softsign:
        seed = _read_seed(plan.softsign_key)
        fmt = KeyFormat("bech32", plan.prefixes.account, plan.prefixes.consensus)
        click.echo(f"consensus key of {plan.chain_id} (software key {plan.softsign_key}):")
        for line in render_forms(public_key_forms(public_key_from_seed(seed), fmt), "  "):
            click.echo(line)
    click.echo(
        f"next: edit {plan.config} (see the steps at its top), then kms start -c {plan.config}"
    )


def _prefixes(chain_id: str, account: str | None, consensus: str | None) -> Bech32Prefixes:
    """The chain's bech32 prefixes: the flags, else the known-chains table, else a usage error."""
    for flag, value in (("--account-prefix", account), ("--consensus-prefix", consensus)):
        if value is not None and not is_bech32_prefix(value):
            raise click.BadParameter(
                f"{value!r}: expected a bech32 prefix (lower-case letters and digits)",
                param_hint=f"'{flag}'",
            )
    known = known_prefixes(chain_id)
    if account is not None and consensus is not None:
        return Bech32Prefixes(account, consensus)
    if known is None:
        raise click.UsageError(
            f"chain {chain_id!r} is not in kms's table of known chains: give its bech32 prefixes"
            " with --account-prefix and --consensus-prefix (e.g. osmopub and osmovalconspub)"
        )
    return Bech32Prefixes(account or known.account, consensus or known.consensus)


def _read_seed(path: Path) -> bytes:
    return decode_base64_key(path, read_secret_file(path))[:32]
