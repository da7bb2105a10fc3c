"""The kernel on one image: per-pixel outputs, per-image sums, and what was malformed.

:func:`pixel_pass` runs the compiled scan kernel (:mod:`segaudit.engine.kernels`) over
images' probabilities (b, K, H, W) and labels (b, H, W), in buffers each thread reuses.
:func:`describe_problems` turns the kernel's count of malformed values into the one
sentence a user reads, naming the file, the image and the first pixel.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from segaudit.engine import kernels
from segaudit.engine.params import HIST_BINS, pred_dtype
from segaudit.sources.dataset import Where

# The mispredicted pixels of one batch: flat index within the batch, predicted class,
# its probability, self-confidence and given label (see kernels.Summary).
Records = dict[str, np.ndarray]
RECORD_FIELDS = ("index", "pred", "pmax", "s", "label")


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
    rows_sum_to_one: bool = True,
) -> PixelPass:
    """Run the compiled kernel on one batch: probs (b,K,H,W), labels (b,H,W).

    With ``summarize`` it also yields the histogram of the scores and the mispredicted
    pixels' records (the pass at Confident Learning's resolution does); the histogram
    counts only the bins a cut can reach when rows sum to one, every bin otherwise. The
    per-pixel outputs live in this thread's workspace until its next batch.
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
    top = histogram_top(score_dtype, tol) if rows_sum_to_one else HIST_BINS - 1
    summary = kernels.make_summary(out.low, out.scored, out.hist, out.records, top)
    tile = kernels.tile_pixels(k, probs.dtype.itemsize)
    common = (out.pred, out.s, out.class_sum, out.class_count, out.problems, summary)
    kernels.scan(flat, flat_labels, ignore or 0, ignore is not None, tol, tile, check_sums, *common)
    if out.records is not None:  # views of this thread's buffers, until its next batch
        out.records = {name: values[: summary.found] for name, values in out.records.items()}
    return out


LOGITS_FIX = (
    "these look like logits (pass --logits) or unnormalised scores (pass --normalize to "
    "divide each pixel's scores by their sum)."
)


def describe_problems(
    problems: np.ndarray,
    where: Where,
    labels: np.ndarray,
    width: int,
    num_classes: int,
    *,
    sum_problem: str = "has probabilities that do not sum to 1",
    logits_fix: str = LOGITS_FIX,
    slice_height: int = 0,
    first_row: int = 0,
    normalized: bool = False,
) -> str | None:
    """One sentence for the first kind of malformed value the kernel found, or None.

    ``problems`` is a kernel's (count, first flat pixel index) per kind over one image
    of rows ``width`` wide; ``labels`` holds that image's labels, to quote a value. A
    slab of a volume (rows from ``first_row`` of its sheet, slices ``slice_height``
    rows high) names the voxel by (x, y, z), as NIfTI viewers do. ``normalized``: the
    scores were divided by their sums (``--normalize``), which the sentence says.
    """
    nonfinite = ("has NaN or infinite probabilities", "fix the model outputs.")
    if normalized:
        nonfinite = (
            "has scores that sum to 0 or are not finite",
            "--normalize cannot divide them by their sum; fix the model outputs.",
        )
        logits_fix = (
            "--normalize divides scores by their sum and cannot make these probabilities; "
            "if they are logits, pass --logits instead."
        )
    order = [
        (
            kernels.BAD_LABEL,
            "labels",
            "has label {value} outside 0..{kmax}",
            "fix the labels or pass --ignore-index for the value that marks unlabelled pixels.",
        ),
        (kernels.NONFINITE, "probs", *nonfinite),
        (kernels.NEGATIVE, "probs", "has negative probabilities", logits_fix),
        (kernels.BAD_SUM, "probs", sum_problem, logits_fix),
    ]
    for kind, side, problem, fix in order:
        count, first = (int(n) for n in problems[kind])
        if count:
            row, col = divmod(first, width)
            value = labels.reshape(-1)[first]
            problem = problem.format(value=value, kmax=num_classes - 1)
            name = where.labels if side == "labels" else where.probs
            place = where.labels_place if side == "labels" else where.probs_place
            if slice_height:
                z, y = divmod(first_row + row, slice_height)
                more = f" (and {count - 1} more in this slab)" if count > 1 else ""
                return f"{name} {problem} at voxel (x, y, z) = ({col}, {y}, {z}){more}; {fix}"
            more = f" (and {count - 1} more pixels)" if count > 1 else ""
            return f"{name} {problem} at {place}pixel ({row}, {col}){more}; {fix}"
    return None
