"""The run being built as the pass's sink: per-image arrays written to disk as they come.

Arrays go to ``NAME.zarr`` (:func:`segaudit.runs.chunkstore.create_image_array`: one
(N, H, W) array when the images share a size, else one array per image). Each
image's issue mask is also written as ``issues/ID.png`` (0 = fine, 255 = issue), the
form annotation tools and any image viewer open. Scratch data (scores at Confident
Learning's resolution, the mispredicted pixels' records) goes to raw files in
``_scratch/`` through ``write()``, never a memory map, so a full disk is an error
naming the file rather than a SIGBUS; it is removed before the run is published.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path
from typing import Any

import numpy as np

from segaudit.engine.pixels import Records
from segaudit.engine.sinks import CL
from segaudit.errors import RunDirectoryError
from segaudit.runs import durability, rundir
from segaudit.runs.chunkstore import ImageChunkWriter, PerImageArrays, rebased
from segaudit.runs.masks import write_issue_mask, write_issue_volume
from segaudit.runs.parts import RemoteParts, on_worker


class ScratchImages:
    """Images of any sizes in one raw file, written and read by image with pwrite/pread.

    Each image gets the next free byte range when it is first written (sizes need not
    be known ahead), so threads may write different images at once.
    """

    def __init__(self, path: Path, dtype: Any) -> None:
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self._places: dict[int, tuple[int, tuple[int, ...]]] = {}
        self._end = 0
        self._lock = threading.Lock()
        self._fd: int | None = os.open(
            self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600
        )

    def _descriptor(self) -> int:
        if self._fd is None:
            raise ValueError(f"{self.path} is closed")
        return self._fd

    def write_image(self, index: int, value: np.ndarray) -> None:
        data = np.ascontiguousarray(value, dtype=self.dtype)
        view = memoryview(data.reshape(-1)).cast("B")
        with self._lock:
            if index in self._places:
                raise ValueError(f"{self.path}: image {index} is written already")
            offset, self._end = self._end, self._end + len(view)
            self._places[index] = (offset, data.shape)
        done = 0
        try:
            while done < len(view):
                done += os.pwrite(self._descriptor(), view[done:], offset + done)
        except OSError as error:
            raise OSError(error.errno, error.strerror, str(self.path)) from None

    def read_image(self, index: int) -> np.ndarray:
        offset, shape = self._places[index]
        out = np.empty(shape, self.dtype)
        view = memoryview(out.reshape(-1)).cast("B")
        done = 0
        while done < len(view):
            got = os.preadv(self._descriptor(), [view[done:]], offset + done)
            if got == 0:
                raise OSError(f"{self.path} ends before image {index}")
            done += got
        return out

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        self.close()


class RunSink:
    """Per-image arrays in the run being built at ``run``; issue masks also as PNGs
    named by image id (``ids``)."""

    def __init__(
        self,
        run: Path,
        ids: list[str],
        volumes: list[Any] | None = None,
        parts: RemoteParts | None = None,
    ) -> None:
        self.run = run
        self.ids = ids
        self.volumes = volumes  # each image's VolumeHeader (None for a 2-D image)
        self.parts = parts  # the run is for a URL: workers upload their files there
        self.shipped = False  # a copy made to be sent to a worker (see detached())
        self.fetched: set[str] = set()  # files fetched from the parts (not uploaded again)
        self.scratch_dir = run / "_scratch"
        self.scratch_dir.mkdir()
        self.arrays: dict[str, ImageChunkWriter | PerImageArrays | ScratchImages] = {}
        self.scratch: set[str] = set()
        self._records: dict[tuple[str, int], list[dict[str, tuple[np.dtype, int, int]]]] = {}
        self._new_records: set[tuple[str, int]] = set()  # by this copy (see detached())

    def create(
        self,
        name: str,
        sizes: np.ndarray | None,
        dtype: Any,
        scratch: bool = False,
        chunk_rows: np.ndarray | None = None,
    ) -> None:
        """Make room for the array ``name``; images' sizes are learnt as they are written,
        so ``sizes`` may be None (a pass fed by a model, one batch at a time). Volumes
        are written by slabs of ``chunk_rows`` rows."""
        path = rundir.array_path(self.run, name)
        if chunk_rows is not None:
            assert sizes is not None and not scratch
            self.arrays[name] = PerImageArrays(
                path, len(sizes), dtype, sizes=np.asarray(sizes), chunk_rows=chunk_rows
            )
        elif scratch:
            self.scratch.add(name)
            self.arrays[name] = ScratchImages(self.scratch_dir / f"{name}.raw", dtype)
        elif sizes is not None and len(np.unique(np.asarray(sizes), axis=0)) > 1:
            # Sizes known to differ: each chunk goes straight into its image's folder, on
            # the worker that made it, rather than being moved there after the pass.
            self.arrays[name] = PerImageArrays(path, len(sizes), dtype)
        else:
            self.arrays[name] = ImageChunkWriter(path, dtype)

    def write(self, name: str, index: int, value: np.ndarray, row: int = 0) -> None:
        array = self.arrays[name]
        if row:
            assert isinstance(array, PerImageArrays)
            array.write_image(index, value, row)
        else:
            array.write_image(index, value)
        if name == "issues":
            volume = self.volumes[index] if self.volumes is not None else None
            if volume is not None:
                write_issue_volume(self.run, self.ids[index], value, volume)
            else:
                write_issue_mask(self.run, self.ids[index], value)

    def read(self, name: str, index: int) -> np.ndarray:
        if self.parts is not None:
            self._fetch_image(name, index)
        return self.arrays[name].read_image(index)

    def _fetch_image(self, name: str, index: int) -> None:
        """Fetch image ``index`` of ``name`` from the run being built, if another process
        wrote it (:mod:`segaudit.runs.parts`)."""
        assert self.parts is not None
        array = self.arrays[name]
        if isinstance(array, ImageChunkWriter) and not array.per_image:
            self._fetch(array.chunk_path(index))
        elif isinstance(array, PerImageArrays | ImageChunkWriter):
            self._fetch(array.path / str(index))

    def _fetch(self, path: Path) -> None:
        assert self.parts is not None
        self.fetched.update(self.parts.fetch(self.run, str(path.relative_to(self.run))))

    def _record_path(self, start: int, resolution: str) -> Path:
        return self.scratch_dir / f"records-{resolution}-{start:012d}.bin"

    def add_records(self, start: int, records: Records, resolution: str = CL) -> None:
        """One raw file per batch; each image appends its fields one after the other, and
        only where each lies is kept in memory (a few numbers an image): memory stays
        flat, and the records are written straight from the kernel's buffers."""
        segments = self._records.setdefault((resolution, start), [])
        self._new_records.add((resolution, start))
        mode = "ab" if segments else "wb"
        where: dict[str, tuple[np.dtype, int, int]] = {}
        with open(self._record_path(start, resolution), mode) as handle:
            offset = handle.tell()
            for name, values in records.items():
                values = np.ascontiguousarray(values)
                handle.write(values.data)
                where[name] = (values.dtype, offset, len(values))
                offset += values.nbytes
        segments.append(where)

    def records(self, start: int, fields: tuple[str, ...], resolution: str = CL) -> Records:
        segments = self._records[(resolution, start)]
        if self.parts is not None:
            self._fetch(self._record_path(start, resolution))
        out: dict[str, list[np.ndarray]] = {name: [] for name in fields}
        with open(self._record_path(start, resolution), "rb") as handle:
            for where in segments:
                for name in fields:
                    dtype, offset, count = where[name]
                    handle.seek(offset)
                    out[name].append(np.fromfile(handle, dtype, count))
        return {name: np.concatenate(parts) for name, parts in out.items()}

    def record_starts(self) -> list[int]:
        return sorted(start for resolution, start in self._records if resolution == CL)

    # -- running in other processes (see segaudit.engine.executors.SinkTask) ----------

    def detached(self) -> RunSink:
        """A copy for a task in another process: it reads what was written so far, writes
        to the same run (per-image chunk files, one records file per batch; scratch arrays
        as chunk files too, as one raw file cannot be shared between processes) and keeps
        an account of what it wrote for :meth:`written`. Picklable: no open files."""
        copy = object.__new__(RunSink)
        copy.run, copy.ids, copy.scratch_dir = self.run, self.ids, self.scratch_dir
        copy.volumes = self.volumes
        copy.scratch = set(self.scratch)
        copy.arrays = {
            name: (
                ImageChunkWriter(self._shared_path(name), array.dtype)
                if isinstance(array, ScratchImages)
                else array.fresh()
            )
            for name, array in self.arrays.items()
        }
        copy._records = dict(self._records)  # to read the records of earlier passes
        copy._new_records = set()
        copy.parts, copy.shipped, copy.fetched = self.parts, True, set()
        if self.parts is not None and self.shipped:  # on a worker: a folder of its own
            copy._rebase(self.parts.new_folder())
        return copy

    def _on_worker(self) -> bool:
        """Whether this copy writes into a worker's folder of its own (see parts.py)."""
        return on_worker(self.parts, self.shipped, self.run)

    def release(self) -> None:
        """Remove a worker's folder of this task's files (after an upload, or a failure)."""
        if self._on_worker():
            shutil.rmtree(self.run, ignore_errors=True)

    def _rebase(self, root: Path) -> None:
        """Write under ``root`` instead (the same names), to be uploaded by :meth:`written`."""
        old, self.run = self.run, root
        self.scratch_dir = root / "_scratch"
        self.scratch_dir.mkdir()
        self.arrays = {name: rebased(array, old, root) for name, array in self.arrays.items()}

    def _shared_path(self, name: str) -> Path:
        if name in self.scratch:
            return self.scratch_dir / f"{name}.zarr"
        return rundir.array_path(self.run, name)

    def written(self) -> dict[str, Any]:
        """What this copy wrote: each array's image sizes, and where records lie (on a
        worker building a run for a URL, its files are uploaded there first)."""
        if self._on_worker():
            assert self.parts is not None
            self.parts.upload(self.run, self.fetched)
        shapes = {
            name: dict(array.shapes)
            for name, array in self.arrays.items()
            if isinstance(array, ImageChunkWriter) and array.shapes
        }
        records = {key: self._records[key] for key in self._new_records}
        return {"shapes": shapes, "records": records}

    def adopt(self, written: dict[str, Any]) -> None:
        """Take in what a detached copy wrote, as if written here (a task run twice after
        a worker loss wrote the same files again: the later account replaces the first)."""
        for resolution, start in written["records"]:
            if self.parts is None and not self._record_path(start, resolution).exists():
                raise RunDirectoryError(
                    f"the Dask workers wrote the run's files where this machine cannot see "
                    f"them ({self._record_path(start, resolution).name} is missing); with a "
                    "remote scheduler, -o must be on a filesystem every worker shares with "
                    "this machine."
                )
        for name, shapes in written["shapes"].items():
            array = self.arrays[name]
            if isinstance(array, ScratchImages):
                array.close()
                array.path.unlink(missing_ok=True)
                array = self.arrays[name] = ImageChunkWriter(self._shared_path(name), array.dtype)
            array.shapes.update(shapes)
        self._records.update(written["records"])

    def pass_written(self) -> None:
        """The bulk of the run is written: complete its arrays, and start flushing them
        while the rest is worked out."""
        self.finish()
        folders: list[Path] = []
        for name, array in self.arrays.items():
            if isinstance(array, ImageChunkWriter | PerImageArrays) and name not in self.scratch:
                folders += array.folders()
        durability.start_flush(self.run, folders)

    def finish(self) -> None:
        """Write the metadata of every array not completed yet (its layout follows from
        the images' sizes)."""
        for name, array in self.arrays.items():
            if name not in self.scratch and isinstance(array, ImageChunkWriter):
                if not array.finished:
                    array.finish()

    def discard_scratch(self) -> None:
        for array in self.arrays.values():
            if isinstance(array, ScratchImages):
                array.close()
        if self.parts is not None:
            self.parts.remove(self.scratch_dir.name)
        self.arrays = {k: v for k, v in self.arrays.items() if k not in self.scratch}
        shutil.rmtree(self.scratch_dir, ignore_errors=True)
