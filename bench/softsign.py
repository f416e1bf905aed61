"""End-to-end softsign latency: simulated nodes -> TCP + SecretConnection -> a signer process.

Owns: writing a throw-away signer home (tmkms-format config, base64 consensus key,
identity key, state files), starting the signer as a real subprocess (`kms start
-c CONFIG`, or `tmkms start -c CONFIG` for the comparison), driving it from
`kms.sim.validator.SimulatedValidator` listeners in this process, and measuring:
request latency as the node sees it (request written -> signed reply decoded, the
node's signature check excluded), the signer's CPU time per answered request (from
/proc), its peak RSS, and errors. Never reads the signer's internals.

Load shapes:
- one chain, one link: heights back to back (proposal, prevote, precommit), one
  request in flight: pure per-request latency;
- N chains x 2 links: each chain plays one height per `block_time` with a random
  phase; both links of a chain (two nodes of one validator) send the same height
  concurrently with their own timestamps, so one is signed and the other answered
  from the stored signature (kms) or re-signed (tmkms).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bench.common import (
    Section,
    process_cpu_seconds,
    process_peak_rss_mb,
    public_key,
    summarize_ms,
    write_base64_seed,
)

Flavor = Literal["kms", "tmkms"]

DIALECT = "v0.38"


@dataclass(frozen=True, slots=True)
class Load:
    chains: int
    links: int
    heights: int | None = None  # back-to-back heights (closed loop), or
    duration: float | None = None  # seconds of paced heights
    block_time: float = 1.0
    warmup_heights: int = 20

    @property
    def label(self) -> str:
        return f"{self.chains}x{self.links}"


# --- the signer's home ------------------------------------------------------------------------


@dataclass
class Home:
    root: Path
    config: Path
    consensus_seed: bytes
    chain_ids: list[str]


def write_home(
    root: Path, flavor: Flavor, chain_ids: list[str], addrs: dict[str, list[str]]
) -> Home:
    """A tmkms-format config both signers read, plus keys and (for kms) state files."""
    if root.exists():
        shutil.rmtree(root)
    (root / "secrets").mkdir(parents=True, mode=0o700)
    (root / "state").mkdir(mode=0o700)
    seed = os.urandom(32)
    write_base64_seed(root / "secrets" / "consensus.key", seed)
    write_base64_seed(root / "secrets" / "kms-identity.key", os.urandom(32))
    lines: list[str] = []
    for cid in chain_ids:
        lines += [
            "[[chain]]",
            f'id = "{cid}"',
            'key_format = { type = "bech32", account_key_prefix = "cosmospub", '
            'consensus_key_prefix = "cosmosvalconspub" }',
            f'state_file = "{root / "state" / (cid + ".json")}"',
            "sign_extensions = true",
            "",
        ]
    lines += [
        "[[providers.softsign]]",
        "chain_ids = [" + ", ".join(f'"{c}"' for c in chain_ids) + "]",
        'key_type = "consensus"',
        f'path = "{root / "secrets" / "consensus.key"}"',
        "",
    ]
    for cid in chain_ids:
        for addr in addrs[cid]:
            lines += [
                "[[validator]]",
                f'chain_id = "{cid}"',
                f'addr = "{addr}"',
                f'secret_key = "{root / "secrets" / "kms-identity.key"}"',
                f'protocol_version = "{DIALECT}"',
                "reconnect = true",
                "",
            ]
    config = root / ("tmkms.toml" if flavor == "tmkms" else "kms.toml")
    config.write_text("\n".join(lines))
    if flavor == "kms":
        _create_kms_states(root, chain_ids)
    return Home(root, config, seed, chain_ids)


def _create_kms_states(root: Path, chain_ids: list[str]) -> None:
    # kms fails closed on a missing state file; create fresh ones on purpose
    from kms.state.machine import SignState
    from kms.state.store import StateStore

    for cid in chain_ids:
        StateStore.create(root / "state" / f"{cid}.json", SignState.initial())


# --- the signer process --------------------------------------------------------------------------


def signer_argv(flavor: Flavor, config: Path, profile: Path | None = None) -> list[str]:
    """The signer's command line; `profile` runs kms under cProfile (stats written at exit)."""
    if flavor == "kms":
        prof = ["-m", "cProfile", "-o", str(profile)] if profile is not None else []
        return [sys.executable, *prof, "-m", "kms", "start", "-c", str(config)]
    exe = shutil.which("tmkms") or str(Path.home() / ".cargo" / "bin" / "tmkms")
    return [exe, "start", "-c", str(config)]


