"""The streaming pass: read each image's predictions exactly once, keep a few bytes a pixel.

Per image, :func:`process_image` reads the labels and predictions, prepares the
predictions (:mod:`segaudit.engine.prepare`), runs the compiled kernel once
(:func:`segaudit.engine.pixels.pixel_pass`) and writes the compact per-pixel arrays to
a :class:`~segaudit.engine.sinks.Sink`; it returns the image's per-class sums, its
softmin, its histogram of scores and its mispredicted pixels. :func:`stream` runs
batches of consecutive images on an executor (:mod:`segaudit.engine.executors`: local
threads, as the kernels release the GIL, or Dask tasks) and reduces in image order, so
results never depend on the batch size, the number of workers, the executor or the
images' sizes.

Every image may have its own size. Records of mispredicted pixels carry their flat
index within their batch, at Confident Learning's resolution: the pixels of the
batch's images laid end to end, image after image, row after row.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from segaudit.engine import kernels
from segaudit.engine.executors import SinkTask, run_in_order
from segaudit.engine.params import HIST_BINS, Execution, Extent, Params, check_extent
from segaudit.engine.pixels import Where, describe_problems, pixel_pass
from segaudit.engine.pooling import pool_labels, pool_probs
from segaudit.engine.prepare import prepare_probs
from segaudit.engine.sinks import FULL, Sink
from segaudit.errors import InvalidInputError
from segaudit.progress import NullProgress, Progress


class ImageSource(Protocol):
    """What the pass reads images through (:class:`segaudit.sources.Dataset` is one)."""

    num_classes: int
    probs_dtype: np.dtype
    sizes: np.ndarray

    @property
    def label_dtype(self) -> np.dtype: ...

    def read_labels(self, index: int) -> Any: ...

    def read_probs(self, index: int, populate: bool = True) -> Any: ...

    def where(self, index: int) -> Where: ...


@dataclass
class BatchResult:
    """What one batch contributes; per-pixel arrays are already in the sink."""

    start: int
    class_sum: np.ndarray  # (b,K) float64, per image, at the CL resolution
    class_count: np.ndarray  # (b,K) int64
    s_hist: np.ndarray  # (65536,) int64 over the CL-resolution self-confidence keys
    softmin: np.ndarray  # (b,) float64 at full resolution
    scored: np.ndarray  # (b,) int64 non-ignored pixels per image


@dataclass
class PassStats:
    """The reductions of the streaming pass."""

    extent: Extent
    downsample: int
    class_sum: np.ndarray
    class_count: np.ndarray
    s_hist: np.ndarray
    softmin: np.ndarray
    scored: np.ndarray
    batches: list[tuple[int, int]] = field(default_factory=list)

    @property
    def cl_sizes(self) -> np.ndarray:
        """Image sizes at Confident Learning's resolution."""
        return self.extent.scaled(self.downsample)


def stored_label_dtype(labels_dtype: np.dtype, num_classes: int, ignore: int | None) -> np.dtype:
    """The smallest integer type holding every class id and the ignore value."""
    values = [0, num_classes - 1] + ([ignore] if ignore is not None else [])
    small = np.result_type(*(np.min_scalar_type(v) for v in values))
    return (
        np.dtype(small)
        if small.itemsize <= np.dtype(labels_dtype).itemsize
        else np.dtype(labels_dtype)
    )


def extent_of(dataset: ImageSource, params: Params) -> Extent:
    """The dataset's extent, checked for this pass (``--downsample`` divides every size)."""
    return check_extent(
        dataset.num_classes,
        dataset.probs_dtype,
        dataset.sizes,
        params,
        where=lambda i: dataset.where(i).probs_image,
        name=getattr(dataset, "probs_name", "pred_probs"),
        depths=getattr(dataset, "depths", None),
    )


