"""Compiled loops of the region step (``_regions.c``), over one image's issue pixels only.

:mod:`segaudit.engine.regions` lifts issue pixels to regions: these give it each issue
pixel's 8-neighbour links within its class pair, the links as a CSR graph (the
components come from scipy's csgraph), each pixel's chessboard depth inside its region,
whether it lies near an edge between two labelled classes, and the per-region sums and
boxes, in one pass each. Issue pixels come as ascending flat indices, so every
neighbour lookup is a merge of two ascending sequences.
"""

from __future__ import annotations

import ctypes

import numpy as np

from segaudit.engine.kernels import declare, ptr

_P, _I64, _INT = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int

_REGION_LINKS = declare("region_links", None, _P, _P, _I64, _I64, _I64, _P)
_REGION_DEPTHS = declare("region_depths", None, _P, _I64, _P)
_REGION_GRAPH = declare("region_graph", _I64, _P, _I64, _P, _P)
_NEAR_EDGE_ARGS = (_P, _I64, _I64, _I64, _INT, _P, _I64, _I64, _P)
_NEAR_EDGE = {
    np.dtype(np.uint8): declare("near_edge_u8", None, *_NEAR_EDGE_ARGS),
    np.dtype(np.uint16): declare("near_edge_u16", None, *_NEAR_EDGE_ARGS),
    np.dtype(np.int32): declare("near_edge_i32", None, *_NEAR_EDGE_ARGS),
    np.dtype(np.int64): declare("near_edge_i64", None, *_NEAR_EDGE_ARGS),
}


def region_links(shape: tuple[int, int], index: np.ndarray, pair: np.ndarray) -> np.ndarray:
    """(8, n): for each issue pixel (``index``: ascending flat indices, int64), the
    position in ``index`` of its neighbour in each of the 8 directions when that is an
    issue pixel of the same ``pair`` code, else -1; rows 0-3 the directions right,
    down-left, down, down-right, rows 4-7 their opposites."""
    index = np.ascontiguousarray(index, np.int64)
    pair = np.ascontiguousarray(pair, np.int64)
    found = np.empty((8, index.size), np.int64)
    _REGION_LINKS(ptr(index), ptr(pair), index.size, shape[0], shape[1], ptr(found))
    return found


def region_graph(found: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The forward links of :func:`region_links` as CSR arrays (indptr, targets), int32:
    row i lists the positions of pixel i's right, down-left, down and down-right
    neighbours of its pair. Images of 2**31 issue pixels or more are refused."""
    found = np.ascontiguousarray(found, np.int64)
    n = found.shape[1]
    if 4 * n >= 2**31:
        raise ValueError(f"{n:,} issue pixels in one image: more than region graphs index")
    indptr = np.empty(n + 1, np.int32)
    targets = np.empty(4 * n, np.int32)
    count = _REGION_GRAPH(ptr(found), n, ptr(indptr), ptr(targets))
    return indptr, targets[:count]


def region_depths(found: np.ndarray) -> np.ndarray:
    """Each issue pixel's chessboard distance from outside its region (or the image),
    from :func:`region_links`' links: 1 on the rim."""
    found = np.ascontiguousarray(found, np.int64)
    depth = np.empty(found.shape[1], np.int64)
    _REGION_DEPTHS(ptr(found), found.shape[1], ptr(depth))
    return depth


def near_edge(labels: np.ndarray, index: np.ndarray, reach: int, ignore: int | None) -> np.ndarray:
    """Whether each flat pixel ``index`` of ``labels`` (H, W) lies within ``reach``
    pixels (chessboard) of either pixel of a 4-adjacent pair of different labelled
    (not ``ignore``) classes."""
    if labels.dtype not in _NEAR_EDGE:
        labels = labels.astype(np.int64)
    labels = np.ascontiguousarray(labels)
    index = np.ascontiguousarray(index, np.int64)
    limits = np.iinfo(labels.dtype)
    applies = ignore is not None and limits.min <= int(ignore) <= limits.max
    near = np.empty(index.size, np.uint8)
    _NEAR_EDGE[labels.dtype](
        ptr(labels), labels.shape[0], labels.shape[1], int(ignore) if applies else 0,
        int(applies), ptr(index), index.size, int(reach), ptr(near),
    )  # fmt: skip
    return near.view(bool)


_REGION_FEATURES = declare(
    "region_features", None, _P, _P, _P, _P, _P, _P, _I64, _I64, _I64, _P, _P
)


def region_features(
    index: np.ndarray,
    number: np.ndarray,
    score: np.ndarray,
    top: np.ndarray,
    near: np.ndarray,
    depth: np.ndarray,
    width: int,
    count: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Per region (``number`` 0..count-1 of each kept issue pixel, ``index`` ascending):
    ints (7, count) = pixels, x0, y0, x1, y1, thickness (the largest ``depth``) and the
    position of the region's first pixel, and
    sums (5, count) of x, y, ``score``, ``top`` and ``near``, added in pixel order."""
    args = [
        np.ascontiguousarray(index, np.int64),
        np.ascontiguousarray(number, np.int64),
        np.ascontiguousarray(score, np.float64),
        np.ascontiguousarray(top, np.float64),
        np.ascontiguousarray(near, np.uint8),
        np.ascontiguousarray(depth, np.int64),
    ]
    ints = np.empty((7, count), np.int64)
    sums = np.empty((5, count), np.float64)
    _REGION_FEATURES(*(ptr(a) for a in args), args[0].size, width, count, ptr(ints), ptr(sums))
    return ints, sums
