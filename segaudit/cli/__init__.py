"""The ``segaudit`` command line: parses options and calls the library, nothing more.

Each command lives in its own module and is registered here.
"""

from __future__ import annotations

import copy
import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from segaudit import __version__


class SegauditGroup(TyperGroup):
    """The command group, answering usage errors and signals in one line each.

    Click shows a usage error as a five-line box; cron mail and CI logs want one line:
    ``error: <what> Usage: <usage>; see '<command> --help'.`` with exit status 2.
    A signal that lands outside a command's own handling (while options are parsed,
    or just after the command returned) gets the same line as inside it.
    """

    def main(
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            status = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.TyperException as error:  # usage errors and other Click errors
            sys.exit(_report_usage_error(error))
        except typer.Abort:  # end of input at a prompt
            from segaudit.cli._common import fail

            sys.exit(fail("aborted.", code=1).exit_code)
        sys.exit(status if isinstance(status, int) else 0)

    def invoke(self, ctx: Any) -> Any:
        from segaudit.cli._common import command_started, hold_signals_until_exit, interrupted

        command_started()
        try:
            try:
                return super().invoke(ctx)
            finally:
                hold_signals_until_exit()
        except KeyboardInterrupt as error:
            raise interrupted(error) from None


def _report_usage_error(error: typer.TyperException) -> int:
    """Print a Click error as one line (the help page itself when no arguments were given)."""
    from segaudit.cli._common import fail

    code = int(getattr(error, "exit_code", 2))
    if type(error).__name__ == "NoArgsIsHelpError":  # the help page, printed already
        message = error.format_message()
        if message.strip():
            typer.echo(message, err=True)
        return code
    parts = [error.format_message().strip().rstrip(".") + "."]
    ctx = getattr(error, "ctx", None)
    if ctx is not None:
        hint = ""
        if ctx.command.get_help_option(ctx) is not None:
            hint = f"; see '{ctx.command_path} {ctx.help_option_names[0]}'"
        parts.append(f"{ctx.get_usage()}{hint}.")
    fail(" ".join(" ".join(parts).split()), code=code)
    return code


app = typer.Typer(
    name="segaudit",
    cls=SegauditGroup,
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
    app.command("export")(review.export)

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
    the exit status names the signal (143, 129). Once the command is over, these
    signals are held until the process exits, so its last words and status stand. A
    bug exits 3 with its traceback, never 1, which CI gates read as "the data failed
    the gate".
    """
    import gc
    import os
    import signal
    import traceback

    # OpenBLAS (numpy's and SciPy's, one thread a core each) starts its threads spinning
    # for work when loaded: about 0.2 s of CPU a process, where segaudit's commands make
    # no BLAS call worth a thread (synth's matrix products still get them). Idle
    # threads sleep at once instead; set before numpy is first imported, and a user's
    # own setting stands.
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
    from segaudit.cli._common import hold_signals_at_end, raise_terminated

    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) is signal.SIG_DFL:
            signal.signal(signum, raise_terminated)
    hold_signals_at_end()
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
