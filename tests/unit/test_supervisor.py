"""`kms.supervisor.build`: a start-up that fails half way releases what it had opened."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from kms.config import Config, load_config
from kms.errors import KeyFileError, StateFileError
from kms.state.guard import ChainGuard
from kms.supervisor import build
from tests.integration.daemon.harness import make_home

CHAIN = "test-chain-1"


def _config(root: Path) -> Config:
    home = make_home(root, [CHAIN])
    text = home.chain_section(CHAIN)
    text += home.validator_section(CHAIN, "tcp://127.0.0.1:1", home.identity, "v0.38")
    text += home.softsign_section([CHAIN])
    config = load_config(home.write_config(text))
    # spoilt after the config checked it: build reads it last, after it opened the
    # chain's state file and its signer
    home.identity.write_text("not a key\n")
    return config


async def test_a_failed_build_releases_the_state_file_lock(tmp_path: Path) -> None:
    config = _config(tmp_path)
    (chain,) = config.chains
    with pytest.raises(KeyFileError):
        await build(config)
    # the guard opened for the chain was closed: its state-file lock is free again
    guard = ChainGuard.open(chain)
    guard.close()


async def test_the_lock_is_held_while_a_guard_is_open(tmp_path: Path) -> None:
    # the check above means something: a guard left open makes a second open fail
    config = _config(tmp_path)
    (chain,) = config.chains
    guard = ChainGuard.open(chain)
    try:
        with pytest.raises(StateFileError):
            ChainGuard.open(chain)
    finally:
        guard.close()


def _good_config(root: Path) -> Config:
    home = make_home(root, [CHAIN])
    text = home.chain_section(CHAIN)
    text += home.validator_section(CHAIN, "tcp://127.0.0.1:1", home.identity, "v0.38")
    text += home.softsign_section([CHAIN])
    return load_config(home.write_config(text))


async def test_the_starting_point_is_logged_only_once_a_signal_means_a_clean_stop(
    tmp_path: Path,
) -> None:
    # `kms start` logs its starting point through on_start; whoever stops kms as soon as
    # it sees those lines must get a clean shutdown, not the default SIGTERM kill (a CI
    # run once caught kms in that window and got exit -15)
    daemon = await build(_good_config(tmp_path))
    seen: list[object] = []

    def on_start() -> None:
        seen.append(signal.getsignal(signal.SIGTERM))
        daemon.stop_event.set()

    before = signal.getsignal(signal.SIGTERM)
    await daemon.run(on_start=on_start)
    assert len(seen) == 1 and seen[0] is not signal.SIG_DFL and seen[0] != before
    assert signal.getsignal(signal.SIGTERM) == before  # handlers removed after the run
