"""``cleanlab.segmentation.filter`` on segaudit's engine: :func:`find_label_issues`.

Same signature, defaults, result, printing and errors as cleanlab 2.9; the work is
segaudit's streaming pass (see :mod:`segaudit.segmentation`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from segaudit.engine.learning import CLResult
from segaudit.engine.params import Execution
from segaudit.engine.sinks import MemorySink
from segaudit.segmentation import _engine, _inputs
from segaudit.segmentation._progress import Bars

__all__ = ["find_label_issues"]

THRESHOLDS_BAR = "number of examples processed for estimating thresholds"
CHECKING_BAR = "number of examples processed for checking labels"


def find_label_issues(
    labels: np.ndarray,
    pred_probs: np.ndarray,
    *,
    batch_size: int | None = None,
    n_jobs: int | None = None,
    verbose: bool = True,
    **kwargs: Any,
) -> np.ndarray:
    """Boolean (N, H, W) mask of the pixels whose given label is likely wrong.

    As ``cleanlab.segmentation.filter.find_label_issues``: ``labels`` (N, H, W) class
    ids 0..K-1, ``pred_probs`` (N, K, H, W) taken as they are (rows need not sum to
    1); ``batch_size`` counts probability values (default 10000) and ``n_jobs`` workers
    (default: the cores; threads here, processes in cleanlab); ``verbose`` (default
    True) prints cleanlab's lines and progress bars. Keyword arguments: ``downsample``
    (default 1; labels pooled by their rounded mean, probabilities block-averaged and
    renormalised) and, a segaudit extension, ``label_pooling`` ("mean", cleanlab's, or
    "mode"); any other keyword is ignored, as in cleanlab.
    """
    _, sink = run(labels, pred_probs, batch_size, n_jobs, verbose, kwargs)
    return sink.get("issues")


def run(
    labels: Any,
    pred_probs: Any,
    batch_size: Any,
    n_jobs: Any,
    verbose: bool,
    kwargs: dict[str, Any],
) -> tuple[CLResult, MemorySink]:
    """Check the arguments as cleanlab does, run Confident Learning, print what cleanlab
    prints; return the result and the sink (``issues``, full-resolution ``pixel_scores``)."""
    values, n_jobs = _inputs.valid_optional_params(batch_size, n_jobs)
    _inputs.check_input(labels, pred_probs)
    downsample = _inputs.check_downsample(pred_probs, kwargs.get("downsample", 1))
    label_pooling = kwargs.get("label_pooling", "mean")
    workers = _inputs.resolve_jobs(n_jobs, verbose)
    num_images, num_classes, height, width = (int(n) for n in pred_probs.shape)
    cl_pixels = (height // downsample) * (width // downsample)
    cleanlab_batch = _inputs.images_per_batch(values, num_classes * cl_pixels)
    execution = Execution(
        workers=workers, batch_size=None if batch_size is None else cleanlab_batch
    )
    result, sink = _engine.confident_learning(
        labels,
        pred_probs,
        downsample=downsample,
        label_pooling=label_pooling,
        cleanlab_batch=cleanlab_batch,
        execution=execution,
        progress=Bars([THRESHOLDS_BAR, CHECKING_BAR], enabled=verbose),
    )
    if verbose:
        evaluated = num_images * cl_pixels
        print(f"Total number of examples whose labels have been evaluated: {evaluated}")
    return result, sink
