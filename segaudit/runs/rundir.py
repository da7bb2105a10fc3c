"""The run directory: how results are laid out on disk and written atomically.

A run directory holds

- ``summary.json``: inputs (paths, shapes, fingerprints), parameters, per-class
  thresholds and counts, totals, timing, version. Written last: a directory is a
  complete run exactly when it has this file.
- ``labels.zarr`` (N,H,W): the given labels as scanned (ignore value kept).
- ``pred_labels.zarr`` (N,H,W) uint8/uint16: argmax of pred_probs per pixel.
- ``pixel_scores.zarr`` (N,H,W) float: probability of the given label (NaN where ignored).
- ``issues.zarr`` (N,H,W) bool: pixels flagged as label issues (scan only).
- ``image_scores.csv``: one row per image, worst first.
- ``.segaudit-run``: a marker written with every run, so a folder proves it is one.

Later commands add ``swaps.csv``, ``swaps.png`` and ``render/``. :data:`RUN_ENTRIES` lists
everything a run may hold; a folder is replaced only when it proves it is a run (the
marker, or a ``summary.json`` of segaudit's own) and holds nothing else
(:func:`is_segaudit_run`), so ``-o`` never deletes a folder of someone else's files.

Runs are built in a hidden temporary directory beside RUN
(``.segaudit-tmp-NAME-PID-NONCE``), flushed to disk, and swapped into place in one
atomic ``renameat2(RENAME_EXCHANGE)`` (or two renames where the kernel lacks it), so
RUN always holds either the previous complete run or the new one, whenever the
process is killed (the flushes and the swap itself: :mod:`segaudit.runs.durability`).
Signals arriving while the temporary directory is created, removed or swapped in are
held back until that is done, so none leaves it behind.

One writer at a time: ``flock`` on ``.segaudit-lock-NAME`` beside RUN, taken without
waiting (a second writer is refused with one sentence). The kernel drops the lock
when its process dies, SIGKILL included, so it is never stale; the lock file itself
stays (removing it would race with the next writer). Whoever holds the lock removes
the leftovers of killed runs into the same RUN.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import threading
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segaudit.errors import OutputWriteError, RunDirectoryError, SegauditError
from segaudit.runs import durability
from segaudit.runs.run import SUMMARY, is_complete_run
from segaudit.runs.run import array_path as array_path  # re-exported for writers
from segaudit.safetext import printable

MARKER = ".segaudit-run"
ARRAY_NAMES = ("labels", "pred_labels", "pixel_scores", "issues", "regions")
TEMP_PREFIX = ".segaudit-tmp-"
OLD_PREFIX = ".segaudit-old-"
COMMANDS = ("scan", "score")  # the commands that write whole runs (summary.json "command")


@dataclass(frozen=True)
class RunEntry:
    """Something a run may hold at its top level, which command writes it, and (a folder)
    the paths of the files it may hold, relative to it (``None``: anything)."""

    name: str
    is_dir: bool
    written_by: str
    holds: re.Pattern[str] | None = None


RENDER_MARKER = ".segaudit-render"
# Every file `segaudit render` writes into its folder (flat): the review page's assets,
# images, thumbnails and maps, the legend, the pages of `--pages`, and its marker.
RENDER_FILES = re.compile(
    rf"{re.escape(RENDER_MARKER)}|index\.html|review\.js|review\.css|data\.js"
    r"|[ptm]\d{5,}\.(?:jpg|js)|legend\.png|rank\d+_image\d+(_[A-Za-z0-9_-]+)?\.png"
)
_ISSUE_FILES = re.compile(r"(?:[^/]+/)*[^/]+\.(?:png|nii\.gz)", re.DOTALL)  # by image id
_PHOTO_FILES = re.compile(r"(?:[^/]+/)*[^/]+\.png", re.DOTALL)
_ARRAY_FILES = re.compile(r"(?:\d+/)?(?:zarr\.json|c(?:\.\d+)+)")  # stacked or per image


# Everything a run may hold at its top level. A folder holding anything else is not a
# run and is never replaced; a new output is added here, in one place.
RUN_ENTRIES: tuple[RunEntry, ...] = (
    RunEntry(SUMMARY, False, "scan, score (written last)"),
    RunEntry(MARKER, False, "scan, score"),
    RunEntry("image_scores.csv", False, "scan, score"),
    RunEntry("images.csv", False, "scan, score"),
    RunEntry("regions.csv", False, "scan"),
    RunEntry("issues", True, "scan (issue masks, one per image)", _ISSUE_FILES),
    RunEntry("photos", True, "a Scanner given photos (for the pictures)", _PHOTO_FILES),
    *(RunEntry(f"{name}.zarr", True, "scan, score", _ARRAY_FILES) for name in ARRAY_NAMES),
    RunEntry("_scratch", True, "scan (scratch, removed before the run is published)"),
    RunEntry("swaps.csv", False, "swaps"),
    RunEntry("swaps.png", False, "swaps"),
    RunEntry("render", True, "render", RENDER_FILES),
)
# Runs whose latest build in this process was published (absolute paths): what a
# signal after the swap leaves.
_PUBLISHED: set[Path] = set()


def was_published(run: str | os.PathLike[str]) -> bool:
    """Whether this process's latest build of ``run`` installed a complete run there.

    A signal that lands after the swap finds the new run complete on disk; the command
    line asks this to say so instead of claiming the previous results are unchanged.
    Each new build of ``run`` starts unpublished, so a run published earlier by the
    same process (the Python API, a test runner) says nothing about the current one.
    """
    return Path(os.path.abspath(run)) in _PUBLISHED


# What a killed writer of an entry may leave beside it: write_json_atomic's
# ``.summary.json.HEX``, an atomic output's ``.swaps.csv.HEX.tmp.csv``, a render's
# ``.render.segaudit-tmp-HEX``. Only temporaries of the entries above count.
_ENTRY_TEMPORARY = re.compile(
    r"^\.(?:"
    + "|".join(re.escape(entry.name) for entry in RUN_ENTRIES)
    + r")\.(?:segaudit-(?:tmp|old)-)?[0-9a-f]{8,32}(?:\.tmp\.[A-Za-z0-9]+)?$"
)
_ENTRIES = {entry.name: entry for entry in RUN_ENTRIES}


def foreign_entries(path: Path) -> list[str]:
    """Paths in the folder ``path`` that no run writes, sorted: names at its top level,
    and files inside its folders (``render/notes.txt``) that the folder's entry does not
    hold.

    An entry of the right name but the wrong kind (a folder called ``summary.json``, a
    symbolic link called ``render``, or one inside a folder) is foreign too: a run never
    writes one.
    """
    foreign = []
    with os.scandir(path) as entries:
        for entry in entries:
            if _ENTRY_TEMPORARY.match(entry.name):
                continue
            known = _ENTRIES.get(entry.name)
            if known is None or entry.is_symlink():
                foreign.append(entry.name)
            elif entry.is_dir(follow_symlinks=False) != known.is_dir:
                foreign.append(entry.name)
            elif known.is_dir and known.holds is not None:
                foreign += _foreign_inside(Path(entry.path), entry.name, known.holds)
    return sorted(foreign)


def _foreign_inside(folder: Path, name: str, holds: re.Pattern[str]) -> list[str]:
    """Files (and links) under ``folder`` whose path relative to it ``holds`` does not
    match, as ``NAME/RELATIVE``; folders are walked, never followed through links."""
    foreign = []
    for root, dirs, files in os.walk(folder):
        base = Path(root).relative_to(folder)
        for sub in list(dirs):
            if os.path.islink(os.path.join(root, sub)):
                foreign.append(f"{name}/{(base / sub).as_posix()}")
                dirs.remove(sub)
        for file in files:
            relative = (base / file).as_posix()
            if os.path.islink(os.path.join(root, file)) or not holds.fullmatch(relative):
                foreign.append(f"{name}/{relative}")
    return foreign


def proves_run(path: Path) -> bool:
    """Whether the folder ``path`` says it is a segaudit run: the marker every run is
    written with, or (runs of earlier versions) a ``summary.json`` of segaudit's schema."""
    marker = path / MARKER
    if marker.is_file() and not marker.is_symlink():
        return True
    summary = path / SUMMARY
    if not summary.is_file() or summary.is_symlink():
        return False
    try:
        payload = json.loads(summary.read_bytes())
    except (OSError, ValueError, RecursionError):
        return False
    return (
        isinstance(payload, dict)
        and isinstance(payload.get("segaudit_version"), str)
        and payload.get("command") in COMMANDS
    )


