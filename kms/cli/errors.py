"""The one place that turns what a command raised into a message and an exit code.

Owns: the exit-code scheme and the error line's style for every `kms` command.
Never decides what is an error (the layers raise; kms/errors.py holds the types).

- 0: done (or a clean shutdown of `kms start`).
- 1 (`EXIT_REFUSED`): refused at run time: state, signer, device, key file, a
  check that found a problem. Nothing unsafe was done; the line says what to fix.
- 2 (`EXIT_USAGE`): usage or configuration: a bad flag or argument, a config file
  that does not load. Fix the command line or the named file/section/key.

Every failure is one line on stderr, `error: <what>` (the message names the file,
section and key, and the fix, where there is one). No traceback ever reaches the
operator: an unexpected exception becomes `error: internal error: ...` with exit 1,
and its traceback is printed only when $KMS_DEBUG is set.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable

import click

from kms.errors import ConfigError, KmsError, describe

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2


def error_line(message: str) -> str:
    """`error: <message>` on one line (newlines in a message are folded)."""
    text = " ".join(str(message).split())
    return f"error: {text}" if text else "error: failed"


def _say(message: str) -> None:
    click.echo(error_line(message), err=True)


def _usage_hint(e: click.UsageError) -> str:
    path = e.ctx.command_path if e.ctx is not None else "kms"
    return f"{e.format_message()} (see '{path} --help')"


def exit_code_for(e: KmsError) -> int:
    """2 for a configuration error, 1 for anything refused at run time."""
    return EXIT_USAGE if isinstance(e, ConfigError) else EXIT_REFUSED


def run_command(invoke: Callable[[], object]) -> int:
    """Run a click entry point in non-standalone mode and return the exit code to use."""
    try:
        rv = invoke()
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.exceptions.Abort:
        _say("aborted; nothing was changed")
        return EXIT_REFUSED
    except click.UsageError as e:
        _say(_usage_hint(e))
        return EXIT_USAGE
    except click.ClickException as e:
        _say(e.format_message())
        return e.exit_code
    except KmsError as e:
        _say(describe(e))
        return exit_code_for(e)
    except KeyboardInterrupt:
        _say("interrupted")
        return 130
    except OSError as e:
        _say(describe(e))
        return EXIT_REFUSED
    except Exception as e:
        if os.environ.get("KMS_DEBUG"):
            traceback.print_exc(file=sys.stderr)
        _say(
            f"internal error: {describe(e)} (a bug in kms: please report it;"
            " set KMS_DEBUG=1 for the traceback)"
        )
        return EXIT_REFUSED
    return rv if isinstance(rv, int) and not isinstance(rv, bool) else EXIT_OK
