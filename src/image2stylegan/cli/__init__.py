"""The ``i2s`` command line. Thin: parse options, call the library, print one-line notices and results.

Errors the user can fix (bad input, missing weights) print one line to stderr and exit with status 2; nothing is
written for a run that fails (every output file is written atomically at the end). Notices (what the user should
know that is not an error, e.g. a photo was centre-cropped) come from the library as warnings and print as one
``note: ...`` line each on stderr (:func:`.common.showing_notices`). Each module here adds its commands to the one
click group defined in :mod:`.common`.
"""

from __future__ import annotations

import signal
import sys

import click

from ..errors import Image2StyleGANError
from . import activations, crossover, reconstruct, style_transfer  # noqa: F401  (each registers its commands)
from . import faces  # noqa: F401  (i2s faces, i2s paste-back)
from . import convert  # noqa: F401  (i2s convert)
from . import serve  # noqa: F401  (i2s serve)
from .common import cli, resolve_device, showing_notices

__all__ = ["cli", "main", "resolve_device"]


class Terminated(KeyboardInterrupt):
    """SIGTERM outside a run (while loading or saving): unwinds like Ctrl-C, so staging folders are removed."""


def _terminate(signum, frame) -> None:
    raise Terminated


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)  # a run's own handler (StopControl) takes over while it optimises
    try:
        with showing_notices():  # library notices as `note: ...` lines (the group installs it too, for CliRunner)
            cli.main(standalone_mode=False)
    except click.exceptions.Abort as exc:  # click's form of a KeyboardInterrupt outside a run (loading, saving)
        terminated = isinstance(exc.__context__, Terminated)
        click.echo(f"{'terminated (SIGTERM)' if terminated else 'interrupted'}; no outputs were written for the "
                   "unfinished run", err=True)
        sys.exit(143 if terminated else 130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except Image2StyleGANError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("interrupted; no outputs were written for the unfinished run", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