def tmkms_path() -> str | None:
    exe = shutil.which("tmkms")
    if exe:
        return exe
    cand = Path.home() / ".cargo" / "bin" / "tmkms"
    return str(cand) if cand.is_file() and os.access(cand, os.X_OK) else None


class SignerProcess:
    """A signer subprocess with its output in a log file."""

    def __init__(self, argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.argv = argv
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.pid)

    def peak_rss_mb(self) -> float:
        return process_peak_rss_mb(self.pid)

    def log_tail(self, n: int = 15) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def stop(self, timeout: float = 8.0) -> int | None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                self.proc.wait(5)
        # the signer runs in its own session: end anything it (or a wrapper) left behind
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._log.close()
        return self.proc.returncode


# --- driving it ----------------------------------------------------------------------------------


@dataclass
class Tally:
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    examples: dict[str, str] = field(default_factory=dict)

    def error(self, e: BaseException) -> None:
        key = type(e).__name__
        self.errors[key] = self.errors.get(key, 0) + 1
        self.examples.setdefault(key, str(e)[:200])


async def _one_height(sim: Any, height: int, block: Any, tally: Tally) -> None:
    from kms.privval.messages import Proposal, SignedMsgType, Vote
    from kms.sim.validator import now_timestamp

    messages: list[Proposal | Vote] = [
        Proposal(SignedMsgType.PROPOSAL, height, 0, -1, block, now_timestamp())
    ]
    for kind in (SignedMsgType.PREVOTE, SignedMsgType.PRECOMMIT):
        messages.append(
            Vote(
                type=kind,
                height=height,
                round=0,
                block_id=block,
                timestamp=now_timestamp(),
                validator_address=b"\x01" * 20,
                validator_index=0,
                extension=b"bench" if kind == SignedMsgType.PRECOMMIT and sim.extensions else b"",
            )
        )
    for m in messages:
        try:
            if isinstance(m, Proposal):
                await sim.sign_proposal(m)
            else:
                await sim.sign_vote(m)
            tally.ok += 1
        except Exception as e:  # a refusal or a broken link: counted, the run goes on
            tally.error(e)


async def _drive_chain(
    sims: list[Any],
    heights: range,
    block_time: float,
    phase: float,
    tally: Tally,
    stop_at: float | None,
) -> None:
    from kms.sim.validator import random_block_id

    loop = asyncio.get_running_loop()
    start = loop.time() + phase
    for i, h in enumerate(heights):
        if block_time > 0:
            delay = start + i * block_time - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        if stop_at is not None and loop.time() >= stop_at:
            return
        block = random_block_id()
        await asyncio.gather(*(_one_height(s, h, block, tally) for s in sims))


