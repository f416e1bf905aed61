"""HSM-bound capacity and failover: `kms hsm-sim` replicas at YubiHSM2-like latency.

Owns: starting `kms hsm-sim` replica processes seeded with one Ed25519 key (one
provisioned state file, copied per replica), building each chain's signer exactly
as the daemon does (a tmkms-format config -> `kms.config.load_config` ->
`kms.signer.factory.build_signers`, so policy, timeouts and the one-device-one-
thread wiring are the daemon's), and measuring:

- `hsm`: signatures/s and per-signature latency with 1..N replicas, under load from
  4 chains per replica, each chain with one signature in flight at a time (the
  daemon's per-chain lock allows no more);
- `failover`: time from a replica dying to the next successful signature, for a
  replica killed while idle (the next request meets a refused connection), killed
  in the middle of a signature (connection reset), and stopped (SIGSTOP: the
  connection stays open and nothing answers: a hang).

Never touches privval, state files or the daemon process: this is the signer layer
driven directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import Section, summarize_ms, write_private

SIGN_LATENCY_MS = 110.0
AUTH_KEY_ID = 1  # the factory auth key of a fresh simulator
PASSWORD = "password"  # and its password
KEY_ID = 1


# --- simulator processes ------------------------------------------------------------------------


def provision_state(path: Path, seed: bytes) -> None:
    """A simulator state file holding the validator key (provisioned without a session)."""
    from kms.sim.yubihsm import Cap, SimulatedHsm

    path.unlink(missing_ok=True)
    sim = SimulatedHsm(state_file=path, latency_ms=0)
    sim.device.put_ed25519_seed(KEY_ID, seed, label="bench", capabilities=Cap.SIGN_EDDSA, domains=1)


class HsmSimProcess:
    """`python -m kms hsm-sim` on a free port with its own copy of the state file."""

    def __init__(self, state_template: Path, workdir: Path, name: str, latency_ms: float) -> None:
        self.name = name
        self.state = workdir / f"{name}.json"
        shutil.copyfile(state_template, self.state)
        os.chmod(self.state, 0o600)
        self.log_path = workdir / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kms",
                "hsm-sim",
                "--port",
                "0",
                "--state",
                str(self.state),
                "--latency-ms",
                str(latency_ms),
            ],
            stdout=subprocess.PIPE,
            stderr=self._log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.url = ""

    def wait_ready(self, timeout: float = 30.0) -> str:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline().decode(errors="replace").strip()
            if line.startswith("listening on "):
                self.url = line.removeprefix("listening on ").strip()
                return self.url
            if not line and self.proc.poll() is not None:
                break
        raise RuntimeError(f"hsm-sim {self.name} did not start: {self.log_path.read_text()[-500:]}")

    @property
    def hostport(self) -> str:
        return self.url.removeprefix("http://")

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(5)

    def pause(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGKILL)  # also ends a SIGSTOPped one
            self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()


@dataclass
class Fleet:
    sims: list[HsmSimProcess]

    def stop(self) -> None:
        for s in self.sims:
            s.stop()


def start_fleet(template: Path, workdir: Path, n: int, latency_ms: float, tag: str) -> Fleet:
    sims = [HsmSimProcess(template, workdir, f"{tag}-hsm{i}", latency_ms) for i in range(n)]
    try:
        for s in sims:
            s.wait_ready()
    except BaseException:
        for s in sims:
            s.stop()
        raise
    return Fleet(sims)


# --- signers, wired as the daemon wires them ------------------------------------------------------


def write_hsm_config(
    workdir: Path,
    fleet: Fleet,
    chain_ids: list[str],
    *,
    policy: str = "spread",
    request_timeout: float | None = None,
) -> Path:
    pw = workdir / "hsm-password"
    write_private(pw, PASSWORD.encode() + b"\n")
    identity = workdir / "kms-identity.key"
    if not identity.exists():
        import base64

        write_private(identity, base64.b64encode(os.urandom(32)) + b"\n")
    lines: list[str] = []
    for cid in chain_ids:
        lines += [
            "[[chain]]",
            f'id = "{cid}"',
            'key_format = { type = "hex" }',
            f'state_file = "{workdir / "state" / (cid + ".json")}"',
            "",
            "[[validator]]  # never dialled: the benchmark drives the signers directly",
            f'chain_id = "{cid}"',
            f'addr = "unix://{workdir / (cid + ".sock")}"',
            "",
        ]
    chains = ", ".join(f'"{c}"' for c in chain_ids)
    for s in fleet.sims:
        lines += [
            "[[providers.yubihsm]]",
            f'adapter = {{ type = "http", addr = "tcp://{s.hostport}" }}',
            f'auth = {{ key = {AUTH_KEY_ID}, password_file = "{pw}" }}',
            f"keys = [{{ chain_ids = [{chains}], key = {KEY_ID} }}]",
            "",
        ]
    lines += ["[hsm]", f'policy = "{policy}"']
    if request_timeout is not None:
        lines.append(f"request_timeout = {request_timeout}")
    cfg = workdir / "hsm-bench.toml"
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


async def open_signers(config_path: Path) -> dict[str, Any]:
    from kms.config import load_config
    from kms.signer.factory import build_signers

    config = load_config(config_path, check_files=False)
    signers = build_signers(config)
    await asyncio.gather(*(s.open() for s in signers.values()))
    return signers


async def close_signers(signers: dict[str, Any]) -> None:
    await asyncio.gather(*(s.close() for s in signers.values()), return_exceptions=True)


# --- throughput ---------------------------------------------------------------------------------


async def _chain_loop(
    signer: Any, chain: str, stop_at: float, lat_ms: list[float], errors: list[str]
) -> int:
    n = 0
    i = 0
    loop = asyncio.get_running_loop()
    while loop.time() < stop_at:
        i += 1
        msg = f"{chain}/{i}".encode() + os.urandom(100)
        t0 = time.perf_counter()
        try:
            await signer.sign(msg, timeout=5.0)
        except Exception as e:
            errors.append(f"{type(e).__name__}: {e}"[:200])
            continue
        lat_ms.append((time.perf_counter() - t0) * 1e3)
        n += 1
    return n


async def measure_throughput(
    template: Path, workdir: Path, replicas: int, duration: float, chains_per_replica: int = 4
) -> dict[str, Any]:
    fleet = start_fleet(template, workdir, replicas, SIGN_LATENCY_MS, f"tp{replicas}")
    signers: dict[str, Any] = {}
    try:
        chain_ids = [f"hsm-bench-{i + 1}" for i in range(chains_per_replica * replicas)]
        signers = await open_signers(write_hsm_config(workdir, fleet, chain_ids))
        # warm-up: one signature per chain (sessions already open)
        await asyncio.gather(*(s.sign(b"warm-up") for s in signers.values()))
        lat: list[float] = []
        errors: list[str] = []
        loop = asyncio.get_running_loop()
        t0 = time.perf_counter()
        stop_at = loop.time() + duration
        counts = await asyncio.gather(
            *(_chain_loop(s, c, stop_at, lat, errors) for c, s in signers.items())
        )
        elapsed = time.perf_counter() - t0
        total = sum(counts)
        per_replica: dict[str, int] = {}
        hedges = sum(s.stats.hedges for s in signers.values())
        for s in signers.values():
            for r in s.stats.replicas:
                per_replica[r.name] = per_replica.get(r.name, 0) + r.signatures
        summary = summarize_ms(lat)
        per_chain = sorted(counts)
        ideal = replicas * 1000.0 / SIGN_LATENCY_MS
        return {
            "replicas": replicas,
            "chains": len(chain_ids),
            "signatures_per_s": total / elapsed,
            "ideal_per_s": ideal,
            "efficiency": total / elapsed / ideal,
            "p50": summary.p50,
            "p99": summary.p99,
            "max": summary.max,
            "mean": summary.mean,
            "signatures": total,
            "per_chain_signatures_min_max": [per_chain[0], per_chain[-1]],
            "per_replica_signatures": per_replica,
            "hedges": hedges,  # requests also sent to a second replica (should be ~0)
            "errors": len(errors),
            "error_examples": sorted(set(errors))[:3],
            "elapsed_s": elapsed,
        }
    finally:
        await close_signers(signers)
        fleet.stop()


def measure_device_rate(template: Path, workdir: Path, signatures: int) -> dict[str, Any]:
    """What one simulated device delivers to a bare client: Yubico's library alone,
    one session, signatures back to back (no kms). The N-replica target compares kms
    with N times this, so the simulator's own HTTP and SCP03 costs are not counted
    against kms's replica handling (a real device's 110-120 ms includes its own)."""
    from yubihsm.core import YubiHsm
    from yubihsm.objects import AsymmetricKey

    fleet = start_fleet(template, workdir, 1, SIGN_LATENCY_MS, "device")
    try:
        hsm = YubiHsm.connect(fleet.sims[0].url)
        session = hsm.create_session_derived(AUTH_KEY_ID, PASSWORD)
        key = AsymmetricKey(session, KEY_ID)
        key.sign_eddsa(b"warm-up")
        t0 = time.perf_counter()
        for i in range(signatures):
            key.sign_eddsa(b"device-%d" % i)
        elapsed = time.perf_counter() - t0
        session.close()
        hsm.close()
    finally:
        fleet.stop()
    return {
        "signatures": signatures,
        "ms_per_signature": elapsed / signatures * 1000.0,
        "signatures_per_s": signatures / elapsed,
    }


async def run_hsm(workdir: Path, quick: bool, max_replicas: int = 3) -> Section:
    from nacl.signing import SigningKey

    workdir.mkdir(parents=True, exist_ok=True)
    template = workdir / "hsm-template.json"
    provision_state(template, bytes(SigningKey.generate()))
    sec = Section("hsm")
    duration = 5.0 if quick else 30.0
    try:
        sec.data["device"] = await asyncio.to_thread(
            measure_device_rate, template, workdir, 10 if quick else 40
        )
    except Exception as e:
        sec.data["device"] = {"error": f"{type(e).__name__}: {e}"}
        sec.notes.append(f"device rate: {type(e).__name__}: {e}")
    for n in range(1, max_replicas + 1):
        try:
            sec.data[str(n)] = await measure_throughput(template, workdir, n, duration)
        except Exception as e:
            sec.data[str(n)] = {"error": f"{type(e).__name__}: {e}"}
            sec.notes.append(f"{n} replica(s): {type(e).__name__}: {e}")
    sec.notes.append(
        f"kms hsm-sim processes at {SIGN_LATENCY_MS:.0f} ms per Ed25519 signature; signers "
        "built by kms.signer.factory from a config (policy spread); 4 chains per replica, "
        "one signature in flight per chain; latency in ms, throughput in signatures/s"
    )
    return sec


# --- failover -----------------------------------------------------------------------------------


async def _failover_trial(
    template: Path, workdir: Path, mode: str, request_timeout: float | None, trial: int
) -> float:
    """Seconds from the primary replica dying to the next successful signature."""
    fleet = start_fleet(template, workdir, 2, SIGN_LATENCY_MS, f"fo-{mode}-{trial}")
    signers: dict[str, Any] = {}
    try:
        cfg = write_hsm_config(
            workdir, fleet, ["fo-chain"], policy="primary", request_timeout=request_timeout
        )
        signers = await open_signers(cfg)
        signer = signers["fo-chain"]
        # sessions warm on both; requests go to the primary, which builds the latency
        # history its hedge delay comes from (as after a minute of service)
        for i in range(10):
            await signer.sign(f"warm-{i}".encode())
        primary = fleet.sims[0]
        msg = b"failover-" + os.urandom(64)
        if mode == "refused":
            primary.kill()
            t_dead = time.perf_counter()
            await signer.sign(msg, timeout=5.0)
        else:
            task = asyncio.create_task(signer.sign(msg, timeout=5.0))
            await asyncio.sleep(SIGN_LATENCY_MS / 2000.0)  # the device is mid-signature
            if mode == "reset":
                primary.kill()
            else:
                primary.pause()
            t_dead = time.perf_counter()
            await task
        return time.perf_counter() - t_dead
    finally:
        await close_signers(signers)
        fleet.stop()


FAILOVER_MODES = ("refused", "reset", "hang")


async def run_failover(workdir: Path, quick: bool) -> Section:
    from nacl.signing import SigningKey

    workdir.mkdir(parents=True, exist_ok=True)
    template = workdir / "fo-template.json"
    provision_state(template, bytes(SigningKey.generate()))
    trials = 2 if quick else 10
    sec = Section("failover")
    variants: list[tuple[str, str, float | None]] = [(m, m, None) for m in FAILOVER_MODES]
    if not quick:
        variants.append(("hang_request_timeout_0.5s", "hang", 0.5))
    for label, mode, rt in variants:
        times: list[float] = []
        errors: list[str] = []
        for t in range(trials):
            try:
                times.append(await _failover_trial(template, workdir, mode, rt, t) * 1e3)
            except Exception as e:
                errors.append(f"{type(e).__name__}: {e}"[:200])
        s = summarize_ms(times)
        sec.data[label] = {"p50": s.p50, "max": s.max, "n": s.n, "errors": errors}
    sec.notes.append(
        "2 hsm-sim replicas at 110 ms/signature, policy primary, one chain; time from the "
        "primary dying to the successful signature (includes the surviving replica's "
        "110 ms); refused = killed while idle, reset = killed mid-signature, hang = "
        "SIGSTOP mid-signature (the request is hedged to the other replica once the primary "
        "has not answered for its hedge delay); the [hsm] defaults unless the label says "
        "otherwise"
    )
    await _under_load(sec, 2.5 if quick else 10.0)
    return sec


async def _under_load(sec: Section, seconds: float) -> None:
    """The signer engineer's scenario (bench/hsm_replicas.py): 3 replicas under spread
    load, one fails a third of the way through; no request may fail."""
    try:
        from bench import hsm_replicas
    except ImportError as e:
        sec.notes.append(f"under load: bench/hsm_replicas.py not importable ({e})")
        return
    faults: list[tuple[str, Callable[[Any], None]]] = [
        ("under_load_refused", lambda h: h.faults.listener_down()),
        ("under_load_hang", lambda h: h.faults.hang()),
    ]
    for label, inject in faults:
        try:
            r = await hsm_replicas.failover_under_load(
                label, inject, SIGN_LATENCY_MS, chains=4, per_chain=1, seconds=seconds
            )
        except Exception as e:
            sec.data[label] = {"error": f"{type(e).__name__}: {e}"[:200]}
            continue
        sec.data[label] = {
            "p50": r.p50_ms,
            "max": r.max_ms,
            "n": r.signatures + r.failed,
            "failed_requests": r.failed,
            "errors": [],
        }
    sec.notes.append(
        "under_load_*: bench/hsm_replicas.failover_under_load (in-process simulators, 3 "
        "replicas, 4 chains with one request in flight each, one replica fails a third of "
        "the way through); max = worst request latency across the failure, "
        "failed_requests must be 0"
    )
