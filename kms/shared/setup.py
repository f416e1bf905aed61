"""Build the etcd client and the per-chain gates from `[shared_state]`.

Owns: reading the etcd password file, choosing which chains are gated (every
chain unless `shared_state = false`), and the start-up check that each gated
chain's record exists and decodes (else start-up is refused, naming
`kms state push`), raising a record that is below this host's state file (never
lowering one). Never signs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from kms.config import Config, SharedStateConfig
from kms.errors import KeyFileError, SharedStateError
from kms.keyfile import read_secret_file
from kms.shared.admin import push
from kms.shared.etcd import EtcdClient, TlsFiles
from kms.shared.gate import GateObserver, SharedGate
from kms.shared.preference import Preference
from kms.state.machine import SignState

log = logging.getLogger(__name__)


def make_client(cfg: SharedStateConfig) -> EtcdClient:
    password = None
    if cfg.password_file is not None:
        try:
            password = read_secret_file(cfg.password_file).decode().strip()
        except (KeyFileError, UnicodeDecodeError) as e:
            raise SharedStateError(f"[shared_state] auth.password_file: {e}") from None
    tls = None
    if cfg.ca_file or cfg.cert_file:
        tls = TlsFiles(cfg.ca_file, cfg.cert_file, cfg.key_file)
    return EtcdClient(
        list(cfg.endpoints),
        timeout=cfg.timeout,
        tls=tls,
        username=cfg.username,
        password=password,
    )


def gated_chains(config: Config) -> list[str]:
    if config.shared_state is None:
        return []
    return [c.id for c in config.chains if c.shared_state]


async def open_gates(
    config: Config,
    observer: GateObserver | None = None,
    floors: Mapping[str, SignState] | None = None,
) -> tuple[EtcdClient | None, dict[str, SharedGate]]:
    """The client and one loaded gate per gated chain (SharedStateError on any problem).

    `floors`: this host's local states. A record below one is raised to it first (never
    lowered): what this host signed before must never be signable by another host, e.g.
    after the etcd cluster was rebuilt from an older push.
    """
    cfg = config.shared_state
    if cfg is None:
        return None, {}
    client = make_client(cfg)
    pref = None
    if cfg.preference_ttl is not None:
        pref = Preference(
            client,
            prefix=cfg.prefix,
            host_id=cfg.host_id,
            ttl=cfg.preference_ttl,
            delay=cfg.preference_delay,
        )
    gates: dict[str, SharedGate] = {}
    try:
        for chain_id in gated_chains(config):
            gate = SharedGate(
                client,
                prefix=cfg.prefix,
                chain_id=chain_id,
                host_id=cfg.host_id,
                observer=observer,
            )
            gate.preference = pref
            rec = await gate.load()
            floor = (floors or {}).get(chain_id)
            if floor is not None and floor.hrs > rec.hrs:
                out = await push(client, cfg.prefix, chain_id, floor, cfg.host_id)
                log.warning(
                    "chain %s: the shared watermark was below this host's state file; %s",
                    chain_id,
                    out.message,
                )
                rec = await gate.load()
            log.info(
                "shared watermark ready",
                extra={
                    "fields": {
                        "chain": chain_id,
                        "key": gate.key.decode(),
                        "record": rec.describe(),
                        "host_id": cfg.host_id,
                    }
                },
            )
            gates[chain_id] = gate
    except BaseException:
        await client.close()
        raise
    for c in config.chains:
        if not c.shared_state:
            log.warning(
                "chain %s opts out of [shared_state]: signing on this host's state file alone",
                c.id,
            )
    return client, gates