def _latencies(sims: list[Any]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for s in sims:
        for kind, values in s.latencies.items():
            out.setdefault(kind, []).extend(values)
    return out


async def run_load(
    flavor: Flavor,
    load: Load,
    workdir: Path,
    *,
    connect_timeout: float = 60.0,
    profile: Path | None = None,
) -> dict[str, Any]:
    """Start listeners and the signer, run `load`, return the measured numbers."""
    from kms.privval.messages import Dialect
    from kms.sim.validator import SimulatedValidator

    chain_ids = [f"bench-{i + 1}" for i in range(load.chains)]
    # tmkms 0.15 signs vote extensions but replies with a v1beta1 Vote, which has no
    # extension fields: the extension is not echoed and its signature is lost. A node
    # would reject that; for the comparison the tmkms run sends empty extensions and
    # does not require the extension signature (tmkms still computes it)
    require_ext = flavor == "kms"
    sims: dict[str, list[Any]] = {
        cid: [
            SimulatedValidator(cid, Dialect.parse(DIALECT), extensions=require_ext)
            for _ in range(load.links)
        ]
        for cid in chain_ids
    }
    all_sims = [s for group in sims.values() for s in group]
    for s in all_sims:
        await s.start()
    home = write_home(
        workdir / f"{flavor}-{load.label}",
        flavor,
        chain_ids,
        {cid: [s.addr for s in group] for cid, group in sims.items()},
    )
    proc = SignerProcess(signer_argv(flavor, home.config, profile), home.root / "signer.log")
    result: dict[str, Any] = {"chains": load.chains, "links": load.links}
    try:
        t_spawn = time.perf_counter()
        connect = asyncio.gather(*(s.wait_connected(connect_timeout) for s in all_sims))
        while not connect.done():
            await asyncio.sleep(0.05)
            if not proc.alive():
                connect.cancel()
                raise RuntimeError(
                    f"{flavor} exited with {proc.proc.returncode}:\n{proc.log_tail()}"
                )
        try:
            await connect
        except TimeoutError:
            raise RuntimeError(
                f"{flavor}: not every link connected within {connect_timeout}s:\n{proc.log_tail()}"
            ) from None
        result["connect_all_ms"] = (time.perf_counter() - t_spawn) * 1e3
        want = public_key(home.consensus_seed)
        keys = await asyncio.gather(*(s.get_pubkey() for s in all_sims))
        if any(k != want for k in keys):
            raise RuntimeError(f"{flavor} served a public key that is not the configured one")

        warm = Tally()
        await asyncio.gather(
            *(
                _drive_chain(group, range(1, 1 + load.warmup_heights), 0.0, 0.0, warm, None)
                for group in sims.values()
            )
        )
        for s in all_sims:
            s.latencies.clear()
        first = 1 + load.warmup_heights
        tally = Tally()
        cpu0, t0, self0 = proc.cpu_seconds(), time.perf_counter(), time.process_time()
        loop = asyncio.get_running_loop()
        if load.heights is not None:
            heights, stop_at, block_time = range(first, first + load.heights), None, 0.0
        else:
            assert load.duration is not None
            n = int(load.duration / load.block_time) + 1
            heights = range(first, first + n)
            stop_at = loop.time() + load.duration
            block_time = load.block_time
        rng = random.Random(1)
        await asyncio.gather(
            *(
                _drive_chain(
                    group,
                    heights,
                    block_time,
                    rng.uniform(0, block_time) if block_time else 0.0,
                    tally,
                    stop_at,
                )
                for group in sims.values()
            )
        )
        elapsed = time.perf_counter() - t0
        cpu = proc.cpu_seconds() - cpu0
        self_cpu = time.process_time() - self0
        if not proc.alive():
            raise RuntimeError(f"{flavor} died during the run:\n{proc.log_tail()}")
        lat = _latencies(all_sims)
        merged = [x for v in lat.values() for x in v]
        summary = summarize_ms(merged)
        result.update(
            {
                "p50": summary.p50,
                "p99": summary.p99,
                "max": summary.max,
                "mean": summary.mean,
                "n": summary.n,
                "by_type": {k: summarize_ms(v).as_dict() for k, v in sorted(lat.items())},
                "requests_per_s": tally.ok / elapsed if elapsed > 0 else 0.0,
                "cpu_ms_per_request": (cpu / tally.ok * 1e3) if tally.ok else float("nan"),
                "cpu_utilisation": cpu / elapsed if elapsed > 0 else 0.0,
                "peak_rss_mb": proc.peak_rss_mb(),
                "load_generator_cpu_utilisation": self_cpu / elapsed if elapsed > 0 else 0.0,
                "answered": tally.ok,
                "errors": dict(tally.errors),
                "error_examples": dict(tally.examples),
                "warmup_errors": dict(warm.errors),
                "elapsed_s": elapsed,
            }
        )
        return result
    finally:
        rc = proc.stop()
        result["exit_code"] = rc
        await asyncio.gather(*(s.close() for s in all_sims), return_exceptions=True)


def loads(quick: bool) -> tuple[Load, Load]:
    if quick:
        return Load(1, 1, heights=400), Load(50, 2, duration=10.0, block_time=1.0)
    return Load(1, 1, heights=2000), Load(50, 2, duration=60.0, block_time=1.0)


async def run_softsign(
    workdir: Path, quick: bool, flavor: Flavor = "kms", *, name: str = "softsign"
) -> Section:
    sec = Section(name)
    for load in loads(quick):
        try:
            sec.data[load.label] = await run_load(flavor, load, workdir)
        except Exception as e:
            sec.data[load.label] = {"error": str(e)}
            sec.notes.append(f"{load.label}: {e}")
    sec.notes.append(
        "latency = node writes the request -> node has decoded the signed reply "
        "(TCP + SecretConnection on loopback; node-side signature check excluded); "
        "1x1 back to back, 50x2 paced at one height per second per chain"
    )
    return sec


async def paired_ratio(workdir: Path, rounds: int, heights: int) -> dict[str, Any]:
    """kms and tmkms 1x1 runs interleaved (kms, tmkms, kms, ...): the p50 ratio per pair
    and its median, so a noisy neighbour hits both signers alike."""
    load = Load(1, 1, heights=heights)
    pairs: list[tuple[float, float]] = []
    cpu_pairs: list[tuple[float, float]] = []
    loadavg: list[float] = []
    for _ in range(rounds):
        k = await run_load("kms", load, workdir / "paired")
        t = await run_load("tmkms", load, workdir / "paired")
        pairs.append((float(k["p50"]), float(t["p50"])))
        cpu_pairs.append((float(k["cpu_ms_per_request"]), float(t["cpu_ms_per_request"])))
        loadavg.append(os.getloadavg()[0])
    return {
        "rounds": rounds,
        "heights": heights,
        "kms_p50": [k for k, _ in pairs],
        "tmkms_p50": [t for _, t in pairs],
        "median_ratio": _median([k / t for k, t in pairs]),
        # CPU per request from /proc grows with the machine's load (hand-offs between
        # threads and processes, cache): compare the two signers within a pair, not
        # absolute figures across runs
        "kms_cpu_ms": [k for k, _ in cpu_pairs],
        "tmkms_cpu_ms": [t for _, t in cpu_pairs],
        "median_cpu_ratio": _median([k / t for k, t in cpu_pairs]),
        "load_average": loadavg,
    }


def _median(values: list[float]) -> float:
    ratios = sorted(values)
    mid = len(ratios) // 2
    return ratios[mid] if len(ratios) % 2 else (ratios[mid - 1] + ratios[mid]) / 2


async def run_diagnose(quick: bool, scratch: Path | None = None) -> Section:
    """The softsign loads again with the signer's home (state files) on tmpfs: what is
    left when the disk costs nothing, i.e. the signer's own request path."""
    sec = Section("diagnose")
    base = scratch or Path("/dev/shm")
    if not base.is_dir():
        sec.skipped = f"{base} does not exist (no tmpfs to compare with)"
        return sec
    workdir = Path(tempfile.mkdtemp(prefix="kms-bench-tmpfs-", dir=base))
    heights = 300 if quick else 1000
    runs: list[tuple[str, Flavor, Load]] = [
        ("kms_1x1_tmpfs", "kms", Load(1, 1, heights=heights)),
        ("kms_50x2_tmpfs", "kms", Load(50, 2, duration=10.0 if quick else 30.0)),
    ]
    if tmkms_path() is not None:
        runs.insert(1, ("tmkms_1x1_tmpfs", "tmkms", Load(1, 1, heights=heights)))
    try:
        for label, flavor, load in runs:
            try:
                r = await run_load(flavor, load, workdir)
            except Exception as e:
                sec.data[label] = {"error": f"{type(e).__name__}: {e}"[:300]}
                continue
            sec.data[label] = {
                k: r[k] for k in ("p50", "p99", "max", "n", "cpu_ms_per_request", "errors")
            }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    sec.notes.append(
        "diagnose: the same loads with the signer's state on tmpfs; softsign minus these "
        "numbers is what the durable state write costs on the real disk"
    )
    return sec
