"""kms.hsm.keyflows called directly (no CLI): the write-phase rules of keygen and raw import,
against simulated replicas through the real `yubihsm` library."""

from __future__ import annotations

import pytest
from yubihsm.defs import COMMAND, ERROR, OBJECT

from kms.errors import KeyCommandError
from kms.hsm.backup import RawWrapped
from kms.hsm.keyadmin import export_wrapped
from kms.hsm.keyflows import (
    DeviceSpec,
    connected,
    keygen_flow,
    raw_import_flow,
    specs_from_flags,
)
from kms.signer.yubihsm_session import parse_connector
from kms.sim.yubihsm import Cap, SimulatedHsm

from .conftest import ADMIN_AUTH_ID, ADMIN_PASSWORD, KEY_ID, SEED, SimFactory

NEW_ID = 9


def specs(sims: list[SimulatedHsm]) -> list[DeviceSpec]:
    asked: list[int] = []

    def password() -> str:
        asked.append(1)
        return ADMIN_PASSWORD

    out = specs_from_flags([parse_connector(s.url) for s in sims], ADMIN_AUTH_ID, password)
    assert all(s.password() == ADMIN_PASSWORD for s in out) and len(asked) == 1  # asked once
    return out


def holds(sim: SimulatedHsm, key_id: int) -> bool:
    return any(o.id == key_id and o.type == OBJECT.ASYMMETRIC_KEY for o in sim.device.objects())


def test_keygen_that_fails_on_a_replica_says_which_devices_now_hold_the_key(
    sims: SimFactory,
) -> None:
    reps = sims(2, seed=None)
    reps[1].faults.fail_next(1, ERROR.STORAGE_FAILED, commands={COMMAND.IMPORT_WRAPPED})
    devs = specs(reps)
    with connected(devs) as devices, pytest.raises(KeyCommandError) as err:
        keygen_flow(
            devices,
            NEW_ID,
            label="v",
            domains=1,
            exportable=True,
            wrap_key_id=1,
            backup=None,
        )
    msg = str(err.value)
    assert f"key {NEW_ID} is now on: {devs[0].name}; NOT on: {devs[1].name}" in msg
    assert [holds(s, NEW_ID) for s in reps] == [True, False]


def test_raw_import_shows_the_key_before_it_goes_into_any_other_replica(
    sims: SimFactory,
) -> None:
    (source,) = sims(1, seed=None)
    source.device.put_ed25519_seed(
        KEY_ID, SEED, capabilities=Cap.SIGN_EDDSA | Cap.EXPORTABLE_UNDER_WRAP
    )
    reps = sims(2, seed=None)
    with connected(specs([source])) as (dev,):
        blob = dev.call(lambda s: export_wrapped(s, 1, KEY_ID))
        expected = dev.find(KEY_ID)
    assert expected is not None and expected.public_key is not None
    seen: list[tuple[bytes, list[bool]]] = []
    with connected(specs(reps)) as devices:
        pub = raw_import_flow(
            devices,
            KEY_ID,
            RawWrapped(blob, "base64"),
            1,
            force=False,
            show=lambda pk: seen.append((pk, [holds(s, KEY_ID) for s in reps])),
        )
    assert pub == expected.public_key
    assert seen == [(expected.public_key, [True, False])]  # shown once, one replica holding it
    assert [holds(s, KEY_ID) for s in reps] == [True, True]
