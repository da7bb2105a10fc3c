"""The compiled per-pixel kernels (``_kernels.c``): the only code that touches every probability.

The kernels are plain C, built with the package and called through :mod:`ctypes`,
which releases the GIL, so worker threads run them in parallel. Loading them costs
about a millisecond, where a JIT would cost most of a second at every start.

:func:`scan` walks a batch of images plane by plane (the class axis of (N,K,H,W)
is not the last, so a per-pixel loop over K would stride through memory) in tiles of
pixels whose running state stays in cache, picking each pixel's own class on the way,
so every probability is read exactly once. In that one read it yields, per
pixel, the predicted class (first maximum) and the probability of the given label;
per image, the per-class sums of that probability, the lowest score and the number
of scored pixels; at Confident Learning's resolution, the histogram of the scores
and the records of the mispredicted pixels. It also counts malformed values, so
validation costs no extra pass. float16 is handled through its bit pattern:
non-negative float16 values order like uint16, so maxima are integer compares.

Signed zeros: -0.0 is 0 everywhere; the scores written (p[given label]) are +0.0,
never -0.0, so their bit patterns order like their values (histogram and cut keys).

Labels of every integer type are read in place. The kernels compare a label with the
ignore value as 64-bit patterns, so a uint64 label at 2**63 or above is out of range
(never wrapped into a negative ignore value such as -1), and equals an ignore value
only when that is the same number. An ignore value the labels' type cannot hold
matches no pixel, so the kernels are told there is none (:func:`labels_arg`).

Per-image sums run in an order fixed by the image alone (tile by tile, run of equal
labels by run, in fixed SIMD lanes), so results do not depend on how images are
grouped into batches or on how many workers run.
"""

from __future__ import annotations

import ctypes
import importlib.util
from dataclasses import dataclass
from typing import Any

import numpy as np

# Rows of the ``problems`` array each kernel fills: (count, first flat pixel index).
NONFINITE, NEGATIVE, BAD_SUM, BAD_LABEL = 0, 1, 2, 3
PROBLEM_KINDS = 4

_LABEL_TYPES = {
    np.dtype(np.int8): 0,
    np.dtype(np.uint8): 1,
    np.dtype(np.int16): 2,
    np.dtype(np.uint16): 3,
    np.dtype(np.int32): 4,
    np.dtype(np.uint32): 5,
    np.dtype(np.int64): 6,
}


def _load_library() -> ctypes.CDLL:
    spec = importlib.util.find_spec("segaudit.engine._ckernels")
    if spec is None or spec.origin is None:
        raise ImportError(
            "segaudit's compiled kernels (segaudit/engine/_ckernels) are not built; "
            "reinstall the package (pip install -e . in a checkout)."
        )
    return ctypes.CDLL(spec.origin)


_LIB = _load_library()
_P, _I64, _INT, _F64 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_double


def _declare(name: str, restype: Any, *argtypes: Any) -> Any:
    function = getattr(_LIB, name)
    function.restype = restype
    function.argtypes = list(argtypes)
    return function


class Summary(ctypes.Structure):
    """What a scan kernel adds up besides the per-pixel arrays (``Summary`` in the C file).

    Per image (``low``, ``count``): the lowest score and the number of scored pixels,
    for the softmin. When ``hist`` is set: the histogram of the scores' top 16 bits, up
    to bin ``hist_top`` (higher scores are not counted), and the records of the
    mispredicted pixels, ``found`` of them, in buffers as long as the batch (see
    :data:`segaudit.engine.stream.RECORD_FIELDS`).
    """

    _fields_ = [
        ("hist", ctypes.c_void_p),
        ("hist_top", ctypes.c_int64),
        ("index", ctypes.c_void_p),
        ("pred", ctypes.c_void_p),
        ("pmax", ctypes.c_void_p),
        ("s", ctypes.c_void_p),
        ("label", ctypes.c_void_p),
        ("found", ctypes.c_int64),
        ("low", ctypes.c_void_p),
        ("count", ctypes.c_void_p),
    ]


