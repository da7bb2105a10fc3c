"""Image and pixel label-quality scores that rank images for review.

- ``softmin`` (:mod:`segaudit.engine.softmin`): sum_i s_i·w_i, w = softmax((1 - s)/T)
  over each image's scored pixels, s = p[given label]; one read of p[given label], no
  Confident Learning;
- ``num_pixel_issues``: 1 - issue pixels / scored pixels, from a scan
  (:func:`segaudit.engine.learning.confident_learning`).

Deliberate extension of the reference: pixels with the ignore label are left out of
the softmin and of the ``num_pixel_issues`` denominator (their pixel score is NaN). An
image without any scored pixel gets the score NaN and ranks last.

:func:`score` writes a run directory: ``image_scores.csv``, ``images.csv``, optionally
``pixel_scores.zarr``, and ``summary.json`` last. When the run directory already holds
a scan (``issues.zarr``) of the same inputs, class names and parameters, that scan is
kept and ``num_pixel_issues`` reuses it instead of recomputing; a scan of other inputs
or parameters is never discarded silently (:class:`ScanMismatchError` unless
``replace``).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segaudit import __version__, safetext
from segaudit.engine.learning import confident_learning
from segaudit.engine.params import Execution, Extent, Params
from segaudit.engine.softmin import check_temperature, softmin_pass
from segaudit.errors import InvalidInputError, RunDirectoryError
from segaudit.jobs.scan import (
    build_summary,
    describe_dataset,
    image_table,
    on_dask,
    params_for,
    volumes_of,
)
from segaudit.progress import NullProgress, Progress
from segaudit.report.tables import rank_images, score_rows, write_score_table
from segaudit.runs import rundir
from segaudit.runs.chunkstore import rebased
from segaudit.runs.images import IMAGES_TABLE, write_images_table
from segaudit.runs.parts import RemoteParts, on_worker
from segaudit.runs.run import Run, is_complete_run, open_run
from segaudit.runs.sink import RunSink
from segaudit.sources import Dataset, DatasetSpec, open_dataset
from segaudit.sources.remote import is_url

METHODS = ("softmin", "num_pixel_issues")
# Parameters that change a scan's issue mask; a kept scan must agree on all of them.
SCAN_PARAMETERS = (
    "ignore_index",
    "downsample",
    "label_pooling",
    "channels_last",
    "logits",
    "normalize",
    "resize_probs",
)


class ScanMismatchError(RunDirectoryError):
    """The run directory holds a scan of other inputs or parameters."""


class UnscoredImagesWarning(UserWarning):
    """Some images have no scored pixel (every label ignored); their score is NaN."""


def check_method(method: str) -> None:
    if method not in METHODS:
        raise InvalidInputError(
            f"unknown scoring method {method!r}; choose one of {', '.join(METHODS)}."
        )


@dataclass
class ImageScores:
    """Per-image results, in image order."""

    extent: Extent
    ids: list[str]
    method: str
    temperature: float
    scores: np.ndarray  # (N,) float64; NaN where no pixel was scored
    scored: np.ndarray  # (N,) int64 non-ignored pixels
    issues: np.ndarray | None = None  # (N,) int64 issue pixels (num_pixel_issues)

    @property
    def unscored(self) -> np.ndarray:
        """Indices of images without any scored pixel."""
        return np.flatnonzero(self.scored == 0)

    def order(self) -> np.ndarray:
        """Images worst first: ascending score, ties by index, NaN last."""
        return rank_images(self.scores)

    def rows(self, top: int | None = None) -> list[dict[str, Any]]:
        """The ``top`` worst images (all when None) as table rows."""
        return score_rows(self.scores, self.ids, top, self.issues, self.scored)


def issue_scores(issues: np.ndarray, scored: np.ndarray) -> np.ndarray:
    """num_pixel_issues image scores: 1 - issues / scored (NaN where nothing is scored)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = issues / scored.astype(np.float64)
    return np.where(scored > 0, 1.0 - fraction, np.nan)


def unscored_message(unscored: np.ndarray) -> str:
    shown = ", ".join(str(int(i)) for i in unscored[:5]) + (", ..." if len(unscored) > 5 else "")
    return (
        f"{len(unscored)} image(s) have no scored pixel (every label is the ignore value): "
        f"{shown}; their score is NaN and they rank last."
    )


# -- num_pixel_issues: from a scan ------------------------------------------------------