def create_outputs(sink: Sink, extent: Extent, labels_dtype: np.dtype, params: Params) -> None:
    """Allocate the per-pixel arrays the pass fills (volumes' in chunks of a slab)."""
    rows = extent.chunk_rows()
    by_slab = {} if rows is None else {"chunk_rows": rows}
    sink.create("labels", extent.sizes, labels_dtype, **by_slab)
    sink.create("pred_labels", extent.sizes, extent.pred_dtype, **by_slab)
    sink.create("pixel_scores", extent.sizes, extent.score_dtype, **by_slab)
    if params.downsample != 1:
        sink.create("cl_scores", extent.scaled(params.downsample), extent.score_dtype, True)


@dataclass
class ImageResult:
    """One image's contribution to the reductions (its records are in the sink)."""

    class_sum: np.ndarray
    class_count: np.ndarray
    hist: np.ndarray
    softmin: float
    scored: int
    softmin_parts: tuple[float, float, float] = (math.inf, 0.0, 0.0)  # low, num, den


@dataclass(frozen=True)
class Place:
    """Where an image's records go: its batch (by first image), and the batch's pixels
    before it at Confident Learning's resolution and at full resolution."""

    batch: int
    offset: int
    full_offset: int = 0


def process_image(
    index: int,
    dataset: ImageSource,
    params: Params,
    extent: Extent,
    sink: Sink,
    labels_dtype: np.dtype,
    place: Place | None = None,
) -> ImageResult:
    """All per-pixel work for one image; writes its per-pixel arrays and its mispredicted
    pixels' records (to the batch ``place`` names) to ``sink``."""
    place = place or Place(index, 0)
    if extent.depth(index) > 1:
        return process_volume(index, dataset, params, extent, sink, labels_dtype, place)
    labels_loaded = dataset.read_labels(index)
    probs_loaded = dataset.read_probs(index)
    try:
        where = dataset.where(index)
        labels = np.asarray(labels_loaded.array)
        height, width = (int(n) for n in extent.sizes[index])
        probs = prepare_probs(
            probs_loaded.array,
            (height, width),
            channels_last=params.channels_last,
            logits=params.logits,
            normalize=params.normalize,
            resize=params.resize_probs,
            where=where.probs_image,
        )
        return scan_prepared(
            index, labels, probs, params, extent.num_classes, sink, labels_dtype, where, place
        )
    finally:
        labels_loaded.release()
        probs_loaded.release()


def process_volume(
    index: int,
    dataset: Any,
    params: Params,
    extent: Extent,
    sink: Sink,
    labels_dtype: np.dtype,
    place: Place,
) -> ImageResult:
    """One volume, a slab of slices at a time (:meth:`Dataset.read_slabs`): each slab is
    scanned as rows of the volume's sheet, and the slabs' sums are combined."""
    where = dataset.where(index)
    width = int(extent.sizes[index][1])
    slice_height = int(extent.sizes[index][0]) // extent.depth(index)
    total: ImageResult | None = None
    parts = []
    for row, labels, raw in dataset.read_slabs(index, extent.slab_slices(index)):
        probs = prepare_probs(
            raw,
            labels.shape,
            channels_last=False,
            logits=params.logits,
            normalize=params.normalize,
            resize=None,
            where=where.probs_image,
        )
        slab_place = Place(place.batch, place.offset + row * width, place.full_offset)
        slab = scan_prepared(
            index, labels, probs, params, extent.num_classes, sink, labels_dtype, where,
            slab_place, row=row, slab=slice_height,
        )  # fmt: skip
        parts.append(slab.softmin_parts)
        if total is None:
            total = slab
        else:
            total.class_sum += slab.class_sum
            total.class_count += slab.class_count
            total.hist += slab.hist
            total.scored += slab.scored
    assert total is not None
    total.softmin = combine_softmin(parts, params.temperature)
    return total