def make_summary(
    low: np.ndarray,
    count: np.ndarray,
    hist: np.ndarray | None = None,
    records: dict[str, np.ndarray] | None = None,
    hist_top: int = 0xFFFF,
) -> Summary:
    """A :class:`Summary` over caller-owned arrays (which must outlive the kernel call)."""
    summary = Summary(low=ptr(low, np.float64), count=ptr(count, np.int64))
    if hist is not None and records is not None:
        summary.hist = ptr(hist, np.int64)
        summary.hist_top = hist_top
        for name, values in records.items():
            setattr(summary, name, ptr(values))
    return summary


_SCAN_TAIL = (_P, _INT, _I64, _INT, _F64, _I64, _INT, _P, _INT, _P, _P, _P, _P, _P)
_SCAN = {
    np.dtype(np.float32): _declare("scan_f32", _INT, _P, _I64, _I64, _I64, *_SCAN_TAIL),
    np.dtype(np.float64): _declare("scan_f64", _INT, _P, _I64, _I64, _I64, *_SCAN_TAIL),
}
_SCAN_HALF = _declare("scan_f16", _INT, _P, _P, _I64, _I64, _I64, *_SCAN_TAIL)
_SOFTMIN_ARGS = (_P, _I64, _I64, _F64, _P, _P, _P)
_SOFTMIN = {
    np.dtype(np.float32): _declare("softmin_images_f32", None, *_SOFTMIN_ARGS),
    np.dtype(np.float64): _declare("softmin_images_f64", None, *_SOFTMIN_ARGS),
}
_SCORE_ARGS = (
    _P,
    _P,
    _I64,
    _I64,
    _I64,
    _I64,
    _I64,
    _P,
    _INT,
    _I64,
    _INT,
    _F64,
    _F64,
    _P,
    _P,
    _P,
    _P,
)
SCORE = {
    np.dtype(np.float32): _declare("score_f32", _INT, *_SCORE_ARGS),
    np.dtype(np.float64): _declare("score_f64", _INT, *_SCORE_ARGS),
    np.dtype(np.float16): _declare("score_f16", _INT, *_SCORE_ARGS),
}


def ptr(array: np.ndarray, dtype: Any = None) -> int:
    """Address of a C-contiguous array's data, after checking what the kernel assumes."""
    if not array.flags.c_contiguous:
        raise ValueError("kernel arrays must be C-contiguous")
    if dtype is not None and array.dtype != np.dtype(dtype):
        raise TypeError(f"kernel array holds {array.dtype}, expected {np.dtype(dtype)}")
    return array.ctypes.data


@dataclass(frozen=True)
class LabelArgs:
    """Labels as a kernel reads them: the array kept alive, its address and type code,
    and the ignore value as the kernel compares it (a 64-bit pattern) with its flag."""

    labels: np.ndarray
    address: int
    ltype: int
    ignore: int
    has_ignore: bool


def labels_arg(labels: np.ndarray, ignore: int = 0, has_ignore: bool = False) -> LabelArgs:
    """Labels and ignore value for a kernel call, without copying the labels.

    uint64 labels are read as int64 bit patterns: values of 2**63 and above become
    negative, i.e. out of range, unless they are the ignore value, which is passed as
    the same bit pattern. An ignore value outside the labels' type (-1 for uint8 or
    uint64 labels, 2**40 for int32) can match no pixel: the kernel gets none.
    """
    labels = np.ascontiguousarray(labels)
    if labels.dtype.kind not in "iu":
        raise TypeError(f"kernel labels must be integers, got {labels.dtype}")
    if labels.dtype not in _LABEL_TYPES and labels.dtype != np.uint64:  # e.g. big-endian
        labels = labels.astype(f"{labels.dtype.kind}{labels.dtype.itemsize}")
    limits = np.iinfo(labels.dtype)
    applies = bool(has_ignore) and limits.min <= int(ignore) <= limits.max
    bits = int(ignore) if applies else 0
    if bits >= 2**63:
        bits -= 2**64
    if labels.dtype == np.uint64:
        labels = labels.view(np.int64)
    return LabelArgs(labels, labels.ctypes.data, _LABEL_TYPES[labels.dtype], bits, applies)


def check_status(status: int) -> None:
    if status != 0:
        raise MemoryError("a compiled kernel could not allocate its tile buffers")