def counts_from_run(
    run: Run, ignore: int | None, progress: Progress | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Issue pixels and scored pixels per image, read from a run's arrays image by image."""
    progress = progress or NullProgress()
    n = run.num_images
    issues, scored = np.empty(n, np.int64), np.empty(n, np.int64)
    progress.start("reading the scan", n)
    for index in range(n):
        issues[index] = int(np.count_nonzero(run.read("issues", index)))
        if ignore is None:
            scored[index] = run.images.pixels(index)
        else:
            scored[index] = int(np.count_nonzero(run.read("labels", index) != ignore))
        progress.advance()
    progress.finish()
    return issues, scored


def kept_scan(
    run: Path,
    inputs: dict[str, dict[str, Any]],
    names: list[str],
    params: Params,
    replace: bool,
) -> Run | None:
    """The complete scan in ``run`` if it was made from these very inputs, class names
    and parameters.

    None when ``run`` holds no scan (or only scores), or when it holds another scan
    and ``replace`` is set; :class:`ScanMismatchError` when it holds another scan.
    """
    if not (is_complete_run(run) and rundir.array_path(run, "issues").exists()):
        return None
    opened = open_run(run)
    difference = scan_difference(opened.summary, inputs, names, params)
    if difference is None:
        return opened
    if replace:
        return None
    raise ScanMismatchError(
        f"{run} holds a scan of {difference}; scoring into it would discard that scan. "
        "Choose another -o path, or pass --replace to discard it."
    )


def scan_difference(
    summary: dict[str, Any],
    inputs: dict[str, dict[str, Any]],
    names: list[str],
    params: Params,
) -> str | None:
    """How a run's scan differs from these inputs, class names and parameters (None: it
    matches).

    Every input given now (labels, pred_probs, images, the class-names file) must have
    the identity the scan recorded: its whole fingerprint, shape and dtype, wherever
    its path now is. The class names themselves must be the same list.
    """
    stored_inputs = summary.get("inputs") or {}
    for name, current in inputs.items():
        stored = stored_inputs.get(name) or {}
        if _identity(stored) != _identity(current):
            was, now = stored.get("path", "none"), current["path"]
            change = f"{was} changed since" if was == now else f"was {was}, now {now}"
            return f"other inputs ({name} {change})"
    stored_names = list((summary.get("classes") or {}).get("names") or [])
    if stored_names != list(names):
        return f"other class names ({_names_change(stored_names, list(names))})"
    stored_params = summary.get("parameters") or {}
    wanted = dataclasses.asdict(params)
    for key in SCAN_PARAMETERS:
        if stored_params.get(key) != wanted[key]:
            return f"other parameters ({key} was {stored_params.get(key)!r}, now {wanted[key]!r})"
    return None


def _identity(record: dict[str, Any]) -> dict[str, Any]:
    """What identifies an input in ``summary.json``: everything but where it was found."""
    return {key: value for key, value in record.items() if key != "path"}


def _names_change(was: list[str], now: list[str]) -> str:
    if len(was) != len(now):
        return f"{len(was)} names, now {len(now)}"
    k = next(i for i, (a, b) in enumerate(zip(was, now, strict=True)) if a != b)
    return f"class {k} was {safetext.printable(was[k])!r}, now {safetext.printable(now[k])!r}"


def link_tree(source: Path, target: Path, skip: Iterable[str]) -> None:
    """Hard-link (or copy) every file of run ``source`` into ``target``, except ``skip``."""
    skipped = set(skip)
    for root, dirs, files in os.walk(source):
        here = Path(root)
        rel = here.relative_to(source)
        if rel == Path("."):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
        (target / rel).mkdir(exist_ok=True)
        for name in files:
            if rel == Path(".") and (name in skipped or name.startswith(".")):
                continue
            try:
                os.link(here / name, target / rel / name)
            except OSError:
                shutil.copy2(here / name, target / rel / name)


# -- the run directory -----------------------------------------------------------------


def median(values: np.ndarray) -> float:
    """Median of a non-empty float array without NaN (np.median imports numpy.ma: 20 ms)."""
    ordered = np.sort(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return float(ordered[middle])
    return float((ordered[middle - 1] + ordered[middle]) / 2)


def score_summary(
    result: ImageScores, base: dict[str, Any] | None, info: dict[str, Any]
) -> dict[str, Any]:
    """``summary.json`` of a score run; ``base`` is the summary of a scan kept in it."""
    extent = result.extent
    scores = result.scores[~np.isnan(result.scores)]
    block = {
        "method": result.method,
        "temperature": result.temperature,
        "images": extent.num_images,
        "images_without_scored_pixels": int(len(result.unscored)),
        "min": float(scores.min()) if scores.size else None,
        "median": median(scores) if scores.size else None,
        "max": float(scores.max()) if scores.size else None,
        "pixel_scores": info["pixel_scores"],
        "scan": info["scan"],
    }
    parameters = {
        **dataclasses.asdict(info["params"]),
        "method": result.method,
        "temperature": result.temperature,
    }
    if base is None:
        pixels = extent.total_pixels
        scored = int(result.scored.sum())
        base = {
            "dataset": info["dataset"],
            "inputs": info["inputs"],
            "classes": {"names": info["class_names"]},
            "totals": {
                "pixels": pixels,
                "scored_pixels": scored,
                "ignored_pixels": pixels - scored,
            },
        }
    summary: dict[str, Any] = {"segaudit_version": __version__, "command": "score"}
    summary.update((key, value) for key, value in base.items() if key not in summary)
    summary.update(
        {
            "parameters": parameters,
            "scores": block,
            "engine": info["engine"],
            "timing": info["timing"],
        }
    )
    return summary


def score(
    spec: DatasetSpec,
    out: str | os.PathLike[str],
    params: Params | None = None,
    *,
    method: str = "softmin",
    execution: Execution | None = None,
    pixel_scores: bool = False,
    replace: bool = False,
    class_names: list[str] | None = None,
    progress: Progress | None = None,
    parts: RemoteParts | None = None,
) -> tuple[dict[str, Any], ImageScores]:
    """Score a dataset's images into the run directory ``out``; return its summary and scores.

    ``softmin`` streams p[given label] once. ``num_pixel_issues`` reuses a scan already
    in ``out`` made from the same inputs (every input's identity, the class names) and
    parameters, else runs one (its arrays stay in the run, so ``swaps``, ``render`` and
    ``eval`` work on it). A scan in ``out`` is kept whenever it matches; one of other
    inputs or parameters raises :class:`ScanMismatchError` unless ``replace``.
    ``pixel_scores`` always ends with ``pixel_scores.zarr`` in the run: a kept scan's
    own (the same values), else computed. A scan at an ``out`` URL is downloaded to be
    kept the same way (the new run holds its arrays); ``replace`` discards one that does
    not match its manifest. (``parts``: set for such a URL when Dask workers write the
    run, :mod:`segaudit.runs.parts`.)
    """
    check_method(method)
    params = params or Params()
    check_temperature(params.temperature)
    if is_url(out):  # published with summary.json last (segaudit.runs.objectstore)
        from segaudit.runs.objectstore import holds_scan, remote_run
        from segaudit.runs.remote_read import download_run

        scanned = holds_scan(str(out))
        with remote_run(str(out)) as staging:
            staged = staging.local
            if scanned:  # checked against its manifest; kept below when it matches
                download_run(str(out), staged, discard_damaged=replace)
            try:
                return score(spec, staged, params, method=method, execution=execution,
                             pixel_scores=pixel_scores, replace=replace,
                             class_names=class_names, progress=progress,
                             parts=staging.parts if on_dask(execution) else None)  # fmt: skip
            except ScanMismatchError as error:  # named by its URL, not the staging folder
                raise ScanMismatchError(str(error).replace(str(staged), str(out))) from None
    started = time.perf_counter()
    dataset = open_dataset(spec)
    params = params_for(dataset, params)
    work = _Work(dataset, params, execution or Execution(), progress or NullProgress(), parts)
    names = class_names or dataset.names()
    described = dataset.inputs()
    with rundir.building_run(out, inputs=dataset.input_paths()) as tmp:
        kept = kept_scan(Path(out).absolute(), described, names, params, replace)
        if kept is not None:
            link_tree(kept.path, tmp, skip=(rundir.SUMMARY, "image_scores.csv", IMAGES_TABLE))
        # Asked for and not in the run yet (a kept scan may bring its own).
        new_pixel_scores = pixel_scores and not rundir.array_path(tmp, "pixel_scores").exists()
        base = kept.summary if kept is not None else None
        if method == "softmin":
            result = work.softmin(tmp if new_pixel_scores else None)
        elif kept is not None:
            result = work.from_scan(kept)
            if new_pixel_scores:
                work.softmin(tmp)  # for the pixel scores alone
        else:
            result, base = work.scan(tmp, pixel_scores, names)
        dataset.check_unchanged()
        table = image_table(dataset)
        write_images_table(tmp / IMAGES_TABLE, table)
        labels_files = [files["labels"] for files in table.files]
        write_score_table(tmp / "image_scores.csv", result.rows(), labels_files)
        info = {
            "params": params,
            "dataset": describe_dataset(dataset, result.extent),
            "inputs": described,
            "class_names": names,
            "pixel_scores": rundir.array_path(tmp, "pixel_scores").exists(),
            "scan": "kept" if kept is not None else ("computed" if base is not None else None),
            "engine": {
                "executor": work.execution.runner().name,
                "workers": work.execution.workers,
                "batch_size": work.execution.batch_size,
            },
            "timing": {"seconds": round(time.perf_counter() - started, 3)},
        }
        summary = score_summary(result, base, info)
        rundir.write_json_atomic(tmp / rundir.SUMMARY, summary)
    return summary, result


@dataclass
class _Work:
    """What :func:`score` computes inside the run being built."""

    dataset: Dataset
    params: Params
    execution: Execution
    progress: Progress
    parts: RemoteParts | None = None  # a run for a URL, built on a Dask cluster

    def softmin(self, pixels_into: Path | None) -> ImageScores:
        """Softmin scores, writing ``pixel_scores.zarr`` into ``pixels_into`` when given."""
        sink = _PixelScoresSink(pixels_into, self.parts) if pixels_into is not None else None
        found = softmin_pass(
            self.dataset,
            self.params,
            pixel_sink=sink,
            execution=self.execution,
            progress=self.progress,
        )
        if sink is not None:
            sink.finish()
        return ImageScores(
            found.extent,
            list(self.dataset.ids),
            "softmin",
            float(self.params.temperature),
            found.scores,
            found.scored,
        )

    def from_scan(self, kept: Run) -> ImageScores:
        """num_pixel_issues from the issue masks of a scan the run already holds."""
        issues, scored = counts_from_run(kept, self.params.ignore_index, self.progress)
        return self._issue_scores(issues, scored)

    def scan(
        self, tmp: Path, pixel_scores: bool, names: list[str]
    ) -> tuple[ImageScores, dict[str, Any]]:
        """Confident Learning into the run (a full scan's arrays); scores and scan summary."""
        sink = RunSink(tmp, list(self.dataset.ids), volumes_of(self.dataset), parts=self.parts)
        cl = confident_learning(self.dataset, self.params, sink, self.execution, self.progress)
        sink.finish()
        sink.discard_scratch()
        if not pixel_scores:
            shutil.rmtree(rundir.array_path(tmp, "pixel_scores"), ignore_errors=True)
            if self.parts is not None:
                self.parts.remove("pixel_scores.zarr")
        result = self._issue_scores(cl.issues_per_image, cl.stats.scored.copy())
        summary = build_summary(cl, self.dataset, self.params, names, {}, self.execution)
        return result, summary

    def _issue_scores(self, issues: np.ndarray, scored: np.ndarray) -> ImageScores:
        from segaudit.engine.stream import extent_of

        return ImageScores(
            extent_of(self.dataset, self.params),
            list(self.dataset.ids),
            "num_pixel_issues",
            float(self.params.temperature),
            issue_scores(issues, scored),
            scored,
            issues,
        )


class _PixelScoresSink:
    """Just the ``pixel_scores`` array of a run, for softmin's pixel scores; with ``parts``
    (a run for a URL on a Dask cluster), each task's chunks are uploaded by its worker."""

    def __init__(self, run: Path, parts: RemoteParts | None = None) -> None:
        self.run = run
        self.parts = parts
        self.shipped = False
        self.array: Any = None

    def create(
        self,
        name: str,
        sizes: np.ndarray,
        dtype: Any,
        scratch: bool = False,
        chunk_rows: np.ndarray | None = None,
    ) -> None:
        from segaudit.runs.chunkstore import ImageChunkWriter, PerImageArrays

        path = rundir.array_path(self.run, name)
        differ = len(np.unique(np.asarray(sizes).reshape(-1, 2), axis=0)) > 1
        if chunk_rows is not None or differ:  # each image its own folder, written by its task
            self.array = PerImageArrays(path, len(sizes), dtype, sizes=sizes, chunk_rows=chunk_rows)
        else:
            self.array = ImageChunkWriter(path, dtype)

    def write(self, name: str, index: int, value: np.ndarray, row: int = 0) -> None:
        if row:
            self.array.write_image(index, value, row)
        else:
            self.array.write_image(index, value)

    def finish(self) -> None:
        if hasattr(self.array, "finish"):
            self.array.finish()

    def detached(self) -> _PixelScoresSink:
        """A copy for a task in another process (see :meth:`RunSink.detached`)."""
        copy = _PixelScoresSink(self.run, self.parts)
        copy.array, copy.shipped = self.array.fresh(), True
        if self.parts is not None and self.shipped:  # on a worker: a folder of its own
            copy.run = self.parts.new_folder()
            copy.array = rebased(self.array, self.run, copy.run)
        return copy

    def written(self) -> dict[int, tuple[int, ...]]:
        if on_worker(self.parts, self.shipped, self.run):
            assert self.parts is not None
            self.parts.upload(self.run)
        return dict(getattr(self.array, "shapes", {}))

    def release(self) -> None:
        """Remove a worker's folder of this task's files (after an upload, or a failure)."""
        if on_worker(self.parts, self.shipped, self.run):
            shutil.rmtree(self.run, ignore_errors=True)

    def adopt(self, written: dict[int, tuple[int, ...]]) -> None:
        if hasattr(self.array, "shapes"):
            self.array.shapes.update(written)
