"""Reading a run on an object store (``segaudit swaps s3://bucket/runs/nightly``).

:func:`open_remote_run` checks the run against its manifest first (``summary.json``
present, every object it lists present with its size: :func:`check_manifest`), then
gives the readers a local copy of the run, filled as they read it:

- when the run is opened: ``summary.json`` and the run's top-level files (``images.csv``,
  ``image_scores.csv``, ``regions.csv``, ...), a few small objects every command reads;
- an array (``issues.zarr``) or a folder (``photos``) when a command first reads it
  (:meth:`RunObjects.fetch`): all its objects in one batched request. Arrays a command
  does not read are never downloaded.

Every object fetched must have the size the manifest lists, else the run changed while
it was read and the command stops. The copy is a temporary folder,
``segaudit-read-PID-…/NAME`` in the system's temporary directory, removed when the run
is garbage-collected or the process exits; the next read of a URL removes the copies of
processes that are gone (killed).

Commands that write into a run (``swaps``, ``render``) write into the copy; then
:meth:`RunObjects.publish` checks that RUN still holds the run that was read and uploads
what they wrote under a hidden prefix beside RUN, copies it into RUN (``index.html``
last) and deletes the hidden prefix. The run's manifest does not list these later
outputs; :func:`check_manifest` accepts them beside the objects it lists.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import uuid
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segaudit.errors import OutputWriteError, RunDirectoryError, SegauditError, reason
from segaudit.runs.objectstore import (
    MANIFEST,
    check_manifest,
    clean_stale_staging,
    listing,
    remove_leftovers,
    run_filesystem,
)
from segaudit.runs.run import SUMMARY, Run, check_summary
from segaudit.runs.rundir import TEMP_PREFIX

READ_PREFIX = "segaudit-read-"
LAST = "index.html"  # a page's marker: a render folder is complete when it holds it


def _entry(name: str) -> str:
    """The top-level entry (file or folder) an object of the run belongs to."""
    return name.split("/", 1)[0]


@dataclass
class RunObjects:
    """The objects of a run at ``url``, as its manifest lists them, and the local copy
    ``local`` they are fetched into."""

    url: str
    fs: Any
    root: str
    manifest: dict[str, int]
    local: Path
    _fetched: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def holds(self, entry: str) -> bool:
        """Whether the run holds the top-level file or folder ``entry``."""
        return any(_entry(name) == entry for name in self.manifest)

    def fetch(self, entry: str) -> Path:
        """The local path of ``entry``, every object of it fetched and checked."""
        with self._lock:  # readers on several threads fetch an entry once
            wanted = [n for n in self.manifest if _entry(n) == entry and n not in self._fetched]
            if wanted:
                self._get(wanted)
        return self.local / entry

    def fetch_files(self, everything: bool = False) -> None:
        """The run's top-level files (its tables and marker), or ``everything``."""
        with self._lock:
            self._get([n for n in self.manifest if everything or "/" not in n])

    def _get(self, names: list[str]) -> None:
        if not names:
            return
        targets = [self.local / name for name in names]
        for target in targets:
            target.parent.mkdir(parents=True, exist_ok=True)
        try:  # one batched call: async backends send the requests concurrently
            self.fs.get([f"{self.root}/{n}" for n in names], [str(t) for t in targets])
        except FileNotFoundError:
            raise RunDirectoryError(
                f"{self.url} lost objects while being read; it was replaced meanwhile, run "
                "the command again."
            ) from None
        except Exception as error:  # each backend has its own errors
            raise RunDirectoryError(
                f"{self.url} cannot be read ({reason(error)}); check the URL and the credentials."
            ) from None
        for name, target in zip(names, targets, strict=True):
            size = target.stat().st_size if target.is_file() else None
            if size != self.manifest[name]:
                raise RunDirectoryError(
                    f"{self.url}/{name} has {size} bytes, not the {self.manifest[name]} its "
                    "manifest lists; the run changed while being read, run the command again."
                )
        self._fetched.update(names)

    def publish(self, entries: Sequence[str], summary: dict[str, Any], command: str) -> None:
        """Upload the ``entries`` a command wrote into the local copy into RUN, when RUN
        still holds the run read (``summary``); refused, nothing written, otherwise."""
        if current_summary(self.url) != summary:
            raise RunDirectoryError(
                f"{self.url} was replaced by another segaudit process while `segaudit "
                f"{command}` read it; nothing was written, run it again."
            )
        files = _files_under(self.local, entries)
        parent, _, name = self.root.rpartition("/")
        hidden = f"{parent}/{TEMP_PREFIX}{name}-{uuid.uuid4().hex[:8]}"
        try:
            remove_leftovers(self.fs, parent, name)
            self.fs.put([str(self.local / n) for n in files], [f"{hidden}/{n}" for n in files])
            _replace_entries(self.fs, self.root, hidden, entries, files)
            self.fs.rm(hidden, recursive=True)
        except Exception as error:  # each backend has its own errors
            elsewhere = " (or pass --out DIR)" if command == "render" else ""
            raise OutputWriteError(
                f"writing {', '.join(entries)} into {self.url} failed ({reason(error)}); "
                f"`segaudit {command}` writes into the run: check that the credentials may "
                f"write there{elsewhere} and run it again."
            ) from None


