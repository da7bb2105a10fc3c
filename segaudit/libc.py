"""The C library, for the few Linux calls the ``os`` module lacks (madvise on a range,
renameat2, syncfs, sync_file_range). Callers look functions up with ``getattr`` and
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
