"""A real etcd cluster of N members on 127.0.0.1, for the demo, the tests and the benchmarks.

Owns: finding the etcd binary (scripts/install-etcd puts it in
~/.cache/kms/etcd/<version>/etcd), starting members on free loopback ports in a
directory, and the faults tests inject into them (kill -9, SIGSTOP/SIGCONT,
restart). Never talks the etcd API itself beyond a readiness probe (HTTP /health),
and is never used by `kms start` (production clusters are the operator's).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

ETCD_ROOT = Path(os.environ.get("KMS_ETCD_DIR", Path.home() / ".cache" / "kms" / "etcd"))


def find_etcd() -> Path | None:
    """$KMS_ETCD_BIN, else the newest v3.6.N built by scripts/install-etcd, else `etcd` on PATH."""
    env = os.environ.get("KMS_ETCD_BIN")
    if env:
        return Path(env)
    versions = []
    for d in ETCD_ROOT.glob("v3.*"):
        m = re.fullmatch(r"v3\.(\d+)\.(\d+)", d.name)
        if m and (d / "etcd").is_file():
            versions.append(((int(m[1]), int(m[2])), d / "etcd"))
    if versions:
        return max(versions)[1]
    found = shutil.which("etcd")
    return Path(found) if found else None


def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1 (bound together so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass(frozen=True)
class ServerTls:
    """Serve the client port over TLS and require client certificates signed by `ca`."""

    cert: Path
    key: Path
    ca: Path
    client_cert: Path  # used by the readiness probe
    client_key: Path


@dataclass
class Member:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    stopped: bool = False  # SIGSTOPped
    scheme: str = "http"

    @property
    def endpoint(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.client_port}"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class EtcdCluster:
    """N etcd members; `start()` waits until every member answers."""

    def __init__(
        self, binary: Path, root: Path, size: int = 3, tls: ServerTls | None = None
    ) -> None:
        self.binary = binary
        self.root = root
        self.tls = tls
        ports = free_ports(2 * size)
        self.members = [
            Member(
                f"m{i}",
                ports[2 * i],
                ports[2 * i + 1],
                root / f"m{i}.data",
                root / f"m{i}.log",
                scheme="https" if tls is not None else "http",
            )
            for i in range(size)
        ]
        self._token = f"kms-test-{os.getpid()}-{time.monotonic_ns()}"

    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]

    def _initial_cluster(self) -> str:
        return ",".join(f"{m.name}=http://127.0.0.1:{m.peer_port}" for m in self.members)

    def _spawn(self, m: Member, state: str) -> None:
        cmd = [
            str(self.binary),
            "--name", m.name,
            "--data-dir", str(m.data_dir),
            "--listen-client-urls", m.endpoint,
            "--advertise-client-urls", m.endpoint,
            "--listen-peer-urls", f"http://127.0.0.1:{m.peer_port}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{m.peer_port}",
            "--initial-cluster", self._initial_cluster(),
            "--initial-cluster-token", self._token,
            "--initial-cluster-state", state,
            # Fast elections so leader-loss faults heal within a test's budget.
            "--heartbeat-interval", "50",
            "--election-timeout", "500",
            "--log-level", "warn",
        ]  # fmt: skip
        if self.tls is not None:
            cmd += [
                "--cert-file", str(self.tls.cert),
                "--key-file", str(self.tls.key),
                "--trusted-ca-file", str(self.tls.ca),
                "--client-cert-auth",
            ]  # fmt: skip
        log = open(m.log_path, "ab")  # noqa: SIM115 - handed to the child
        try:
            m.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        finally:
            log.close()
        m.stopped = False

    def start(self, timeout: float = 30.0) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        for m in self.members:
            self._spawn(m, "new")
        self.wait_healthy(timeout)

    def wait_healthy(self, timeout: float = 30.0, members: list[Member] | None = None) -> None:
        deadline = time.monotonic() + timeout
        for m in members or [x for x in self.members if x.alive() and not x.stopped]:
            while not self._ready(m):
                if not m.alive():
                    raise RuntimeError(f"etcd {m.name} exited:\n{self.log_tail(m)}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"etcd {m.name} not ready:\n{self.log_tail(m)}")
                time.sleep(0.05)

    def _ready(self, m: Member) -> bool:
        # /health answers {"health":"true"} only when the member sees a leader.
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", m.client_port), timeout=0.5) as raw,
        ):
            s: socket.socket = raw
            if self.tls is not None:
                ctx = ssl.create_default_context(cafile=str(self.tls.ca))
                ctx.load_cert_chain(str(self.tls.client_cert), str(self.tls.client_key))
                s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
            s.settimeout(1.0)
            s.sendall(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
            return b'"health":"true"' in data
        return False

    def log_tail(self, m: Member, n: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(m.log_path.read_text(errors="replace").splitlines()[-n:])
        return ""

    # --- faults -------------------------------------------------------------------

    def kill(self, m: Member) -> None:
        """kill -9 (the data dir stays; `restart` brings the member back)."""
        if m.proc is not None and m.proc.poll() is None:
            if m.stopped:
                os.kill(m.proc.pid, signal.SIGCONT)
            m.proc.kill()
            m.proc.wait(10)
        m.stopped = False

    def restart(self, m: Member, timeout: float = 30.0) -> None:
        self.kill(m)
        self._spawn(m, "existing")
        self.wait_healthy(timeout, [m])

    def pause(self, m: Member) -> None:
        assert m.proc is not None
        os.kill(m.proc.pid, signal.SIGSTOP)
        m.stopped = True

    def resume(self, m: Member) -> None:
        assert m.proc is not None
        os.kill(m.proc.pid, signal.SIGCONT)
        m.stopped = False

    def stop(self) -> None:
        for m in self.members:
            with contextlib.suppress(Exception):
                self.kill(m)
