"""The main job: scan a dataset into a run directory.

One streaming read of pred_probs (:mod:`segaudit.engine.stream`), then thresholds, the
issue count, exact top-m selection and the full-resolution cross-check over the
compact arrays (:mod:`segaudit.engine.cut`), then the tables and ``summary.json``
(written last; the directory is swapped into place only when complete).
"""

from __future__ import annotations

import csv
import os
import platform
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segaudit import __version__, safetext
from segaudit.engine.cut import count_issues, find_cut, thresholds, write_issues
from segaudit.engine.stream import (
    DEFAULT_MEMORY_BUDGET,
    Layout,
    Params,
    PassStats,
    Records,
    Sink,
    check_inputs,
    stream,
    sum_tolerance,
)
from segaudit.errors import InputChangedError, InvalidInputError
from segaudit.progress import NullProgress, Progress
from segaudit.runs import rundir
from segaudit.runs.chunkstore import ImageChunkedArray
from segaudit.sources.stores import (
    ArraySource,
    DatasetPaths,
    open_store,
    read_class_names,
    store_fingerprint,
)

IMAGE_SCORE_COLUMNS = ("image", "id", "softmin_score", "issue_pixels", "issue_fraction", "rank")


class ScratchArray:
    """An (N, ...) array in a raw file, written and read by image range with pwrite/pread.

    Scratch data goes through write(), never through a memory map: a full disk (or a
    file-size limit) is then an OSError naming the file, where a mapped page that cannot
    be stored kills the process with SIGBUS. Threads may write disjoint ranges at once.
    """

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: Any) -> None:
        self.path = Path(path)
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype)
        self._image_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        self._fd: int | None = os.open(
            self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600
        )

    def _bounds(self, key: slice) -> tuple[int, int]:
        start, stop, step = key.indices(self.shape[0])
        if step != 1:
            raise ValueError("scratch arrays are read and written by contiguous image ranges")
        return start, max(start, stop)

    def _descriptor(self) -> int:
        if self._fd is None:
            raise ValueError(f"{self.path} is closed")
        return self._fd

    def __setitem__(self, key: slice, value: np.ndarray) -> None:
        start, stop = self._bounds(key)
        data = np.ascontiguousarray(value, dtype=self.dtype).reshape(-1)
        view = memoryview(data).cast("B")
        if len(view) != (stop - start) * self._image_bytes:
            raise ValueError(f"{len(view)} bytes do not fill images {start}..{stop - 1}")
        offset, done = start * self._image_bytes, 0
        try:
            while done < len(view):
                done += os.pwrite(self._descriptor(), view[done:], offset + done)
        except OSError as error:
            raise OSError(error.errno, error.strerror, str(self.path)) from None

    def __getitem__(self, key: slice) -> np.ndarray:
        start, stop = self._bounds(key)
        out = np.empty((stop - start, *self.shape[1:]), self.dtype)
        view = memoryview(out.reshape(-1)).cast("B")
        offset, done = start * self._image_bytes, 0
        while done < len(view):
            got = os.preadv(self._descriptor(), [view[done:]], offset + done)
            if got == 0:
                raise OSError(f"{self.path} ends before images {start}..{stop - 1}")
            done += got
        return out

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        self.close()


class RunSink:
    """Per-pixel arrays as Zarr in a run directory; scratch as raw files beside them."""

    def __init__(self, run: Path) -> None:
        self.run = run
        self.scratch_dir = run / "_scratch"
        self.scratch_dir.mkdir()
        self.arrays: dict[str, Any] = {}
        self._records: dict[int, dict[str, tuple[np.dtype, int, int]]] = {}

    def create(self, name: str, shape: tuple[int, ...], dtype: Any, scratch: bool = False) -> Any:
        if scratch:
            self.arrays[name] = ScratchArray(self.scratch_dir / f"{name}.raw", shape, dtype)
        else:
            self.arrays[name] = ImageChunkedArray(rundir.array_path(self.run, name), shape, dtype)
        return self.arrays[name]

    def get(self, name: str) -> Any:
        return self.arrays[name]

    def _record_path(self, start: int) -> Path:
        return self.scratch_dir / f"records-{start:012d}.bin"

    def add_records(self, start: int, records: Records) -> None:
        """One raw file per batch, fields one after the other; only where each field
        lies is kept in memory (a few numbers a batch), so memory stays flat."""
        where: dict[str, tuple[np.dtype, int, int]] = {}
        offset = 0
        with open(self._record_path(start), "wb") as handle:
            for name, values in records.items():
                values = np.ascontiguousarray(values)
                handle.write(values.data)
                where[name] = (values.dtype, offset, len(values))
                offset += values.nbytes
        self._records[start] = where

    def records(self, start: int, fields: tuple[str, ...]) -> Records:
        where = self._records[start]
        out = {}
        with open(self._record_path(start), "rb") as handle:
            for name in fields:
                dtype, offset, count = where[name]
                handle.seek(offset)
                out[name] = np.fromfile(handle, dtype, count)
        return out

    def record_starts(self) -> list[int]:
        return sorted(self._records)

    def pass_written(self) -> None:
        """The bulk of the run is written: start flushing it while the rest is worked out."""
        folders = [a.path for a in self.arrays.values() if isinstance(a, ImageChunkedArray)]
        rundir.start_flush(self.run, folders)

    def discard_scratch(self) -> None:
        for array in self.arrays.values():
            if isinstance(array, ScratchArray):
                array.close()
        self.arrays = {k: v for k, v in self.arrays.items() if not isinstance(v, ScratchArray)}
        shutil.rmtree(self.scratch_dir, ignore_errors=True)