def combine_softmin(parts: list[tuple[float, float, float]], temperature: float) -> float:
    """The softmin of a volume from its slabs' (lowest score, sum s·w, sum w), each slab's
    weights shifted by its own lowest score (:func:`segaudit.engine.kernels.softmin_parts`):
    rescaled to the volume's lowest score and summed. NaN when no voxel was scored."""
    scored = [part for part in parts if part[2] > 0]
    if not scored:
        return math.nan
    low = min(part[0] for part in scored)
    num = den = 0.0
    for slab_low, slab_num, slab_den in scored:
        factor = math.exp((low - slab_low) / temperature)
        num += slab_num * factor
        den += slab_den * factor
    return num / den


def scan_prepared(
    index: int,
    labels: np.ndarray,
    probs: np.ndarray,
    params: Params,
    num_classes: int,
    sink: Sink,
    labels_dtype: np.dtype,
    where: Where,
    place: Place,
    row: int = 0,
    slab: int = 0,
) -> ImageResult:
    """The kernel over one image's prepared (K, H, W) probabilities and (H, W) labels;
    per-pixel arrays and records to ``sink``, the image's sums returned. A slab of a
    volume (``slab``: its slices' height) is rows ``row:`` of its sheet, and returns its
    softmin's parts instead."""
    at_full_resolution = params.downsample == 1
    full = pixel_pass(
        probs[None],
        labels[None],
        params.ignore_index,
        check_sums=not (params.logits or params.unnormalized),
        summarize=True,
        rows_sum_to_one=params.rows_sum_to_one,
    )
    message = describe_problems(
        full.problems, where, labels, labels.shape[1], num_classes, slice_height=slab,
        first_row=row, normalized=params.normalize,
    )  # fmt: skip
    if message is not None:
        raise InvalidInputError(message)
    if not at_full_resolution:  # the full-resolution records, for the issues' regions
        assert full.records is not None
        full.records["index"] += place.full_offset  # this thread's buffer: no copy
        sink.add_records(place.batch, full.records, FULL)
    by_row = {"row": row} if row else {}
    sink.write("labels", index, labels.astype(labels_dtype, copy=False), **by_row)
    sink.write("pred_labels", index, full.pred.reshape(labels.shape), **by_row)
    sink.write("pixel_scores", index, full.s.reshape(labels.shape), **by_row)
    softmin = np.full(1, np.nan)
    parts = (math.inf, 0.0, 0.0)
    if slab:
        if full.scored[0]:
            low = float(full.low[0])
            parts = (low, *kernels.softmin_parts(full.s, params.temperature, low))
    else:
        kernels.softmin_images(full.s, params.temperature, full.low, full.scored, softmin)
    cl = full
    if not at_full_resolution:
        small_labels = pool_labels(
            labels[None], params.downsample, params.label_pooling, params.ignore_index
        )
        cl = pixel_pass(
            pool_probs(probs[None], params.downsample),
            small_labels,
            params.ignore_index,
            check_sums=False,
            tag="low",
            summarize=True,
        )
        sink.write("cl_scores", index, cl.s.reshape(small_labels.shape[1:]))
    assert cl.hist is not None and cl.records is not None
    cl.records["index"] += place.offset  # this thread's buffer: no copy
    sink.add_records(place.batch, cl.records)
    return ImageResult(
        cl.class_sum[0], cl.class_count[0], cl.hist, float(softmin[0]), int(full.scored[0]),
        parts,
    )


