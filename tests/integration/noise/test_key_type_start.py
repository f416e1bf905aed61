"""`kms start` refuses a chain configured for a consensus key type other than Ed25519."""

from __future__ import annotations

from pathlib import Path

from tests.integration.daemon.harness import make_home, run_kms_start

CHAIN = "bls-chain-1"


def test_kms_start_refuses_a_bls_chain_with_one_line(tmp_path: Path) -> None:
    home = make_home(tmp_path / "kms", [CHAIN])
    text = home.chain_section(CHAIN, 'key_type = "bls12381"')
    text += home.validator_section(CHAIN, "tcp://127.0.0.1:1", home.identity, "v0.40")
    text += home.softsign_section([CHAIN])
    res = run_kms_start(home.write_config(text))
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
    # the start-up log line ("kms starting ...") and then exactly one error line
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, res.stderr
    assert "bls12381 consensus keys are not supported: kms signs Ed25519 only" in lines[0]
    assert "Traceback" not in res.stderr
