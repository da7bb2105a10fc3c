"""Steps 2–5 of Confident Learning, run over the compact per-pixel arrays.

Thresholds and the issue count come from the streaming pass's reductions. The m
lowest self-confidences are found without sorting the dataset: the histogram of
the scores' top 16 bits names the boundary bin, and each further look at the
stored scores narrows it by 16 more bits until the cut value is exact; ties at the
cut go to the lowest flat index.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from segaudit.engine.executors import Executor, SinkTask, ThreadExecutor, run_in_order
from segaudit.engine.params import HIST_BINS
from segaudit.engine.pixels import RECORD_FIELDS, Records, score_bits, score_key_shift
from segaudit.engine.regions import IssuePixels, RegionFinder
from segaudit.engine.sinks import CL, FULL, Sink
from segaudit.engine.stream import PassStats

THRESHOLD_FLOOR = 2e-6
COMPARISON_MARGIN = 1e-6


def thresholds(class_sum: np.ndarray, class_count: np.ndarray) -> np.ndarray:
    """t_k = mean self-confidence of pixels labelled k (0 when absent), floored at 2e-6."""
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(class_count > 0, class_sum / np.maximum(class_count, 1), 0.0)
    return np.maximum(mean, THRESHOLD_FLOOR)


@dataclass
class CountTask(SinkTask):
    """One batch's share of m, from its mispredicted pixels' records (an executor's task)."""

    limits: np.ndarray  # per class: its threshold less the comparison margin

    def __call__(self, start: int) -> int:
        records = self.sink.records(start, ("pred", "pmax"))
        reached = records["pmax"].astype(np.float64) >= self.limits[records["pred"]]
        return int(np.count_nonzero(reached))


def count_issues(
    sink: Sink, class_thresholds: np.ndarray, executor: Executor | None = None
) -> int:
    """m: mispredicted pixels whose predicted-class probability reaches that class's
    threshold (batches on ``executor``, default one local thread)."""
    counts: list[int] = []
    task = CountTask(sink, class_thresholds - COMPARISON_MARGIN)
    run_in_order(sink.record_starts(), task, counts.append, executor or ThreadExecutor())
    return sum(counts)


@dataclass(frozen=True)
class ScoreReader:
    """Which scores a refinement of the cut looks at: every stored score (``"stored"``, of
    the array ``scores_name``), or only the mispredicted pixels' (``"mispredicted"``, from
    their records)."""

    sink: Any
    source: str
    scores_name: str


@dataclass
class RefineTask(SinkTask):
    """One batch's histogram of the next 16 bits of the scores inside the boundary bin
    (``prefix``: the bin's top bits, ``shift`` places them), as an executor's task."""

    source: str
    scores_name: str
    prefix: int
    shift: int

    def read(self, lo: int, hi: int) -> np.ndarray:
        if self.source == "mispredicted":
            return self.sink.records(lo, ("s",))["s"]
        return np.concatenate([self.sink.read(self.scores_name, i).ravel() for i in range(lo, hi)])

    def __call__(self, bounds: tuple[int, int]) -> np.ndarray:
        bits = score_bits(np.ascontiguousarray(self.read(*bounds)))
        inside = bits[(bits >> self.shift) == self.prefix]
        keys = ((inside >> (self.shift - 16)) & 0xFFFF).astype(np.intp)
        return np.bincount(keys, minlength=HIST_BINS)


@dataclass(frozen=True)
class Cut:
    """The candidate rule: keys (bits >> shift) below ``key`` are in; at ``key``, the
    first ``ties`` in flat order are in (``None``: all of them)."""

    key: int
    shift: int
    ties: int | None
    count: int

    def candidates(self, scores: np.ndarray, tie_offset: int) -> tuple[np.ndarray, int]:
        """Mask of candidates in ``scores`` (flat order), and how many ties it used."""
        if self.count == 0:
            return np.zeros(scores.shape, bool), 0
        keys = score_bits(scores) >> self.shift
        valid = ~np.isnan(scores)
        inside = (keys < self.key) & valid
        at_cut = (keys == self.key) & valid
        if self.ties is None:
            return inside | at_cut, 0
        flat = at_cut.ravel()
        rank = np.cumsum(flat) + tie_offset
        take = flat & (rank <= self.ties)
        return inside | take.reshape(scores.shape), int(flat.sum())


def find_cut(
    stats: PassStats,
    m: int,
    read_scores: ScoreReader,
    read_mispredicted: ScoreReader | None = None,
    below_any_max: float = 0.0,
    executor: Executor | None = None,
) -> Cut:
    """The exact rule selecting the m lowest scores, looking at stored scores only as needed.

    Scores below ``below_any_max`` (a bound under every pixel's top probability) belong
    to mispredicted pixels only, so a boundary bin entirely below it is refined from
    ``read_mispredicted`` (the records' scores of a batch) instead of every stored score.
    Each refinement runs batch by batch on ``executor``.
    """
    if m == 0:
        return Cut(0, 0, None, 0)
    hist, need = stats.s_hist, m
    score_dtype = np.dtype(stats.extent.score_dtype)
    shift = score_key_shift(score_dtype)
    prefix = 0
    while True:
        cumulative = np.cumsum(hist)
        bin_index = int(np.searchsorted(cumulative, need))
        # The pass counts every score up to the highest bin a cut can reach (histogram_top).
        assert bin_index < HIST_BINS, "fewer scores counted than issues to select"
        below = int(cumulative[bin_index - 1]) if bin_index else 0
        need -= below
        prefix = (prefix << 16) | bin_index
        if int(hist[bin_index]) == need:
            return Cut(prefix, shift, None, m)
        if shift == 0:
            return Cut(prefix, 0, need, m)
        reader = read_scores
        if read_mispredicted is not None and _bin_top(prefix, shift, score_dtype) <= below_any_max:
            reader = read_mispredicted
        hist = _refine(stats, prefix, shift, reader, executor)
        shift -= 16


def _bin_top(prefix: int, shift: int, score_dtype: np.dtype) -> float:
    """The value just above a histogram bin: every score in the bin is below it."""
    return _bits_value((prefix + 1) << shift, score_dtype)


def _bits_value(bits: int, score_dtype: Any) -> float:
    """The score whose whole bit pattern is ``bits``."""
    dtype = np.dtype(score_dtype)
    pattern = np.array([bits], np.uint32 if dtype.itemsize == 4 else np.uint64)
    return float(pattern.view(dtype)[0])


def _batch_starts(sizes: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Where each of images lo:hi starts among the batch's pixels laid end to end (and,
    last, their total)."""
    return np.concatenate([[0], np.cumsum(sizes[lo:hi, 0] * sizes[lo:hi, 1])])


def _refine(
    stats: PassStats,
    prefix: int,
    shift: int,
    reader: ScoreReader,
    executor: Executor | None = None,
) -> np.ndarray:
    """Histogram of the next 16 bits among stored scores whose top bits equal ``prefix``."""
    hist = np.zeros(HIST_BINS, np.int64)

    def fold(part: np.ndarray) -> None:
        hist[:] += part

    task = RefineTask(reader.sink, reader.source, reader.scores_name, prefix, shift)
    run_in_order(stats.batches, task, fold, executor or ThreadExecutor())
    return hist


@dataclass
class IssueCounts:
    """Per-image and per-class tallies of the issue mask, and each image's regions (when
    asked for) with the seconds spent finding them."""

    per_image: np.ndarray
    given: np.ndarray
    predicted: np.ndarray
    regions: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)
    region_seconds: float = 0.0


@dataclass
class BatchIssues:
    """What one batch's issues add to :class:`IssueCounts` (its masks are in the sink)."""

    lo: int
    hi: int
    per_image: np.ndarray  # (hi - lo,) issue pixels
    by_class: np.ndarray  # (2, K): issue pixels by given, by predicted class
    ties_used: int
    regions: dict[int, dict[str, np.ndarray]]
    region_seconds: float


