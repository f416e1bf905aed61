"""The key modules sit below kms.config: importing them never imports the config package.

kms.config imports kms.identity (to check identity keys at load), which imports
kms.keyfile; when kms.keys imported KeyFormat back from kms.config the modules
formed a cycle. These tests fail if any of the lower modules reaches up again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
LOWER = ("kms.pubkey", "kms.keyfile", "kms.identity", "kms.chains")


def test_key_modules_do_not_import_the_config_package() -> None:
    # one fresh interpreter: any of them reaching up would load kms.config
    code = (
        f"import json, sys, {', '.join(LOWER)}; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'kms')))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env
    )
    loaded = set(json.loads(out.stdout))
    assert set(LOWER) <= loaded
    assert sorted(m for m in loaded if m == "kms.config" or m.startswith("kms.config.")) == []
