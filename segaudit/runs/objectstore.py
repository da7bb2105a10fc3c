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
have no locks. Readers check a run against its manifest (:func:`check_manifest`) and read
it through a local copy (:mod:`segaudit.runs.remote_read`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segaudit.errors import OutputWriteError, RunDirectoryError, SegauditError, reason
from segaudit.runs.parts import RemoteParts
from segaudit.runs.run import SUMMARY
from segaudit.runs.rundir import MARKER, RUN_ENTRIES, TEMP_PREFIX, pid_alive

MANIFEST = "manifest"
_TOP = {entry.name for entry in RUN_ENTRIES}
# What commands reading a run write beside its objects (swaps.csv, render/): not in
# the manifest, which lists what the run was published with.
_LATER = {entry.name for entry in RUN_ENTRIES if entry.written_by in ("swaps", "render")}


def run_filesystem(url: str) -> tuple[Any, str]:
    from segaudit.sources.remote import filesystem

    try:
        fs, path = filesystem(url)
    except SegauditError as error:
        raise RunDirectoryError(str(error)) from None
    if getattr(fs, "auto_mkdir", True) is False:  # file://: objects create their folders
        fs = type(fs)(auto_mkdir=True)
    return fs, path.rstrip("/")


def listing(fs: Any, root: str) -> dict[str, int]:
    """Objects under ``root``: relative name -> size."""
    fs.invalidate_cache()
    found = fs.find(root, detail=True) if fs.exists(root) else {}
    return {name[len(root) + 1 :]: int(info.get("size") or 0) for name, info in found.items()}


def check_remote_output(url: str) -> None:
    """Refuse a RUN prefix holding objects that are not a segaudit run's, and an
    unreachable store or bucket, before anything is computed or written."""
    fs, root = run_filesystem(url)
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
        held = listing(fs, root)
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


def clean_stale_staging(folder: Path, prefix: str = STAGING_PREFIX) -> list[Path]:
    """Remove the staging folders in ``folder`` (the system's temporary directory) that
    clients killed while building a run for a URL left behind (or, with another
    ``prefix``, while reading one): those named with the process id of a process that
    is gone. Others, and anything else, are left alone. Returns what was removed."""
    named = re.compile(rf"{re.escape(prefix)}(\d+)-[A-Za-z0-9_]+")
    removed = []
    for entry in folder.glob(f"{prefix}*"):
        match = named.fullmatch(entry.name)
        if match is None or entry.is_symlink() or not entry.is_dir():
            continue
        if not pid_alive(int(match[1])):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


@dataclass
class Staging:
    """Where a run for a URL is built: ``local``, this process's folder, and ``parts``,
    the hidden prefix beside RUN that Dask workers upload their files to
    (:mod:`segaudit.runs.parts`)."""

    local: Path
    parts: RemoteParts


@contextmanager
def remote_run(url: str) -> Iterator[Staging]:
    """Where to build the run for ``url``; published there (:func:`publish`) when the
    block succeeds, never when it fails (its hidden prefix is then removed). The local
    staging folder is named with this process's id, so the next run removes it if this
    process is killed; hidden prefixes a killed run left are removed by the next run."""
    check_remote_output(url)
    clean_stale_staging(Path(tempfile.gettempdir()))
    fs, root = run_filesystem(url)
    parent, _, name = root.rpartition("/")
    try:
        remove_leftovers(fs, parent, name)
    except Exception as error:  # each backend has its own errors
        raise OutputWriteError(f"cleaning up beside {url} failed ({reason(error)}).") from None
    parts = hidden_parts(url, name)
    prefix = f"{STAGING_PREFIX}{os.getpid()}-"
    with tempfile.TemporaryDirectory(prefix=prefix) as staging:
        done = False
        try:
            yield Staging(Path(staging) / "run", parts)
            publish(Path(staging) / "run", url, parts)
            done = True
        finally:
            if not done:
                with contextlib.suppress(Exception):
                    parts.remove("")


def hidden_parts(url: str, name: str) -> RemoteParts:
    """A new hidden prefix beside the RUN ``url`` (``name``: its last component in its
    store), to build the run under before it is published."""
    base = url.rstrip("/").rpartition("/")[0]
    return RemoteParts(f"{base}/{TEMP_PREFIX}{name}-{uuid.uuid4().hex[:8]}")


def publish(local: Path, url: str, parts: RemoteParts | None = None) -> dict[str, int]:
    """Publish the complete local run ``local`` at ``url`` (see the module doc), with the
    files Dask workers already uploaded to ``parts``; return the manifest (relative name
    -> size)."""
    fs, root = run_filesystem(url)
    parent, _, name = root.rpartition("/")
    summary = json.loads((local / SUMMARY).read_text())
    files = sorted(p for p in local.rglob("*") if p.is_file() and p.name != SUMMARY)
    if parts is None:
        parts = hidden_parts(url, name)
        remove_leftovers(fs, parent, name)
    hidden = parts.filesystem()[1]
    try:
        names = [str(p.relative_to(local)) for p in files]  # batched: sent concurrently
        if names:
            fs.put([str(local / n) for n in names], [f"{hidden}/{n}" for n in names])
        manifest = dict(sorted(listing(fs, hidden).items()))
        if fs.exists(f"{root}/{SUMMARY}"):
            fs.rm_file(f"{root}/{SUMMARY}")  # the previous run stops being complete
        fs.copy([f"{hidden}/{n}" for n in manifest], [f"{root}/{n}" for n in manifest])
        stale = [f"{root}/{n}" for n in listing(fs, root) if n not in manifest]
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


def remove_leftovers(fs: Any, parent: str, name: str) -> None:
    """Hidden prefixes a crashed publication of RUN ``name`` left beside it."""
    prefix = f"{TEMP_PREFIX}{name}-"
    try:
        entries = fs.ls(parent, detail=False) if parent else []
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.rstrip("/").rsplit("/", 1)[-1].startswith(prefix):
            fs.rm(entry, recursive=True)


def holds_scan(url: str) -> bool:
    """Whether ``url`` holds a run with a scan's issue masks (a scan, or a score that
    kept one), by its ``summary.json``; False when there is none."""
    fs, root = run_filesystem(url)
    try:
        summary = json.loads(fs.cat_file(f"{root}/{SUMMARY}"))
    except FileNotFoundError:
        return False
    except ValueError as error:
        raise RunDirectoryError(f"{url}/{SUMMARY} is unreadable ({reason(error)}).") from None
    except Exception as error:  # each backend has its own errors (credentials, network)
        raise RunDirectoryError(
            f"{url} cannot be read ({reason(error)}); check the URL and the credentials."
        ) from None
    objects = (summary.get(MANIFEST) or {}).get("objects") if isinstance(summary, dict) else None
    return any(name.startswith("issues.zarr/") for name in objects or {})


def check_manifest(url: str) -> dict[str, Any]:
    """A published run's summary, when its objects match its manifest; else one sentence
    (no ``summary.json``: not a complete run). What commands reading the run wrote beside
    it (``swaps.csv``, ``render/``) is not in the manifest, and not checked."""
    fs, root = run_filesystem(url)
    try:
        summary = json.loads(fs.cat_file(f"{root}/{SUMMARY}"))
        held = listing(fs, root)
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
    held = {n: size for n, size in held.items() if n in wanted or n.split("/")[0] not in _LATER}
    if held != wanted:
        raise RunDirectoryError(
            f"{url} does not match its manifest ({_difference(held, wanted)}); it is "
            f"incomplete or was changed since it was published: rerun the {_command(summary)}."
        )
    return summary


def _difference(held: dict[str, int], wanted: dict[str, int]) -> str:
    """The first way the objects ``held`` differ from those ``wanted``, in words."""
    missing = sorted(set(wanted) - set(held))
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        return f"{missing[0]}{more} missing"
    resized = sorted(n for n in wanted if held[n] != wanted[n])
    if resized:
        name = resized[0]
        return f"{name} has {held[name]} bytes, not {wanted[name]}"
    extra = sorted(set(held) - set(wanted))
    return f"{extra[0]} is not one of its objects"


def _command(summary: Any) -> str:
    command = summary.get("command") if isinstance(summary, dict) else None
    return command if command in ("scan", "score") else "scan"
