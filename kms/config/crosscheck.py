"""Checks across sections, after each section parsed on its own.

Owns: the rules that need more than one table: every chain is defined once and
every validator, softsign key and YubiHSM key names a defined chain; no
validator address twice; one kind of consensus key per chain (one softsign key,
or YubiHSM replicas with the same key ID); a chain without a key is an error
when a validator serves it and a warning otherwise; `[[validator]] max_height`
folds into the chain's (the lowest wins). Never reads files or values itself:
it sees parsed objects and their tables (for naming the place in errors).
"""

from __future__ import annotations

import dataclasses

from kms.config.model import ChainConfig, SoftsignProvider, ValidatorConfig, YubiHsmProvider
from kms.config.table import ParseContext, Table


def cross_check(
    ctx: ParseContext,
    chains: list[tuple[ChainConfig, Table]],
    validators: list[tuple[ValidatorConfig, Table]],
    yubihsm: list[tuple[YubiHsmProvider, Table]],
    softsign: list[tuple[SoftsignProvider, Table]],
) -> list[tuple[ChainConfig, Table]]:
    known: dict[str, Table] = {}
    for c, t in chains:
        if c.id in known:
            t.fail("id", f"chain {c.id!r} is already defined in {known[c.id].section}")
        known[c.id] = t

    seen_addr: dict[str, str] = {}
    for v, t in validators:
        if v.chain_id not in known:
            t.fail("chain_id", f"no [[chain]] has id = {v.chain_id!r}")
        if v.addr in seen_addr:
            t.fail("addr", f"{v.addr!r} is already used by {seen_addr[v.addr]}")
        seen_addr[v.addr] = t.section

    soft_for: dict[str, str] = {}
    for s, t in softsign:
        for cid in s.chain_ids:
            if cid not in known:
                t.fail("chain_ids", f"no [[chain]] has id = {cid!r}")
            if s.key_type != "consensus":
                continue
            if cid in soft_for:
                t.fail("chain_ids", f"chain {cid!r} already has a softsign key in {soft_for[cid]}")
            soft_for[cid] = t.section

    hsm_for: dict[str, str] = {}
    devices: dict[str, str] = {}
    for y, t in yubihsm:
        if y.name in devices:
            t.fail("adapter", f"device {y.name} is already configured in {devices[y.name]}")
        devices[y.name] = t.section
        on_device: dict[str, int] = {}
        for i, k in enumerate(y.keys, 1):
            for cid in k.chain_ids:
                where = f"keys[{i}].chain_ids"
                if cid not in known:
                    t.fail(where, f"no [[chain]] has id = {cid!r}")
                if k.key_type != "consensus":
                    continue
                if cid in on_device and on_device[cid] != k.key:
                    t.fail(where, f"chain {cid!r} already uses key {on_device[cid]} on this device")
                if cid in soft_for:
                    mixed = (
                        f"chain {cid!r} also has a softsign key in {soft_for[cid]};"
                        " use one kind of key per chain"
                    )
                    if ctx.check_files:  # ready to run: which key signs must be clear
                        t.fail(where, mixed)
                    ctx.warn(t, where, mixed + " (`kms start` refuses this)")
                on_device[cid] = k.key
                hsm_for.setdefault(cid, t.section)

    served = {v.chain_id for v, _ in validators}
    out: list[tuple[ChainConfig, Table]] = []
    for c, t in chains:
        if c.id not in soft_for and c.id not in hsm_for:
            fix = (
                "add a [[providers.yubihsm]] key or a [[providers.softsign]] with this chain"
                " in chain_ids"
            )
            if c.id in served:
                t.fail("id", f"no consensus key serves chain {c.id!r}; {fix}")
            # tmkms allows spare chains: no key and no validator is harmless
            ctx.warn(t, "id", f"no consensus key serves chain {c.id!r}; it is ignored ({fix})")
            continue
        if c.id not in served:
            ctx.warn(t, "id", f"no [[validator]] serves chain {c.id!r}; it will not sign")
        caps = [c.max_height] if c.max_height is not None else []
        for (v, vt), vmax in zip(validators, ctx.validator_max_height, strict=True):
            if v.chain_id == c.id and vmax is not None:
                caps.append(vmax)
                ctx.warn(vt, "max_height", f"applies to the whole chain {c.id!r} in kms")
        if caps and min(caps) != c.max_height:
            c = dataclasses.replace(c, max_height=min(caps))
        out.append((c, t))
    return out