@dataclass(frozen=True)
class Engine:
    """How to run (never changes results)."""

    workers: int = 1
    batch_size: int | None = None
    memory_budget: int = DEFAULT_MEMORY_BUDGET


@dataclass
class CLResult:
    """Everything Confident Learning produced, before it is written to tables."""

    stats: PassStats
    class_thresholds: np.ndarray
    num_candidates: int
    issues_per_image: np.ndarray
    issues_given: np.ndarray
    issues_predicted: np.ndarray
    stages: dict[str, float]


def confident_learning(
    labels: ArraySource,
    probs: ArraySource,
    params: Params,
    sink: Sink,
    engine: Engine,
    progress: Progress,
    on_batch: Any = None,
) -> CLResult:
    """Confident Learning steps 1–5 into ``sink`` (which gains an ``issues`` array)."""
    clock = time.perf_counter()
    stats = stream(
        labels,
        probs,
        params,
        sink,
        workers=engine.workers,
        batch_size=engine.batch_size,
        memory_budget=engine.memory_budget,
        progress=progress,
        on_batch=on_batch,
    )
    sink.pass_written()
    stages = {"read_pred_probs": time.perf_counter() - clock}
    clock = time.perf_counter()
    class_thresholds = thresholds(stats.class_sum, stats.class_count)
    m = count_issues(sink, class_thresholds)
    scores_name = "pixel_scores" if params.downsample == 1 else "cl_scores"
    layout = stats.layout
    # Every pixel's top probability is at least (1 - tol) / K (its row sums to 1 within
    # tol), so pixels scoring below that are all mispredicted: all in the records.
    below_any_max = (1 - sum_tolerance(layout.num_classes, layout.dtype)) / layout.num_classes

    def stored_scores(lo: int, hi: int) -> np.ndarray:
        return np.asarray(sink.get(scores_name)[lo:hi])

    def mispredicted_scores(lo: int, hi: int) -> np.ndarray:
        return sink.records(lo, ("s",))["s"]

    cut = find_cut(stats, m, stored_scores, mispredicted_scores, below_any_max)
    stages["select"] = time.perf_counter() - clock
    clock = time.perf_counter()
    sink.create("issues", (layout.num_images, layout.height, layout.width), bool)
    progress.start("flagging issues", layout.num_images)
    counts = write_issues(
        stats, cut, sink, params.downsample, params.ignore_index, progress, engine.workers
    )
    progress.finish()
    stages["write_issues"] = time.perf_counter() - clock
    return CLResult(
        stats,
        class_thresholds,
        m,
        counts.per_image,
        counts.given,
        counts.predicted,
        {k: round(v, 3) for k, v in stages.items()},
    )


def rank_images(scores: np.ndarray) -> np.ndarray:
    """Image order worst first: ascending score, ties by index, NaN (nothing scored) last."""
    keys = np.where(np.isnan(scores), np.inf, scores)
    return np.lexsort((np.arange(len(scores)), keys))


def write_image_scores(
    path: Path,
    softmin: np.ndarray,
    issues: np.ndarray,
    scored: np.ndarray,
    ids: list[str] | None = None,
) -> None:
    """``image_scores.csv``: one row per image, worst first."""
    order = rank_images(softmin)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(IMAGE_SCORE_COLUMNS)
        for rank, image in enumerate(order, start=1):
            fraction = issues[image] / scored[image] if scored[image] else float("nan")
            writer.writerow(
                [
                    int(image),
                    safetext.csv_cell(ids[image]) if ids else str(int(image)),
                    _fmt(softmin[image]),
                    int(issues[image]),
                    _fmt(fraction),
                    rank,
                ]
            )


def _fmt(value: float) -> str:
    return "nan" if np.isnan(value) else repr(float(value))


# Images with absent chunks named in summary.json per store (the count is always exact).
ABSENT_LISTED = 100


