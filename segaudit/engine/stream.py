"""The streaming pass: read pred_probs exactly once, keep a few bytes per pixel.

Per batch of whole images, :func:`process_batch` (a pure function) computes the
predicted class and the self-confidence of every pixel, the per-class sums for the
thresholds, the histogram of self-confidences and the mispredicted pixels' class
and probability. :func:`stream` runs it over the dataset on local worker threads
(the compiled kernels release the GIL), writes the compact per-pixel arrays to a
:class:`Sink`, and reduces the rest in image order, so results never depend on
the batch size or the number of workers.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from segaudit.engine import kernels
from segaudit.engine.pooling import LABEL_POOLINGS, check_divisible, pool_labels, pool_probs
from segaudit.errors import InvalidInputError
from segaudit.progress import NullProgress, Progress
from segaudit.sources.stores import ArraySource

HIST_BINS = 1 << 16
DEFAULT_MEMORY_BUDGET = 512 * 2**20
MAX_CLASSES = 65535  # predicted classes are stored in 16 bits
IGNORE_RANGE = (-(2**63), 2**64 - 1)  # every value of some integer label type


@dataclass(frozen=True)
class Params:
    """What the pass computes; everything that changes results is here.

    Checked when built, wherever that is (CLI, API, a stored run): a wrong type is a
    ``TypeError``, a wrong value an :class:`InvalidInputError`, each naming the field.
    ``ignore_index`` may be any value some integer type holds; one the labels' type
    cannot hold (-1 for uint8 labels, 2**40 for int32) matches no pixel, which is
    harmless, so it is accepted.
    """

    ignore_index: int | None = None
    downsample: int = 1
    label_pooling: str = "mode"
    channels_last: bool = False
    logits: bool = False
    temperature: float = 0.1

    def __post_init__(self) -> None:
        if self.ignore_index is not None:
            object.__setattr__(self, "ignore_index", _integer("ignore_index", self.ignore_index))
            low, high = IGNORE_RANGE
            if not low <= self.ignore_index <= high:
                raise InvalidInputError(
                    f"ignore_index (--ignore-index) {self.ignore_index} is no integer label "
                    f"value (those lie in {low}..{high}); pass the value that marks "
                    "unlabelled pixels."
                )
        object.__setattr__(self, "downsample", _integer("downsample", self.downsample))
        if self.downsample < 1:
            raise InvalidInputError(
                f"downsample must be a positive integer, got {self.downsample}."
            )
        if not isinstance(self.label_pooling, str) or self.label_pooling not in LABEL_POOLINGS:
            raise InvalidInputError(
                f"label_pooling must be 'mode' or 'mean', got {self.label_pooling!r}."
            )


def _integer(name: str, value: Any) -> int:
    """``value`` as a Python int, or a TypeError naming ``name`` (bools and floats too)."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an integer, got {value!r}.")
    return int(value)


@dataclass(frozen=True)
class Layout:
    """Shapes of a dataset, with pred_probs as (N,K,H,W) after any channel move."""

    num_images: int
    num_classes: int
    height: int
    width: int
    dtype: np.dtype

    @property
    def pixels(self) -> int:
        return self.height * self.width

    @property
    def image_bytes(self) -> int:
        return self.num_classes * self.pixels * self.dtype.itemsize

    @property
    def score_dtype(self) -> np.dtype:
        """Self-confidence keeps the input's precision (float16 is exact in float32)."""
        return np.dtype(np.float64 if self.dtype == np.float64 else np.float32)

    @property
    def pred_dtype(self) -> np.dtype:
        return pred_dtype(self.num_classes)


def pred_dtype(num_classes: int) -> np.dtype:
    """Predicted classes (and valid labels) of K classes: 8 bits, else 16 (K <= MAX_CLASSES)."""
    return np.dtype(np.uint8 if num_classes <= 256 else np.uint16)


