"""Compiled per-pixel kernels: the only code that touches every probability.

One call walks a batch of images plane by plane (the class axis of (N,K,H,W) is
not the last, so a per-pixel loop over K would stride through memory) in tiles of
pixels small enough that a tile's K planes stay in cache. In one read it yields,
per pixel, the predicted class (first maximum), its probability and the
probability of the given label, and per image the per-class sums of that
probability; it also counts malformed values so validation costs no extra pass.

float16 is handled through its bit pattern: non-negative float16 values order like
uint16, so maxima are found with integer compares and converted once through a
65536-entry lookup table.

Per-image sums run in a fixed pixel order, so results do not depend on how images
are grouped into batches or on how many workers run.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# Rows of the ``problems`` array each kernel fills: (count, first flat pixel index).
NONFINITE, NEGATIVE, BAD_SUM, BAD_LABEL = 0, 1, 2, 3
PROBLEM_KINDS = 4

F16_INF_BITS = 0x7C00
F16_NEG_ZERO_BITS = 0x8000


def float16_table() -> np.ndarray:
    """float32 value of every float16 bit pattern."""
    return np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)


def tile_pixels(num_classes: int, itemsize: int) -> int:
    """Pixels per tile so that one tile's K planes (~256 KiB) stay in L2 cache."""
    return int(max(256, min(16384, (320 * 1024) // max(1, num_classes * itemsize))))


@njit(cache=True, inline="always")
def _note(problems: np.ndarray, kind: int, flat_index: int) -> None:
    if problems[kind, 0] == 0:
        problems[kind, 1] = flat_index
    problems[kind, 0] += 1


@njit(nogil=True, cache=True)
def scan_float(
    probs: np.ndarray,
    labels: np.ndarray,
    ignore: int,
    has_ignore: bool,
    tol: float,
    tile: int,
    check_sums: bool,
    pred: np.ndarray,
    pmax: np.ndarray,
    s: np.ndarray,
    class_sum: np.ndarray,
    class_cnt: np.ndarray,
    problems: np.ndarray,
) -> None:
    """Per-pixel argmax/max/self-confidence for float32/float64 ``probs`` (b,K,P).

    ``labels`` (b,P); outputs ``pred``/``pmax``/``s`` (b,P), ``class_sum``/``class_cnt``
    (b,K) per image; ``problems`` (4,2) counts malformed values with the first
    offending flat pixel index (image * P + pixel) within the batch.
    """
    b, k_classes, p_pixels = probs.shape
    best = np.empty(tile, probs.dtype)
    low = np.empty(tile, probs.dtype)
    arg = np.empty(tile, np.int32)
    tot = np.empty(tile, probs.dtype)
    for i in range(b):
        for t0 in range(0, p_pixels, tile):
            n = min(tile, p_pixels - t0)
            plane = probs[i, 0]
            for q in range(n):
                v = plane[t0 + q]
                best[q] = v
                low[q] = v
                arg[q] = 0
                tot[q] = v
            for k in range(1, k_classes):
                plane = probs[i, k]
                for q in range(n):  # branch-free so that it vectorises
                    v = plane[t0 + q]
                    top = best[q]
                    tot[q] += v
                    arg[q] = k if v > top else arg[q]
                    best[q] = max(v, top)
                    low[q] = min(v, low[q])
            for q in range(n):
                p = t0 + q
                flat = i * p_pixels + p
                total = tot[q]
                if not np.isfinite(total):
                    _note(problems, NONFINITE, flat)
                elif low[q] < 0:
                    _note(problems, NEGATIVE, flat)
                elif check_sums and abs(total - 1.0) > tol:
                    _note(problems, BAD_SUM, flat)
                pred[i, p] = arg[q]
                pmax[i, p] = best[q]
                label = labels[i, p]
                if has_ignore and label == ignore:
                    s[i, p] = np.nan
                elif label < 0 or label >= k_classes:
                    _note(problems, BAD_LABEL, flat)
                    s[i, p] = np.nan
                else:
                    v = probs[i, label, p]
                    s[i, p] = v
                    class_sum[i, label] += v
                    class_cnt[i, label] += 1


@njit(nogil=True, cache=True)
def scan_half(
    bits: np.ndarray,
    table: np.ndarray,
    labels: np.ndarray,
    ignore: int,
    has_ignore: bool,
    tol: float,
    tile: int,
    check_sums: bool,
    pred: np.ndarray,
    pmax: np.ndarray,
    s: np.ndarray,
    class_sum: np.ndarray,
    class_cnt: np.ndarray,
    problems: np.ndarray,
) -> None:
    """The float16 twin of :func:`scan_float`, on the uint16 view ``bits`` (b,K,P).

    Outputs are float32 (every float16 value is exact in float32). -0.0 counts as 0;
    any other pattern with the sign bit or an all-ones exponent is malformed.
    """
    b, k_classes, p_pixels = bits.shape
    best = np.empty(tile, np.uint16)
    worst = np.empty(tile, np.uint16)
    arg = np.empty(tile, np.int32)
    tot = np.empty(tile, np.float32)
    # float16 -> float32 without a table gather: shift the bits into a float32's
    # place and rescale by 2**112 (exact for normals, subnormals and zero).
    shifted = np.empty(tile, np.uint32)
    as_float = shifted.view(np.float32)
    rescale = np.float32(2.0**112)
    for i in range(b):
        for t0 in range(0, p_pixels, tile):
            n = min(tile, p_pixels - t0)
            plane = bits[i, 0]
            for q in range(n):
                v = plane[t0 + q]
                v = 0 if v == F16_NEG_ZERO_BITS else v
                best[q] = v
                worst[q] = v
                arg[q] = 0
                tot[q] = table[v]
            for k in range(1, k_classes):
                plane = bits[i, k]
                for q in range(n):  # branch-free so that it vectorises
                    v = plane[t0 + q]
                    v = 0 if v == F16_NEG_ZERO_BITS else v
                    top = best[q]
                    shifted[q] = np.uint32(v & 0x7FFF) << 13
                    arg[q] = k if v > top else arg[q]
                    best[q] = max(v, top)
                    worst[q] = max(v, worst[q])
                for q in range(n):
                    tot[q] += as_float[q] * rescale
            for q in range(n):
                p = t0 + q
                flat = i * p_pixels + p
                if worst[q] >= F16_NEG_ZERO_BITS:
                    _note(problems, NEGATIVE, flat)
                elif worst[q] >= F16_INF_BITS:
                    _note(problems, NONFINITE, flat)
                elif check_sums and abs(tot[q] - 1.0) > tol:
                    _note(problems, BAD_SUM, flat)
                pred[i, p] = arg[q]
                pmax[i, p] = table[best[q]]
                label = labels[i, p]
                if has_ignore and label == ignore:
                    s[i, p] = np.nan
                elif label < 0 or label >= k_classes:
                    _note(problems, BAD_LABEL, flat)
                    s[i, p] = np.nan
                else:
                    v = bits[i, label, p]
                    if v == F16_NEG_ZERO_BITS:
                        v = 0
                    value = table[v]
                    s[i, p] = value
                    class_sum[i, label] += value
                    class_cnt[i, label] += 1


_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_SHIFTER = 6755399441055744.0  # 1.5 * 2**52: adding it rounds to an integer in the low bits
_EXP_FLOOR = -708.0  # exp below this is < 3.3e-308: counted as 0
_C = tuple(1.0 / math.factorial(i) for i in range(14))
_C2, _C3, _C4, _C5, _C6, _C7, _C8, _C9, _C10, _C11, _C12, _C13 = _C[2:]


@njit(nogil=True, cache=True, error_model="numpy", fastmath={"contract", "reassoc"})
def weighted_sums(
    s: np.ndarray, low: float, inv_t: float, e: np.ndarray, t: np.ndarray, sv: np.ndarray
) -> tuple[float, float]:
    """sum(s * w) and sum(w) with w = exp((low - s) / T) over non-NaN ``s`` (one image)."""
    n = s.shape[0]
    tbits = t.view(np.int64)
    num = 0.0
    den = 0.0
    tile = e.shape[0]
    for t0 in range(0, n, tile):
        m = min(tile, n - t0)
        for q in range(m):  # branch-free so that it vectorises
            v = np.float64(s[t0 + q])
            x = (low - v) * inv_t
            keep = x >= _EXP_FLOOR  # False for NaN
            x = x if keep else 0.0
            sv[q] = v if keep else 0.0
            shifted = x * _LOG2E + _SHIFTER
            k = shifted - _SHIFTER
            r = (x - k * _LN2_HI) - k * _LN2_LO
            p = _C13
            p = p * r + _C12
            p = p * r + _C11
            p = p * r + _C10
            p = p * r + _C9
            p = p * r + _C8
            p = p * r + _C7
            p = p * r + _C6
            p = p * r + _C5
            p = p * r + _C4
            p = p * r + _C3
            p = p * r + _C2
            p = p * r + 1.0
            p = p * r + 1.0
            e[q] = p if keep else 0.0
            t[q] = shifted
        for q in range(m):  # 2**k from the integer left in the shifted value's low bits
            tbits[q] = (tbits[q] + 1023) << 52
        for q in range(m):
            w = e[q] * t[q]
            num += sv[q] * w
            den += w
    return num, den


SOFTMIN_TILE = 2048


@njit(nogil=True, cache=True)
def softmin_images(
    s: np.ndarray, temperature: float, scores: np.ndarray, scored: np.ndarray
) -> None:
    """Per-image softmin of ``s`` (b,P), NaN entries skipped, in float64 with a max shift.

    score = sum_i s_i w_i, w = softmax((1 - s) / T); images with no scored pixel get NaN.
    """
    b, p_pixels = s.shape
    e = np.empty(SOFTMIN_TILE)
    t = np.empty(SOFTMIN_TILE)
    sv = np.empty(SOFTMIN_TILE)
    for i in range(b):
        low = np.inf
        count = 0
        for p in range(p_pixels):
            v = np.float64(s[i, p])
            if v == v:
                count += 1
                low = min(low, v)
        scored[i] = count
        if count == 0:
            scores[i] = np.nan
            continue
        num, den = weighted_sums(s[i], low, 1.0 / temperature, e, t, sv)
        scores[i] = num / den


@njit(nogil=True, cache=True)
def summarize(
    pred: np.ndarray,
    pmax: np.ndarray,
    s: np.ndarray,
    s_bits: np.ndarray,
    labels: np.ndarray,
    shift: int,
    hist: np.ndarray,
    mis_pred: np.ndarray,
    mis_pmax: np.ndarray,
) -> int:
    """One pass over a batch's compact arrays (flattened): the histogram of the
    self-confidences' top 16 bits and the mispredicted pixels' class and probability.

    Ignored pixels (s is NaN) are skipped; returns how many mispredicted pixels were
    written to ``mis_pred``/``mis_pmax``.
    """
    found = 0
    for p in range(s.shape[0]):
        v = s[p]
        if v != v:
            continue
        hist[s_bits[p] >> shift] += 1
        if pred[p] != labels[p]:
            mis_pred[found] = pred[p]
            mis_pmax[found] = pmax[p]
            found += 1
    return found
