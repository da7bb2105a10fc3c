"""Pieces shared by every command: the console, progress, error-to-exit mapping."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

from segaudit.errors import SegauditError

F = TypeVar("F", bound=Callable[..., Any])

console = Console(stderr=False, soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one line on stderr and return the Exit to raise."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    return typer.Exit(code=code)


def user_errors(func: F) -> F:
    """Turn library errors into one sentence on stderr and exit status 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except SegauditError as error:
            raise fail(str(error)) from None
        except KeyboardInterrupt:
            err_console.print("interrupted; previous results are unchanged")
            raise typer.Exit(code=130) from None

    return wrapper  # type: ignore[return-value]


def show_progress(quiet: bool) -> bool:
    """Progress bars only on an interactive terminal and never with --quiet."""
    return not quiet and sys.stderr.isatty()
