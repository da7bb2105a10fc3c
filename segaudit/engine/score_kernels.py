"""Compiled kernels of ``segaudit score``: p[given label] per pixel and the softmin per image.

Softmin scores need only the probability of each pixel's given label, so
:func:`softmin` reads that one value per pixel (about 1/K of pred_probs when labels
form regions, as they do in segmentation) instead of every class plane. It validates
what it reads: labels outside
0..K-1 (other than the ignore value), and probabilities that are NaN, infinite,
negative or above 1. Per image, in one call, the pixel scores are gathered, checked
and reduced to the softmin while they are still in cache.

The softmin's exponentials (shared with ``scan``'s softmin column) use a branch-free
exp (range reduction by ln 2 and a degree-11 polynomial in Estrin's scheme, relative
error below 1e-14) that the compiler vectorises. Sums run in a fixed order per image, so results
do not depend on batching or on the number of workers.
"""

from __future__ import annotations

import numpy as np

from segaudit.engine.kernels import (
    BAD_SUM,
    FLOAT16_TABLE,
    PROBLEM_KINDS,
    SCORE,
    check_status,
    labels_arg,
    ptr,
)

__all__ = ["PROBLEM_KINDS", "ABOVE_ONE", "softmin"]

# Problem rows, shared with :mod:`segaudit.engine.kernels`; BAD_SUM here means "above 1".
ABOVE_ONE = BAD_SUM


def softmin(
    probs: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    class_stride: int,
    pixel_stride: int,
    ignore: int,
    has_ignore: bool,
    temperature: float,
    tol: float,
    s: np.ndarray,
    scores: np.ndarray,
    scored: np.ndarray,
    problems: np.ndarray,
) -> None:
    """Pixel scores, softmin image scores and scored-pixel counts of a batch.

    ``probs`` (b, K*P) float16/32/64, each image flattened (class planes, or pixels
    with ``class_stride`` 1 for channels-last); ``labels`` (b, P) of any integer type,
    uint64 included (read in place: see :func:`segaudit.engine.kernels.labels_arg`, which
    also says how ``ignore``, any Python int, is compared). Fills ``s`` (b, P; float32
    for float16 input, which it holds exactly; -0.0 reads as +0.0) with p[label] (NaN
    where the label is ignored or invalid), ``scores`` and ``scored`` (b,), and
    ``problems`` (4, 2) with counts and first flat indices.
    """
    b, p = labels.shape
    if probs.shape != (b, num_classes * p):
        raise ValueError(f"probs of shape {probs.shape} do not match labels {labels.shape}")
    given = labels_arg(labels, ignore, has_ignore)
    half = probs.dtype == np.float16
    out_dtype = np.float64 if probs.dtype == np.float64 else np.float32
    check_status(
        SCORE[probs.dtype](
            ptr(probs.view(np.uint16) if half else probs),
            ptr(FLOAT16_TABLE) if half else None,
            b,
            p,
            num_classes,
            class_stride,
            pixel_stride,
            given.address,
            given.ltype,
            given.ignore,
            given.has_ignore,
            temperature,
            tol,
            ptr(s, out_dtype),
            ptr(scores, np.float64),
            ptr(scored, np.int64),
            ptr(problems, np.int64),
        )
    )
