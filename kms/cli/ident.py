"""`kms ident show`: the identities kms presents to validator nodes.

Owns: printing, for an identity key file (`--key`) or for every `secret_key` of a
config (`-c`), the libp2p peer ID (what the node's `priv_validator_laddr =
"noise://<this>@ip:port"` must allowlist) and the CometBFT node ID (tcp://). Reads the
key file only; never writes anything. Errors are one line on stderr, exit code 1.
"""

from __future__ import annotations

from pathlib import Path

import click

from kms.cli.options import CONFIG_PATH_OPTION
from kms.errors import KmsError
from kms.identity import identity_public_key, load_identity_key
from kms.noise.peerid import peer_id_from_ed25519
from kms.secretconn.handshake import peer_id as node_id


def identity_lines(key_path: Path) -> list[str]:
    """What `kms ident show` prints for one identity key file."""
    pub = identity_public_key(load_identity_key(key_path))
    return [
        f"identity key:    {key_path}",
        f"libp2p peer ID:  {peer_id_from_ed25519(pub)}   (noise://: allowlist it on the node)",
        f"node ID:         {node_id(pub)}",
    ]


@click.group("ident")
def ident() -> None:
    """The identity kms presents to validator nodes."""


@ident.command("show")
@CONFIG_PATH_OPTION
@click.option(
    "--key",
    "key_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="An identity key file (instead of the config's secret_key entries).",
)
def show(config_path: Path | None, key_path: Path | None) -> None:
    """Print kms's libp2p peer ID and node ID for its identity key(s)."""
    try:
        if key_path is not None:
            keys = [key_path]
        else:
            from kms.config import config_path_from_env, load_config

            config = load_config(config_path_from_env(config_path))
            keys = list(dict.fromkeys(v.secret_key for v in config.validators if v.secret_key))
            if not keys:
                raise click.ClickException("no [[validator]] in the config uses an identity key")
        for i, path in enumerate(keys):
            if i:
                click.echo("")
            for line in identity_lines(path):
                click.echo(line)
    except KmsError as e:
        raise click.ClickException(str(e)) from None
