"""Runs on object stores (``-o s3://bucket/runs/nightly``): no rename, so ``summary.json``
is the commit.

A run for a URL is built as any run, in a local staging directory (the streaming pass's
workers write there: local threads or a LocalCluster's processes), then published:

1. every object but ``summary.json`` is uploaded under a hidden prefix beside RUN,
   ``.segaudit-tmp-NAME-NONCE/``; a failure here leaves RUN as it was;
2. RUN's ``summary.json`` is deleted (the previous run stops being complete), the
   objects are copied into RUN server-side, and objects of the previous run the new
   one does not hold are deleted;
3. ``summary.json`` is written last, with a ``manifest`` naming every object of the run
   and its size; then the hidden prefix is deleted.

A prefix is a complete run exactly when it holds ``summary.json``. A crash in step 1
leaves the hidden prefix (the previous run is intact); in steps 2-3 it leaves RUN
without ``summary.json``, which readers refuse. The next run into RUN deletes hidden
prefixes of RUN's name and replaces RUN. One writer per RUN at a time: object stores
have no locks.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from segaudit.errors import OutputWriteError, RunDirectoryError, SegauditError, reason
from segaudit.runs.run import SUMMARY
from segaudit.runs.rundir import MARKER, RUN_ENTRIES, TEMP_PREFIX, pid_alive

MANIFEST = "manifest"
_TOP = {entry.name for entry in RUN_ENTRIES}


def _filesystem(url: str) -> tuple[Any, str]:
    from segaudit.sources.remote import filesystem

    try:
        fs, path = filesystem(url)
    except SegauditError as error:
        raise RunDirectoryError(str(error)) from None
    return fs, path.rstrip("/")


def _listing(fs: Any, root: str) -> dict[str, int]:
    """Objects under ``root``: relative name -> size."""
    fs.invalidate_cache()
    found = fs.find(root, detail=True) if fs.exists(root) else {}
    return {name[len(root) + 1 :]: int(info.get("size") or 0) for name, info in found.items()}


def check_remote_output(url: str) -> None:
    """Refuse a RUN prefix holding objects that are not a segaudit run's, and an
    unreachable store or bucket, before anything is computed or written."""
    fs, root = _filesystem(url)
    bucket = root.split("/", 1)[0]
    if "/" not in root:
        raise RunDirectoryError(
            f"{url} is a whole bucket; give the run a prefix of its own in it "
            f"({url.rstrip('/')}/runs/NAME): its hidden build prefix goes beside it."
        )
    try:
        if not fs.exists(bucket):  # False too when the store cannot be asked: ask again
            try:
                fs.ls(bucket)
            except FileNotFoundError:
                raise RunDirectoryError(
                    f"{url}: the bucket {bucket} does not exist; create it or choose another -o."
                ) from None
        held = _listing(fs, root)
    except SegauditError:
        raise
    except Exception as error:  # each backend has its own errors
        raise RunDirectoryError(
            f"{url} cannot be listed ({reason(error)}); check the URL and the credentials."
        ) from None
    foreign = sorted({name.split("/", 1)[0] for name in held} - _TOP)
    if held and (MARKER not in held or foreign):
        what = ", ".join(foreign[:3]) if foreign else f"no {MARKER} marker"
        raise RunDirectoryError(
            f"{url} holds objects that are not a segaudit run's ({what}); choose another -o "
            "or empty it first (segaudit never deletes what it did not write)."
        )


STAGING_PREFIX = "segaudit-staging-"
_STAGING = re.compile(rf"{re.escape(STAGING_PREFIX)}(\d+)-[A-Za-z0-9_]+")


def clean_stale_staging(folder: Path) -> list[Path]:
    """Remove the staging folders in ``folder`` (the system's temporary directory) that
    clients killed while building a run for a URL left behind: those named with the
    process id of a process that is gone. Others, and anything else, are left alone.
    Returns what was removed."""
    removed = []
    for entry in folder.glob(f"{STAGING_PREFIX}*"):
        match = _STAGING.fullmatch(entry.name)
        if match is None or entry.is_symlink() or not entry.is_dir():
            continue
        if not pid_alive(int(match[1])):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


@contextmanager
def remote_run(url: str) -> Iterator[Path]:
    """A local path to build the run for ``url`` in; published there (:func:`publish`)
    when the block succeeds, never when it fails. The staging folder is named with this
    process's id, so the next run removes it if this process is killed."""
    check_remote_output(url)
    clean_stale_staging(Path(tempfile.gettempdir()))
    prefix = f"{STAGING_PREFIX}{os.getpid()}-"
    with tempfile.TemporaryDirectory(prefix=prefix) as staging:
        local = Path(staging) / "run"
        yield local
        publish(local, url)


def publish(local: Path, url: str) -> dict[str, int]:
    """Publish the complete local run ``local`` at ``url`` (see the module doc); return
    the manifest (relative name -> size)."""
    fs, root = _filesystem(url)
    parent, _, name = root.rpartition("/")
    summary = json.loads((local / SUMMARY).read_text())
    files = sorted(p for p in local.rglob("*") if p.is_file() and p.name != SUMMARY)
    manifest = {str(p.relative_to(local)): p.stat().st_size for p in files}
    hidden = f"{parent}/{TEMP_PREFIX}{name}-{uuid.uuid4().hex[:8]}"
    try:
        _remove_leftovers(fs, parent, name)
        names = list(manifest)  # batched calls: async backends send them concurrently
        fs.put([str(local / n) for n in names], [f"{hidden}/{n}" for n in names])
        if fs.exists(f"{root}/{SUMMARY}"):
            fs.rm_file(f"{root}/{SUMMARY}")  # the previous run stops being complete
        fs.copy([f"{hidden}/{n}" for n in names], [f"{root}/{n}" for n in names])
        stale = [f"{root}/{n}" for n in _listing(fs, root) if n not in manifest]
        if stale:
            fs.rm(stale)
        summary[MANIFEST] = {"objects": manifest, "bytes": sum(manifest.values())}
        fs.pipe_file(f"{root}/{SUMMARY}", json.dumps(summary, indent=2).encode())
        fs.rm(hidden, recursive=True)
    except Exception as error:  # each backend has its own errors
        raise OutputWriteError(
            f"publishing the run to {url} failed ({reason(error)}); {url} holds no complete "
            "run until a later run into it succeeds."
        ) from None
    return manifest


def _remove_leftovers(fs: Any, parent: str, name: str) -> None:
    """Hidden prefixes a crashed publication of RUN ``name`` left beside it."""
    prefix = f"{TEMP_PREFIX}{name}-"
    try:
        entries = fs.ls(parent, detail=False) if parent else []
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.rstrip("/").rsplit("/", 1)[-1].startswith(prefix):
            fs.rm(entry, recursive=True)


def published_command(url: str) -> str | None:
    """The command (scan, score) whose complete run is at ``url``; None when there is none."""
    fs, root = _filesystem(url)
    try:
        summary = json.loads(fs.cat_file(f"{root}/{SUMMARY}"))
    except FileNotFoundError:
        return None
    except Exception as error:  # each backend has its own errors; bad JSON
        raise RunDirectoryError(f"{url}/{SUMMARY} is unreadable ({reason(error)}).") from None
    return summary.get("command") if isinstance(summary, dict) else None


def check_manifest(url: str) -> dict[str, Any]:
    """A published run's summary, when its objects match its manifest; else one sentence
    (no ``summary.json``: not a complete run)."""
    fs, root = _filesystem(url)
    try:
        summary = json.loads(fs.cat_file(f"{root}/{SUMMARY}"))
        held = _listing(fs, root)
    except FileNotFoundError:
        raise RunDirectoryError(
            f"{url} is not a complete segaudit run (no {SUMMARY}); a run into it failed or "
            "is under way."
        ) from None
    except Exception as error:  # each backend has its own errors (credentials, network)
        raise RunDirectoryError(
            f"{url} cannot be read ({reason(error)}); check the URL and the credentials."
        ) from None
    held.pop(SUMMARY, None)
    wanted = summary.get(MANIFEST, {}).get("objects", {})
    if held != wanted:
        differ = sorted(set(held.items()) ^ set(wanted.items()))[:3]
        raise RunDirectoryError(f"{url} does not match its manifest ({differ}); rerun the scan.")
    return summary
