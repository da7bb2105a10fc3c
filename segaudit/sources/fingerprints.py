"""A store's identity, cheap to take, to notice a store that changes while it is read.

:func:`store_fingerprint` reads metadata and a few bytes that are not the data (see
there); :func:`check_unchanged` compares the identity at the end of a run with the one
taken at its start.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Any

from segaudit.errors import InputChangedError, UnreadableStoreError, reason
from segaudit.sources.remote import is_url, url_fingerprint


def store_fingerprint(path: Path) -> dict[str, Any]:
    """A cheap identity of a store, from metadata and a few reads that are not the data.

    For a ``.npy`` file: its size, modification and change times, inode and device,
    and a hash of its first and last MiB. For a Zarr folder: total size, file count,
    the newest modification and change times, the folder's inode and device, a hash of
    the metadata files, and a hash over every file's (relative name, size, inode,
    modification time, change time).

    For a URL: :func:`segaudit.sources.remote.url_fingerprint`.

    The change time (ctime) is what catches a rewrite whose modification time was put
    back (``cp -p``, ``rsync -t``, ``os.utime``): no program can set it, and the kernel
    moves it on every write, rename, truncation and ``utime``; a file replaced by
    another (``rsync`` writes a new file and renames it) also gets another inode.
    Entries that cannot be read (a dangling link, a file removed meanwhile) count as
    part of the identity instead of failing, so a store changing under our feet is
    reported as a change.
    """
    if is_url(path):
        return url_fingerprint(str(path))
    path = Path(path)
    if path.is_file():
        return _file_fingerprint(path)
    return _folder_fingerprint(path)


def _file_fingerprint(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            info = os.fstat(handle.fileno())
            digest.update(handle.read(1 << 20))
            if info.st_size > 1 << 20:
                handle.seek(max(info.st_size - (1 << 20), 1 << 20))
                digest.update(handle.read(1 << 20))
    except OSError as error:
        raise UnreadableStoreError(f"{path} cannot be read ({reason(error)}).") from None
    return {
        "bytes": info.st_size,
        "mtime_ns": info.st_mtime_ns,
        "ctime_ns": info.st_ctime_ns,
        "inode": info.st_ino,
        "device": info.st_dev,
        "files": 1,
        "sha256_edges": digest.hexdigest()[:16],
    }


_ZARR_METADATA = ("zarr.json", ".zarray", ".zgroup", ".zattrs")


def _folder_fingerprint(path: Path) -> dict[str, Any]:
    metadata, entries = hashlib.sha256(), hashlib.sha256()
    total, newest, newest_change, files = 0, 0, 0, 0
    for root, dirs, names in os.walk(path):
        dirs.sort()
        for name in sorted(names):
            file = Path(root) / name
            relative = str(file.relative_to(path)).encode("utf-8", "surrogateescape")
            files += 1
            try:
                info = file.stat()
                meta = (
                    file.read_bytes()
                    if name in _ZARR_METADATA and stat.S_ISREG(info.st_mode)
                    else None
                )
            except OSError as error:
                entries.update(relative + f"\0!{error.errno}\n".encode())
                continue
            total += info.st_size
            newest = max(newest, info.st_mtime_ns)
            newest_change = max(newest_change, info.st_ctime_ns)
            identity = (info.st_size, info.st_ino, info.st_mtime_ns, info.st_ctime_ns)
            entries.update(relative + ("\0" + " ".join(map(str, identity)) + "\n").encode())
            if meta is not None:
                metadata.update(relative)
                metadata.update(meta)
    try:
        folder = os.stat(path)
        where = (folder.st_ino, folder.st_dev)
    except OSError:
        where = (0, 0)
    return {
        "bytes": total,
        "mtime_ns": newest,
        "ctime_ns": newest_change,
        "inode": where[0],
        "device": where[1],
        "files": files,
        "sha256_edges": metadata.hexdigest()[:16],
        "sha256_entries": entries.hexdigest()[:16],
    }


def check_unchanged(source: Any, before: dict[str, Any]) -> None:
    """Raise when a store changed between the start and the end of a run."""
    after = store_fingerprint(source.path)
    if after != before:
        raise InputChangedError(
            f"{source.path} changed while segaudit was reading it; its results would mix "
            "two versions, so nothing was written: rerun once the file is stable."
        )