def absolute(path: str | os.PathLike[str]) -> str:
    """``path`` made absolute without resolving symbolic links.

    A later command run from another folder then opens what the user named (a link to
    ``latest/`` still means the latest), and the recorded fingerprint tells it whether
    that is still the same file.
    """
    return os.path.abspath(path)


def describe_input(
    source: ArraySource, fingerprint: dict[str, Any], absent: list[int] | None = None
) -> dict[str, Any]:
    """One store in the ``inputs`` block of ``summary.json``."""
    absent = absent or []
    return {
        "path": absolute(source.path),
        "format": source.kind,
        "shape": list(source.shape),
        "dtype": str(source.dtype),
        **fingerprint,
        "absent_chunk_images": {"count": len(absent), "images": absent[:ABSENT_LISTED]},
    }


def shown_images(images: list[int], limit: int = 5) -> str:
    """``0, 4, 7, ...`` for messages: the first few image indices."""
    return ", ".join(str(i) for i in images[:limit]) + (", ..." if len(images) > limit else "")


@dataclass
class Inputs:
    """A dataset's inputs opened for one command.

    Each input's identity (:func:`segaudit.sources.stores.store_fingerprint`) is taken before any
    of its data is read, the class-names file included, so a change during the run is
    caught by :meth:`check_unchanged` and a later command can tell whether an input is
    still the one a run was made from.
    """

    stores: dict[str, ArraySource]
    names_path: Path | None
    identities: dict[str, dict[str, Any]]
    absent: dict[str, list[int]]

    @property
    def labels(self) -> ArraySource:
        return self.stores["labels"]

    @property
    def probs(self) -> ArraySource:
        return self.stores["pred_probs"]

    def path_of(self, name: str) -> Path:
        if name == "class_names" and self.names_path is not None:
            return self.names_path
        return self.stores[name].path

    def paths(self) -> list[Path]:
        """Every input's path, the class-names file included: none may lie inside RUN."""
        names = [self.names_path] if self.names_path is not None else []
        return [source.path for source in self.stores.values()] + names

    def describe(self) -> dict[str, Any]:
        """The ``inputs`` block of ``summary.json``: absolute paths, shapes, identities."""
        block = {
            name: describe_input(source, self.identities[name], self.absent.get(name))
            for name, source in self.stores.items()
        }
        if "class_names" in self.identities:
            block["class_names"] = {
                "path": absolute(self.path_of("class_names")),
                "format": "text",
                **self.identities["class_names"],
            }
        return block

    def check_unchanged(self) -> None:
        """Refuse results of inputs that changed while they were read (one look each)."""
        for name, before in self.identities.items():
            path = self.path_of(name)
            if store_fingerprint(path) != before:
                raise InputChangedError(
                    f"{path} changed while segaudit was reading it; its results would mix "
                    "two versions, so nothing was written: rerun once the file is stable."
                )


def open_inputs(paths: DatasetPaths, *, allow_absent_chunks: bool = False) -> Inputs:
    """Open a dataset's stores and take every input's identity before reading any data.

    Zarr stores may lack chunks (Zarr skips writing a chunk equal to the fill value).
    In labels and images that is allowed and reported (:func:`absent_chunk_warnings`);
    in pred_probs it can only mean one constant value for a whole image, so it is
    refused unless ``allow_absent_chunks``.
    """
    stores = {
        "labels": open_store(paths.labels, "labels"),
        "pred_probs": open_store(paths.pred_probs, "pred_probs"),
    }
    if paths.images is not None:
        stores["images"] = open_store(paths.images, "images")
        _check_images(stores["images"], stores["labels"])
    identities = {name: source.fingerprint() for name, source in stores.items()}
    names_path = paths.class_names
    if names_path is not None and names_path.is_file():
        identities["class_names"] = store_fingerprint(names_path)
    absent = {name: source.absent_images() for name, source in stores.items()}
    if absent["pred_probs"] and not allow_absent_chunks:
        missing = absent["pred_probs"]
        raise InvalidInputError(
            f"{stores['pred_probs'].path} has absent Zarr chunks in {len(missing)} image(s) "
            f"({shown_images(missing)}), which would read as one constant value instead of "
            "the model's probabilities; write those chunks, or pass --allow-absent-chunks "
            "to read them as the fill value."
        )
    return Inputs(stores, names_path, identities, absent)


def absent_chunk_warnings(summary: dict[str, Any]) -> list[str]:
    """One sentence per input of a run with absent Zarr chunks, for the command to print."""
    warnings = []
    for name, block in (summary.get("inputs") or {}).items():
        absent = (block or {}).get("absent_chunk_images") or {}
        count = int(absent.get("count") or 0)
        if count:
            warnings.append(
                f"{block.get('path', name)} has absent Zarr chunks in {count} image(s) "
                f"({shown_images(list(absent.get('images') or []))}), read as its fill value "
                f"({_FILL_MEANING.get(name, 'a constant')}); write them if those images should "
                "hold data."
            )
    return warnings