def float16_table() -> np.ndarray:
    """float32 value of every float16 bit pattern."""
    return np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)


FLOAT16_TABLE = float16_table()


def tile_pixels(num_classes: int, itemsize: int) -> int:
    """Pixels per tile: ~320 KiB of class planes, so the tile's running state stays in L2."""
    return int(max(256, min(16384, (320 * 1024) // max(1, num_classes * itemsize))))


def scan(
    probs: np.ndarray,
    labels: np.ndarray,
    ignore: int,
    has_ignore: bool,
    tol: float,
    tile: int,
    check_sums: bool,
    pred: np.ndarray,
    s: np.ndarray,
    class_sum: np.ndarray,
    class_cnt: np.ndarray,
    problems: np.ndarray,
    summary: Summary,
) -> None:
    """Per-pixel argmax/max/self-confidence of ``probs`` (b,K,P), float16/32/64.

    ``labels`` (b,P); outputs ``pred``/``s`` (b,P), ``class_sum``/``class_cnt``
    (b,K) per image; ``problems`` (4,2) counts malformed values with the first
    offending flat pixel index (image * P + pixel) within the batch; ``summary``
    gathers the rest (see :class:`Summary`). float16 is read through its bits (a
    float32 ``s`` holds every float16 value exactly): -0.0 counts as 0; any
    other pattern with the sign bit or an all-ones exponent is malformed. ``s`` is
    never -0.0. ``ignore`` is any Python int (see :func:`labels_arg`).
    """
    b, k, p = probs.shape
    given = labels_arg(labels, ignore, has_ignore)
    half = probs.dtype == np.float16
    score_dtype = np.float32 if half else probs.dtype
    outputs = (
        ptr(pred),
        int(pred.dtype.itemsize == 2),
        ptr(s, score_dtype),
        ptr(class_sum, np.float64),
        ptr(class_cnt, np.int64),
        ptr(problems, np.int64),
    )
    if half:
        function, inputs = _SCAN_HALF, (ptr(probs.view(np.uint16)), ptr(FLOAT16_TABLE))
    else:
        function, inputs = _SCAN[probs.dtype], (ptr(probs),)
    check_status(
        function(
            *inputs,
            b,
            k,
            p,
            given.address,
            given.ltype,
            given.ignore,
            given.has_ignore,
            tol,
            tile,
            check_sums,
            *outputs,
            ctypes.byref(summary),
        )
    )


def softmin_images(
    s: np.ndarray, temperature: float, low: np.ndarray, count: np.ndarray, scores: np.ndarray
) -> None:
    """Per-image softmin of ``s`` (b,P), NaN entries skipped, in float64 with a max shift.

    score = sum_i s_i w_i, w = softmax((low - s) / T); ``low`` and ``count`` are each
    image's lowest score and number of scored pixels (from the scan kernel); images
    with no scored pixel get NaN.
    """
    b, p = s.shape
    _SOFTMIN[s.dtype](
        ptr(s),
        b,
        p,
        float(temperature),
        ptr(low, np.float64),
        ptr(count, np.int64),
        ptr(scores, np.float64),
    )


# ------------------------------------------------------------------ the region step (_regions.c)

_REGION_LINKS = _declare("region_links", None, _P, _P, _I64, _I64, _I64, _P)
_REGION_DEPTHS = _declare("region_depths", None, _P, _I64, _P)
_REGION_GRAPH = _declare("region_graph", _I64, _P, _I64, _P, _P)
_NEAR_EDGE_ARGS = (_P, _I64, _I64, _I64, _INT, _P, _I64, _I64, _P)
_NEAR_EDGE = {
    np.dtype(np.uint8): _declare("near_edge_u8", None, *_NEAR_EDGE_ARGS),
    np.dtype(np.uint16): _declare("near_edge_u16", None, *_NEAR_EDGE_ARGS),
    np.dtype(np.int32): _declare("near_edge_i32", None, *_NEAR_EDGE_ARGS),
    np.dtype(np.int64): _declare("near_edge_i64", None, *_NEAR_EDGE_ARGS),
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


_REGION_FEATURES = _declare(
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
