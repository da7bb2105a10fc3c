"""segaudit's Python API: ``cleanlab.segmentation``'s functions with segaudit's defaults
and stricter checks (for an exact drop-in of cleanlab's, see :mod:`segaudit.segmentation`).

Functions accept numpy arrays, memory-maps, Zarr arrays and nested lists and stream
over them in image batches; results come back as numpy arrays, like the reference's.
The caller's arrays are only read: whatever their type (an ``np.memmap`` included),
segaudit never writes them nor drops their pages. A wrong argument raises
``TypeError`` (wrong type) or ``ValueError`` (wrong value) naming it.
"""

from __future__ import annotations

from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np

from segaudit.engine.learning import CLResult, confident_learning
from segaudit.engine.params import DEFAULT_MEMORY_BUDGET, Execution, Params
from segaudit.engine.sinks import MemorySink
from segaudit.engine.stream import default_workers
from segaudit.errors import InvalidInputError
from segaudit.sources.dataset import Dataset
from segaudit.sources.stacked import ImageList, StackedLabels, StackedProbs, is_image_list
from segaudit.sources.stores import ArraySource, as_array_argument


def as_source(array: Any, name: str) -> ArraySource:
    """Wrap a caller's array (numpy, memmap, Zarr, nested list) as a batch source.

    The source never owns a mapping, so its pages are never dropped: an ``np.memmap``
    may be an in-memory copy or a private map holding the caller's edits.
    """
    if isinstance(array, ArraySource):
        return array
    array = as_array_argument(array, name)
    kind = "zarr" if _is_zarr_array(array) else "array"
    return ArraySource(Path(f"<{name}>"), array, kind)


def _is_zarr_array(array: Any) -> bool:
    return type(array).__module__.split(".")[0] == "zarr" and hasattr(array, "metadata")


def array_dataset(labels: Any, pred_probs: Any, channels_last: bool = False) -> Dataset:
    """A caller's arrays as a dataset: labels (N,H,W) and pred_probs (N,K,H,W), or lists of
    per-image arrays (H_i,W_i) and (K,H_i,W_i) for images of different sizes."""
    listed = is_image_list(labels), is_image_list(pred_probs)
    if any(listed):
        if not all(listed):
            raise TypeError(
                "labels and pred_probs must both be arrays or both be lists of per-image "
                "arrays; got one of each."
            )
        return Dataset(
            ImageList(list(labels), "labels"),
            ImageList(list(pred_probs), "pred_probs", channels_last),
        )
    label_source = StackedLabels(as_source(labels, "labels"))
    probs_source = StackedProbs(as_source(pred_probs, "pred_probs"), channels_last)
    return Dataset(label_source, probs_source)


def _as_given(result: Any, labels: Any) -> Any:
    """Per-image results as the caller gave the labels: a list for a list, else (N,H,W)."""
    if is_image_list(labels):
        return list(result)
    return result


def _count(value: Any, name: str) -> int | None:
    """A positive integer argument (or None), else a TypeError/ValueError naming it."""
    if value is None:
        return None
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be a positive integer or None, got {value!r}.")
    if value < 1:
        raise InvalidInputError(f"{name} must be a positive integer or None, got {value}.")
    return int(value)


