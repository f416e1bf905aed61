"""The simulated device's parts on their own: object store, audit policy, session table.

The real library drives them all through the device in test_device.py and the
integration tests; these pin the rules each part owns, without a session.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from kms.errors import SimObjectFormatError
from kms.sim.yubihsm import audit_policy, objstore, scp03, sessions
from kms.sim.yubihsm.defs import MAX_SESSIONS, STORAGE_RECORDS, Audit, Cmd, Err, ObjType
from kms.sim.yubihsm.device import SimDevice
from kms.sim.yubihsm.frames import Refuse
from kms.sim.yubihsm.objects import SimObject, new_object, pack_label
from kms.sim.yubihsm.provision import default_auth_key
from kms.sim.yubihsm.store import StateFile

SIM_DIR = Path(objstore.__file__).parent


def opaque(obj_id: int, data: bytes = b"x", domains: int = 1) -> SimObject:
    return new_object(obj_id, ObjType.OPAQUE, 0x1E, pack_label("o"), domains, 0, data)


def scripted(*chunks: bytes) -> Callable[[int], bytes]:
    queue = list(chunks)

    def rnd(n: int) -> bytes:
        out = queue.pop(0)
        assert len(out) == n
        return out

    return rnd


def refused(code: Err, fn: Callable[[], object]) -> None:
    with pytest.raises(Refuse) as e:
        fn()
    assert e.value.code == code


# --- object store -------------------------------------------------------------------


def test_a_deleted_slot_comes_back_with_the_next_sequence() -> None:
    changes: list[int] = []
    store = objstore.ObjectStore(scripted(), lambda: changes.append(1))
    store.add(opaque(5))
    store.remove(store.visible(1, 5, ObjType.OPAQUE))
    assert store.add(opaque(5)).sequence == 1
    assert len(changes) == 3  # every change reaches the device's persistence


def test_visibility_follows_domains() -> None:
    store = objstore.ObjectStore(scripted(), lambda: None)
    store.add(opaque(5, domains=0b10))
    refused(Err.OBJECT_NOT_FOUND, lambda: store.visible(0b01, 5, ObjType.OPAQUE))
    assert store.visible(0b11, 5, ObjType.OPAQUE).id == 5


def test_id_zero_draws_until_a_free_valid_id() -> None:
    # 0 and 0xFFFF are not ids, 7 is taken: the fourth draw (8) is used
    store = objstore.ObjectStore(
        scripted(b"\x00\x00", b"\xff\xff", b"\x00\x07", b"\x00\x08"), lambda: None
    )
    store.add(opaque(7))
    assert store.new_id(0, ObjType.OPAQUE) == 8
    refused(Err.OBJECT_EXISTS, lambda: store.new_id(7, ObjType.OPAQUE))
    refused(Err.INVALID_ID, lambda: store.new_id(0xFFFF, ObjType.OPAQUE))


def test_the_record_limit_holds_for_commands_but_not_for_provisioning() -> None:
    store = objstore.ObjectStore(scripted(), lambda: None)
    for i in range(1, STORAGE_RECORDS + 1):
        store.add(opaque(i))
    refused(Err.STORAGE_FAILED, lambda: store.add(opaque(STORAGE_RECORDS + 1)))
    store.provision(opaque(STORAGE_RECORDS + 1))
    with pytest.raises(ValueError, match="already exists"):
        store.provision(opaque(1))


def test_rollback_restores_objects_and_sequences() -> None:
    store = objstore.ObjectStore(scripted(), lambda: None)
    store.add(opaque(1))
    point = store.checkpoint()
    store.remove(store.visible(1, 1, ObjType.OPAQUE))
    store.add(opaque(2))
    store.rollback(point)
    assert [o.id for o in store.all()] == [1]
    store.remove(store.visible(1, 1, ObjType.OPAQUE))
    assert store.add(opaque(1)).sequence == 1  # the rolled-back delete left no trace


def test_a_malformed_sequence_key_is_a_state_error_not_a_crash(tmp_path: Path) -> None:
    # "5" (no ":type") once escaped as an IndexError traceback from `kms hsm-sim --state`
    path = tmp_path / "hsm.json"
    SimDevice(state_file=StateFile(path))
    doc = json.loads(path.read_text())
    doc["sequences"] = {"5": 1}
    path.write_text(json.dumps(doc))
    with pytest.raises(SimObjectFormatError, match="bad simulator state"):
        SimDevice(state_file=StateFile(path))


# --- audit policy -------------------------------------------------------------------


def test_a_fixed_force_audit_never_changes_again() -> None:
    policy = audit_policy.AuditPolicy(lambda: 0.0, lambda: None)
    policy.set_force(Audit.FIXED)
    refused(Err.INVALID_DATA, lambda: policy.set_force(Audit.OFF))
    assert policy.force == Audit.FIXED


def test_command_audit_settings_apply_all_or_nothing_and_fixed_ones_stay() -> None:
    policy = audit_policy.AuditPolicy(lambda: 0.0, lambda: None)
    policy.set_per_command([(Cmd.SIGN_EDDSA, Audit.FIXED)])
    refused(
        Err.INVALID_DATA,
        lambda: policy.set_per_command([(Cmd.DELETE_OBJECT, Audit.ON), (Cmd.ECHO, Audit.ON)]),
    )
    assert not policy.audited(Cmd.DELETE_OBJECT)  # nothing of the refused list applied
    policy.set_per_command([(Cmd.SIGN_EDDSA, Audit.OFF)])
    assert policy.per_command[Cmd.SIGN_EDDSA] == Audit.FIXED


def test_a_full_forced_log_refuses_audited_commands_but_not_log_maintenance() -> None:
    now = [0.0]
    policy = audit_policy.AuditPolicy(lambda: now[0], lambda: None)
    policy.factory()
    audited = (Cmd.SIGN_EDDSA, Cmd.SET_LOG_INDEX)  # GET_LOG_ENTRIES is never audited
    policy.set_per_command([(c, Audit.ON) for c in audited])
    policy.set_force(Audit.ON)
    while not policy.log.full:
        now[0] += 0.5
        policy.record(Cmd.SIGN_EDDSA, 34, 2, 4, 0xFFFF, Cmd.SIGN_EDDSA | 0x80)
    refused(Err.LOG_FULL, lambda: policy.check_room(Cmd.SIGN_EDDSA))
    policy.check_room(Cmd.GET_LOG_ENTRIES)
    policy.check_room(Cmd.SET_LOG_INDEX)
    policy.check_room(Cmd.DELETE_OBJECT)  # not audited: no entry to lose
    policy.record(Cmd.CREATE_SESSION, 10, 0xFFFF, 1, 0xFFFF, Cmd.CREATE_SESSION)
    assert policy.log.unlogged_auth == 0  # CREATE_SESSION is not audited here
    tick = int.from_bytes(policy.log.entries[-1][12:16], "big")
    assert tick == int(now[0] * 1000)  # milliseconds since boot on the injected clock


# --- session table ------------------------------------------------------------------


def test_the_seventeenth_session_finds_no_slot() -> None:
    table = sessions.SessionTable(lambda: 0.0, lambda n: b"\x01" * n, 30.0, None)
    key = default_auth_key()
    for _ in range(MAX_SESSIONS):
        table.create(key, b"\x02" * 8)
    assert table.active() == list(range(MAX_SESSIONS))
    refused(Err.SESSIONS_FULL, lambda: table.create(key, b"\x02" * 8))
    table.drop(3)
    assert table.create(key, b"\x02" * 8)[0] == 3  # the lowest free slot


def test_idle_sessions_expire_after_the_timeout_only() -> None:
    now = [0.0]
    table = sessions.SessionTable(lambda: now[0], lambda n: b"\x01" * n, 30.0, None)
    table.create(default_auth_key(), b"\x02" * 8)
    now[0] = 30.0
    table.expire()
    assert table.active() == [0]
    now[0] = 30.01
    table.expire()
    assert table.active() == []


def test_an_envelope_for_an_unauthenticated_session_is_rejected_and_keeps_it() -> None:
    table = sessions.SessionTable(lambda: 0.0, lambda n: b"\x01" * n, 30.0, None)
    table.create(default_auth_key(), b"\x02" * 8)
    assert table.open(b"") == sessions.Rejected(Err.WRONG_LENGTH, None)
    assert table.open(b"\x00" + b"\x00" * 24) == sessions.Rejected(Err.INVALID_SESSION, 0)
    assert table.active() == [0]  # half-open: it only expires


def test_a_bad_cmac_drops_the_session() -> None:
    table = sessions.SessionTable(lambda: 0.0, lambda n: b"\x01" * n, 30.0, None)
    key = default_auth_key()
    reply = table.create(key, b"\x02" * 8)
    keys = scp03.session_keys(key.secret[:16], key.secret[16:], b"\x02" * 8 + reply[1:9])
    host = scp03.host_cryptogram(keys.s_mac, b"\x02" * 8 + reply[1:9])
    mac = scp03.authenticate_mac(keys.s_mac, 0, host)[:8]
    table.authenticate(b"\x00" + host + mac)
    assert table.open(b"\x00" + b"\x00" * 16 + b"\x00" * 8) == sessions.Rejected(
        Err.AUTHENTICATION_FAILED, 0
    )
    assert table.active() == []


# --- structure ----------------------------------------------------------------------


def test_the_command_modules_never_import_the_device() -> None:
    # the handlers see the device through cmdbase.DeviceApi; importing device.py from
    # them (even for typing) brings back the device <-> commands cycle
    for name in ("commands", "cmd_objects", "cmd_keys", "cmdbase"):
        tree = ast.parse((SIM_DIR / f"{name}.py").read_text())
        imported = {
            n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
        } | {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert "kms.sim.yubihsm.device" not in imported, name