def check_inputs(labels: Any, probs: Any, params: Params, names: tuple[str, str]) -> Layout:
    """Check shapes and dtypes of labels (N,H,W) and pred_probs (N,K,H,W); say what is wrong."""
    label_name, probs_name = names
    lshape, pshape = tuple(labels.shape), tuple(probs.shape)
    if len(lshape) != 3:
        raise InvalidInputError(f"{label_name} has shape {lshape}; labels must be (N, H, W).")
    layout_hint = "(N, H, W, K) with --channels-last" if params.channels_last else "(N, K, H, W)"
    if len(pshape) != 4:
        raise InvalidInputError(
            f"{probs_name} has shape {pshape}; pred_probs must be {layout_hint}."
        )
    n, k, h, w = (pshape[0], pshape[3], pshape[1], pshape[2]) if params.channels_last else pshape
    if (n, h, w) != lshape:
        raise InvalidInputError(
            f"{probs_name} has shape {pshape} but {label_name} has {lshape}; N, H and W must match "
            f"(pred_probs is read as {layout_hint})."
        )
    if min(n, h, w) == 0:
        raise InvalidInputError(
            f"{label_name} is empty (shape {lshape}); there is nothing to scan."
        )
    if k < 2:
        raise InvalidInputError(f"{probs_name} has {k} class(es); at least 2 are needed.")
    if k > MAX_CLASSES:
        raise InvalidInputError(
            f"{probs_name} has {k:,} classes; segaudit handles at most {MAX_CLASSES:,} "
            "(predicted classes are stored in 16 bits)."
        )
    ldtype, pdtype = np.dtype(labels.dtype), np.dtype(probs.dtype)
    if ldtype.kind not in "iu":
        raise InvalidInputError(f"{label_name} holds {ldtype} values; labels must be integers.")
    if pdtype not in (np.float16, np.float32, np.float64):
        raise InvalidInputError(
            f"{probs_name} holds {pdtype} values; pred_probs must be float16, float32 or float64."
        )
    if params.downsample != 1:
        check_divisible(h, w, params.downsample, probs_name)
    return Layout(n, k, h, w, pdtype)


# The mispredicted pixels of one batch: flat index within the batch, predicted class,
# its probability, self-confidence and given label (see kernels.Summary).
Records = dict[str, np.ndarray]
RECORD_FIELDS = ("index", "pred", "pmax", "s", "label")


class Sink(Protocol):
    """Where the pass puts per-pixel arrays: Zarr in a run directory, or memory."""

    def create(
        self, name: str, shape: tuple[int, ...], dtype: Any, scratch: bool = False
    ) -> Any: ...

    def get(self, name: str) -> Any: ...

    def add_records(self, start: int, records: Records) -> None:
        """Keep a batch's records; they are views into reused buffers, valid only now."""
        ...

    def records(self, start: int, fields: tuple[str, ...]) -> Records: ...

    def record_starts(self) -> list[int]: ...

    def pass_written(self) -> None:
        """The streaming pass has written every per-pixel array it makes."""
        ...


class MemorySink:
    """Keeps everything in numpy arrays (the Python API's default)."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}
        self._records: dict[int, Records] = {}

    def create(self, name: str, shape: tuple[int, ...], dtype: Any, scratch: bool = False) -> Any:
        self.arrays[name] = np.empty(shape, dtype)
        return self.arrays[name]

    def get(self, name: str) -> Any:
        return self.arrays[name]

    def add_records(self, start: int, records: Records) -> None:
        self._records[start] = {name: values.copy() for name, values in records.items()}

    def records(self, start: int, fields: tuple[str, ...]) -> Records:
        return {name: self._records[start][name] for name in fields}

    def record_starts(self) -> list[int]:
        return sorted(self._records)

    def pass_written(self) -> None:
        pass


@dataclass
class BatchResult:
    """What one batch contributes; per-pixel arrays are already in the sink."""

    start: int
    class_sum: np.ndarray  # (b,K) float64, per image, at the CL resolution
    class_count: np.ndarray  # (b,K) int64
    s_hist: np.ndarray  # (65536,) int64 over the CL-resolution self-confidence keys
    softmin: np.ndarray  # (b,) float64 at full resolution
    scored: np.ndarray  # (b,) int64 non-ignored pixels per image
    problems: np.ndarray  # (4,2) int64


@dataclass
class PassStats:
    """The reductions of the streaming pass."""

    layout: Layout
    class_sum: np.ndarray
    class_count: np.ndarray
    s_hist: np.ndarray
    softmin: np.ndarray
    scored: np.ndarray
    batches: list[tuple[int, int]] = field(default_factory=list)


def score_key_shift(score_dtype: np.dtype) -> int:
    """Right shift that turns a score's bit pattern into its top-16-bit histogram key."""
    return score_dtype.itemsize * 8 - 16


