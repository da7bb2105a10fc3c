"""Pieces shared by every command: the console, progress, error-to-exit mapping."""

from __future__ import annotations

import functools
import inspect
import math
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from segaudit.errors import SegauditError

if TYPE_CHECKING:
    from rich.console import Console

F = TypeVar("F", bound=Callable[..., Any])


class LazyConsole:
    """A Rich console made on first use: importing Rich costs more than a quiet run's
    whole output, which is nothing."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Console | None = None

    @property
    def real(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


console = LazyConsole(stderr=False, soft_wrap=True, emoji=False)  # ":two:" in a path stays text
err_console = LazyConsole(stderr=True, soft_wrap=True, emoji=False)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one line on stderr and return the Exit to raise.

    The message names the user's paths and class names, so it is printed as plain
    text: ``[bold]`` in a path is shown, never taken for markup.
    """
    from segaudit.safetext import markup

    err_console.print(f"[bold red]error:[/] {markup(message)}", highlight=False, markup=True)
    return typer.Exit(code=code)


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised like Ctrl-C so every clean-up on the way out runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def raise_terminated(signum: int, frame: Any) -> None:
    """Signal handler for SIGTERM/SIGHUP (installed by ``segaudit.cli.main``)."""
    raise Terminated(signum)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class _Command:
    """The command being run: the run or output it names, and whether signals end with it."""

    target: Path | None = None
    hold_signals_at_end = False


def interrupted(error: KeyboardInterrupt) -> typer.Exit:
    """One line saying what a signal left on disk; the Exit with status 128 + the signal.

    Before the new run is swapped in, the previous results are untouched. After it, the
    new run is complete (it was written whole, then swapped in), so the line says so.
    The status stays 128 + the signal either way: the command did not finish (its
    summary and gate checks may be missing), which is what a CI job or supervisor must
    learn from the status.
    """
    from segaudit.runs.rundir import was_published
    from segaudit.safetext import printable

    signum = getattr(error, "signum", signal.SIGINT)
    what = "interrupted" if signum == signal.SIGINT else "terminated"
    target = _Command.target
    if target is not None and was_published(target):
        line = f"{what} after {printable(target)} was written; it holds the new complete run"
    elif target is not None:
        line = f"{what}; previous results in {printable(target)} are unchanged"
    else:
        line = f"{what}; previous results are unchanged"
    err_console.print(line, markup=False, highlight=False)
    return typer.Exit(code=128 + signum)


def hold_signals_at_end() -> None:
    """Ask for :func:`hold_signals_until_exit` once the command is over (console script only)."""
    _Command.hold_signals_at_end = True


def command_started() -> None:
    """Forget the previous command's run: a signal now concerns none yet."""
    _Command.target = None


def hold_signals_until_exit() -> None:
    """Once the command is over, ignore SIGINT/SIGTERM/SIGHUP until the process exits.

    Everything the command had to say is said and its status is decided; a signal now
    could only turn that true account into a wrong one. The signals are ignored by the
    whole process (blocking them in one thread would leave them to the others, such as
    Zarr's I/O thread). Only the console script asks for this, the process ending right
    after; a library caller's signals are left alone.
    """
    if _Command.hold_signals_at_end:
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)


def user_errors(func: F) -> F:
    """Turn library errors into one sentence on stderr and exit status 2; Ctrl-C into
    exit 130 and SIGTERM/SIGHUP into 143/129 (128 + the signal), with one line saying
    what is on disk."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        target = kwargs.get("out") or kwargs.get("run")
        _Command.target = Path(target) if target is not None else None
        try:
            return func(*args, **kwargs)
        except SegauditError as error:
            raise fail(str(error)) from None
        except KeyboardInterrupt as error:
            raise interrupted(error) from None
        except MemoryError:
            raise fail(out_of_memory(func)) from None

    return wrapper  # type: ignore[return-value]


# What lowers a command's memory, by the parameter of its own that does it.
_MEMORY_ADVICE = (
    ("memory_budget", "lower --memory-budget"),
    ("batch_size", "lower --batch-size"),
    ("workers", "use fewer --workers"),
    ("zoom", "lower --zoom"),
)


def out_of_memory(command: Any) -> str:
    """The sentence for a command that ran out of memory, naming only its own options."""
    names = inspect.signature(command).parameters
    advice = [text for name, text in _MEMORY_ADVICE if name in names]
    return "out of memory; " + (", or ".join(advice) if advice else "free some memory") + "."


def show_progress(quiet: bool) -> bool:
    """Progress bars only on an interactive terminal and never with --quiet."""
    return not quiet and sys.stderr.isatty()


class RichProgress:
    """A Rich progress bar on stderr implementing :class:`segaudit.progress.Progress`."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        self._bar = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=err_console.real,
            transient=True,
        )
        self._task: Any = None

    def start(self, description: str, total: int) -> None:
        if self._task is None:
            self._bar.start()
        else:
            self._bar.remove_task(self._task)
        self._task = self._bar.add_task(description, total=total)

    def advance(self, amount: int = 1) -> None:
        if self._task is not None:
            self._bar.advance(self._task, amount)

    def finish(self) -> None:
        if self._task is not None:
            self._bar.remove_task(self._task)
            self._task = None
            self._bar.stop()


def make_progress(quiet: bool) -> Any:
    """A Rich bar on a terminal; nothing in CI, cron or with --quiet."""
    from segaudit.progress import NullProgress

    return RichProgress() if show_progress(quiet) else NullProgress()


def parse_size(text: str) -> int:
    """'512M', '2G', '300MiB' or a plain number of bytes -> bytes."""
    units = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    cleaned = text.strip().upper().removesuffix("IB").removesuffix("B")
    number, unit = cleaned, ""
    if cleaned and cleaned[-1] in units:
        number, unit = cleaned[:-1], cleaned[-1]
    try:
        value = float(number) * units[unit]
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a size like 512M or 2G.") from None
    if not math.isfinite(value):
        raise typer.BadParameter(f"{text!r} is not a size like 512M or 2G.")
    if value < 2**20:
        raise typer.BadParameter(f"{text!r} is too small; give at least 1M.")
    return int(value)