def is_segaudit_run(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a folder segaudit may replace as a run: it proves it is one
    (:func:`proves_run`) and holds nothing a run does not write (:data:`RUN_ENTRIES`)."""
    path = Path(path)
    try:
        if path.is_symlink() or not path.is_dir():
            return False
        return proves_run(path) and not foreign_entries(path)
    except OSError:
        return False


def _shown(names: list[str], limit: int = 3) -> str:
    shown = ", ".join(printable(name) for name in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def check_output_location(run: Path) -> None:
    """Refuse to replace anything at ``run`` that is not a segaudit run or an empty folder."""
    try:
        if run.is_symlink():
            raise RunDirectoryError(
                f"{run} is a symbolic link; give -o the folder itself (a run replaces its "
                "folder, and never follows links)."
            )
        if run.exists() and not run.is_dir():
            raise RunDirectoryError(f"{run} exists and is not a directory; choose another -o path.")
        if not run.is_dir() or not any(run.iterdir()):
            return
        if not proves_run(run):
            raise RunDirectoryError(
                f"{run} exists and is not a segaudit run (it has no {MARKER} marker and no "
                f"{SUMMARY} of segaudit's); choose another -o path or empty it first "
                "(segaudit never deletes files it did not write)."
            )
        foreign = foreign_entries(run)
        if foreign:
            raise RunDirectoryError(
                f"{run} is not a segaudit run alone: it also holds {_shown(foreign)}, which no "
                "run writes; choose another -o path or move those away first "
                "(segaudit never deletes files it did not write)."
            )
    except OSError as error:
        raise OutputWriteError(
            f"cannot use {run} as a run directory ({_strerror(error)}); choose another -o path."
        ) from None


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write JSON through a temporary file and rename, so readers never see half of it.

    On failure the temporary file is removed and ``path`` is left as it was. Nothing is
    flushed to disk here: files are written inside a run being built, and
    :func:`building_run` makes the whole run durable, in one go, before publishing it
    (every flush is a journal commit, which on a busy disk can take a tenth of a second).
    """
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    text = json.dumps(payload, indent=2, sort_keys=False, allow_nan=True) + "\n"
    try:
        with open(tmp, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _strerror(error: OSError) -> str:
    return error.strerror or str(error) or type(error).__name__


# Leftovers of interrupted runs: ``.segaudit-tmp-TAG-PID-NONCE`` (a run being built) and
# ``.segaudit-old-TAG-PID-NONCE`` (a previous run being replaced without renameat2).
_LEFTOVER = re.compile(
    rf"^(?P<prefix>{re.escape(TEMP_PREFIX)}|{re.escape(OLD_PREFIX)})"
    r"(?P<tag>.*)-(?P<pid>\d+)-(?P<nonce>[0-9a-f]{8})$",
    re.DOTALL,
)
_TAG_LIMIT = 100


def _tag(run_name: str) -> str:
    """``run_name`` as it appears in lock and temporary names, short enough for any file system.

    Long names keep a readable start and gain a hash of the whole, so the temporary
    names stay under the usual 255-byte limit and never collide.
    """
    raw = os.fsencode(run_name)
    if len(raw) <= _TAG_LIMIT:
        return run_name
    digest = hashlib.sha256(raw).hexdigest()[:16]
    return f"{os.fsdecode(raw[:48]).rstrip()}~{digest}"


def _lock_path(run: Path) -> Path:
    return run.parent / f".segaudit-lock-{_tag(run.name)}"


def _leftovers(parent: Path, run_name: str) -> list[tuple[Path, str, int]]:
    """This run's leftovers in ``parent``: (path, prefix, owner pid), matched by exact name."""
    tag = _tag(run_name)
    found = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return []
    for entry in entries:
        match = _LEFTOVER.match(entry.name)
        if match is None or match["tag"] != tag:
            continue
        try:
            is_dir = entry.is_dir(follow_symlinks=False)
        except OSError:
            continue
        if is_dir:
            found.append((Path(entry.path), match["prefix"], int(match["pid"])))
    return found


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (one we may not signal counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def clean_stale_temporaries(parent: Path, run_name: str, *, locked: bool = False) -> None:
    """Remove leftovers of killed runs into ``run_name``; restore a previous run if needed.

    Without the lock only leftovers whose owner process is gone are touched. With the
    lock held (``locked=True``, as :func:`building_run` calls it) every leftover of this
    run is stale, whatever its pid says: nobody else can be building it, and pids are
    reused (a container's process often has the same pid every night).

    When a run was killed between the two renames of the fallback swap (kernels
    without ``renameat2``), ``RUN`` is missing and its previous contents wait in a
    ``.segaudit-old-`` folder: that folder is moved back instead of being deleted.
    """
    run = parent / run_name
    leftovers = [item for item in _leftovers(parent, run_name) if locked or not pid_alive(item[2])]
    if locked and not os.path.lexists(run):
        olds = [path for path, prefix, _ in leftovers if prefix == OLD_PREFIX]
        complete = [path for path in olds if is_complete_run(path)]
        if complete:
            newest = max(complete, key=lambda path: path.stat().st_mtime_ns)
            with contextlib.suppress(OSError):
                os.rename(newest, run)
                durability.fsync_directory(parent)
    for path, _prefix, _pid in leftovers:
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def run_lock(run: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``run`` so two processes never write it at once.

    The lock is ``flock`` on ``.segaudit-lock-NAME`` beside ``run`` (not inside it, since
    ``run`` itself is swapped). The kernel releases it when the process ends in any way,
    SIGKILL included, so a lock is never stale; a second writer is refused at once.
    """
    lock_path = _lock_path(run)
    try:
        run.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock_path, "a+")
    except OSError as error:
        raise OutputWriteError(
            f"cannot create the run directory {run} ({_strerror(error)}); "
            "choose another -o path or fix its parent folder."
        ) from None
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunDirectoryError(
                f"another segaudit process is writing {run}; wait for it to finish "
                "or choose another -o path."
            ) from None
        except OSError as error:
            raise OutputWriteError(
                f"cannot lock {lock_path} ({_strerror(error)}); the file system of {run} "
                "does not support locks, choose another -o path."
            ) from None
        yield
    finally:
        handle.close()


_DEFERRED_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


class _SignalGate:
    """SIGINT, SIGTERM and SIGHUP while a run is built: held back during the bookkeeping,
    passed on during the work, and held back again from the first one passed on.

    Holding them from the first one on means the clean-up it starts (removing the
    temporary run) cannot be cut short by a second signal, at whatever moment either
    lands. Held signals are delivered when the gate is removed, after the clean-up or
    the swap. Only the main thread can change signal handlers; elsewhere the gate does
    nothing.
    """

    def __init__(self) -> None:
        self.held = True
        self.received: list[int] = []
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _SignalGate:
        if threading.current_thread() is not threading.main_thread():
            return self
        try:
            for signum in _DEFERRED_SIGNALS:
                handler = signal.getsignal(signum)
                if handler is None:  # installed outside Python: leave it alone
                    continue
                self._previous[signum] = handler
                signal.signal(signum, self._handle)
        except BaseException:
            self._restore()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.held = True
        self._restore()
        if self.received:
            signal.raise_signal(self.received[0])

    def open(self) -> None:
        """Pass signals on from now; one held until now is delivered at once."""
        self.held = False
        if self.received:
            first = self.received[0]
            self.received.clear()
            self._handle(first, None)

    def close(self) -> None:
        """Hold signals back from now until the gate is removed."""
        self.held = True

    def _handle(self, signum: int, frame: Any) -> None:
        handler = self._previous.get(signum, signal.SIG_DFL)
        if handler == signal.SIG_IGN:
            return
        if self.held:
            self.received.append(signum)
            return
        if not callable(handler):  # SIG_DFL: the signal's own action (ending the process)
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)
            return
        self.held = True  # a handler that raises stops the work: its clean-up runs to the end
        handler(signum, frame)
        self.held = False  # it returned: the work goes on, and so do signals

    def _restore(self) -> None:
        while self._previous:
            signum, handler = self._previous.popitem()
            signal.signal(signum, handler)


MARKER_TEXT = (
    "A segaudit run: `segaudit scan` and `segaudit score` with -o replace this folder whole.\n"
)


@contextlib.contextmanager
def building_run(
    run: str | os.PathLike[str], *, inputs: Iterable[str | os.PathLike[str]] = ()
) -> Iterator[Path]:
    """Yield a fresh temporary directory; on success swap it into ``run`` atomically.

    On any failure or interrupt the temporary directory is removed and ``run`` is
    left exactly as it was. ``inputs`` are the stores being read: a run may not be
    written where replacing it would delete one of them. ``run`` must be missing, an
    empty folder or a segaudit run (:func:`check_output_location`).

    Signals (:class:`_SignalGate`) interrupt only the work inside the ``with`` block and
    the flush; the bookkeeping around it (creating and removing the temporary run, the
    swap) finishes first, so no temporary run is ever left behind by a signal.
    """
    run = Path(os.path.abspath(run))
    _PUBLISHED.discard(run)  # until this build is installed
    _check_inputs_outside(run, inputs)
    check_output_location(run)
    with run_lock(run), _SignalGate() as gate:
        clean_stale_temporaries(run.parent, run.name, locked=True)
        check_output_location(run)  # again, now that nobody else can change it
        tmp = run.parent / f"{TEMP_PREFIX}{_tag(run.name)}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        installed = False
        try:
            _make_temporary(tmp, run)
            gate.open()
            yield tmp
            _seal(tmp, run)
            gate.close()
            _install(tmp, run)
            _PUBLISHED.add(run)
            installed = True
        except SegauditError:
            raise
        except OSError as error:
            where = str(error.filename or run).replace(str(tmp), str(run))
            raise OutputWriteError(
                f"writing {where} failed ({_strerror(error)}); "
                f"the previous contents of {run} are unchanged."
            ) from None
        finally:
            try:
                gate.close()  # a signal landing now closes the gate itself
            finally:
                durability.finish_early_flush(tmp)
                if not installed:
                    shutil.rmtree(tmp, ignore_errors=True)


def _make_temporary(tmp: Path, run: Path) -> None:
    try:
        tmp.mkdir()
    except OSError as error:
        raise OutputWriteError(
            f"cannot create a run beside {run} ({_strerror(error)}); "
            "choose another -o path or free some space."
        ) from None


def _seal(tmp: Path, run: Path) -> None:
    """Mark the finished run as segaudit's and flush it to disk, ready to be swapped in."""
    if not (tmp / SUMMARY).is_file():
        raise RunDirectoryError(f"internal: the run for {run} was not completed.")
    (tmp / MARKER).write_text(MARKER_TEXT)
    durability.sync_tree(tmp)


def _check_inputs_outside(run: Path, inputs: Iterable[str | os.PathLike[str]]) -> None:
    """Refuse a ``run`` whose replacement would delete or overwrite an input store."""
    target = Path(os.path.realpath(run))
    for item in inputs:
        source = Path(os.path.realpath(item))
        if source == target or target in source.parents:
            raise RunDirectoryError(
                f"{item} is inside the run directory {run}, which this command would replace; "
                "copy the input elsewhere or choose another -o path."
            )
        if source in target.parents:
            raise RunDirectoryError(
                f"{run} is inside the input {item}, and inputs are never written; "
                "choose an -o path outside it."
            )


def _install(tmp: Path, run: Path) -> None:
    """Move the finished ``tmp`` into ``run``, replacing a previous run atomically."""
    if not os.path.lexists(run):
        os.rename(tmp, run)
        durability.fsync_directory(run.parent)
        return
    if durability.exchange(tmp, run):
        durability.fsync_directory(run.parent)
        shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the previous run
        return
    # No renameat2 here: two renames. A kill between them leaves RUN missing and the
    # previous run in ``old``; the next run's clean_stale_temporaries moves it back.
    old = run.parent / f"{OLD_PREFIX}{_tag(run.name)}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    durability.replace_by_renames(tmp, run, old)
    durability.fsync_directory(run.parent)
    shutil.rmtree(old, ignore_errors=True)