def score_bits(scores: np.ndarray) -> np.ndarray:
    """Unsigned view of non-negative float scores; orders exactly like the values.

    Only for scores the kernels wrote: they store p[given label] + 0, never -0.0, whose
    sign bit would make its key larger than every positive score's.
    """
    return scores.view(np.uint32 if scores.dtype == np.float32 else np.uint64)


def histogram_top(score_dtype: np.dtype, tol: float) -> int:
    """The highest histogram bin Confident Learning's cut can fall in.

    A mispredicted pixel's score is at most its top probability and the two sum to at
    most 1 + tol, so it is at most (1 + tol) / 2. The cut keeps m scores, m at most the
    number of mispredicted pixels, so it lies at or below that too: higher bins need no
    counts, and the kernel skips them (most pixels are confident and right).
    """
    limit = np.array([0.5 + tol], score_dtype)
    return int(score_bits(limit)[0] >> score_key_shift(np.dtype(score_dtype)))


def sum_tolerance(num_classes: int, dtype: np.dtype) -> float:
    """How far a pixel's probabilities may sum from 1 (rounding of K stored values)."""
    return 1e-3 + num_classes * float(np.finfo(dtype).eps)


def _softmax(logits: np.ndarray) -> np.ndarray:
    work = logits.astype(np.float64 if logits.dtype == np.float64 else np.float32)
    with np.errstate(invalid="ignore", over="ignore"):  # non-finite logits: the kernel says so
        work -= work.max(axis=1, keepdims=True)
        np.exp(work, out=work)
        work /= work.sum(axis=1, keepdims=True)
    return work


@dataclass
class PixelPass:
    """Outputs of one kernel call over (b,K,H,W) probabilities."""

    pred: np.ndarray
    s: np.ndarray
    class_sum: np.ndarray
    class_count: np.ndarray
    problems: np.ndarray
    low: np.ndarray  # (b,) lowest score per image
    scored: np.ndarray  # (b,) scored pixels per image
    hist: np.ndarray | None = None  # with summarize: top-16-bit histogram of the scores
    records: Records | None = None  # with summarize: the mispredicted pixels


class Workspace(threading.local):
    """Per-thread buffers reused from batch to batch: first touches of fresh memory
    are slow, and reuse keeps resident memory flat."""

    def __init__(self) -> None:
        self.buffers: dict[tuple[str, int], np.ndarray] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        dtype = np.dtype(dtype)
        size = int(np.prod(shape))
        key = (name, dtype.num)
        buffer = self.buffers.get(key)
        if buffer is None or buffer.size < size:
            buffer = self.buffers[key] = np.empty(size, dtype)
        return buffer[:size].reshape(shape)


WORKSPACE = Workspace()


def pixel_pass(
    probs: np.ndarray,
    labels: np.ndarray,
    ignore: int | None,
    check_sums: bool,
    tag: str = "full",
    summarize: bool = False,
) -> PixelPass:
    """Run the compiled kernel on one batch: probs (b,K,H,W), labels (b,H,W).

    With ``summarize`` it also yields the histogram of the scores and the mispredicted
    pixels' records (the pass at Confident Learning's resolution does). The per-pixel
    outputs live in this thread's workspace until its next batch.
    """
    b, k, h, w = probs.shape
    flat = probs.reshape(b, k, h * w)
    flat_labels = labels.reshape(b, h * w)
    score_dtype = np.dtype(np.float64 if probs.dtype == np.float64 else np.float32)
    classes_dtype = pred_dtype(k)
    out = PixelPass(
        pred=WORKSPACE.get(f"{tag}-pred", (b, h * w), classes_dtype),
        s=WORKSPACE.get(f"{tag}-s", (b, h * w), score_dtype),
        class_sum=np.zeros((b, k), np.float64),
        class_count=np.zeros((b, k), np.int64),
        problems=np.zeros((kernels.PROBLEM_KINDS, 2), np.int64),
        low=np.empty(b, np.float64),
        scored=np.empty(b, np.int64),
    )
    if summarize:
        out.hist = np.zeros(HIST_BINS, np.int64)
        types = dict(index=np.int64, pred=classes_dtype, pmax=score_dtype, s=score_dtype)
        types["label"] = classes_dtype  # a valid label fits wherever a class does
        out.records = {
            name: WORKSPACE.get(f"mis-{name}", (b * h * w,), types[name]) for name in RECORD_FIELDS
        }
    tol = sum_tolerance(k, probs.dtype)
    top = histogram_top(score_dtype, tol)
    summary = kernels.make_summary(out.low, out.scored, out.hist, out.records, top)
    tile = kernels.tile_pixels(k, probs.dtype.itemsize)
    common = (out.pred, out.s, out.class_sum, out.class_count, out.problems, summary)
    kernels.scan(flat, flat_labels, ignore or 0, ignore is not None, tol, tile, check_sums, *common)
    if out.records is not None:  # views of this thread's buffers, until its next batch
        out.records = {name: values[: summary.found] for name, values in out.records.items()}
    return out


