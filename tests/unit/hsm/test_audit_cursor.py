"""The `kms hsm audit` cursor is written like every other whole file: never through a planted link."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kms.errors import HsmAdminError
from kms.hsm.audit import load_cursor, save_cursor


def test_the_cursor_round_trips_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "audit-cursor.json"
    doc = {"devices": {"123": {"last": 7}}, "kms": {"c": 1}}
    save_cursor(path, doc)
    assert load_cursor(path) == doc
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_a_symlink_at_the_old_predictable_temp_name_is_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    path = tmp_path / "audit-cursor.json"
    (tmp_path / "audit-cursor.json.tmp").symlink_to(victim)  # the name the old code opened
    save_cursor(path, {"devices": {}, "kms": {}})
    assert victim.read_text() == "precious"
    assert load_cursor(path) == {"devices": {}, "kms": {}}


def test_an_unwritable_cursor_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(HsmAdminError, match="cannot write the audit cursor"):
        save_cursor(tmp_path / "missing-dir" / "cursor.json", {"devices": {}, "kms": {}})
