"""The ``segaudit`` command line: parses options and calls the library, nothing more.

Each command lives in its own module and is registered here.
"""

from __future__ import annotations

import copy
from typing import Annotated

import typer

from segaudit import __version__

app = typer.Typer(
    name="segaudit",
    help="Find annotation errors in semantic-segmentation datasets.",
    no_args_is_help=True,
    add_completion=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"segaudit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Find annotation errors in semantic-segmentation datasets."""


def _register() -> None:
    from segaudit.cli import scan

    app.command("scan")(scan.scan)

    from segaudit.cli import synth

    app.command("synth")(synth.synth)

    from segaudit.cli import review

    app.command("swaps")(review.swaps)
    app.command("render")(review.render)

    from segaudit.cli import score

    app.command("score")(score.score)
    app.command("eval")(score.evaluate)


_register()


def _app_for(args: list[str]) -> typer.Typer:
    """The app to run for ``args``: when they start with a command, a copy of ``app``
    holding that command alone. Typer turns every registered command's signature into
    options on each run (12 ms for all of them), though only one command runs."""
    chosen = [c for c in app.registered_commands if args and c.name == args[0]]
    if not chosen:
        return app
    slim = copy.copy(app)
    slim.registered_commands = chosen
    return slim


def main() -> None:
    """Console-script entry point.

    SIGTERM and SIGHUP (how cron, CI runners and supervisors stop jobs) are raised
    as exceptions like Ctrl-C, so the run being built is removed on the way out and
    the exit status names the signal (143, 129). A bug exits 3 with its traceback,
    never 1, which CI gates read as "the data failed the gate".
    """
    import gc
    import signal
    import sys
    import traceback

    from segaudit.cli._common import raise_terminated

    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) is signal.SIG_DFL:
            signal.signal(signum, raise_terminated)
    # The ~30,000 objects made by imports live until exit: keep the cyclic garbage
    # collector from walking them again and again during the run, and at exit, where
    # its passes over them cost about 25 ms of a one-second scan.
    gc.freeze()
    try:
        _app_for(sys.argv[1:])()
    except Exception:
        traceback.print_exc()
        sys.stderr.write("segaudit: internal error (a bug, not your data); please report it.\n")
        sys.exit(3)
    finally:
        gc.freeze()
