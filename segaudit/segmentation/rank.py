"""``cleanlab.segmentation.rank`` on segaudit's engine: :func:`get_label_quality_scores`,
:func:`issues_from_scores` (and the private ``_get_label_quality_per_image``).

Same signatures, defaults, results, dtypes, printing and errors as cleanlab 2.9
(see :mod:`segaudit.segmentation` for the few differences).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from segaudit import api
from segaudit.engine import kernels
from segaudit.engine.params import Execution
from segaudit.engine.softmin import check_temperature
from segaudit.engine.stream import default_workers
from segaudit.jobs.score import issue_scores
from segaudit.segmentation import _engine, _inputs
from segaudit.segmentation import filter as _filter
from segaudit.segmentation._progress import Bars

__all__ = ["get_label_quality_scores", "issues_from_scores"]

EMPTY_SCORES = "Invalid Input: pixel_scores cannot be None or an empty list"
ZERO_TEMPERATURE = "Invalid Input: temperature cannot be zero or None"
INVALID_METHOD = "Invalid Method: Specify correct method. Currently only supports 'softmin'"


def get_label_quality_scores(
    labels: np.ndarray,
    pred_probs: np.ndarray,
    *,
    method: str = "softmin",
    batch_size: int | None = None,
    n_jobs: int | None = None,
    verbose: bool = True,
    **kwargs: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """Label-quality scores per image (N,) and per pixel (N, H, W); lower is worse.

    As ``cleanlab.segmentation.rank.get_label_quality_scores``:

    - ``method="softmin"`` (default): image score sum_i s_i·w_i, w = softmax((1 - s) /
      temperature) over the image's pixel scores s = p[given label]; pixel scores
      float64. ``downsample`` does not apply (a ``UserWarning``, as in cleanlab).
    - ``method="num_pixel_issues"``: 1 - (issue pixels / pixels) with the issues of
      :func:`segaudit.segmentation.filter.find_label_issues` (``downsample``,
      ``batch_size``, ``n_jobs``, ``verbose`` as there); pixel scores p[given label]
      in pred_probs' dtype.

    Keyword arguments: ``temperature`` (default 0.1), ``downsample`` (default 1) and
    ``label_pooling`` (segaudit's extension, see ``find_label_issues``); others are
    ignored. Any other method raises ``Exception``, as in cleanlab.
    """
    _inputs.valid_optional_params(batch_size, n_jobs)
    _inputs.check_input(labels, pred_probs)
    temperature = kwargs.get("temperature", 0.1)
    downsample = kwargs.get("downsample", 1)

    if method == "num_pixel_issues":
        options = {"downsample": downsample, "label_pooling": kwargs.get("label_pooling", "mean")}
        result, sink = _filter.run(labels, pred_probs, batch_size, n_jobs, verbose, options)
        pixel_scores = sink.get("pixel_scores").astype(pred_probs.dtype, copy=False)
        image_scores = issue_scores(result.issues_per_image, result.stats.scored)
        return image_scores, pixel_scores

    if downsample != 1:
        warnings.warn(
            f"image will not downsample for method {method} is only for method: num_pixel_issues",
            stacklevel=1,
        )
    num_images, _, height, width = (int(n) for n in pred_probs.shape)
    bars = Bars([f"images processed using {method}"], enabled=verbose)
    if num_images == 0:
        bars.start("", 0)
        bars.finish()
        return np.empty((0,)), np.empty((0, height, width))
    _check_image_scoring(height * width, method, temperature)
    execution = Execution(workers=_workers(n_jobs))
    return _engine.softmin(
        labels, pred_probs, temperature=temperature, execution=execution, progress=bars
    )


def _workers(n_jobs: Any) -> int:
    """cleanlab's softmin ignores ``n_jobs``; here it is the number of threads when valid."""
    if isinstance(n_jobs, int | np.integer) and not isinstance(n_jobs, bool) and n_jobs >= 1:
        return int(n_jobs)
    return default_workers()


def _check_image_scoring(pixels: int, method: Any, temperature: Any) -> None:
    """What cleanlab's per-image scoring refuses, in its order and with its messages."""
    if pixels == 0:
        raise Exception(EMPTY_SCORES)
    if temperature == 0 or temperature is None:
        raise Exception(ZERO_TEMPERATURE)
    if method != "softmin":
        raise Exception(INVALID_METHOD)


def issues_from_scores(
    image_scores: np.ndarray, pixel_scores: np.ndarray | None = None, threshold: float = 0.1
) -> np.ndarray:
    """Pixels (or images) whose score is below ``threshold``, as cleanlab.

    With ``pixel_scores``: the boolean mask ``pixel_scores < threshold``. Without: image
    indices sorted by score, up to and including the first image whose score is not
    below ``threshold`` (cleanlab's ``ranking[:cutoff + 1]``). Bad arguments raise what
    cleanlab raises: ``ValueError`` for no image scores (its message names
    ``pixel_scores``) or a threshold outside [0, 1], ``TypeError`` for a ``None``
    threshold (cleanlab compares it before checking for None).
    """
    if image_scores is None:
        raise ValueError("pixel_scores must be provided")
    if threshold < 0 or threshold > 1 or threshold is None:
        raise ValueError("threshold must be between 0 and 1")
    return api.issues_from_scores(image_scores, pixel_scores, threshold)


def _get_label_quality_per_image(
    pixel_scores: Any, method: Any = None, temperature: Any = 0.1
) -> np.floating:
    """One image's softmin score from its flat pixel scores (cleanlab's private helper),
    by segaudit's softmin kernel."""
    if pixel_scores is None or pixel_scores.size == 0:
        raise Exception(EMPTY_SCORES)
    if temperature == 0 or temperature is None:
        raise Exception(ZERO_TEMPERATURE)
    scores = np.ascontiguousarray(pixel_scores, dtype=np.float64).reshape(1, -1)
    if method != "softmin":
        raise Exception(INVALID_METHOD)
    check_temperature(temperature)
    image_score = np.empty(1)
    lowest = np.array([scores.min()])
    kernels.softmin_images(
        scores, float(temperature), lowest, np.array([scores.size], np.int64), image_score
    )
    return np.float64(image_score[0])
