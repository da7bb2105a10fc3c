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

Runs are built in a hidden temporary directory beside RUN and swapped into place in
one atomic ``renameat2(RENAME_EXCHANGE)`` (or two renames where the kernel lacks
it), so RUN always holds either the previous complete run or the new one.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from segaudit.errors import OutputWriteError, RunDirectoryError, SegauditError

SUMMARY = "summary.json"
ARRAY_NAMES = ("labels", "pred_labels", "pixel_scores", "issues")
TEMP_PREFIX = ".segaudit-tmp-"
OLD_PREFIX = ".segaudit-old-"


def array_path(run: Path, name: str) -> Path:
    """Where the run keeps the per-pixel array ``name``."""
    return run / f"{name}.zarr"


def create_array(path: Path, shape: tuple[int, ...], dtype: Any) -> zarr.Array:
    """A new Zarr v3 array chunked one image per chunk, compressed fast (lz4)."""
    dtype = np.dtype(dtype)
    shuffle = "bitshuffle" if dtype.itemsize == 1 else "shuffle"
    chunks = (1, *shape[1:]) if len(shape) > 1 else shape
    return zarr.create_array(
        store=str(path),
        shape=shape,
        chunks=chunks,
        dtype=dtype,
        compressors=BloscCodec(cname="lz4", clevel=5, shuffle=shuffle),
        fill_value=np.nan if dtype.kind == "f" else 0,
        zarr_format=3,
        overwrite=True,
    )


@dataclass
class Run:
    """A complete run directory, opened read-only."""

    path: Path
    summary: dict[str, Any]
    _arrays: dict[str, zarr.Array] = field(default_factory=dict, repr=False)

    def array(self, name: str) -> zarr.Array:
        """Open one of the per-pixel arrays (``labels``, ``pred_labels``, ...)."""
        if name not in self._arrays:
            path = array_path(self.path, name)
            if not path.exists():
                raise RunDirectoryError(
                    f"{path} is missing from the run; rerun `segaudit scan` into {self.path}."
                )
            self._arrays[name] = zarr.open_array(str(path), mode="r")
        return self._arrays[name]

    @property
    def num_classes(self) -> int:
        return int(self.summary["dataset"]["num_classes"])

    @property
    def class_names(self) -> list[str]:
        return list(self.summary["classes"]["names"])

    @property
    def ignore_index(self) -> int | None:
        return self.summary["parameters"].get("ignore_index")


def open_run(path: str | os.PathLike[str]) -> Run:
    """Open a complete run, or say plainly why ``path`` is not one."""
    run = Path(path)
    if not run.is_dir():
        raise RunDirectoryError(
            f"{run} does not exist; create it with `segaudit scan DATASET -o {run}`."
        )
    summary_path = run / SUMMARY
    if not summary_path.is_file():
        raise RunDirectoryError(
            f"{run} is not a complete segaudit run (no {SUMMARY}); "
            f"create it with `segaudit scan DATASET -o {run}`."
        )
    try:
        summary = json.loads(summary_path.read_text())
    except (OSError, ValueError) as error:
        raise RunDirectoryError(
            f"{summary_path} is unreadable ({error}); rerun the scan."
        ) from None
    return Run(run, summary)


def is_complete_run(path: Path) -> bool:
    return (path / SUMMARY).is_file()


def check_output_location(run: Path) -> None:
    """Refuse to replace anything at ``run`` that is not a segaudit run or an empty folder."""
    if run.is_symlink() or (run.exists() and not run.is_dir()):
        raise RunDirectoryError(f"{run} exists and is not a directory; choose another -o path.")
    if run.is_dir() and not is_complete_run(run) and any(run.iterdir()):
        raise RunDirectoryError(
            f"{run} exists and is not a segaudit run directory; choose another -o path "
            "or empty it first (segaudit never overwrites other files)."
        )


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write JSON through a temporary file and rename, so readers never see half of it."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    text = json.dumps(payload, indent=2, sort_keys=False, allow_nan=True) + "\n"
    with open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with renameat2; False where unsupported."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd = -100
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    if result == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_temporaries(parent: Path, run_name: str) -> None:
    """Remove leftovers of killed runs into ``run_name`` whose process is gone."""
    for prefix in (TEMP_PREFIX, OLD_PREFIX):
        for leftover in parent.glob(f"{prefix}{run_name}-*"):
            pid_text = leftover.name.rsplit("-", 2)[-2]
            if pid_text.isdigit() and not _pid_alive(int(pid_text)):
                shutil.rmtree(leftover, ignore_errors=True)


@contextlib.contextmanager
def run_lock(run: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``run`` so two processes never write it at once."""
    parent = run.parent
    parent.mkdir(parents=True, exist_ok=True)
    lock_path = parent / f".segaudit-lock-{run.name}"
    handle = open(lock_path, "a+")
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunDirectoryError(
                f"another segaudit process is writing {run}; wait for it to finish "
                "or choose another -o path."
            ) from None
        yield
    finally:
        handle.close()


@contextlib.contextmanager
def building_run(run: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a fresh temporary directory; on success swap it into ``run`` atomically.

    On any failure or interrupt the temporary directory is removed and ``run`` is
    left exactly as it was.
    """
    run = Path(run).absolute()
    check_output_location(run)
    with run_lock(run):
        clean_stale_temporaries(run.parent, run.name)
        tmp = run.parent / f"{TEMP_PREFIX}{run.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            tmp.mkdir()
        except OSError as error:
            raise OutputWriteError(f"cannot create a run beside {run}: {error.strerror}.") from None
        try:
            yield tmp
            if not (tmp / SUMMARY).is_file():
                raise RunDirectoryError(f"internal: the run for {run} was not completed.")
            _install(tmp, run)
        except SegauditError:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        except OSError as error:
            shutil.rmtree(tmp, ignore_errors=True)
            where = error.filename or run
            raise OutputWriteError(
                f"writing {where} failed ({error.strerror or error}); "
                f"the previous contents of {run} are unchanged."
            ) from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def _install(tmp: Path, run: Path) -> None:
    """Move the finished ``tmp`` into ``run``, replacing a previous run atomically."""
    if not run.exists():
        os.rename(tmp, run)
        return
    if _exchange(tmp, run):
        shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the previous run
        return
    old = run.parent / f"{OLD_PREFIX}{run.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    os.rename(run, old)
    os.rename(tmp, run)
    shutil.rmtree(old, ignore_errors=True)