def _files_under(local: Path, entries: Sequence[str]) -> list[str]:
    """The files of ``entries`` in the local copy, relative to it, markers last."""
    found = []
    for entry in entries:
        path = local / entry
        paths = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        found += [str(p.relative_to(local)) for p in paths if p.is_file()]
    return sorted(found, key=lambda name: name.endswith(f"/{LAST}"))


def _replace_entries(
    fs: Any, root: str, hidden: str, entries: Sequence[str], files: list[str]
) -> None:
    """RUN's ``entries`` replaced by those under ``hidden``: the old pages' markers
    deleted first, objects the new ones do not replace deleted, the new markers last."""
    held = [name for name in listing(fs, root) if _entry(name) in entries]
    old_markers = [f"{root}/{n}" for n in held if n.endswith(f"/{LAST}")]
    if old_markers:
        fs.rm(old_markers)  # the previous page stops being complete
    markers = [name for name in files if name.endswith(f"/{LAST}")]
    _copy(fs, hidden, root, [name for name in files if name not in markers])
    stale = [f"{root}/{n}" for n in held if n not in files and not n.endswith(f"/{LAST}")]
    if stale:
        fs.rm(stale)
    _copy(fs, hidden, root, markers)


def _copy(fs: Any, source: str, target: str, names: list[str]) -> None:
    """Server-side copies of ``names`` from under ``source`` to under ``target``."""
    if names:
        fs.copy([f"{source}/{n}" for n in names], [f"{target}/{n}" for n in names])


def current_summary(url: str) -> dict[str, Any] | None:
    """The summary of the complete run ``url`` holds now; None when there is none."""
    try:
        return check_manifest(url)
    except RunDirectoryError:
        return None


def download_run(url: str, local: Path, *, discard_damaged: bool = False) -> None:
    """Every object of the complete run at ``url`` into the new folder ``local``, checked
    against its manifest, ``summary.json`` last (``score -o URL`` keeping a scan there).
    A run that cannot be read whole is refused, or with ``discard_damaged`` left out."""
    try:
        summary = check_manifest(url)
        fs, root = run_filesystem(url)
        local.mkdir(parents=True)
        RunObjects(url, fs, root, dict(summary[MANIFEST]["objects"]), local).fetch_files(True)
    except RunDirectoryError:
        shutil.rmtree(local, ignore_errors=True)
        if not discard_damaged:
            raise
        return
    (local / SUMMARY).write_text(json.dumps(summary, indent=2))


def open_remote_run(url: str) -> Run:
    """The complete run at ``url``, checked against its manifest, read through a local
    copy (see the module doc)."""
    summary = check_manifest(url)
    fs, root = run_filesystem(url)
    clean_stale_staging(Path(tempfile.gettempdir()), READ_PREFIX)
    folder = Path(tempfile.mkdtemp(prefix=f"{READ_PREFIX}{os.getpid()}-"))
    try:
        local = folder / (root.rsplit("/", 1)[-1] or "run")
        local.mkdir()
        (local / SUMMARY).write_text(json.dumps(summary, indent=2))
        objects = RunObjects(url, fs, root, dict(summary[MANIFEST]["objects"]), local)
        objects.fetch_files()
    except (SegauditError, OSError, KeyError, TypeError) as error:
        shutil.rmtree(folder, ignore_errors=True)
        if isinstance(error, SegauditError):
            raise
        raise RunDirectoryError(f"{url} cannot be copied to read ({reason(error)}).") from None
    try:
        check_summary(summary, f"{url}/{SUMMARY}")
    except RunDirectoryError:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    run = Run(local, summary, objects=objects)
    weakref.finalize(run, shutil.rmtree, folder, True)
    return run
