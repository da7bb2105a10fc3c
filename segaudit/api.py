"""The Python API, mirroring ``cleanlab.segmentation`` so users can switch with one import.

Functions accept numpy arrays, memory-maps and Zarr arrays and stream over them in
image batches; results come back as numpy arrays, like the reference's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from segaudit.engine import DEFAULT_MEMORY_BUDGET, MemorySink, Params, default_workers
from segaudit.io import ArraySource
from segaudit.progress import NullProgress
from segaudit.scan import CLResult, Engine, confident_learning


def as_source(array: Any, name: str) -> ArraySource:
    """Wrap an in-memory array, memmap or Zarr array as a batch source."""
    if isinstance(array, ArraySource):
        return array
    if isinstance(array, list | tuple):
        array = np.asarray(array)
    kind = "npy" if isinstance(array, np.memmap) else "array"
    return ArraySource(Path(f"<{name}>"), array, kind)


def _images_per_batch(batch_size: int | None, pred_probs: Any, channels_last: bool) -> int | None:
    """The reference's ``batch_size`` counts probability values; turn it into whole images."""
    if batch_size is None:
        return None
    if batch_size <= 0:
        raise ValueError(f"Batch size must be greater than 0, got {batch_size}")
    per_image = int(np.prod(pred_probs.shape[1:]))
    return max(batch_size // per_image, 1)


def run_confident_learning(
    labels: Any,
    pred_probs: Any,
    *,
    batch_size: int | None = None,
    downsample: int = 1,
    ignore_index: int | None = None,
    label_pooling: str = "mode",
    channels_last: bool = False,
    logits: bool = False,
    temperature: float = 0.1,
    n_jobs: int | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> tuple[CLResult, MemorySink]:
    """Run steps 1–5 in memory; return the result and the per-pixel arrays."""
    params = Params(ignore_index, downsample, label_pooling, channels_last, logits, temperature)
    engine = Engine(
        workers=n_jobs or default_workers(),
        batch_size=_images_per_batch(batch_size, pred_probs, channels_last),
        memory_budget=memory_budget,
    )
    sink = MemorySink()
    result = confident_learning(
        as_source(labels, "labels"),
        as_source(pred_probs, "pred_probs"),
        params,
        sink,
        engine,
        NullProgress(),
    )
    return result, sink


def find_label_issues(
    labels: Any,
    pred_probs: Any,
    *,
    batch_size: int | None = None,
    n_jobs: int | None = None,
    verbose: bool = False,
    downsample: int = 1,
    ignore_index: int | None = None,
    label_pooling: str = "mode",
    channels_last: bool = False,
    logits: bool = False,
) -> np.ndarray:
    """Boolean (N,H,W) mask of pixels whose given label is probably wrong.

    Same arguments and result as ``cleanlab.segmentation.filter.find_label_issues``
    (with ``label_pooling="mean"`` when ``downsample > 1``), plus ``ignore_index``
    for unlabelled pixels. ``batch_size`` counts probability values, as in the
    reference; ``n_jobs`` is the number of worker threads (default: all cores).
    """
    del verbose  # the library never prints
    _, sink = run_confident_learning(
        labels,
        pred_probs,
        batch_size=batch_size,
        n_jobs=n_jobs,
        downsample=downsample,
        ignore_index=ignore_index,
        label_pooling=label_pooling,
        channels_last=channels_last,
        logits=logits,
    )
    return sink.get("issues")
