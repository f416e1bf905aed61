"""packaging/systemd/kms.service gives kms only what an outbound-only signer needs."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

UNIT = REPO_ROOT / "packaging" / "systemd" / "kms.service"


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """systemd's INI dialect: [Section], Key=Value, repeated keys accumulate, # and ; comment."""
    out: dict[str, dict[str, list[str]]] = {}
    section: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if m := re.fullmatch(r"\[([A-Za-z]+)\]", line):
            section = out.setdefault(m[1], {})
            continue
        assert section is not None, f"key outside a section: {line}"
        key, sep, value = line.partition("=")
        assert sep, f"not Key=Value: {line}"
        section.setdefault(key.strip(), []).append(value.strip())
    return out


@pytest.fixture(scope="module")
def service() -> dict[str, list[str]]:
    return parse_unit(UNIT.read_text())["Service"]


def one(service: dict[str, list[str]], key: str) -> str:
    values = service.get(key, [])
    assert len(values) == 1, (key, values)
    return values[0]


def test_runs_kms_start_as_an_unprivileged_user(service: dict[str, list[str]]) -> None:
    argv = shlex.split(one(service, "ExecStart"))
    assert argv[0].endswith("/kms") and argv[1] == "start"
    assert "-c" in argv
    assert one(service, "User") not in ("root", "0", "")
    assert one(service, "NoNewPrivileges") == "yes"
    assert one(service, "CapabilityBoundingSet") == ""
    assert one(service, "AmbientCapabilities") == ""
    assert one(service, "UMask") == "0077"


def test_read_only_system_writable_state_and_audit_only(service: dict[str, list[str]]) -> None:
    assert one(service, "ProtectSystem") == "strict"
    assert one(service, "ProtectHome") == "yes"
    writable = one(service, "ReadWritePaths").split()
    assert sorted(writable) == ["/var/lib/kms/audit", "/var/lib/kms/state"]
    config = shlex.split(one(service, "ExecStart"))
    config_path = config[config.index("-c") + 1]
    # the config and the secrets it names stay read-only for kms itself
    assert not any(config_path.startswith(w + "/") for w in writable)
    for key in ("PrivateTmp", "PrivateDevices", "ProtectKernelTunables", "ProtectKernelModules"):
        assert one(service, key) == "yes", key


def test_outbound_only_network(service: dict[str, list[str]]) -> None:
    families = one(service, "RestrictAddressFamilies").split()
    assert sorted(families) == ["AF_INET", "AF_INET6", "AF_UNIX"]  # no AF_NETLINK, AF_PACKET...
    assert one(service, "SocketBindDeny") == "any"  # no bind(), so no listening socket
    assert "ListenStream" not in service and "PrivateNetwork" not in service


def test_configuration_errors_are_not_restarted(service: dict[str, list[str]]) -> None:
    from kms.cli.errors import EXIT_USAGE

    assert one(service, "Restart") == "on-failure"
    assert one(service, "RestartPreventExitStatus") == str(EXIT_USAGE)
    filters = service["SystemCallFilter"]
    assert "@system-service" in filters
    assert any(f.startswith("~") and "@privileged" in f for f in filters)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_accepts_the_unit_and_rates_it_well(tmp_path: Path) -> None:
    unit = tmp_path / "kms.service"
    # verify checks that ExecStart exists: point it at a binary this machine has
    unit.write_text(UNIT.read_text().replace("/opt/kms/bin/kms", "/bin/true"))
    verify = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert verify.returncode == 0 and verify.stderr.strip() == "", verify.stderr
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    m = re.search(r"Overall exposure level for kms\.service: ([0-9.]+)", security.stdout)
    if security.returncode != 0 or m is None:
        pytest.skip(f"systemd-analyze security --offline unsupported: {security.stderr[:200]}")
    assert float(m[1]) <= 2.0, security.stdout


DOCKERFILE = REPO_ROOT / "packaging" / "docker" / "Dockerfile"


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        pending += line.rstrip("\\").strip() + " "
        if not line.endswith("\\"):
            word, _, rest = pending.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            pending = ""
    return out


def test_container_runs_kms_start_unprivileged_and_listens_on_nothing() -> None:
    import json

    steps = dockerfile_instructions(DOCKERFILE.read_text())
    final = steps[max(i for i, (w, _) in enumerate(steps) if w == "FROM") :]  # last stage
    words = [w for w, _ in final]
    assert "EXPOSE" not in [w for w, _ in steps]  # outbound only
    users = [a for w, a in final if w == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert words.index("USER") < words.index("ENTRYPOINT")
    entry = json.loads(next(a for w, a in final if w == "ENTRYPOINT"))
    assert entry[:2] == ["/opt/kms/bin/kms", "start"] and "-c" in entry
    assert ("STOPSIGNAL", "SIGTERM") in final
    made = next(a for w, a in final if w == "RUN")
    assert "-m 0700" in made and "/var/lib/kms/state" in made and "/var/lib/kms/audit" in made
