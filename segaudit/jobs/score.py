"""Image and pixel label-quality scores that rank images for review.

- pixel score: p[given label], the probability of each pixel's given label;
- ``softmin`` image score: sum_i s_i·w_i, w = softmax((1 - s)/T) over the image's
  scored pixels. No Confident Learning: :func:`softmin_pass` reads pred_probs once,
  streaming, and only p[given label] of most pixels (see :mod:`segaudit.engine.score_kernels`),
  with flat memory;
- ``num_pixel_issues`` image score: 1 - issue pixels / scored pixels, from a scan
  (:func:`segaudit.jobs.scan.confident_learning`).

Deliberate extension of the reference: pixels with the ignore label are left out of
the softmin and of the ``num_pixel_issues`` denominator (their pixel score is NaN). An
image without any scored pixel gets the score NaN and ranks last.

What softmin validates: every label (0..K-1 or the ignore value), every probability it
reads (p[given label]: finite, 0..1), and whole rows (finite, non-negative, summing
to 1) on the first pixel row of every image, which catches logits and unnormalised
outputs. Unlike ``segaudit scan`` it does not look at the other classes of the other
rows, which do not enter the scores.

:func:`score` writes a run directory: ``image_scores.csv``, optionally
``pixel_scores.zarr``, and ``summary.json`` last. When the run directory already
holds a scan (``issues.zarr``) of the same inputs and parameters, that scan is kept
and ``num_pixel_issues`` reuses it instead of recomputing; a scan of other inputs or
parameters is never discarded silently (:class:`ScanMismatchError` unless ``replace``).
"""

from __future__ import annotations

import csv
import math
import os
import shutil
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from segaudit import __version__, safetext
from segaudit.engine import kernels, score_kernels
from segaudit.engine.stream import (
    DEFAULT_MEMORY_BUDGET,
    WORKSPACE,
    Layout,
    Params,
    check_inputs,
    describe_problems,
    plan_batches,
    sum_tolerance,
)
from segaudit.errors import InvalidInputError, RunDirectoryError
from segaudit.jobs.scan import (
    Engine,
    Inputs,
    RunSink,
    build_summary,
    confident_learning,
    describe_dataset,
    open_inputs,
    rank_images,
)
from segaudit.progress import NullProgress, Progress
from segaudit.runs import rundir
from segaudit.runs.chunkstore import ImageChunkedArray
from segaudit.sources.stores import ArraySource, DatasetPaths, read_class_names

METHODS = ("softmin", "num_pixel_issues")
LOGITS_FIX = "these look like logits: apply a softmax first, or use `segaudit scan --logits`."
SCORE_COLUMNS = ("image", "id", "score", "rank")
ISSUE_COLUMNS = ("issue_pixels", "scored_pixels")
# Parameters that change a scan's issue mask; a kept scan must agree on all of them.
SCAN_PARAMETERS = ("ignore_index", "downsample", "label_pooling", "channels_last", "logits")

T = TypeVar("T")


class ScanMismatchError(RunDirectoryError):
    """The run directory holds a scan of other inputs or parameters."""


class UnscoredImagesWarning(UserWarning):
    """Some images have no scored pixel (every label ignored); their score is NaN."""


def check_method(method: str) -> None:
    if method not in METHODS:
        raise InvalidInputError(
            f"unknown scoring method {method!r}; choose one of {', '.join(METHODS)}."
        )


def check_temperature(temperature: float) -> None:
    """The softmin temperature must be a positive finite number."""
    try:
        value = float(temperature)
    except (TypeError, ValueError):
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise InvalidInputError(
            f"temperature must be a positive finite number, got {temperature}; "
            "try 0.1 (lower values approach the worst pixel's score)."
        )


@dataclass
class ImageScores:
    """Per-image results, in image order."""

    layout: Layout
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


# -- softmin: one streaming read of p[given label] --------------------------------------


