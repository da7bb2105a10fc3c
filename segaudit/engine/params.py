"""What the engine computes (:class:`Params`) and over what (:class:`Extent`).

:class:`Params` holds everything that changes a result; how the work is spread over
threads (:class:`Execution`) never does. :class:`Extent` is the dataset as the engine
sees it: the class count, the probabilities' dtype and every image's size, so images
of different sizes are as natural as a stack of equal ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from segaudit.engine.executors import Executor, ThreadExecutor
from segaudit.engine.pooling import LABEL_POOLINGS, check_divisible
from segaudit.engine.prepare import RESIZE_METHODS
from segaudit.errors import InvalidInputError

HIST_BINS = 1 << 16
DEFAULT_MEMORY_BUDGET = 512 * 2**20
MAX_CLASSES = 65535  # predicted classes are stored in 16 bits
IGNORE_RANGE = (-(2**63), 2**64 - 1)  # every value of some integer label type
PROBS_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


@dataclass(frozen=True)
class Params:
    """What the pass computes; everything that changes results is here.

    Checked when built, wherever that is (CLI, API, a stored run): a wrong type is a
    ``TypeError``, a wrong value an :class:`InvalidInputError`, each naming the field.
    ``ignore_index`` may be any value some integer type holds; one the labels' type
    cannot hold (-1 for uint8 labels, 2**40 for int32) matches no pixel, which is
    harmless, so it is accepted.

    How predictions are read (:func:`segaudit.engine.prepare.prepare_probs`):
    ``channels_last`` (K last), ``logits`` (softmax first), ``normalize`` (divide each
    pixel's scores by their sum), ``resize_probs`` ("bilinear": upsample predictions
    smaller than their mask). ``unnormalized`` takes rows as they are, whatever they sum
    to, as the reference library does (its compatibility layer sets it; the command line
    refuses such rows instead, as they usually mean logits).
    """

    ignore_index: int | None = None
    downsample: int = 1
    label_pooling: str = "mode"
    channels_last: bool = False
    logits: bool = False
    temperature: float = 0.1
    normalize: bool = False
    resize_probs: str | None = None
    unnormalized: bool = False

    @property
    def rows_sum_to_one(self) -> bool:
        """Whether the probabilities Confident Learning counts on sum to one per pixel
        (downsampling renormalises them)."""
        return not self.unnormalized or self.downsample != 1

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
        if self.resize_probs is not None and self.resize_probs not in RESIZE_METHODS:
            raise InvalidInputError(
                f"resize_probs must be one of {', '.join(RESIZE_METHODS)}, "
                f"got {self.resize_probs!r}."
            )


def _integer(name: str, value: Any) -> int:
    """``value`` as a Python int, or a TypeError naming ``name`` (bools and floats too)."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an integer, got {value!r}.")
    return int(value)


@dataclass(frozen=True)
class Execution:
    """How to run (never changes results): worker threads, images per batch (None: from
    the memory budget), the memory budget for in-flight batches, and where batches run
    (an :class:`~segaudit.engine.executors.Executor`; None: ``workers`` local threads)."""

    workers: int = 1
    batch_size: int | None = None
    memory_budget: int = DEFAULT_MEMORY_BUDGET
    executor: Any = None

    def runner(self) -> Executor:
        """The executor batches run on."""
        return self.executor if self.executor is not None else ThreadExecutor(self.workers)


SLAB_BYTES = 64 << 20  # predictions a worker holds at once while scanning a volume


