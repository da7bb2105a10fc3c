"""Downsampling: average probabilities over d×d blocks, pool labels by mode or mean.

The probability pooling repeats the reference's numpy expression exactly (mean in
the input dtype, then renormalise) so results match it bit for bit.
"""

from __future__ import annotations

import numpy as np

from segaudit.errors import InvalidInputError

LABEL_POOLINGS = ("mode", "mean")


def check_divisible(height: int, width: int, factor: int, where: str) -> None:
    """Downsampling needs H and W to be multiples of the factor."""
    if factor < 1:
        raise InvalidInputError(f"--downsample must be a positive integer, got {factor}.")
    if height % factor or width % factor:
        raise InvalidInputError(
            f"{where}: height {height} and width {width} are not both divisible by "
            f"--downsample {factor}; pick a factor that divides both, or 1."
        )


def pool_probs(probs: np.ndarray, factor: int) -> np.ndarray:
    """Block-mean of (b,K,H,W) probabilities, renormalised to sum to 1 per pixel."""
    b, k, h, w = probs.shape
    small = probs.reshape((b, k, h // factor, factor, w // factor, factor)).mean((5, 3))
    return small / np.expand_dims(small.sum(axis=1), 1)


def _blocks(labels: np.ndarray, factor: int) -> np.ndarray:
    """(b,H,W) -> (b,H/d,W/d,d*d): each block's pixels on the last axis."""
    b, h, w = labels.shape
    blocks = labels.reshape(b, h // factor, factor, w // factor, factor).transpose(0, 1, 3, 2, 4)
    return blocks.reshape(b, h // factor, w // factor, factor * factor)


def pool_labels(labels: np.ndarray, factor: int, method: str, ignore: int | None) -> np.ndarray:
    """Pool (b,H,W) labels over d×d blocks; the result keeps the labels' type.

    ``mode``: the most frequent non-ignored label, ties to the smaller class id.
    ``mean``: the rounded mean (the reference's behaviour); with an ignore value, the
    mean of the non-ignored pixels. A block whose pixels are all ignored is ignored.
    The labels were checked already (every one a class or the ignore value), so the
    ignore value, whatever its size, is masked out before any arithmetic.
    """
    raw = _blocks(labels, factor)
    valid = np.ones(raw.shape, bool) if ignore is None else raw != ignore
    blocks = np.where(valid, raw, 0).astype(np.int64)
    if method == "mean":
        pooled = _pool_mean(blocks, valid, ignore)
    else:
        pooled = _pool_mode(blocks, valid)
    pooled = pooled.astype(labels.dtype)
    unlabelled = ~valid.any(axis=-1)
    if unlabelled.any():  # only when the ignore value is one of the labels' values
        pooled[unlabelled] = ignore
    return pooled


def _pool_mean(blocks: np.ndarray, valid: np.ndarray, ignore: int | None) -> np.ndarray:
    if ignore is None:
        return np.round(blocks.mean(axis=-1)).astype(np.int64)
    counts = valid.sum(axis=-1)
    sums = np.where(valid, blocks, 0).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.round(sums / np.maximum(counts, 1))
    return means.astype(np.int64)


def _pool_mode(blocks: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Majority vote per block without Python loops: count matches pairwise (d⁴ compares)."""
    n = blocks.shape[-1]
    votes = np.zeros(blocks.shape, np.int64)
    for j in range(n):
        votes += (blocks == blocks[..., j : j + 1]) & valid[..., j : j + 1]
    votes = np.where(valid, votes, -1)
    # Highest vote wins; among equal votes the smallest class id.
    big = np.int64(blocks.max(initial=0) + 1)
    key = votes * big - blocks
    winner = np.argmax(key, axis=-1)
    return np.take_along_axis(blocks, winner[..., None], axis=-1)[..., 0]