@dataclass
class IssueTask(SinkTask):
    """One batch's issue masks (and regions), as an executor's task; see
    :func:`write_issues`."""

    sizes: np.ndarray
    downsample: int
    num_classes: int
    cut: Cut
    ignore: int | None
    taken: dict[int, np.ndarray]
    regions: RegionFinder | None

    def __call__(self, bounds: tuple[int, int], tie_offset: int = 0) -> BatchIssues:
        lo, hi = bounds
        k = self.num_classes
        if self.downsample == 1:
            masks = _issues_from_records(self.sink, lo, hi, self.cut, self.sizes, self.taken)
            used = 0
        else:
            masks, used = _read_back_issues(
                self.sink, self.sizes, self.downsample, lo, hi, self.cut, tie_offset, self.ignore
            )
        done = BatchIssues(lo, hi, np.zeros(hi - lo, np.int64), np.zeros((2, k), np.int64),
                           used, {}, 0.0)  # fmt: skip
        for row, (mask, pixels) in enumerate(masks):
            index = lo + row
            self.sink.write("issues", index, mask)
            done.per_image[row] = len(pixels.index)
            done.by_class[0] += np.bincount(pixels.given.astype(np.intp), minlength=k)[:k]
            done.by_class[1] += np.bincount(pixels.predicted.astype(np.intp), minlength=k)[:k]
            if self.regions is not None:
                clock = time.perf_counter()
                done.regions[index] = self.regions(self.sink, index, mask, pixels)
                done.region_seconds += time.perf_counter() - clock
        return done


