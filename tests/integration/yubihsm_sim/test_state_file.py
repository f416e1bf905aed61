"""The JSON state file: replicas from one file, restarts, atomic writes."""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from yubihsm.defs import CAPABILITY, OBJECT
from yubihsm.objects import AsymmetricKey

from kms.errors import SimObjectFormatError, SimStateFileError
from kms.sim.yubihsm import Cap, SimulatedHsm

from .conftest import connect

SEED = bytes(range(32))


def test_missing_file_starts_in_factory_state_and_is_created(tmp_path: Path) -> None:
    path = tmp_path / "hsm.json"
    with SimulatedHsm(state_file=path) as sim:
        assert [o.id for o in sim.device.objects()] == [1]
    doc = json.loads(path.read_text())
    assert doc["format"] == 1 and len(doc["objects"]) == 1
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["hsm.json"]  # no temp files left


def test_replicas_started_from_copies_of_one_file_sign_identically(tmp_path: Path) -> None:
    a_path, b_path = tmp_path / "a.json", tmp_path / "b.json"
    with SimulatedHsm(state_file=a_path) as a:
        a.device.put_ed25519_seed(4, SEED, label="validator", capabilities=Cap.SIGN_EDDSA)
        a.device.put_auth_key(2, "validator-pw", capabilities=Cap.SIGN_EDDSA, domains=1)
    shutil.copy(a_path, b_path)
    sigs = []
    for path, serial in ((a_path, 11), (b_path, 12)):
        with SimulatedHsm(state_file=path, serial=serial) as sim:
            hsm = connect(sim)
            assert hsm.get_device_info().serial == serial  # explicit serial beats the file's
            session = hsm.create_session_derived(2, "validator-pw")
            sigs.append(AsymmetricKey(session, 4).sign_eddsa(b"vote"))
    assert sigs[0] == sigs[1] == Ed25519PrivateKey.from_private_bytes(SEED).sign(b"vote")


def test_changes_made_through_the_library_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "hsm.json"
    with SimulatedHsm(state_file=path, serial=77) as sim:
        session = connect(sim).create_session_derived(1, "password")
        AsymmetricKey.put(
            session, 9, "kept", 1, CAPABILITY.SIGN_EDDSA, Ed25519PrivateKey.generate()
        )
        AsymmetricKey(session, 9).delete()
        AsymmetricKey.put(
            session, 9, "kept", 1, CAPABILITY.SIGN_EDDSA, Ed25519PrivateKey.generate()
        )
        log_before = session.get_log_entries().entries
        session.set_log_index(log_before[-1].number)
    with SimulatedHsm(state_file=path) as sim:
        assert sim.device.serial == 77  # the file's serial when none is given
        assert sim.device.active_sessions() == []  # sessions are never persisted
        session = connect(sim).create_session_derived(1, "password")
        info = AsymmetricKey(session, 9).get_info()
        assert (info.label, info.sequence) == ("kept", 1)
        log_after = session.get_log_entries(log_before[-1]).entries  # chain continues
        assert [e.number for e in log_after] == [log_before[-1].number + 1]  # the boot line
        assert [o.object_type for o in session.list_objects(object_id=9)] == [OBJECT.ASYMMETRIC_KEY]


def test_a_corrupt_state_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "hsm.json"
    path.write_text("{not json")
    with pytest.raises(SimStateFileError):
        SimulatedHsm(state_file=path)
    path.write_text(json.dumps({"format": 2}))
    with pytest.raises(SimStateFileError):
        SimulatedHsm(state_file=path)


def test_a_state_file_with_a_malformed_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "hsm.json"
    with SimulatedHsm(state_file=path) as sim:
        sim.device.put_ed25519_seed(4, SEED)
    doc = json.loads(path.read_text())
    doc["objects"][-1]["secret"] = {"ed25519_seed": "abcd"}
    path.write_text(json.dumps(doc))
    with pytest.raises(SimObjectFormatError):
        SimulatedHsm(state_file=path)


def test_provisioning_refuses_duplicates_and_bad_ids() -> None:
    sim = SimulatedHsm()
    sim.device.put_ed25519_seed(4, SEED)
    with pytest.raises(ValueError):
        sim.device.put_ed25519_seed(4, SEED)
    with pytest.raises(ValueError):
        sim.device.put_ed25519_seed(0, SEED)
    with pytest.raises(ValueError):
        sim.device.put_wrap_key(1, b"short")


def test_a_failed_state_write_is_storage_failed_and_rolls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from yubihsm.defs import ERROR
    from yubihsm.exceptions import YubiHsmDeviceError

    from kms.sim.yubihsm.store import StateFile

    with SimulatedHsm(state_file=tmp_path / "hsm.json") as sim:
        session = connect(sim).create_session_derived(1, "password")

        def disk_full(self: StateFile, doc: object) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(StateFile, "save", disk_full)
        with pytest.raises(YubiHsmDeviceError) as e:
            AsymmetricKey.put(
                session, 9, "k", 1, CAPABILITY.SIGN_EDDSA, Ed25519PrivateKey.generate()
            )
        assert e.value.code == ERROR.STORAGE_FAILED
        assert sim.device.get_object(9, OBJECT.ASYMMETRIC_KEY) is None
        monkeypatch.undo()
        AsymmetricKey.put(session, 9, "k", 1, CAPABILITY.SIGN_EDDSA, Ed25519PrivateKey.generate())
