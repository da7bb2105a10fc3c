"""The C library, for the few Linux calls the ``os`` module lacks (madvise on a range,
renameat2, syncfs, sync_file_range, malloc_trim). Callers look functions up with ``getattr`` and
fall back when one is missing."""

from __future__ import annotations

import ctypes
from typing import Any


def _load() -> Any:
    # dlopen(NULL): the symbols already loaded into this process, libc among them;
    # ctypes.util.find_library would run ldconfig in a subprocess (25 ms) to find it.
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


LIBC = _load()


_SYNC_FILE_RANGE_WRITE = 2


def start_writeback(fd: int) -> None:
    """Ask the kernel to start writing a file's dirty pages to disk now, without waiting.

    The flush before a run is published (``durability.sync_tree``) then finds most of the
    run's data already on disk instead of writing it all at the end. A hint: ignored
    where unsupported.
    """
    sync_file_range = getattr(LIBC, "sync_file_range", None)
    if sync_file_range is not None:
        sync_file_range(fd, ctypes.c_int64(0), ctypes.c_int64(0), _SYNC_FILE_RANGE_WRITE)


def release_free_memory() -> None:
    """Give the heap's free memory back to the system (glibc's ``malloc_trim``).

    glibc keeps what a stage of a scan freed (its batches' buffers, its records) for
    later allocations, so the process's resident memory would keep every stage's high
    mark, and grow a little with the number of images through fragmentation. Called
    between stages, each stage starts from what is really in use. Ignored where
    unsupported.
    """
    malloc_trim = getattr(LIBC, "malloc_trim", None)
    if malloc_trim is not None:
        malloc_trim(ctypes.c_size_t(0))
