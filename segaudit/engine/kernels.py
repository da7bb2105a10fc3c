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


def declare(name: str, restype: Any, *argtypes: Any) -> Any:
    """The shared object's function ``name``, with its C signature set for ctypes."""
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
    np.dtype(np.float32): declare("scan_f32", _INT, _P, _I64, _I64, _I64, *_SCAN_TAIL),
    np.dtype(np.float64): declare("scan_f64", _INT, _P, _I64, _I64, _I64, *_SCAN_TAIL),
}
_SCAN_HALF = declare("scan_f16", _INT, _P, _P, _I64, _I64, _I64, *_SCAN_TAIL)
_SOFTMIN_ARGS = (_P, _I64, _I64, _F64, _P, _P, _P)
_SOFTMIN = {
    np.dtype(np.float32): declare("softmin_images_f32", None, *_SOFTMIN_ARGS),
    np.dtype(np.float64): declare("softmin_images_f64", None, *_SOFTMIN_ARGS),
}
_SOFTMIN_PARTS = {
    np.dtype(np.float32): declare("softmin_parts_f32", None, _P, _I64, _F64, _F64, _P),
    np.dtype(np.float64): declare("softmin_parts_f64", None, _P, _I64, _F64, _F64, _P),
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
    np.dtype(np.float32): declare("score_f32", _INT, *_SCORE_ARGS),
    np.dtype(np.float64): declare("score_f64", _INT, *_SCORE_ARGS),
    np.dtype(np.float16): declare("score_f16", _INT, *_SCORE_ARGS),
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


def softmin_parts(s: np.ndarray, temperature: float, low: float) -> tuple[float, float]:
    """The softmin's two sums over ``s`` (any shape, NaN skipped), shifted by ``low``:
    (sum s·w, sum w) with w = exp((low - s) / T). Slabs of one volume, each shifted by
    its own lowest score, combine into the volume's softmin (see
    :func:`segaudit.engine.softmin.combine_softmin`)."""
    flat = np.ascontiguousarray(s).reshape(-1)
    parts = np.zeros(2, np.float64)
    _SOFTMIN_PARTS[flat.dtype](ptr(flat), flat.size, float(temperature), float(low), ptr(parts))
    return float(parts[0]), float(parts[1])
