"""Softmin image scores in one streaming read of p[given label], no Confident Learning.

Pixel score s = p[given label]; image score sum_i s_i·w_i with w = softmax((1 - s)/T)
over the image's scored pixels (the reference's ``softmin``), in float64 with a max
shift. The score kernel (:mod:`segaudit.engine.score_kernels`) gathers each pixel's
own-class probability straight from the stored planes (channels-last too), so most
probabilities are never read; a memory-mapped image costs only the pages it touches.

What it validates: every label (0..K-1 or the ignore value), every probability it
reads (finite, 0..1), and whole rows (finite, non-negative, summing to 1) on each
image's first pixel row, which catches logits and unnormalised outputs. Predictions
that need preparing (``--normalize``, ``--resize-probs``) are prepared whole first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from segaudit.engine import kernels, score_kernels
from segaudit.engine.executors import SinkTask, run_in_order
from segaudit.engine.params import Execution, Extent, Params
from segaudit.engine.pixels import WORKSPACE, describe_problems, sum_tolerance
from segaudit.engine.prepare import prepare_probs
from segaudit.engine.sinks import Sink
from segaudit.engine.stream import ImageSource, combine_softmin, extent_of, plan_batches
from segaudit.errors import InvalidInputError
from segaudit.progress import NullProgress, Progress
from segaudit.sources.dataset import Where

LOGITS_FIX = (
    "these look like logits (apply a softmax first, or use `segaudit scan --logits`) or "
    "unnormalised scores (pass --normalize to divide each pixel's scores by their sum)."
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
class Softmin:
    """Per-image softmin scores and scored-pixel counts, in image order."""

    extent: Extent
    scores: np.ndarray  # (N,) float64; NaN where no pixel was scored
    scored: np.ndarray  # (N,) int64


def softmin_pass(
    dataset: ImageSource,
    params: Params,
    *,
    pixel_sink: Sink | None = None,
    execution: Execution | None = None,
    progress: Progress | None = None,
) -> Softmin:
    """Softmin scores of every image; with ``pixel_sink``, its ``pixel_scores`` too.

    Malformed input raises :class:`~segaudit.errors.InvalidInputError` naming the file
    and the first pixel.
    """
    if params.logits:
        raise InvalidInputError(
            "softmin scores read probabilities, not logits; convert them with a softmax "
            "or use `segaudit scan --logits`."
        )
    check_temperature(params.temperature)
    execution = execution or Execution()
    progress = progress or NullProgress()
    extent = extent_of(dataset, params)
    result = Softmin(extent, np.empty(extent.num_images), np.empty(extent.num_images, np.int64))
    if pixel_sink is not None:
        rows = extent.chunk_rows()
        by_slab = {} if rows is None else {"chunk_rows": rows}
        pixel_sink.create("pixel_scores", extent.sizes, extent.score_dtype, **by_slab)
    batches = plan_batches(
        extent, execution.workers, execution.batch_size, execution.memory_budget
    )

    task = SoftminTask(pixel_sink, dataset, params, extent)

    def fold(done: tuple[int, np.ndarray, np.ndarray]) -> None:
        lo, scores, scored = done
        result.scores[lo : lo + len(scores)] = scores
        result.scored[lo : lo + len(scores)] = scored
        progress.advance(len(scores))

    progress.start("scoring images", extent.num_images)
    run_in_order(batches, task, fold, execution.runner())
    progress.finish()
    return result


@dataclass
class SoftminTask(SinkTask):
    """One batch's softmin scores (and pixel scores into ``sink``, when given), as an
    executor's task: (first image, scores, scored pixels)."""

    dataset: ImageSource
    params: Params
    extent: Extent

    def __call__(self, bounds: tuple[int, int]) -> tuple[int, np.ndarray, np.ndarray]:
        lo, hi = bounds
        scores, scored = np.empty(hi - lo), np.empty(hi - lo, np.int64)
        for row, index in enumerate(range(lo, hi)):
            if self.extent.depth(index) > 1:
                scores[row], scored[row] = score_volume(
                    index, self.dataset, self.params, self.extent, self.sink
                )
                continue
            rows, scores[row], scored[row] = score_image(index, self.dataset, self.params,
                                                         self.extent)  # fmt: skip
            if self.sink is not None:
                self.sink.write("pixel_scores", index, rows.reshape(self.extent.sizes[index]))
        return lo, scores, scored


def _needs_preparing(raw: np.ndarray, params: Params, size: tuple[int, int]) -> bool:
    stored = raw.shape[:2] if params.channels_last else raw.shape[1:]
    return params.normalize or tuple(stored) != tuple(size)