def write_issues(
    stats: PassStats,
    cut: Cut,
    sink: Sink,
    ignore: int | None,
    progress: Any = None,
    executor: Executor | None = None,
    regions: RegionFinder | None = None,
    below_any_max: float = 0.0,
) -> IssueCounts:
    """Cross-check candidates at full resolution and write each image's ``issues`` (and,
    with ``regions``, each image's regions, found where its mask is made).

    Issues are candidates whose prediction differs from the given label, so at full
    resolution they come straight from the mispredicted pixels' records; ties at the
    cut are shared out first (:func:`tied_candidates`: from the records when the cut's
    score is below ``below_any_max``, a bound under every pixel's top probability, else
    reading the scores of only as many images as it takes). With downsampling the
    stored scores, labels and
    predictions are read back. Batches run on ``executor`` (default: one local
    thread), except when ties must be shared out while reading back; then they run here
    in image order.
    """
    extent = stats.extent
    k = extent.num_classes
    counts = IssueCounts(
        np.zeros(extent.num_images, np.int64), np.zeros(k, np.int64), np.zeros(k, np.int64)
    )
    from_records = stats.downsample == 1
    taken = {}
    if from_records and cut.ties is not None:
        taken = tied_candidates(sink, stats, cut, below_any_max)
    task = IssueTask(sink, extent.sizes, stats.downsample, k, cut, ignore, taken, regions)

    def fold(done: BatchIssues) -> int:
        counts.per_image[done.lo : done.hi] = done.per_image
        counts.given += done.by_class[0]
        counts.predicted += done.by_class[1]
        counts.regions.update(done.regions)
        counts.region_seconds += done.region_seconds
        if progress is not None:
            progress.advance(done.hi - done.lo)
        return done.ties_used

    if cut.ties is not None and not from_records:
        offset = 0
        for bounds in stats.batches:
            offset += fold(task(bounds, offset))
    else:
        run_in_order(stats.batches, task, fold, executor or ThreadExecutor())
    return counts


# One image's issue mask (H, W), and its issue pixels (classes and probabilities).
ImageIssues = tuple[np.ndarray, IssuePixels]


def tied_candidates(
    sink: Sink, stats: PassStats, cut: Cut, below_any_max: float = 0.0
) -> dict[int, np.ndarray]:
    """The pixels at the cut's exact score that are candidates: the first ``cut.ties`` of
    them in flat order over the dataset, per image (flat indices within the image).

    At full resolution ties leave ``cut.shift`` at 0: keys are whole bit patterns. A
    score below ``below_any_max`` (a bound under every pixel's top probability) is only
    ever a mispredicted pixel's, so such ties are all in the records, batch by batch in
    flat order; otherwise the stored scores of the first images are read, until the
    ties are shared out.
    """
    assert cut.ties is not None and cut.shift == 0
    if _bits_value(cut.key, stats.extent.score_dtype) < below_any_max:
        return _tied_in_records(sink, stats, cut)
    taken: dict[int, np.ndarray] = {}
    remaining = cut.ties
    for index in range(stats.extent.num_images):
        if remaining == 0:
            break
        bits = score_bits(np.ascontiguousarray(sink.read("pixel_scores", index)).ravel())
        at_cut = np.flatnonzero(bits == cut.key)[:remaining]
        if len(at_cut):
            taken[index] = at_cut
            remaining -= len(at_cut)
    return taken


