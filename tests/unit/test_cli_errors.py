"""Every command, bad input: one `error: ...` line, exit 2 (usage/configuration) or 1 (refused),
never a traceback. Run as an operator runs it (`python -m kms ...` in a subprocess)."""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kms import __version__
from tests.conftest import REPO_ROOT

USAGE, REFUSED = 2, 1


def kms(*args: str, cwd: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    env.pop("KMS_DEBUG", None)
    for var in ("KMS_CONFIG_FILE", "TMKMS_CONFIG_FILE"):
        env.pop(var, None)
    return subprocess.run(
        [sys.executable, "-m", "kms", *args],
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def junk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("junk")
    (d / "bad.toml").write_text("[[chain]]\nid = 5\n")
    (d / "not-toml.toml").write_text("[[chain\n")
    (d / "garbage.json").write_text("{not json\n")
    (d / "empty").write_text("")
    (d / "a-dir").mkdir()
    return d


# (id, arguments, expected exit code); {d} is the junk directory
CASES: list[tuple[str, list[str], int]] = [
    ("top-unknown-command", ["frobnicate"], USAGE),
    ("top-unknown-option", ["--frob"], USAGE),
    ("start-log-level", ["start", "--log-level", "bogus", "-c", "{d}/bad.toml"], USAGE),
    ("start-log-format", ["start", "--log-format", "xml"], USAGE),
    ("start-missing-config", ["start", "-c", "{d}/nope.toml"], USAGE),
    ("start-bad-config", ["start", "-c", "{d}/bad.toml"], USAGE),
    ("start-not-toml", ["start", "-c", "{d}/not-toml.toml"], USAGE),
    ("start-config-is-dir", ["start", "-c", "{d}/a-dir"], USAGE),
    ("init-bad-chain-id", ["init", "{d}/home1", "--chain-id", "bad id!"], USAGE),
    ("init-home-is-file", ["init", "{d}/empty"], USAGE),
    ("init-unknown-chain-no-prefix", ["init", "{d}/home2", "--chain-id", "mychain-1"], USAGE),
    ("init-bad-prefix", ["init", "{d}/h3", "--chain-id", "x-1", "--account-prefix", "A B"], USAGE),
    ("keygen-nothing", ["keygen"], USAGE),
    ("keygen-key-id-word", ["keygen", "--key-id", "one"], USAGE),
    ("keygen-bad-config", ["keygen", "-c", "{d}/bad.toml", "--key-id", "1"], USAGE),
    ("keygen-bad-connector", ["keygen", "--connector", "ftp://x", "--key-id", "1"], USAGE),
    ("keygen-softsign-into-dir", ["keygen", "--softsign", "{d}/a-dir/x/y"], REFUSED),
    ("import-missing-file", ["import", "--softsign", "{d}/k", "{d}/nope.json"], REFUSED),
    ("import-garbage", ["import", "--softsign", "{d}/k", "{d}/garbage.json"], REFUSED),
    ("import-no-args", ["import"], USAGE),
    ("export-no-key-id", ["export", "{d}/out"], USAGE),
    (
        "export-unreachable",
        [
            "export",
            "--connector",
            "tcp://127.0.0.1:1",
            "--key-id",
            "1",
            "--password-file",
            "{d}/empty",
            "{d}/out",
        ],
        REFUSED,
    ),
    ("keys-unknown", ["keys", "frob"], USAGE),
    ("keys-list-nothing", ["keys", "list"], USAGE),
    ("keys-list-bad-config", ["keys", "list", "-c", "{d}/bad.toml"], USAGE),
    ("state-unknown", ["state", "frob"], USAGE),
    ("state-show-missing", ["state", "show", "{d}/nope.json"], REFUSED),
    ("state-show-garbage", ["state", "show", "{d}/garbage.json"], REFUSED),
    ("state-check-empty", ["state", "check", "{d}/empty"], REFUSED),
    ("state-check-json-garbage", ["state", "check", "--json", "{d}/garbage.json"], REFUSED),
    ("state-history-missing", ["state", "history", "{d}/nope.jsonl"], REFUSED),
    ("state-history-garbage", ["state", "history", "{d}/garbage.json"], REFUSED),
    ("state-history-height", ["state", "history", "{d}/x", "--height", "-4"], USAGE),
    ("state-import-no-from", ["state", "import", "{d}/s.json"], USAGE),
    (
        "state-import-garbage",
        ["state", "import", "{d}/s.json", "--from", "{d}/garbage.json"],
        REFUSED,
    ),
    ("state-set-step", ["state", "set", "{d}/s.json", "--height", "5", "--step", "vote"], USAGE),
    ("state-set-height", ["state", "set", "{d}/s.json", "--height", "-1"], USAGE),
    ("state-set-into-dir", ["state", "set", "{d}/a-dir", "--height", "5"], USAGE),
    ("hsm-status-bad-config", ["hsm", "status", "-c", "{d}/bad.toml"], USAGE),
    (
        "hsm-audit-bad-config",
        ["hsm", "audit", "-c", "{d}/bad.toml", "--password-file", "{d}/e"],
        USAGE,
    ),
    ("hsm-setup-no-devices", ["hsm", "setup"], REFUSED),
    ("hsm-password-file-exists", ["hsm", "password", "signer", "--out", "{d}/empty"], REFUSED),
    ("hsm-sim-port", ["hsm-sim", "--port", "70000"], USAGE),
    ("hsm-sim-bad-state", ["hsm-sim", "--port", "0", "--state", "{d}/garbage.json"], REFUSED),
    ("demo-heights-zero", ["demo", "--heights", "0"], USAGE),
    ("demo-heights-negative", ["demo", "--heights", "-1"], USAGE),
    ("demo-replicas", ["demo", "--replicas", "9"], USAGE),
    ("demo-cometbft-false", ["demo", "--cometbft", "/bin/false"], USAGE),
    ("demo-cometbft-missing", ["demo", "--cometbft", "{d}/nope"], USAGE),
    ("version-extra", ["version", "extra"], USAGE),
]


@pytest.fixture(scope="module")
def results(junk: Path) -> dict[str, subprocess.CompletedProcess[str]]:
    """Every case run once, a few at a time (each is a fresh interpreter, as an operator's is)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        futures = {
            name: pool.submit(kms, *[a.format(d=junk) for a in args], cwd=junk)
            for name, args, _ in CASES
        }
        return {name: f.result() for name, f in futures.items()}


@pytest.mark.parametrize(("name", "code"), [(c[0], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gives_one_error_line_and_the_documented_exit_code(
    results: dict[str, subprocess.CompletedProcess[str]], name: str, code: int
) -> None:
    r = results[name]
    assert "Traceback" not in r.stderr + r.stdout
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, r.stderr
    assert "internal error" not in errors[0], errors[0]
    assert r.returncode == code, (r.returncode, r.stderr)


def test_version_flag() -> None:
    for flag in ("--version", "-V"):
        r = kms(flag, cwd=REPO_ROOT)
        assert (r.returncode, r.stdout.strip()) == (0, f"kms {__version__}")


def test_an_unexpected_exception_is_one_line_without_a_traceback() -> None:
    from click.testing import CliRunner

    import kms.cli.errors as errors_mod

    def boom() -> object:
        raise RuntimeError("unexpected")

    runner = CliRunner()
    with runner.isolation() as (_, err, *_rest):
        code = errors_mod.run_command(boom)
        text = err.getvalue().decode()
    assert code == REFUSED
    assert text.startswith("error: internal error: RuntimeError: unexpected")
    assert "Traceback" not in text and text.count("\n") == 1