def gathers_from_mapped_planes(probs: ArraySource, params: Params) -> bool:
    """Whether softmin reads a memory-mapped file's class planes in place.

    Then a batch costs memory only for the pages its gather touches, which depends on
    how many classes each image holds; those pages stay mapped until the batch is
    released. One image per batch keeps that to one image's pages (about 80 MB peak on
    60×19×512×1024 instead of 290, flat as N grows) for about 5% more time.
    """
    return probs.kind == "npy" and not params.channels_last


def softmin_pass(
    labels: ArraySource,
    probs: ArraySource,
    params: Params,
    *,
    pixel_out: Any = None,
    workers: int = 1,
    batch_size: int | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    progress: Progress | None = None,
) -> ImageScores:
    """Softmin image scores; pixel scores go to ``pixel_out`` (N,H,W) when given.

    ``pixel_out`` is any array supporting slice assignment (numpy, Zarr); a numpy
    array is filled in place without a copy. Malformed input raises
    :class:`~segaudit.errors.InvalidInputError` naming the file and the first pixel.
    """
    if params.logits:
        raise InvalidInputError(
            "softmin scores read probabilities, not logits; convert them with a softmax "
            "or use `segaudit scan --logits`."
        )
    check_temperature(params.temperature)
    progress = progress or NullProgress()
    names = (str(labels.path), str(probs.path))
    layout = check_inputs(labels.array, probs.array, params, names)
    result = ImageScores(
        layout,
        "softmin",
        float(params.temperature),
        np.empty(layout.num_images),
        np.empty(layout.num_images, np.int64),
    )
    if batch_size is None and gathers_from_mapped_planes(probs, params):
        batch_size = 1
    batches = plan_batches(
        layout.num_images, layout.image_bytes, workers, batch_size, memory_budget
    )

    def work(bounds: tuple[int, int]) -> tuple[int, np.ndarray, np.ndarray]:
        lo, hi = bounds
        # Class planes: the gather touches only the pages of each pixel's given class, so
        # mapping the whole batch up front would cost more than it saves.
        label_batch = labels.read(lo, hi)
        prob_batch = probs.read(lo, hi, populate=params.channels_last)
        try:
            check_rows(lo, label_batch, prob_batch, params, layout, names)
            view = _rows_view(pixel_out, lo, hi, layout)
            scores, scored, rows = score_batch(
                lo, label_batch, prob_batch, params, layout, names, view
            )
            if pixel_out is not None and view is None:
                pixel_out[lo:hi] = rows.reshape(hi - lo, layout.height, layout.width)
            return lo, scores, scored
        finally:
            labels.release(label_batch)
            probs.release(prob_batch)

    def fold(done: tuple[int, np.ndarray, np.ndarray]) -> None:
        lo, scores, scored = done
        result.scores[lo : lo + len(scores)] = scores
        result.scored[lo : lo + len(scores)] = scored
        progress.advance(len(scores))

    progress.start("scoring images", layout.num_images)
    run_in_order(batches, work, fold, workers)
    progress.finish()
    return result


def _rows_view(pixel_out: Any, lo: int, hi: int, layout: Layout) -> np.ndarray | None:
    """A (b, P) view into a numpy ``pixel_out`` of the right dtype, else None."""
    if (
        isinstance(pixel_out, np.ndarray)
        and pixel_out.flags.c_contiguous
        and pixel_out.dtype == layout.score_dtype
    ):
        return pixel_out[lo:hi].reshape(hi - lo, layout.pixels)
    return None


