"""Predictions as models write them: bilinear upsampling and row normalisation.

Many models predict at a fraction of the mask's resolution (SegFormer's logits are
H/4 × W/4) and upsample in their own post-processing; ``--resize-probs bilinear`` does
that upsampling here, as PyTorch's ``F.interpolate(mode="bilinear",
align_corners=False)`` does: each output pixel samples the input at
``(x + 0.5) · in/out − 0.5`` (clamped to the edges), weighting its two neighbours
along each axis. It is separable and vectorised: two gathers and blends per axis, no
dense interpolation matrix. With ``--logits`` the logits are upsampled before the
softmax, as a model's post-processing would; probabilities stay probabilities
(each output is a convex combination of input pixels).

Some heads emit scores that are not probabilities (Mask2Former's semantic scores do
not sum to 1 over the classes); ``--normalize`` divides each pixel's scores by their
sum.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from segaudit.errors import InvalidInputError

RESIZE_METHODS = ("bilinear",)


def _taps(size_in: int, size_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each output index: the two input indices and the weight of the second."""
    scale = size_in / size_out
    source = np.maximum((np.arange(size_out) + 0.5) * scale - 0.5, 0.0)
    low = np.minimum(np.floor(source).astype(np.intp), size_in - 1)
    high = np.minimum(low + 1, size_in - 1)
    return low, high, source - low  # float64; callers cast to their working dtype


def resize_bilinear(planes: np.ndarray, height: int, width: int) -> np.ndarray:
    """(K, h, w) -> (K, height, width), in float32 (float64 for float64 input)."""
    work = np.float64 if planes.dtype == np.float64 else np.float32
    _, h, w = planes.shape
    low, high, weight = _taps(h, height)
    rows = planes[:, low, :].astype(work)
    rows += (planes[:, high, :].astype(work) - rows) * weight.astype(work)[None, :, None]
    low, high, weight = _taps(w, width)
    out = rows[:, :, low]
    out += (rows[:, :, high] - out) * weight.astype(work)[None, None, :]
    return out


def normalize_rows(probs: np.ndarray) -> np.ndarray:
    """(K, ...) scores divided by their sum over the classes, per pixel.

    Pixels whose scores sum to zero (or are not finite) keep NaN, which the kernel
    reports as a bad value naming the pixel.
    """
    work = probs.astype(np.float64 if probs.dtype == np.float64 else np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):
        work /= work.sum(axis=0, keepdims=True)
    return work


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the class axis (0) of (K, H, W) logits, with the usual max shift."""
    work = logits.astype(np.float64 if logits.dtype == np.float64 else np.float32)
    with np.errstate(invalid="ignore", over="ignore"):  # non-finite logits: the kernel says so
        work -= work.max(axis=0, keepdims=True)
        np.exp(work, out=work)
        work /= work.sum(axis=0, keepdims=True)
    return work


def prepare_probs(
    raw: np.ndarray,
    size: tuple[int, int],
    *,
    channels_last: bool = False,
    logits: bool = False,
    normalize: bool = False,
    resize: str | None = None,
    where: str = "pred_probs",
) -> np.ndarray:
    """One image's predictions as stored -> (K, H, W) probabilities the kernel reads.

    In order: classes moved to the front (``channels_last``), upsampled to the mask's
    ``size`` (``resize``; on logits when ``logits``), softmax (``logits``), rows divided by
    their sums (``normalize``). Without any of them the stored array is used as it is (a
    view of the memory map). Sizes that differ from the mask's are refused naming the
    file and the option that fixes them.
    """
    if raw.ndim != 3:
        layout = "(H, W, K)" if channels_last else "(K, H, W)"
        raise InvalidInputError(
            f"{where} has shape {tuple(int(n) for n in raw.shape)}, but its mask is a 2-D "
            f"image: one image's predictions are {layout}."
        )
    probs = raw.transpose(2, 0, 1) if channels_last else raw
    height, width = size
    if probs.shape[1:] != (height, width):
        probs = _fit_size(probs, height, width, resize, where)
    if logits:
        probs = softmax(probs)
    if normalize:
        probs = normalize_rows(probs)
    return np.ascontiguousarray(probs)


def _fit_size(probs: np.ndarray, height: int, width: int, resize: str | None, where: str) -> Any:
    h, w = probs.shape[1:]
    if h == 0 or w == 0:
        raise InvalidInputError(f"{where} is empty ({h}×{w}); its mask is {height}×{width}.")
    smaller = h <= height and w <= width
    if resize is not None and smaller:
        return resize_bilinear(probs, height, width)
    if smaller:
        raise InvalidInputError(
            f"{where} is {h}×{w} but its mask is {height}×{width}; if the model predicts at "
            "a lower resolution, pass --resize-probs bilinear to upsample its predictions "
            "as its own post-processing would."
        )
    raise InvalidInputError(
        f"{where} is {h}×{w} but its mask is {height}×{width}; each image's predictions "
        "must cover its mask pixel for pixel."
    )
