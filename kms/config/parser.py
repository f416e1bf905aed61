"""A parsed TOML document -> Config: the order in which sections are read.

Owns: the top-level layout (which sections exist, which tmkms sections and
providers are refused), reading each section with its parser in a fixed order
(chains, validators, YubiHSMs, softsign keys, [hsm], [metrics], [shared_state];
warnings come out in that order) and running the cross-checks. Never reads a
value itself: the section modules do.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from kms.config.chain_section import parse_chain, parse_validator
from kms.config.crosscheck import cross_check
from kms.config.model import Config
from kms.config.provider_section import parse_hsm, parse_softsign, parse_yubihsm
from kms.config.schema import (
    ARRAY_OF,
    CHAIN_KEYS,
    HSM_KEYS,
    METRICS_KEYS,
    PROVIDER_KEYS,
    PROVIDER_UNSUPPORTED,
    SHARED_KEYS,
    SOFTSIGN_KEYS,
    TOP_KEYS,
    TOP_UNSUPPORTED,
    VALIDATOR_KEYS,
    YUBIHSM_KEYS,
)
from kms.config.service_section import parse_metrics, parse_shared_state
from kms.config.table import ParseContext, Table


def parse_document(doc: Mapping[str, object], file: Path, *, check_files: bool) -> Config:
    """Every section of `doc` (read from `file`), checked on its own and across sections."""
    ctx = ParseContext(file, check_files)
    top = Table(file, "top level", doc, TOP_KEYS, unsupported=TOP_UNSUPPORTED)
    chain_tables = _sections(ctx, top, "chain", "[[chain]]", CHAIN_KEYS)
    validator_tables = _sections(ctx, top, "validator", "[[validator]]", VALIDATOR_KEYS)
    providers = _single(ctx, top, "providers", PROVIDER_KEYS, PROVIDER_UNSUPPORTED)
    yubihsm_tables = _sections(ctx, providers, "yubihsm", "[[providers.yubihsm]]", YUBIHSM_KEYS)
    softsign_tables = _sections(ctx, providers, "softsign", "[[providers.softsign]]", SOFTSIGN_KEYS)

    chains = [(parse_chain(ctx, t), t) for t in chain_tables]
    validators = [(parse_validator(ctx, t), t) for t in validator_tables]
    yubihsm = [(parse_yubihsm(ctx, t), t) for t in yubihsm_tables]
    softsign = [(parse_softsign(ctx, t), t) for t in softsign_tables]
    hsm = parse_hsm(ctx, _single(ctx, top, "hsm", HSM_KEYS))
    metrics = parse_metrics(ctx, _single(ctx, top, "metrics", METRICS_KEYS))
    shared = None
    if top.has("shared_state"):
        shared = parse_shared_state(ctx, _single(ctx, top, "shared_state", SHARED_KEYS))

    chains = cross_check(ctx, chains, validators, yubihsm, softsign)
    if not chains:
        ctx.warn(top, "chain", "no [[chain]] sections: kms has nothing to sign")
    return Config(
        path=file,
        chains=tuple(c for c, _ in chains),
        validators=tuple(v for v, _ in validators),
        yubihsm=tuple(y for y, _ in yubihsm),
        softsign=tuple(s for s, _ in softsign),
        hsm=hsm,
        metrics=metrics,
        warnings=tuple(ctx.warnings),
        shared_state=shared,
    )


def _sections(
    ctx: ParseContext, parent: Table, key: str, label: str, allowed: tuple[str, ...]
) -> list[Table]:
    items = parent.array(key, ARRAY_OF.format(label.strip("[]")))
    return [Table(ctx.file, f"{label} #{i}", item, allowed) for i, item in enumerate(items, 1)]


def _single(
    ctx: ParseContext,
    top: Table,
    key: str,
    allowed: tuple[str, ...],
    unsupported: Mapping[str, str] | None = None,
) -> Table:
    data = top.data.get(key, {})
    if not isinstance(data, dict):
        top.expected(key, f"a [{key}] table")
    return Table(ctx.file, f"[{key}]", data, allowed, unsupported=unsupported)