def slices_per_slab(shape: tuple[int, int, int], num_classes: int, itemsize: int) -> int:
    """How many slices of a (Z, Y, X) volume's predictions make one slab (at least one)."""
    slice_bytes = shape[1] * shape[2] * num_classes * itemsize
    return max(1, min(shape[0], SLAB_BYTES // max(1, slice_bytes)))


def pred_dtype(num_classes: int) -> np.dtype:
    """Predicted classes (and valid labels) of K classes: 8 bits, else 16 (K <= MAX_CLASSES)."""
    return np.dtype(np.uint8 if num_classes <= 256 else np.uint16)


def score_dtype(probs_dtype: np.dtype) -> np.dtype:
    """Self-confidence keeps the input's precision (float16 is exact in float32)."""
    return np.dtype(np.float64 if probs_dtype == np.float64 else np.float32)


@dataclass(frozen=True)
class Extent:
    """The dataset as the pass sees it: K, the probabilities' dtype, every image's size."""

    num_classes: int
    dtype: np.dtype
    sizes: np.ndarray  # (N, 2) int64: height, width of each image at full resolution
    depths: np.ndarray | None = None  # (N,) slices of each volume (a sheet (Z·Y, X)), else None

    @property
    def num_images(self) -> int:
        return len(self.sizes)

    def depth(self, index: int) -> int:
        """Slices of image ``index`` when it is a volume, else 1."""
        return 1 if self.depths is None else int(self.depths[index])

    def slab_slices(self, index: int) -> int:
        """How many slices of volume ``index`` the pass reads at once."""
        depth = self.depth(index)
        height, width = (int(n) for n in self.sizes[index])
        shape = (depth, height // depth, width)
        return slices_per_slab(shape, self.num_classes, self.dtype.itemsize)

    def chunk_rows(self) -> np.ndarray | None:
        """Rows of each image's per-pixel chunks: a volume's slab of slices, an image's
        height (None when no image is a volume)."""
        if self.depths is None or not (self.depths > 1).any():
            return None
        rows = self.sizes[:, 0].copy()
        for index in np.flatnonzero(self.depths > 1):
            rows[index] = self.slab_slices(int(index)) * (rows[index] // self.depths[index])
        return rows

    def pixels(self, index: int) -> int:
        height, width = self.sizes[index]
        return int(height * width)

    @property
    def pixel_counts(self) -> np.ndarray:
        return self.sizes[:, 0] * self.sizes[:, 1]

    @property
    def total_pixels(self) -> int:
        return int(self.pixel_counts.sum())

    @property
    def uniform(self) -> bool:
        """Whether every image has one size."""
        return bool(len(self.sizes) == 0 or (self.sizes == self.sizes[0]).all())

    def image_bytes(self, index: int) -> int:
        """Bytes of one image's probabilities: what a worker holds while it scans it."""
        return self.pixels(index) * self.num_classes * self.dtype.itemsize

    @property
    def score_dtype(self) -> np.dtype:
        return score_dtype(self.dtype)

    @property
    def pred_dtype(self) -> np.dtype:
        return pred_dtype(self.num_classes)

    def scaled(self, factor: int) -> np.ndarray:
        """Image sizes at Confident Learning's resolution (downsampled by ``factor``)."""
        return self.sizes // factor


def dtype_text(dtype: np.dtype) -> str:
    """A dtype as a sentence names it: ``float32``, or ``big-endian float32 (>f4)`` for
    the same values in the other byte order (numpy prints both as ``>f4``/``float32``)."""
    dtype = np.dtype(dtype)
    if dtype.byteorder not in "=|" and not dtype.isnative:
        order = "big" if dtype.byteorder == ">" else "little"
        return f"{order}-endian {dtype.newbyteorder('=').name} ({dtype.str})"
    return dtype.name


def check_extent(
    num_classes: int,
    dtype: Any,
    sizes: np.ndarray,
    params: Params,
    where: Any = None,
    name: str = "pred_probs",
    depths: np.ndarray | None = None,
) -> Extent:
    """The extent of a dataset, or one sentence on why it cannot be scanned.

    ``where(i)`` names image i's predictions, for a size that ``--downsample`` does
    not divide.
    """
    dtype = np.dtype(dtype)
    sizes = np.asarray(sizes, np.int64).reshape(-1, 2)
    if len(sizes) == 0:
        raise InvalidInputError("the dataset holds no images; there is nothing to scan.")
    if num_classes < 2:
        raise InvalidInputError(f"{name} has {num_classes} class(es); at least 2 are needed.")
    if num_classes > MAX_CLASSES:
        raise InvalidInputError(
            f"{name} has {num_classes:,} classes; segaudit handles at most {MAX_CLASSES:,} "
            "(predicted classes are stored in 16 bits)."
        )
    if dtype not in PROBS_DTYPES:
        raise InvalidInputError(
            f"{name} holds {dtype_text(dtype)} values; pred_probs must be float16, float32 or "
            "float64, in the machine's byte order."
        )
    empty = np.flatnonzero(sizes.min(axis=1) == 0)
    if len(empty):
        name = where(int(empty[0])) if where is not None else f"image {int(empty[0])}"
        size = "×".join(str(int(n)) for n in sizes[empty[0]])
        raise InvalidInputError(f"{name} is empty ({size} pixels); remove it.")
    if depths is not None and (np.asarray(depths) > 1).any():
        _check_volume_params(params)
    undivided = np.flatnonzero((sizes % params.downsample).any(axis=1))
    if len(undivided):
        index = int(undivided[0])
        name = where(index) if where is not None else f"image {index}"
        check_divisible(int(sizes[index, 0]), int(sizes[index, 1]), params.downsample, name)
    return Extent(int(num_classes), dtype, sizes, depths)


def _check_volume_params(params: Params) -> None:
    """Options that reshape images in 2-D do not apply to volumes."""
    for option, used in (
        ("--downsample", params.downsample != 1),
        ("--resize-probs", params.resize_probs is not None),
    ):
        if used:
            raise InvalidInputError(
                f"{option} works on 2-D images; volumes are scanned voxel by voxel at full "
                f"resolution: drop {option}."
            )
