"""A run for an object store, built by Dask workers that share no disk with the client.

When a scan on a Dask cluster writes its run to a URL, each task writes its files (its
images' chunks, issue masks, regions and mispredicted-pixel records) into a folder of
its own on its worker, then uploads them to the hidden prefix the run is being built
under (:func:`segaudit.runs.objectstore.remote_run`) and removes the folder: the
workers write straight to the run store, and the client never needs their disks. A
file a task or the client reads that another task wrote (records for the cut, labels
for the regions) is fetched from that prefix on first use. The client uploads only the
files it wrote itself (tables, metadata, ``summary.json`` last) when it publishes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segaudit.errors import OutputWriteError, RunDirectoryError, reason

PART_PREFIX = "segaudit-part-"


def on_worker(parts: RemoteParts | None, shipped: bool, folder: Path) -> bool:
    """Whether a sink's copy writes into a worker's folder of its own: the run is for a
    URL (``parts``), the copy was sent to a worker, and ``folder`` is one made by
    :meth:`RemoteParts.new_folder`."""
    return parts is not None and shipped and folder.name.startswith(PART_PREFIX)


@dataclass
class RemoteParts:
    """The hidden prefix (a URL) a run is being built under, for every process writing it."""

    url: str
    _fs: Any = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url, "_fs": None}  # filesystems reconnect in each process

    def filesystem(self) -> tuple[Any, str]:
        from segaudit.runs.objectstore import run_filesystem

        if self._fs is None:
            self._fs = run_filesystem(self.url)
        return self._fs

    @staticmethod
    def new_folder() -> Path:
        """A folder of this process's own to write a task's files into, named with its
        process id: folders that workers killed mid-task left are removed here, as
        their process is gone."""
        from segaudit.runs.objectstore import clean_stale_staging

        clean_stale_staging(Path(tempfile.gettempdir()), PART_PREFIX)
        return Path(tempfile.mkdtemp(prefix=f"{PART_PREFIX}{os.getpid()}-"))

    def upload(self, folder: Path, fetched: set[str] | frozenset[str] = frozenset()) -> list[str]:
        """Upload every file under ``folder`` but those ``fetched`` from the prefix to the
        same names under the prefix, then remove ``folder``; returns the names."""
        names = sorted(
            name for p in folder.rglob("*")
            if p.is_file() and (name := str(p.relative_to(folder))) not in fetched
        )  # fmt: skip
        fs, root = self.filesystem()
        try:
            if names:
                fs.put([str(folder / n) for n in names], [f"{root}/{n}" for n in names])
        except Exception as error:  # each backend has its own errors
            raise OutputWriteError(
                f"uploading a task's files to {self.url} failed ({reason(error)}); nothing "
                "was published."
            ) from None
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return names

    def fetch(self, folder: Path, name: str) -> list[str]:
        """Make ``folder/name`` (a file, or a folder of files) a copy of the prefix's, when
        this process does not hold it yet; returns the names of the files fetched."""
        target = folder / name
        if target.exists():
            return []
        fs, root = self.filesystem()
        remote = f"{root}/{name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            fs.invalidate_cache(remote)  # another task may have uploaded it since
            found = fs.find(remote)  # the file itself, or every file under the folder
            if not found:
                raise FileNotFoundError(remote)
            names = [p[len(root) + 1 :] for p in found]
            for fetched in names:
                (folder / fetched).parent.mkdir(parents=True, exist_ok=True)
            fs.get(found, [str(folder / n) for n in names])
        except FileNotFoundError:
            raise RunDirectoryError(
                f"{name} of the run being built at {self.url} is missing (a task's upload was "
                "lost); nothing was published: rerun."
            ) from None
        except Exception as error:
            raise OutputWriteError(
                f"reading {name} of the run being built at {self.url} failed "
                f"({reason(error)})."
            ) from None
        return names

    def remove(self, name: str) -> None:
        """Remove ``name`` (a folder of files; "" for all) from the prefix."""
        fs, root = self.filesystem()
        try:
            fs.rm(f"{root}/{name}" if name else root, recursive=True)
        except FileNotFoundError:
            pass

    def listing(self) -> dict[str, int]:
        """Every object under the prefix: relative name -> size."""
        from segaudit.runs.objectstore import listing

        fs, root = self.filesystem()
        return listing(fs, root)