def process_batch(
    start: int,
    stop: int,
    dataset: ImageSource,
    params: Params,
    extent: Extent,
    sink: Sink,
    labels_dtype: np.dtype,
) -> BatchResult:
    """Images ``start:stop`` one after the other; their records go to ``sink`` as the
    batch ``start``'s, indexed by pixel within the batch (the images' CL-resolution
    pixels end to end)."""
    count = stop - start
    result = BatchResult(
        start,
        np.zeros((count, extent.num_classes)),
        np.zeros((count, extent.num_classes), np.int64),
        np.zeros(HIST_BINS, np.int64),
        np.empty(count),
        np.empty(count, np.int64),
    )
    cl_pixels = extent.scaled(params.downsample).prod(axis=1)
    full_pixels = extent.pixel_counts
    offset = full_offset = 0
    for row, index in enumerate(range(start, stop)):
        place = Place(start, offset, full_offset)
        image = process_image(index, dataset, params, extent, sink, labels_dtype, place)
        result.class_sum[row] = image.class_sum
        result.class_count[row] = image.class_count
        result.s_hist += image.hist
        result.softmin[row] = image.softmin
        result.scored[row] = image.scored
        offset += int(cl_pixels[index])
        full_offset += int(full_pixels[index])
    return result


def plan_batches(
    extent: Extent, workers: int, batch_size: int | None, memory_budget: int
) -> list[tuple[int, int]]:
    """Consecutive images per batch: ``batch_size`` of them, or as many as fit in the
    memory budget's share of one worker (at least one; images may differ in size)."""
    n = extent.num_images
    workers = max(1, workers)
    if batch_size is not None:
        return [(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]
    share = memory_budget // (2 * workers)
    most = max(1, -(-n // workers))  # keep every worker busy on small datasets
    costs = extent.pixel_counts * extent.num_classes * extent.dtype.itemsize
    batches, start, held = [], 0, 0
    for index, cost in enumerate(costs.tolist()):
        if index > start and (held + cost > share or index - start >= most):
            batches.append((start, index))
            start, held = index, 0
        held += cost
    batches.append((start, n))
    return batches


def default_workers() -> int:
    return max(
        1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )


def stream(
    dataset: ImageSource,
    params: Params,
    sink: Sink,
    execution: Execution | None = None,
    *,
    progress: Progress | None = None,
    on_batch: Any = None,
) -> PassStats:
    """Read every image's predictions once, batches on ``execution``'s executor; return
    the sums."""
    execution = execution or Execution()
    progress = progress or NullProgress()
    extent = extent_of(dataset, params)
    labels_dtype = stored_label_dtype(dataset.label_dtype, extent.num_classes, params.ignore_index)
    create_outputs(sink, extent, labels_dtype, params)
    batches = plan_batches(
        extent, execution.workers, execution.batch_size, execution.memory_budget
    )
    stats = PassStats(
        extent,
        params.downsample,
        np.zeros(extent.num_classes),
        np.zeros(extent.num_classes, np.int64),
        np.zeros(HIST_BINS, np.int64),
        np.empty(extent.num_images),
        np.empty(extent.num_images, np.int64),
        batches,
    )
    progress.start("scanning pred_probs", extent.num_images)
    task = BatchTask(sink, dataset, params, extent, labels_dtype)

    def fold(result: BatchResult) -> None:
        _reduce(stats, result)
        progress.advance(len(result.softmin))
        if on_batch is not None:
            on_batch(result.start + len(result.softmin))

    run_in_order(batches, task, fold, execution.runner())
    progress.finish()
    return stats


@dataclass
class BatchTask(SinkTask):
    """:func:`process_batch` over one batch's bounds, as an executor's task."""

    dataset: ImageSource
    params: Params
    extent: Extent
    labels_dtype: np.dtype

    def __call__(self, bounds: tuple[int, int]) -> BatchResult:
        return process_batch(
            *bounds, self.dataset, self.params, self.extent, self.sink, self.labels_dtype
        )


def _reduce(stats: PassStats, result: BatchResult) -> None:
    """Fold one batch into the totals, image by image in order (deterministic sums)."""
    for row_sum, row_count in zip(result.class_sum, result.class_count, strict=True):
        stats.class_sum += row_sum
        stats.class_count += row_count
    stats.s_hist += result.s_hist
    stop = result.start + len(result.softmin)
    stats.softmin[result.start : stop] = result.softmin
    stats.scored[result.start : stop] = result.scored
