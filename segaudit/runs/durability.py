"""Making a run durable before it is published, and swapping it into place atomically.

A run is built in a temporary folder beside RUN (:mod:`segaudit.runs.rundir`). Its
bulk is flushed to disk early, on a thread (:func:`start_flush`), while the rest is
worked out; :func:`sync_tree` then flushes what is left before the swap, so a power cut
soon after never leaves a run whose ``summary.json`` exists but whose arrays are empty.
:func:`exchange` swaps two paths in one ``renameat2(RENAME_EXCHANGE)`` where the kernel
has it; :func:`fsync_directory` makes a rename durable.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import threading
from collections.abc import Iterable
from pathlib import Path

from segaudit.libc import LIBC

RENAME_EXCHANGE = 2


def exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with renameat2; False where unsupported."""
    renameat2 = getattr(LIBC, "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd = -100
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), RENAME_EXCHANGE)
    if result == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def fsync_directory(path: Path) -> None:
    """Make a rename or a new entry in ``path`` durable (best effort)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# Up to this many files, fsync each; beyond, one syncfs (one journal commit, not one each).
FSYNC_EACH_LIMIT = 32
# Runs being built whose bulk is already being flushed (see start_flush), by folder.
EARLY_FLUSHES: dict[Path, threading.Thread] = {}


def start_flush(run: Path, folders: Iterable[Path]) -> None:
    """Start flushing the files in ``folders`` of the run being built in ``run``, on a thread.

    A run's bulk (its per-pixel arrays) is written well before the run is published.
    Flushing it then, on a thread that only waits for the disk, overlaps the disk's
    cache flush (about a tenth of a second for a scan here) with the work that is left,
    so the sync before publishing (:func:`sync_tree`) has little to do. Only the
    given folders are flushed, never scratch files that are deleted unwritten. Best
    effort: the final sync is what guarantees durability.
    """
    if run in EARLY_FLUSHES:
        return
    folders = list(folders)

    def flush() -> None:
        for folder in folders:
            with contextlib.suppress(OSError), os.scandir(folder) as entries:
                for entry in entries:
                    fd = os.open(entry.path, os.O_RDONLY)
                    try:
                        os.fsync(fd)
                    finally:
                        os.close(fd)
            fsync_directory(folder)

    thread = threading.Thread(target=flush, name="segaudit-flush", daemon=True)
    EARLY_FLUSHES[run] = thread
    thread.start()


def finish_early_flush(path: Path) -> None:
    """Wait for :func:`start_flush`'s thread for ``path``, if one runs."""
    thread = EARLY_FLUSHES.pop(path, None)
    if thread is not None:
        thread.join()


def sync_tree(path: Path) -> None:
    """Flush everything written under ``path`` to disk before it is published.

    Without this a power cut soon after the swap could leave a run whose
    ``summary.json`` exists but whose arrays are empty. A small run (a score's table
    and summary) fsyncs its own files, so it never waits for other programs' unwritten
    data; a run with per-image chunks flushes the whole file system holding it with
    one ``syncfs`` call, where available.
    """
    finish_early_flush(path)
    tree = [(Path(root), names) for root, _dirs, names in os.walk(path)]
    syncfs = getattr(LIBC, "syncfs", None)
    if syncfs is not None and sum(len(names) for _, names in tree) > FSYNC_EACH_LIMIT:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            if syncfs(fd) == 0:
                return
        finally:
            os.close(fd)
    for root, names in tree:
        for name in names:
            fd = os.open(root / name, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_directory(root)


def replace_by_renames(new: Path, dest: Path, old: Path) -> None:
    """Put ``new`` in place of the existing ``dest`` where :func:`exchange` cannot: move
    ``dest`` to ``old``, then ``new`` to ``dest``; if the second rename fails, ``dest``
    is moved back. A kill between the two leaves ``dest`` missing and its previous
    content in ``old``, for the caller's clean-up of leftovers to move back."""
    os.rename(dest, old)
    try:
        os.rename(new, dest)
    except BaseException:
        os.rename(old, dest)
        raise