_FILL_MEANING = {
    "labels": "usually class 0 everywhere",
    "images": "usually black",
    "pred_probs": "one constant probability everywhere",
}


def describe_dataset(layout: Layout) -> dict[str, Any]:
    """The dataset block of ``summary.json``."""
    return {
        "num_images": layout.num_images,
        "height": layout.height,
        "width": layout.width,
        "num_classes": layout.num_classes,
        "pred_probs_dtype": str(layout.dtype),
    }


def build_summary(
    result: CLResult,
    inputs: dict[str, Any],
    params: Params,
    class_names: list[str],
    timing: dict[str, float],
    engine: Engine,
) -> dict[str, Any]:
    """Everything a later command or a reader needs to know about the run."""
    layout = result.stats.layout
    total_pixels = layout.num_images * layout.pixels
    scored = int(result.stats.scored.sum())
    issue_pixels = int(result.issues_per_image.sum())
    return {
        "segaudit_version": __version__,
        "command": "scan",
        "dataset": describe_dataset(layout),
        "inputs": inputs,
        "parameters": {**asdict(params), "method": "confident_learning_self_confidence"},
        "classes": {
            "names": class_names,
            "thresholds": [float(t) for t in result.class_thresholds],
            "labelled_pixels": [int(c) for c in result.stats.class_count],
            "issue_pixels_given": [int(c) for c in result.issues_given],
            "issue_pixels_predicted": [int(c) for c in result.issues_predicted],
        },
        "totals": {
            "pixels": total_pixels,
            "scored_pixels": scored,
            "ignored_pixels": total_pixels - scored,
            "candidates": result.num_candidates,
            "issue_pixels": issue_pixels,
            "issue_fraction": issue_pixels / scored if scored else 0.0,
            "images_with_issues": int(np.count_nonzero(result.issues_per_image)),
        },
        "engine": {
            "workers": engine.workers,
            "batch_size": engine.batch_size,
            "batches": len(result.stats.batches),
        },
        "timing": {**timing, "python": platform.python_version()},
    }


def scan(
    paths: DatasetPaths,
    out: str | os.PathLike[str],
    params: Params | None = None,
    *,
    engine: Engine | None = None,
    class_names: list[str] | None = None,
    progress: Progress | None = None,
    allow_absent_chunks: bool = False,
) -> dict[str, Any]:
    """Scan a dataset into the run directory ``out``; return its summary.

    ``allow_absent_chunks`` reads absent Zarr chunks of pred_probs as the fill value
    instead of refusing them (see :func:`open_inputs`).
    """
    params = params or Params()
    engine = engine or Engine()
    progress = progress or NullProgress()
    started = time.perf_counter()
    inputs = open_inputs(paths, allow_absent_chunks=allow_absent_chunks)
    labels, probs = inputs.labels, inputs.probs
    layout = check_inputs(labels.array, probs.array, params, (str(labels.path), str(probs.path)))
    names = class_names or read_class_names(paths.class_names, layout.num_classes)
    with rundir.building_run(out, inputs=inputs.paths()) as tmp:
        sink = RunSink(tmp)
        result = confident_learning(
            labels, probs, params, sink, engine, progress, on_batch=_test_hook_after_batch
        )
        sink.discard_scratch()
        inputs.check_unchanged()
        write_image_scores(
            tmp / "image_scores.csv",
            result.stats.softmin,
            result.issues_per_image,
            result.stats.scored,
        )
        timing = {"seconds": round(time.perf_counter() - started, 3), **result.stages}
        summary = build_summary(result, inputs.describe(), params, names, timing, engine)
        rundir.write_json_atomic(tmp / rundir.SUMMARY, summary)
    return summary


def _check_images(images: ArraySource, labels: ArraySource) -> None:
    shape = images.shape
    if len(shape) != 4 or shape[3] != 3 or tuple(shape[:3]) != labels.shape:
        raise InvalidInputError(
            f"{images.path} has shape {shape}; images must be (N, H, W, 3) matching labels "
            f"{labels.shape}."
        )
    if images.dtype != np.uint8:
        raise InvalidInputError(
            f"{images.path} holds {images.dtype} values; images must be uint8 RGB."
        )


def _test_hook_after_batch(stop: int) -> None:
    """Fault injection for tests: SEGAUDIT_TEST_KILL_AFTER_IMAGES=i SIGKILLs after i images."""
    limit = os.environ.get("SEGAUDIT_TEST_KILL_AFTER_IMAGES")
    if limit is not None and stop >= int(limit):
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