def _images_per_batch(batch_size: int | None, dataset: Dataset) -> int | None:
    """The reference's ``batch_size`` counts probability values; turn it into whole images
    (of the dataset's largest image)."""
    batch_size = _count(batch_size, "batch_size")
    if batch_size is None or dataset.num_images == 0:
        return None
    per_image = max(1, max(dataset.image_bytes(i) for i in range(dataset.num_images)))
    per_image //= dataset.probs_dtype.itemsize
    return max(batch_size // per_image, 1)


def _workers(n_jobs: int | None) -> int:
    return _count(n_jobs, "n_jobs") or default_workers()


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
    dataset = array_dataset(labels, pred_probs, channels_last)
    execution = Execution(
        workers=_workers(n_jobs),
        batch_size=_images_per_batch(batch_size, dataset),
        memory_budget=memory_budget,
    )
    sink = MemorySink()
    result = confident_learning(dataset, params, sink, execution)
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

    Images of different sizes: pass lists, ``labels[i]`` (H_i, W_i) and ``pred_probs[i]``
    (K, H_i, W_i); the result is a list of per-image masks. Thresholds and the cut are
    over all pixels of all images, so the masks laid end to end equal the reference's on
    all pixels laid end to end.
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
    return _as_given(sink.get("issues"), labels)


def get_label_quality_scores(
    labels: Any,
    pred_probs: Any,
    *,
    method: str = "softmin",
    temperature: float = 0.1,
    batch_size: int | None = None,
    downsample: int = 1,
    ignore_index: int | None = None,
    n_jobs: int | None = None,
    verbose: bool = False,
    label_pooling: str = "mode",
    channels_last: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Label-quality scores per image (N,) and per pixel (N,H,W); lower means worse.

    Same arguments and results as ``cleanlab.segmentation.rank.get_label_quality_scores``
    (whose ``**kwargs`` ``temperature`` and ``downsample`` are plain keywords here).
    The pixel score is s = p[given label].

    - ``method="softmin"``: sum_i s_i·w_i with w = softmax((1 - s) / temperature) over
      each image's pixels; one streaming read of pred_probs, no Confident Learning.
      ``downsample`` does not apply (a warning, as in the reference).
    - ``method="num_pixel_issues"``: 1 - issue pixels / scored pixels, with the issues
      of :func:`find_label_issues` (``downsample``, ``label_pooling``).

    Extension: pixels labelled ``ignore_index`` are left out of the softmin and of the
    num_pixel_issues denominator, and their pixel score is NaN. An image without any
    scored pixel gets the score NaN, with a
    :class:`~segaudit.jobs.score.UnscoredImagesWarning`.

    ``pixel_scores`` is an in-memory numpy array holding the reference's values exactly,
    as float32 (float64 for float64 input): N·H·W·4 bytes. For datasets larger than
    memory use ``segaudit score``, which streams them to ``pixel_scores.zarr``.
    ``batch_size`` counts probability values, as in the reference; ``n_jobs`` is the
    number of worker threads (default: all cores). Bad input raises ``ValueError``.
    Lists of per-image arrays (images of different sizes) give a list of pixel scores.
    """
    import warnings

    from segaudit.engine.softmin import check_temperature, softmin_pass
    from segaudit.jobs.score import (
        UnscoredImagesWarning,
        check_method,
        issue_scores,
        unscored_message,
    )

    del verbose  # the library never prints
    check_method(method)
    check_temperature(temperature)
    params = Params(
        ignore_index=ignore_index,
        downsample=downsample,
        label_pooling=label_pooling,
        channels_last=channels_last,
        temperature=temperature,
    )
    dataset = array_dataset(labels, pred_probs, channels_last)
    if method == "num_pixel_issues":
        result, sink = run_confident_learning(
            labels,
            pred_probs,
            batch_size=batch_size,
            downsample=downsample,
            ignore_index=ignore_index,
            label_pooling=label_pooling,
            channels_last=channels_last,
            temperature=temperature,
            n_jobs=n_jobs,
        )
        scored = result.stats.scored
        image_scores = issue_scores(result.issues_per_image, scored)
        pixel_scores = sink.get("pixel_scores")
    else:
        if downsample != 1:
            warnings.warn(
                f"downsample={downsample} applies to method='num_pixel_issues' only; "
                "softmin scores every pixel at full resolution.",
                stacklevel=2,
            )
        sink = MemorySink()
        execution = Execution(
            workers=_workers(n_jobs),
            batch_size=_images_per_batch(batch_size, dataset),
        )
        softmin = softmin_pass(dataset, params, pixel_sink=sink, execution=execution)
        image_scores, scored = softmin.scores, softmin.scored
        pixel_scores = sink.get("pixel_scores")
    unscored = np.flatnonzero(scored == 0)
    if len(unscored):
        warnings.warn(unscored_message(unscored), UnscoredImagesWarning, stacklevel=2)
    return image_scores, _as_given(pixel_scores, labels)


def issues_from_scores(
    image_scores: Any, pixel_scores: Any = None, threshold: float = 0.1
) -> np.ndarray:
    """Pixels (or images) whose score is below ``threshold``, exactly as the reference.

    With ``pixel_scores``: the boolean mask ``pixel_scores < threshold`` (NaN scores of
    ignored pixels are never issues). Without: image indices sorted by score, up to and
    including the first image whose score is not below ``threshold`` (the reference's
    ``ranking[:cutoff + 1]``, kept for parity). ``threshold`` must be in [0, 1].
    """
    if image_scores is None:
        raise ValueError("image_scores must be provided")
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, Real)):
        raise TypeError(f"threshold must be a number between 0 and 1, got {threshold!r}.")
    if threshold is None or not 0 <= threshold <= 1:
        raise ValueError("threshold must be between 0 and 1")
    image_scores = _scores_argument(image_scores, "image_scores")
    if pixel_scores is not None:
        return np.asarray(_scores_argument(pixel_scores, "pixel_scores")) < threshold
    image_scores = np.asarray(image_scores)
    ranking = np.argsort(image_scores)
    cutoff = np.searchsorted(image_scores[ranking], threshold)
    return ranking[: cutoff + 1]


def _scores_argument(value: Any, name: str) -> Any:
    """Scores as an array of numbers, or a TypeError naming the argument."""
    array = as_array_argument(value, name)
    if np.dtype(array.dtype).kind not in "biuf":
        raise TypeError(f"{name} must hold numbers, got {np.dtype(array.dtype)} values.")
    return array
