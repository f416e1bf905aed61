"""Precommit-with-extension latency on `kms hsm-sim` replicas at YubiHSM2-like latency.

Owns: one scenario: a chain whose signer is built from a config exactly as the
daemon builds it (bench.hsm's fleet and config helpers), a real double-sign
guard on a state file, and the real `SignService`, asked for one non-nil
precommit with a vote extension per height (v0.38 dialect), one at a time.
Measures the service's answer time (guard + both signatures + durable write)
with 3 replicas (vote and extension signed at once on two devices) and with 1
replica (one after the other: the reference). Never touches sockets or the
daemon process.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from bench.common import Section, summarize_ms
from bench.hsm import (
    SIGN_LATENCY_MS,
    close_signers,
    open_signers,
    provision_state,
    start_fleet,
    write_hsm_config,
)


async def _precommits(workdir: Path, template: Path, replicas: int, heights: int) -> dict[str, Any]:
    from kms.config import load_config
    from kms.privval.messages import (
        BlockID,
        Dialect,
        PartSetHeader,
        SignedMsgType,
        SignedVoteResponse,
        SignVoteRequest,
        Timestamp,
        Vote,
    )
    from kms.service import Chain, LinkInfo, SignService
    from kms.state.guard import ChainGuard
    from kms.state.machine import SignState
    from kms.state.store import StateStore

    chain_id = f"ext-bench-{replicas}"
    fleet = start_fleet(template, workdir, replicas, SIGN_LATENCY_MS, f"ext{replicas}")
    signers: dict[str, Any] = {}
    guard: ChainGuard | None = None
    try:
        cfg_path = write_hsm_config(workdir, fleet, [chain_id])
        config = load_config(cfg_path, check_files=False)
        chain_cfg = next(c for c in config.chains if c.id == chain_id)
        chain_cfg.state_file.parent.mkdir(parents=True, exist_ok=True)
        chain_cfg.state_file.unlink(missing_ok=True)
        StateStore.create(chain_cfg.state_file, SignState.initial())
        guard = ChainGuard.open(chain_cfg)
        signers = await open_signers(cfg_path)
        service = SignService({chain_id: Chain(chain_cfg, guard, signers[chain_id])})
        link = LinkInfo(chain_id, Dialect.V0_38, "bench")
        lat: list[float] = []
        errors: list[str] = []
        warm = 12  # every replica has a latency history (as after a minute of service)
        for h in range(1, warm + heights + 1):
            block = BlockID(os.urandom(32), PartSetHeader(1, os.urandom(32)))
            vote = Vote(
                type=SignedMsgType.PRECOMMIT,
                height=h,
                round=0,
                block_id=block,
                timestamp=Timestamp(int(time.time()), 0),
                validator_address=b"\x01" * 20,
                extension=b"vote-extension-" + os.urandom(16),
            )
            t0 = time.perf_counter()
            r = await service.handle(SignVoteRequest(vote, chain_id), link)
            elapsed = (time.perf_counter() - t0) * 1e3
            ok = (
                isinstance(r, SignedVoteResponse)
                and r.vote is not None
                and bool(r.vote.extension_signature)
            )
            if not ok:
                errors.append(str(getattr(r, "error", r))[:200])
            elif h > warm:
                lat.append(elapsed)
        s = summarize_ms(lat)
        return {"replicas": replicas, **s.as_dict(), "errors": errors[:3], "failed": len(errors)}
    finally:
        await close_signers(signers)
        if guard is not None:
            guard.close()
        fleet.stop()


async def run_extension(workdir: Path, quick: bool) -> Section:
    from nacl.signing import SigningKey

    workdir.mkdir(parents=True, exist_ok=True)
    template = workdir / "ext-template.json"
    provision_state(template, bytes(SigningKey.generate()))
    sec = Section("extension")
    heights = 15 if quick else 60
    for n in (3, 1):
        try:
            sec.data[str(n)] = await _precommits(workdir, template, n, heights)
        except Exception as e:
            sec.data[str(n)] = {"error": f"{type(e).__name__}: {e}"[:300]}
    sec.notes.append(
        f"extension: a non-nil precommit with a vote extension, one per height, through the "
        f"real SignService and guard (durable write included), signers built from a config "
        f"(policy spread) over kms hsm-sim replicas at {SIGN_LATENCY_MS:.0f} ms; 3 = vote and "
        f"extension signed at once on two devices, 1 = one after the other"
    )
    return sec
