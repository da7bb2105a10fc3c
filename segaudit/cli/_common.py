"""Pieces shared by every command: the console, progress, error-to-exit mapping."""

from __future__ import annotations

import functools
import math
import signal
import sys
from collections.abc import Callable
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


console = LazyConsole(stderr=False, soft_wrap=True)
err_console = LazyConsole(stderr=True, soft_wrap=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one line on stderr and return the Exit to raise."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    return typer.Exit(code=code)


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised like Ctrl-C so every clean-up on the way out runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def raise_terminated(signum: int, frame: Any) -> None:
    """Signal handler for SIGTERM/SIGHUP (installed by ``segaudit.cli.main``)."""
    raise Terminated(signum)


def user_errors(func: F) -> F:
    """Turn library errors into one sentence on stderr and exit status 2; Ctrl-C into
    exit 130 and SIGTERM/SIGHUP into 143/129 (128 + the signal), with one line."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except SegauditError as error:
            raise fail(str(error)) from None
        except KeyboardInterrupt as error:
            signum = getattr(error, "signum", signal.SIGINT)
            what = "interrupted" if signum == signal.SIGINT else "terminated"
            run = kwargs.get("out") or kwargs.get("run")
            where = f" in {run}" if run is not None else ""
            err_console.print(
                f"{what}; previous results{where} are unchanged", markup=False, highlight=False
            )
            raise typer.Exit(code=128 + signum) from None
        except MemoryError:
            raise fail(
                "out of memory; lower --memory-budget or --batch-size, or use fewer --workers."
            ) from None

    return wrapper  # type: ignore[return-value]


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
