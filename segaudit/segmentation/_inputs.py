"""Arguments as ``cleanlab.segmentation`` takes them, checked as it checks them, and
turned into what segaudit's engine reads.

The checks raise what cleanlab 2.9 raises, with its messages (``ValueError`` for a
wrong shape or batch size, ``AttributeError`` for an argument without ``.shape``),
so code written against cleanlab keeps working; what segaudit's engine then refuses
(labels outside 0..K-1, NaN or negative probabilities) is its own ``ValueError``.
"""

from __future__ import annotations

import mmap
import operator
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np

from segaudit.api import as_source
from segaudit.errors import InvalidInputError
from segaudit.sources.stores import ArraySource

DEFAULT_BATCH_SIZE = 10000
"""cleanlab's default ``batch_size``: probability values per batch of images."""


def valid_optional_params(batch_size: Any, n_jobs: Any) -> tuple[Any, Any]:
    """cleanlab's defaults and check for ``batch_size`` (``n_jobs`` passes through)."""
    if batch_size is None:
        batch_size = DEFAULT_BATCH_SIZE
    if batch_size <= 0:
        raise ValueError(f"Batch size must be greater than 0, got {batch_size}")
    return batch_size, n_jobs


def check_input(labels: Any, pred_probs: Any) -> None:
    """labels (N, H, W) and pred_probs (N, K, H, W) agreeing on N, H and W."""
    if len(labels.shape) != 3:
        raise ValueError("labels must have a shape of (N, H, W)")
    if len(pred_probs.shape) != 4:
        raise ValueError("pred_probs must have a shape of (N, K, H, W)")
    num_images, height, width = labels.shape
    num_images_pred, _, height_pred, width_pred = pred_probs.shape
    if (num_images, height, width) != (num_images_pred, height_pred, width_pred):
        raise ValueError("labels and pred_probs must have matching dimensions for N, H, and W")


def check_downsample(pred_probs: Any, downsample: Any) -> Any:
    """The downsampling factor, refused (as cleanlab does) when it does not divide H and W."""
    if downsample == 1:
        return 1
    _, _, height, width = pred_probs.shape
    if height % downsample != 0 or width % downsample != 0:
        raise ValueError(
            f"Height {height} and width {width} not divisible by downsample value of "
            f"{downsample}. Set kwarg downsample to 1 to avoid downsampling."
        )
    return downsample


def images_per_batch(batch_size: Any, values_per_image: int) -> int:
    """cleanlab's images per batch: ``batch_size`` counts probability values."""
    try:
        batch_size = operator.index(batch_size)
    except TypeError:
        raise TypeError(f"batch_size must be a whole number, got {batch_size!r}") from None
    return max(batch_size // max(values_per_image, 1), 1)


def resolve_jobs(n_jobs: Any, verbose: bool) -> int:
    """How many workers cleanlab's ``n_jobs`` asks for, with cleanlab's messages.

    segaudit runs them as threads (cleanlab forks processes), and, as cleanlab does,
    only one outside Linux; ``None`` means the physical cores when psutil is installed,
    else the logical ones.
    """
    if platform.system() != "Linux":
        if n_jobs is not None and n_jobs != 1 and verbose:
            print("n_jobs is overridden to 1 because multiprocessing is only supported for Linux.")
        return 1
    if n_jobs is not None:
        if isinstance(n_jobs, bool) or not isinstance(n_jobs, int | np.integer):
            raise TypeError(f"n_jobs must be a whole number or None, got {n_jobs!r}")
        if n_jobs < 1:
            raise ValueError("Number of processes must be at least 1")
        return int(n_jobs)
    cores = None
    try:
        import psutil  # optional, as in cleanlab

        cores = psutil.cpu_count(logical=False)
    except ImportError:
        pass
    if not cores:
        cores = os.cpu_count() or 1
        if verbose:
            print(
                f"Multiprocessing will default to using the number of logical cores ({cores}). "
                "To default to number of physical cores: pip install psutil"
            )
    return int(cores)


def is_readonly_mapping(array: Any) -> bool:
    """Whether ``array`` is a C-contiguous view into a read-only memory map of a file
    (``np.load(..., mmap_mode="r")`` and its slices).

    Such pages are clean copies of the file: dropping them from the process once an
    image is read loses nothing (reading again maps them in again), which keeps the
    resident memory flat. Copy-on-write (``mmap_mode="c"``) and writable maps are not
    read-only; their pages may hold the caller's edits and are never dropped.
    """
    if not isinstance(array, np.ndarray) or not array.flags.c_contiguous or array.size == 0:
        return False
    base: Any = array
    while isinstance(base, np.ndarray):
        base = base.base
    if not isinstance(base, mmap.mmap):
        return False
    try:
        with memoryview(base) as view:
            return bool(view.readonly)
    except (TypeError, ValueError):  # a closed map
        return False


class WholeLabels:
    """Float or bool labels read as int64 class ids, batch by batch (cleanlab casts them
    with ``astype(int)``); a value that is not a whole number is refused."""

    def __init__(self, array: Any) -> None:
        self.array = array
        self.shape = tuple(int(n) for n in array.shape)
        self.dtype = np.dtype(np.int64)

    def __getitem__(self, key: Any) -> np.ndarray:
        values = np.asarray(self.array[key])
        if values.dtype.kind == "f":
            with np.errstate(invalid="ignore"):
                whole = values == np.trunc(values)
            if not whole.all():
                bad = values[~whole].ravel()[0]
                raise InvalidInputError(
                    f"labels hold {bad}, which is no class id; labels must be whole numbers 0..K-1."
                )
        return values.astype(np.int64)


def source(array: Any, name: str) -> ArraySource:
    """An engine source over a caller's array; pages of read-only file maps are dropped
    once read (see :func:`is_readonly_mapping`)."""
    if name == "labels" and np.dtype(array.dtype).kind in "fb":
        array = WholeLabels(array)
    if is_readonly_mapping(array):
        return ArraySource(Path(f"<{name}>"), array, "array", own_mapping=True)
    return as_source(array, name)