def describe_problems(
    problems: np.ndarray,
    start: int,
    layout: Layout,
    names: tuple[str, str],
    labels: np.ndarray,
    *,
    pixels_per_image: int | None = None,
    sum_problem: str = "has probabilities that do not sum to 1",
    logits_fix: str = "these look like logits: pass --logits.",
) -> str | None:
    """One sentence for the first kind of malformed value found in a batch, or None.

    ``problems`` is a kernel's (count, first flat index) per kind, over images of
    ``pixels_per_image`` pixels (default: whole images); ``labels`` holds those pixels'
    labels, to quote an out-of-range value.
    """
    label_name, probs_name = names
    per_image = pixels_per_image or layout.pixels
    order = [
        (
            kernels.BAD_LABEL,
            label_name,
            "has label {value} outside 0..{kmax}",
            "fix the labels or pass --ignore-index for the value that marks unlabelled pixels.",
        ),
        (
            kernels.NONFINITE,
            probs_name,
            "has NaN or infinite probabilities",
            "fix the model outputs.",
        ),
        (kernels.NEGATIVE, probs_name, "has negative probabilities", logits_fix),
        (kernels.BAD_SUM, probs_name, sum_problem, logits_fix),
    ]
    for kind, name, problem, fix in order:
        count, first = (int(n) for n in problems[kind])
        if count:
            image, pixel = divmod(first, per_image)
            row, col = divmod(pixel, layout.width)
            value = labels.reshape(labels.shape[0], -1)[image, pixel]
            more = f" (and {count - 1} more pixels)" if count > 1 else ""
            problem = problem.format(value=value, kmax=layout.num_classes - 1)
            return f"{name} {problem} at image {start + image}, pixel ({row}, {col}){more}; {fix}"
    return None


def process_batch(
    start: int,
    labels: np.ndarray,
    probs: np.ndarray,
    params: Params,
    layout: Layout,
    sink: Sink,
    names: tuple[str, str],
) -> BatchResult:
    """All per-pixel work for images ``start:start+b``; writes per-pixel arrays to ``sink``."""
    stop = start + labels.shape[0]
    if params.channels_last:
        probs = np.ascontiguousarray(probs.transpose(0, 3, 1, 2))
    if params.logits:
        probs = _softmax(probs)
    at_full_resolution = params.downsample == 1
    full = pixel_pass(
        probs,
        labels,
        params.ignore_index,
        check_sums=not params.logits,
        summarize=at_full_resolution,
    )
    message = describe_problems(full.problems, start, layout, names, labels)
    if message is not None:
        raise InvalidInputError(message)
    shape = (labels.shape[0], layout.height, layout.width)
    sink.get("labels")[start:stop] = labels
    sink.get("pred_labels")[start:stop] = full.pred.reshape(shape)
    sink.get("pixel_scores")[start:stop] = full.s.reshape(shape)
    softmin = np.empty(labels.shape[0], np.float64)
    kernels.softmin_images(full.s, params.temperature, full.low, full.scored, softmin)
    cl = full
    if not at_full_resolution:
        small_labels = pool_labels(
            labels, params.downsample, params.label_pooling, params.ignore_index
        )
        cl = pixel_pass(
            pool_probs(probs, params.downsample),
            small_labels,
            params.ignore_index,
            check_sums=False,
            tag="low",
            summarize=True,
        )
        small_shape = (labels.shape[0], *small_labels.shape[1:])
        sink.get("cl_scores")[start:stop] = cl.s.reshape(small_shape)
    assert cl.hist is not None and cl.records is not None
    sink.add_records(start, cl.records)
    return BatchResult(
        start, cl.class_sum, cl.class_count, cl.hist, softmin, full.scored, full.problems
    )


