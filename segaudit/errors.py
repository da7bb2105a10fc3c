"""Errors whose messages are written for users.

Every leaf subclasses :class:`SegauditError`; the CLI prints ``str(error)`` as one
sentence and exits with status 2. Leaves also subclass the matching built-in so
library callers can catch them idiomatically.
"""

from __future__ import annotations


class SegauditError(ValueError):
    """Base class: a problem with the user's input or request, not a bug."""


class InputNotFoundError(SegauditError, FileNotFoundError):
    """An input file or dataset folder does not exist."""


class InvalidInputError(SegauditError):
    """An input store exists but its shape, dtype or values are unusable."""


class UnreadableStoreError(SegauditError, OSError):
    """A store could not be read: truncated, corrupt or of an unknown format."""


class RunDirectoryError(SegauditError):
    """The output location cannot hold a run, or a run directory is incomplete."""


class InputChangedError(SegauditError):
    """An input store changed while segaudit was reading it."""


class OutputWriteError(SegauditError, OSError):
    """Writing an output failed (disk full, permissions)."""


class SchedulerError(SegauditError, ConnectionError):
    """The Dask scheduler given with ``--scheduler`` cannot be used."""


def reason(error: BaseException) -> str:
    """The first line of an exception's message, for a sentence that names a file."""
    text = str(error).strip().rstrip(".") or type(error).__name__
    return text.splitlines()[0][:200]