def score_batch(
    start: int,
    labels: np.ndarray,
    probs: np.ndarray,
    params: Params,
    layout: Layout,
    names: tuple[str, str],
    rows: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Softmin scores, scored-pixel counts and pixel scores (b, P) of images ``start:start+b``.

    Pixel scores are written into ``rows`` when given (a view into the caller's output),
    else into a per-thread buffer that the thread's next batch reuses.
    """
    b = labels.shape[0]
    k, p = layout.num_classes, layout.pixels
    flat_labels = labels.reshape(b, p)
    if rows is None:  # this thread's buffer, reused from batch to batch
        rows = WORKSPACE.get("score-s", (b, p), layout.score_dtype)
    strides = (1, k) if params.channels_last else (p, 1)
    ignore = params.ignore_index
    scores, scored = np.empty(b), np.empty(b, np.int64)
    problems = np.zeros((score_kernels.PROBLEM_KINDS, 2), np.int64)
    common = (
        flat_labels,
        k,
        *strides,
        int(ignore or 0),
        ignore is not None,
        float(params.temperature),
        sum_tolerance(k, probs.dtype),
        rows,
        scores,
        scored,
        problems,
    )
    score_kernels.softmin(probs.reshape(b, -1), *common)
    message = describe_problems(
        problems,
        start,
        layout,
        names,
        flat_labels,
        sum_problem="has probabilities above 1",
        logits_fix=LOGITS_FIX,
    )
    if message is not None:
        raise InvalidInputError(message)
    return scores, scored, rows


def check_rows(
    start: int,
    labels: np.ndarray,
    probs: np.ndarray,
    params: Params,
    layout: Layout,
    names: tuple[str, str],
) -> None:
    """Whole-row checks (finite, non-negative, sum to 1) on each image's first pixel row."""
    first = probs[:, 0].transpose(0, 2, 1) if params.channels_last else probs[:, :, 0]
    first = first.astype(np.float32 if probs.dtype == np.float16 else probs.dtype)  # (b,K,W)
    with np.errstate(invalid="ignore"):  # NaN and infinities are reported below, not warned
        totals, low = first.sum(axis=1), first.min(axis=1)
        bad = {
            kernels.NONFINITE: ~np.isfinite(totals),
            kernels.NEGATIVE: low < 0,
            kernels.BAD_SUM: np.abs(totals - 1) > sum_tolerance(layout.num_classes, probs.dtype),
        }
    problems = np.zeros((kernels.PROBLEM_KINDS, 2), np.int64)
    for kind, mask in bad.items():
        where = np.flatnonzero(mask)
        if where.size:
            problems[kind] = (where.size, where[0])
    message = describe_problems(
        problems,
        start,
        layout,
        names,
        labels[:, 0],
        pixels_per_image=layout.width,
        logits_fix=LOGITS_FIX,
    )
    if message is not None:
        raise InvalidInputError(message)


def run_in_order(
    batches: Iterable[tuple[int, int]],
    work: Callable[[tuple[int, int]], T],
    fold: Callable[[T], None],
    workers: int,
) -> None:
    """``work`` on local threads (at most ``workers`` in flight); ``fold`` in batch order."""
    workers = max(1, workers)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque[Future[T]] = deque()
        try:
            for bounds in batches:
                pending.append(pool.submit(work, bounds))
                if len(pending) >= workers:
                    fold(pending.popleft().result())
            while pending:
                fold(pending.popleft().result())
        except BaseException:
            for future in pending:
                future.cancel()
            raise


# -- num_pixel_issues: from a scan ------------------------------------------------------


def counts_from_run(
    run: rundir.Run, ignore: int | None, progress: Progress | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Issue pixels and scored pixels per image, read from a run's arrays."""
    progress = progress or NullProgress()
    issues_array, labels_array = run.array("issues"), run.array("labels")
    n = int(issues_array.shape[0])
    per_image = max(1, int(np.prod(issues_array.shape[1:])))
    step = max(1, (64 * 2**20) // per_image)
    issues, scored = np.empty(n, np.int64), np.empty(n, np.int64)
    progress.start("reading the scan", n)
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        issues[lo:hi] = np.asarray(issues_array[lo:hi]).reshape(hi - lo, -1).sum(axis=1)
        labels = np.asarray(labels_array[lo:hi]).reshape(hi - lo, -1)
        scored[lo:hi] = per_image if ignore is None else (labels != ignore).sum(axis=1)
        progress.advance(hi - lo)
    progress.finish()
    return issues, scored


def kept_scan(
    run: Path,
    inputs: dict[str, dict[str, Any]],
    names: list[str],
    params: Params,
    replace: bool,
) -> rundir.Run | None:
    """The complete scan in ``run`` if it was made from these very inputs, class names
    and parameters.

    None when ``run`` holds no scan (or only scores), or when it holds another scan
    and ``replace`` is set; :class:`ScanMismatchError` when it holds another scan.
    """
    if not (rundir.is_complete_run(run) and rundir.array_path(run, "issues").exists()):
        return None
    opened = rundir.open_run(run)
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
    wanted = asdict(params)
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


def write_scores_csv(path: Path, result: ImageScores, ids: list[str] | None = None) -> None:
    """``image_scores.csv``: image, id, score, rank (+ issue and scored pixels), worst first."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        extra = ISSUE_COLUMNS if result.issues is not None else ()
        writer.writerow((*SCORE_COLUMNS, *extra))
        for row in worst_rows(result, None, ids):
            row["id"] = safetext.csv_cell(row["id"])
            writer.writerow([_csv_value(row[column]) for column in (*SCORE_COLUMNS, *extra)])


def worst_rows(
    result: ImageScores, top: int | None, ids: list[str] | None = None
) -> list[dict[str, Any]]:
    """The ``top`` worst images (all when None) as rows of the scores table."""
    rows = []
    for rank, image in enumerate(result.order()[:top].tolist(), start=1):
        row: dict[str, Any] = {
            "image": image,
            "id": ids[image] if ids else str(image),
            "score": float(result.scores[image]),
            "rank": rank,
        }
        if result.issues is not None:
            row["issue_pixels"] = int(result.issues[image])
            row["scored_pixels"] = int(result.scored[image])
        rows.append(row)
    return rows


def _csv_value(value: Any) -> Any:
    return "nan" if isinstance(value, float) and math.isnan(value) else value


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
    layout = result.layout
    scores = result.scores[~np.isnan(result.scores)]
    block = {
        "method": result.method,
        "temperature": result.temperature,
        "images": layout.num_images,
        "images_without_scored_pixels": int(len(result.unscored)),
        "min": float(scores.min()) if scores.size else None,
        "median": median(scores) if scores.size else None,
        "max": float(scores.max()) if scores.size else None,
        "pixel_scores": info["pixel_scores"],
        "scan": info["scan"],
    }
    parameters = {
        **asdict(info["params"]),
        "method": result.method,
        "temperature": result.temperature,
    }
    if base is None:
        pixels = layout.num_images * layout.pixels
        scored = int(result.scored.sum())
        base = {
            "dataset": describe_dataset(layout),
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
    paths: DatasetPaths,
    out: str | os.PathLike[str],
    params: Params | None = None,
    *,
    method: str = "softmin",
    engine: Engine | None = None,
    pixel_scores: bool = False,
    replace: bool = False,
    class_names: list[str] | None = None,
    progress: Progress | None = None,
    allow_absent_chunks: bool = False,
) -> tuple[dict[str, Any], ImageScores]:
    """Score a dataset's images into the run directory ``out``; return its summary and scores.

    ``softmin`` streams p[given label] once. ``num_pixel_issues`` reuses a scan already
    in ``out`` made from the same inputs (every input's identity, the class names) and
    parameters, else runs one (its arrays stay in the run, so ``swaps``, ``render`` and
    ``eval`` work on it). A scan in ``out`` is kept whenever it matches; one of other
    inputs or parameters raises :class:`ScanMismatchError` unless ``replace``.
    ``pixel_scores`` always ends with ``pixel_scores.zarr`` in the run: a kept scan's
    own (the same values), else computed. ``allow_absent_chunks``: see
    :func:`segaudit.jobs.scan.open_inputs`.
    """
    params, engine = params or Params(), engine or Engine()
    check_method(method)
    check_temperature(params.temperature)
    progress = progress or NullProgress()
    started = time.perf_counter()
    inputs = open_inputs(paths, allow_absent_chunks=allow_absent_chunks)
    labels, probs = inputs.labels, inputs.probs
    layout = check_inputs(labels.array, probs.array, params, (str(labels.path), str(probs.path)))
    names = class_names or read_class_names(paths.class_names, layout.num_classes)
    described = inputs.describe()
    with rundir.building_run(out, inputs=inputs.paths()) as tmp:
        kept = kept_scan(Path(out).absolute(), described, names, params, replace)
        if kept is not None:
            link_tree(kept.path, tmp, skip=(rundir.SUMMARY, "image_scores.csv"))
        work = _Work(tmp, layout, inputs, params, names, engine, progress)
        # Asked for and not in the run yet (a kept scan may bring its own).
        new_pixel_scores = pixel_scores and not rundir.array_path(tmp, "pixel_scores").exists()
        if method == "softmin":
            result, base = work.softmin(new_pixel_scores), None
        elif kept is not None:
            result, base = work.from_scan(kept), None
            if new_pixel_scores:
                work.softmin(pixel_scores=True)  # for the pixel scores alone
        else:
            result, base = work.scan(pixel_scores)
        inputs.check_unchanged()
        write_scores_csv(tmp / "image_scores.csv", result)
        info = {
            "params": params,
            "inputs": described,
            "class_names": names,
            "pixel_scores": rundir.array_path(tmp, "pixel_scores").exists(),
            "scan": "kept" if kept is not None else ("computed" if base is not None else None),
            "engine": {"workers": engine.workers, "batch_size": engine.batch_size},
            "timing": {"seconds": round(time.perf_counter() - started, 3)},
        }
        summary = score_summary(result, kept.summary if kept is not None else base, info)
        rundir.write_json_atomic(tmp / rundir.SUMMARY, summary)
    return summary, result


@dataclass
class _Work:
    """What :func:`score` computes inside the run being built at ``tmp``."""

    tmp: Path
    layout: Layout
    inputs: Inputs
    params: Params
    names: list[str]
    engine: Engine
    progress: Progress

    def softmin(self, pixel_scores: bool) -> ImageScores:
        """Softmin scores, writing ``pixel_scores.zarr`` when asked."""
        pixel_out = None
        if pixel_scores:
            layout = self.layout
            shape = (layout.num_images, layout.height, layout.width)
            path = rundir.array_path(self.tmp, "pixel_scores")
            pixel_out = ImageChunkedArray(path, shape, layout.score_dtype)
        engine = self.engine
        return softmin_pass(
            self.inputs.labels,
            self.inputs.probs,
            self.params,
            pixel_out=pixel_out,
            workers=engine.workers,
            batch_size=engine.batch_size,
            memory_budget=engine.memory_budget,
            progress=self.progress,
        )

    def from_scan(self, kept: rundir.Run) -> ImageScores:
        """num_pixel_issues from the issue mask of a scan the run already holds."""
        issues, scored = counts_from_run(kept, self.params.ignore_index, self.progress)
        return ImageScores(
            self.layout,
            "num_pixel_issues",
            float(self.params.temperature),
            issue_scores(issues, scored),
            scored,
            issues,
        )

    def scan(self, pixel_scores: bool) -> tuple[ImageScores, dict[str, Any]]:
        """Confident Learning into the run (a full scan's arrays); scores and scan summary."""
        sink = RunSink(self.tmp)
        cl = confident_learning(
            self.inputs.labels, self.inputs.probs, self.params, sink, self.engine, self.progress
        )
        sink.discard_scratch()
        if not pixel_scores:
            shutil.rmtree(rundir.array_path(self.tmp, "pixel_scores"), ignore_errors=True)
        stats = cl.stats
        result = ImageScores(
            stats.layout,
            "num_pixel_issues",
            float(self.params.temperature),
            issue_scores(cl.issues_per_image, stats.scored),
            stats.scored.copy(),
            cl.issues_per_image,
        )
        summary = build_summary(
            cl, self.inputs.describe(), self.params, self.names, {}, self.engine
        )
        return result, summary