def plan_batches(
    num_images: int, image_bytes: int, workers: int, batch_size: int | None, memory_budget: int
) -> list[tuple[int, int]]:
    """Split images into batches: ``batch_size`` images, or as many as the budget allows."""
    if batch_size is None:
        per_batch = memory_budget // (2 * max(1, workers))
        batch_size = max(1, min(num_images, per_batch // max(1, image_bytes)))
        # Keep all workers busy on small datasets.
        batch_size = max(1, min(batch_size, -(-num_images // max(1, workers))))
    return [(i, min(i + batch_size, num_images)) for i in range(0, num_images, batch_size)]


def default_workers() -> int:
    return max(
        1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )


def create_outputs(sink: Sink, layout: Layout, labels_dtype: np.dtype, params: Params) -> None:
    """Allocate the per-pixel arrays the pass fills."""
    shape = (layout.num_images, layout.height, layout.width)
    sink.create("labels", shape, labels_dtype)
    sink.create("pred_labels", shape, layout.pred_dtype)
    sink.create("pixel_scores", shape, layout.score_dtype)
    if params.downsample != 1:
        d = params.downsample
        sink.create(
            "cl_scores",
            (layout.num_images, layout.height // d, layout.width // d),
            layout.score_dtype,
            scratch=True,
        )


def stored_label_dtype(labels_dtype: np.dtype, num_classes: int, ignore: int | None) -> np.dtype:
    """The smallest integer type holding every class id and the ignore value."""
    values = [0, num_classes - 1] + ([ignore] if ignore is not None else [])
    small = np.result_type(*(np.min_scalar_type(v) for v in values))
    return (
        np.dtype(small)
        if small.itemsize <= np.dtype(labels_dtype).itemsize
        else np.dtype(labels_dtype)
    )


def stream(
    labels: ArraySource,
    probs: ArraySource,
    params: Params,
    sink: Sink,
    *,
    workers: int = 1,
    batch_size: int | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    progress: Progress | None = None,
    on_batch: Any = None,
) -> PassStats:
    """Read pred_probs once over local worker threads; return the reductions."""
    progress = progress or NullProgress()
    names = (str(labels.path), str(probs.path))
    layout = check_inputs(labels.array, probs.array, params, names)
    create_outputs(
        sink,
        layout,
        stored_label_dtype(labels.dtype, layout.num_classes, params.ignore_index),
        params,
    )
    batches = plan_batches(
        layout.num_images, layout.image_bytes, workers, batch_size, memory_budget
    )
    stats = _empty_stats(layout, params, batches)
    progress.start("scanning pred_probs", layout.num_images)

    def work(bounds: tuple[int, int]) -> BatchResult:
        lo, hi = bounds
        label_batch, prob_batch = labels.read(lo, hi), probs.read(lo, hi)
        try:
            return process_batch(lo, label_batch, prob_batch, params, layout, sink, names)
        finally:
            labels.release(label_batch)
            probs.release(prob_batch)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        pending: deque[Future[BatchResult]] = deque()
        queue = iter(batches)
        try:
            for bounds in queue:
                pending.append(pool.submit(work, bounds))
                if len(pending) >= max(1, workers):
                    _reduce(stats, pending.popleft().result(), progress, on_batch)
            while pending:
                _reduce(stats, pending.popleft().result(), progress, on_batch)
        except BaseException:
            for future in pending:
                future.cancel()
            raise
    progress.finish()
    return stats


def _empty_stats(layout: Layout, params: Params, batches: list[tuple[int, int]]) -> PassStats:
    k = layout.num_classes
    return PassStats(
        layout,
        np.zeros(k),
        np.zeros(k, np.int64),
        np.zeros(HIST_BINS, np.int64),
        np.empty(layout.num_images),
        np.empty(layout.num_images, np.int64),
        batches,
    )


def _reduce(stats: PassStats, result: BatchResult, progress: Progress, on_batch: Any) -> None:
    """Fold one batch into the totals, image by image in order (deterministic sums)."""
    for row_sum, row_count in zip(result.class_sum, result.class_count, strict=True):
        stats.class_sum += row_sum
        stats.class_count += row_count
    stats.s_hist += result.s_hist
    stop = result.start + len(result.softmin)
    stats.softmin[result.start : stop] = result.softmin
    stats.scored[result.start : stop] = result.scored
    progress.advance(len(result.softmin))
    if on_batch is not None:
        on_batch(stop)
