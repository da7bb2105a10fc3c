"""segaudit's engine run the way cleanlab runs: every row taken as it is, labels pooled by
their rounded mean, and cleanlab's rounding of the class thresholds.

Nothing of Confident Learning is computed here: :func:`confident_learning` runs the
engine's streaming pass (:func:`segaudit.engine.stream.stream`) and its steps 2–5
(:func:`segaudit.engine.learning.flag_issues`), and :func:`softmin` its softmin pass.
The one adaptation is the thresholds' rounding. cleanlab averages each class's
self-confidence per batch of images with ``np.mean`` in the predictions' own precision
(float16 means are rounded to float16, float32 ones summed in float32) and averages the
batches; segaudit sums in float64. The issue count m can only differ when a
mispredicted pixel's top probability lies within that rounding of its threshold; only
then (:func:`_rounding_matters`) are cleanlab's thresholds recomputed from the scores
the pass stored (:func:`cleanlab_thresholds`), and handed to the engine.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from segaudit.api import array_dataset
from segaudit.engine.cut import count_issues, thresholds
from segaudit.engine.learning import CLResult, flag_issues
from segaudit.engine.params import Execution, Params, pred_dtype
from segaudit.engine.pooling import pool_labels
from segaudit.engine.sinks import MemorySink
from segaudit.engine.softmin import softmin_pass
from segaudit.engine.stream import PassStats, stream
from segaudit.progress import Progress
from segaudit.segmentation._inputs import source

THRESHOLD_FLOOR = 2e-6  # cleanlab's CONFIDENT_THRESHOLDS_LOWER_BOUND
ABSENT_THRESHOLD = 2  # cleanlab's BIG_VALUE for a class absent from a batch

# How far cleanlab's thresholds can be from segaudit's float64 ones, relative: float16
# means are rounded to float16 (2**-11), float32 ones summed pairwise in float32.
ROUNDING = {
    np.dtype(np.float16): 4e-3,
    np.dtype(np.float32): 1e-4,
    np.dtype(np.float64): 1e-9,
}
ROUNDING_FLOOR = 1e-7  # float16's rounding of tiny means and of the 2e-6 floor


def dataset(labels: Any, pred_probs: Any) -> Any:
    """The caller's arrays as the engine's dataset (read-only file maps release pages)."""
    return array_dataset(source(labels, "labels"), source(pred_probs, "pred_probs"))


def confident_learning(
    labels: Any,
    pred_probs: Any,
    *,
    downsample: int,
    label_pooling: str,
    cleanlab_batch: int,
    execution: Execution,
    progress: Progress,
) -> tuple[CLResult, MemorySink]:
    """Confident Learning by segaudit's engine with cleanlab's settings: rows as they are
    (``unnormalized``), labels pooled by ``label_pooling`` ("mean" is cleanlab's), and
    the class thresholds as cleanlab rounds them over batches of ``cleanlab_batch``
    images. The sink holds ``issues`` and the full-resolution ``pixel_scores``."""
    params = Params(downsample=downsample, label_pooling=label_pooling, unnormalized=True)
    data = dataset(labels, pred_probs)
    sink = MemorySink()
    stats = stream(data, params, sink, execution, progress=progress)
    sink.pass_written()
    if _rounding_matters(stats, sink):
        cleanlab = cleanlab_thresholds(stats, sink, params, cleanlab_batch)
        # The engine's thresholds are class_sum / class_count: hand it cleanlab's.
        ones = np.ones(stats.extent.num_classes, np.int64)
        stats = dataclasses.replace(stats, class_sum=cleanlab, class_count=ones)
    return flag_issues(stats, params, sink, execution, progress), sink


def _rounding_matters(stats: PassStats, sink: MemorySink) -> bool:
    """Whether thresholds anywhere within cleanlab's rounding of segaudit's could change
    the issue count m (m only grows as thresholds fall, so the two ends decide)."""
    exact = thresholds(stats.class_sum, stats.class_count)
    margin = exact * ROUNDING[np.dtype(stats.extent.dtype)] + ROUNDING_FLOOR
    low, high = np.maximum(exact - margin, 0.0), exact + margin
    return count_issues(sink, low) != count_issues(sink, high)


def cleanlab_thresholds(
    stats: PassStats, sink: MemorySink, params: Params, images_per_batch: int
) -> np.ndarray:
    """The class thresholds exactly as cleanlab 2.9 computes them (``LabelInspector``).

    Per batch of ``images_per_batch`` images, at Confident Learning's resolution: each
    present class's ``np.mean`` of its pixels' self-confidence, in the predictions'
    dtype and in flat pixel order (absent classes 2), floored at 2e-6; the batches are
    folded into a running mean weighted by pixel counts, floored again. The
    self-confidences are the stored scores, which hold the input's values exactly.
    """
    extent = stats.extent
    k, n = extent.num_classes, extent.num_images
    stored = "pixel_scores" if params.downsample == 1 else "cl_scores"
    class_ids = pred_dtype(k)
    running = np.zeros(k)
    seen = np.zeros(k)
    for lo in range(0, n, images_per_batch):
        hi = min(lo + images_per_batch, n)
        scores = np.concatenate([sink.read(stored, i).ravel() for i in range(lo, hi)])
        scores = scores.astype(extent.dtype)
        given = np.concatenate([_cl_labels(sink, params, i).ravel() for i in range(lo, hi)])
        given = given.astype(class_ids)
        counts = np.bincount(given, minlength=k)
        # A stable sort keeps each class's pixels in flat order: the same sequence, and
        # so the same pairwise sum, as cleanlab's boolean selection.
        grouped = scores[np.argsort(given, kind="stable")]
        ends = np.cumsum(counts)
        means = [
            np.mean(grouped[end - count : end]) if count else ABSENT_THRESHOLD
            for count, end in zip(counts.tolist(), ends.tolist(), strict=True)
        ]
        batch = np.clip(means, a_min=THRESHOLD_FLOOR, a_max=None)
        running = (seen * running + counts * batch) / np.clip(seen + counts, a_min=1, a_max=None)
        running = np.clip(running, a_min=THRESHOLD_FLOOR, a_max=None)
        seen += counts
    return running


def _cl_labels(sink: MemorySink, params: Params, index: int) -> np.ndarray:
    """Image ``index``'s labels at Confident Learning's resolution."""
    labels = np.asarray(sink.read("labels", index))
    if params.downsample == 1:
        return labels
    return pool_labels(labels[None], params.downsample, params.label_pooling, None)[0]


class Float64Sink(MemorySink):
    """Keeps ``pixel_scores`` in float64, as cleanlab returns softmin pixel scores."""

    def create(self, name: str, sizes: np.ndarray, dtype: Any, scratch: bool = False) -> None:
        super().create(name, sizes, np.float64 if name == "pixel_scores" else dtype, scratch)


def softmin(
    labels: Any,
    pred_probs: Any,
    *,
    temperature: float,
    execution: Execution,
    progress: Progress,
) -> tuple[np.ndarray, np.ndarray]:
    """Softmin image scores (N,) and float64 pixel scores (N, H, W) by the engine's pass."""
    params = Params(temperature=temperature, unnormalized=True)
    sink = Float64Sink()
    result = softmin_pass(
        dataset(labels, pred_probs), params, pixel_sink=sink, execution=execution, progress=progress
    )
    return result.scores, sink.get("pixel_scores")