def score_image(
    index: int, dataset: ImageSource, params: Params, extent: Extent
) -> tuple[np.ndarray, float, int]:
    """Pixel scores (flat, in this thread's buffer), softmin score and scored pixels of
    one image."""
    size = (int(extent.sizes[index, 0]), int(extent.sizes[index, 1]))
    labels_loaded = dataset.read_labels(index)
    # The gather touches only the pages of each pixel's given class, so mapping the
    # whole image up front would cost more than it saves (channels-last reads all).
    probs_loaded = dataset.read_probs(index, populate=params.channels_last)
    try:
        where = dataset.where(index)
        labels = np.asarray(labels_loaded.array)
        raw = probs_loaded.array
        channels_last = params.channels_last
        if _needs_preparing(raw, params, size):
            raw = prepare_probs(
                raw,
                size,
                channels_last=channels_last,
                normalize=params.normalize,
                resize=params.resize_probs,
                where=where.probs_image,
            )
            channels_last = False
        check_first_row(raw, labels, channels_last, extent, where, not params.unnormalized)
        return _gather(raw, labels, channels_last, params, extent, where)
    finally:
        labels_loaded.release()
        probs_loaded.release()


def score_volume(
    index: int, dataset: Any, params: Params, extent: Extent, sink: Sink | None
) -> tuple[float, int]:
    """Softmin score and scored voxels of one volume, read a slab at a time; its voxel
    scores go to ``sink`` slab by slab."""
    where = dataset.where(index)
    parts, total = [], 0
    for row, labels, raw in dataset.read_slabs(index, extent.slab_slices(index)):
        probs = raw
        if params.normalize:
            probs = prepare_probs(raw, labels.shape, normalize=True, where=where.probs_image)
        slab = (int(extent.sizes[index][0]) // extent.depth(index), row)
        check_first_row(probs, labels, False, extent, where, not params.unnormalized, slab)
        scores, _, scored = _gather(probs, labels, False, params, extent, where, slab)
        if scored:
            low = float(np.nanmin(scores))
            parts.append((low, *kernels.softmin_parts(scores, params.temperature, low)))
        total += scored
        if sink is not None:
            by_row = {"row": row} if row else {}
            sink.write("pixel_scores", index, scores.reshape(labels.shape), **by_row)
    return combine_softmin(parts, params.temperature), total


def _gather(
    probs: np.ndarray,
    labels: np.ndarray,
    channels_last: bool,
    params: Params,
    extent: Extent,
    where: Where,
    slab: tuple[int, int] = (0, 0),
) -> tuple[np.ndarray, float, int]:
    """The score kernel over one image: p[given label] per pixel, then the softmin. A
    slab of a volume (``slab``: its slices' height, its first row) names voxels."""
    k, p = extent.num_classes, labels.size
    rows = WORKSPACE.get("score-s", (1, p), extent.score_dtype)
    strides = (1, k) if channels_last else (p, 1)
    ignore = params.ignore_index
    scores, scored = np.empty(1), np.empty(1, np.int64)
    problems = np.zeros((score_kernels.PROBLEM_KINDS, 2), np.int64)
    score_kernels.softmin(
        probs.reshape(1, -1),
        labels.reshape(1, p),
        k,
        *strides,
        int(ignore or 0),
        ignore is not None,
        float(params.temperature),
        # rows taken as they are (the cleanlab-compatible layer) may hold values above 1
        math.inf if params.unnormalized else sum_tolerance(k, probs.dtype),
        rows,
        scores,
        scored,
        problems,
    )
    message = describe_problems(
        problems,
        where,
        labels,
        labels.shape[1],
        k,
        sum_problem="has probabilities above 1",
        logits_fix=LOGITS_FIX,
        slice_height=slab[0],
        first_row=slab[1],
    )
    if message is not None:
        raise InvalidInputError(message)
    return rows, float(scores[0]), int(scored[0])


def check_first_row(
    probs: np.ndarray,
    labels: np.ndarray,
    channels_last: bool,
    extent: Extent,
    where: Where,
    check_sums: bool = True,
    slab: tuple[int, int] = (0, 0),
) -> None:
    """Whole-row checks (finite, non-negative, and with ``check_sums`` summing to 1) on
    an image's first pixel row (a volume's slab: ``slab`` is its slices' height and first
    row, so the voxel is named)."""
    first = probs[0].T if channels_last else probs[:, 0]  # (K, W)
    first = first.astype(np.float32 if probs.dtype == np.float16 else probs.dtype)
    with np.errstate(invalid="ignore"):  # NaN and infinities are reported below, not warned
        totals, low = first.sum(axis=0), first.min(axis=0)
        bad: dict[int, Any] = {
            kernels.NONFINITE: ~np.isfinite(totals),
            kernels.NEGATIVE: low < 0,
            kernels.BAD_SUM: check_sums
            & (np.abs(totals - 1) > sum_tolerance(extent.num_classes, probs.dtype)),
        }
    problems = np.zeros((kernels.PROBLEM_KINDS, 2), np.int64)
    for kind, mask in bad.items():
        found = np.flatnonzero(mask)
        if found.size:
            problems[kind] = (found.size, found[0])
    message = describe_problems(
        problems, where, labels[0], labels.shape[1], extent.num_classes, logits_fix=LOGITS_FIX,
        slice_height=slab[0], first_row=slab[1],
    )  # fmt: skip
    if message is not None:
        raise InvalidInputError(message)