def _tied_in_records(sink: Sink, stats: PassStats, cut: Cut) -> dict[int, np.ndarray]:
    """:func:`tied_candidates` from the mispredicted pixels' records alone (each batch's
    in flat order over its images end to end), when every tied pixel is among them."""
    assert cut.ties is not None
    taken: dict[int, np.ndarray] = {}
    remaining = cut.ties
    sizes = stats.extent.sizes
    for lo, hi in stats.batches:
        if remaining == 0:
            break
        records = sink.records(lo, ("index", "s"))
        at_cut = records["index"][score_bits(records["s"]) == cut.key][:remaining]
        remaining -= len(at_cut)
        starts = _batch_starts(sizes, lo, hi)
        image_of = np.searchsorted(starts, at_cut, side="right") - 1
        for row in np.unique(image_of).tolist():
            taken[lo + row] = at_cut[image_of == row] - starts[row]
    return taken


def _issues_from_records(
    sink: Sink,
    lo: int,
    hi: int,
    cut: Cut,
    sizes: np.ndarray,
    taken: dict[int, np.ndarray] | None = None,
) -> list[ImageIssues]:
    """Issue masks of images lo:hi from their mispredicted pixels' records, at full
    resolution: records below the cut's key, and at the key those ``taken`` (ties
    shared out in flat order; None or no entry: all of them when the cut has no ties)."""
    records = sink.records(lo, RECORD_FIELDS)
    starts = _batch_starts(sizes, lo, hi)
    if cut.count == 0:
        chosen = np.zeros(len(records["s"]), bool)
    else:
        keys = score_bits(records["s"]) >> cut.shift
        chosen = keys < cut.key
        at_cut = keys == cut.key
        if cut.ties is None:
            chosen |= at_cut
        elif taken:
            wanted = [starts[i - lo] + taken[i] for i in range(lo, hi) if i in taken]
            if wanted:
                chosen |= at_cut & np.isin(records["index"], np.concatenate(wanted))
    picked = {name: values[chosen] for name, values in records.items()}
    return [
        (_mask(part.index, sizes[lo + row]), part)
        for row, part in enumerate(_split_by_image(picked, starts))
    ]


def _split_by_image(records: Records, starts: np.ndarray) -> list[IssuePixels]:
    """A batch's records (flat indices ascending, over its images end to end) cut into
    each image's issue pixels, indices within the image."""
    index = records["index"]
    image_of = np.searchsorted(starts, index, side="right") - 1
    bounds = np.searchsorted(image_of, np.arange(len(starts)))
    parts = []
    for row in range(len(starts) - 1):
        part = slice(bounds[row], bounds[row + 1])
        parts.append(
            IssuePixels(
                index[part] - starts[row],
                records["label"][part],
                records["pred"][part],
                records["s"][part],
                records["pmax"][part],
            )
        )
    return parts


def _mask(index: np.ndarray, size: np.ndarray) -> np.ndarray:
    mask = np.zeros(int(size[0] * size[1]), bool)
    mask[index] = True
    return mask.reshape(int(size[0]), int(size[1]))


def _read_back_issues(
    sink: Sink,
    sizes: np.ndarray,
    d: int,
    lo: int,
    hi: int,
    cut: Cut,
    tie_offset: int,
    ignore: int | None,
) -> tuple[list[ImageIssues], int]:
    """Issue masks of images lo:hi, image by image in flat order: candidates (expanded
    to full resolution) whose full-resolution prediction differs from the given label;
    and how many ties at the cut they used. Each issue pixel's scores come from the
    full-resolution records (every issue pixel is a mispredicted one)."""
    scores_name = "pixel_scores" if d == 1 else "cl_scores"
    starts = _batch_starts(sizes, lo, hi)
    resolution = CL if d == 1 else FULL
    mispredicted = _split_by_image(sink.records(lo, RECORD_FIELDS, resolution), starts)
    masks, used = [], 0
    for row, index in enumerate(range(lo, hi)):
        candidate, ties = cut.candidates(sink.read(scores_name, index), tie_offset + used)
        used += ties
        if d != 1:
            candidate = candidate.repeat(d, axis=0).repeat(d, axis=1)
        labels = np.asarray(sink.read("labels", index))
        pred = np.asarray(sink.read("pred_labels", index))
        issues = candidate & (pred != labels)
        if ignore is not None:
            issues &= labels != ignore
        masks.append((issues, _pick(mispredicted[row], np.flatnonzero(issues))))
    return masks, used


def _pick(pixels: IssuePixels, index: np.ndarray) -> IssuePixels:
    """The mispredicted pixels at ``index`` (all of which are among them)."""
    at = np.searchsorted(pixels.index, index)
    return IssuePixels(
        index, pixels.given[at], pixels.predicted[at], pixels.score[at], pixels.top[at]
    )
