"""Which class pairs annotators confuse: the swap table over issue pixels.

Every function streams over batches of images with ``np.bincount``, so memory
stays flat in N, and accepts numpy arrays, memmaps and Zarr arrays alike. The
per-pixel predicted class comes either from a run's compact ``pred_labels``
array or, for the reference-compatible API, from an :class:`ArgmaxView` over
``pred_probs`` (argmax over the class axis, first maximum on ties).

Filters (as the design contract says): ``classes`` keeps issue pixels whose
given *or* predicted class is listed; ``exclude`` drops issue pixels whose given
*or* predicted class is listed. The reference's ``common_label_issues`` drops
only pixels whose *predicted* class is excluded; see :func:`common_label_issues`.
"""

from __future__ import annotations

import contextlib
import csv
import os
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segaudit.errors import InvalidInputError, OutputWriteError
from segaudit.progress import NullProgress, Progress

BATCH_BYTES = 16 * 2**20
"""Bytes of input read per batch of images (a few batches live at once)."""
DEFAULT_TOP = 20
SWAP_COLUMNS = (
    "given_id",
    "given_name",
    "predicted_id",
    "predicted_name",
    "pixels",
    "share",
    "images",
)


class ArgmaxView:
    """Predicted labels (N,H,W) computed lazily from pred_probs (N,K,H,W), batch by batch."""

    def __init__(self, pred_probs: Any) -> None:
        if len(pred_probs.shape) != 4:
            raise InvalidInputError(
                f"pred_probs must have shape (N, K, H, W); got {tuple(pred_probs.shape)}."
            )
        self.pred_probs = pred_probs
        n, k, h, w = (int(d) for d in pred_probs.shape)
        self.shape = (n, h, w)
        self.num_classes = k
        self.bytes_per_image = k * h * w * np.dtype(pred_probs.dtype).itemsize

    def __getitem__(self, key: int | slice) -> np.ndarray:
        probs = np.asarray(self.pred_probs[key])
        return probs.argmax(axis=0 if isinstance(key, (int, np.integer)) else 1)


@dataclass
class IssueTally:
    """Counts over issue pixels that passed the filters.

    ``pixels[g, p]`` and ``images[g, p]`` count issue pixels (and images with at
    least one such pixel) whose given class is g and predicted class is p;
    ``per_image[i]`` counts image i's issue pixels.
    """

    pixels: np.ndarray
    images: np.ndarray
    per_image: np.ndarray

    @property
    def total(self) -> int:
        return int(self.per_image.sum())

    def rows(self, class_names: Sequence[str]) -> list[dict[str, Any]]:
        """Non-zero (given, predicted) pairs, most pixels first, ties by given then predicted id."""
        flat = self.pixels.ravel()
        nonzero = np.flatnonzero(flat)
        order = nonzero[np.argsort(-flat[nonzero], kind="stable")]
        k = self.pixels.shape[0]
        total = int(flat.sum())
        rows = []
        for code in order.tolist():
            given, predicted = divmod(code, k)
            rows.append(
                {
                    "given_id": given,
                    "given_name": class_names[given],
                    "predicted_id": predicted,
                    "predicted_name": class_names[predicted],
                    "pixels": int(flat[code]),
                    "share": int(flat[code]) / total,
                    "images": int(self.images[given, predicted]),
                }
            )
        return rows


def image_batches(
    num_images: int, bytes_per_image: int, budget: int = BATCH_BYTES
) -> Iterator[slice]:
    """Consecutive slices of images whose inputs take about ``budget`` bytes."""
    step = max(1, budget // max(1, bytes_per_image))
    for start in range(0, num_images, step):
        yield slice(start, min(num_images, start + step))


def _itemsize(array: Any) -> int:
    return np.dtype(array.dtype).itemsize


def keep_mask(
    issues: np.ndarray,
    given: np.ndarray | None,
    predicted: np.ndarray | None,
    num_classes: int,
    *,
    classes: Sequence[int] = (),
    exclude: Sequence[int] = (),
    ignore_index: int | None = None,
) -> np.ndarray:
    """Issue pixels with a valid given label (0..K-1, not ignored) that pass the class filters."""
    keep = np.asarray(issues, dtype=bool)
    sides = [side for side in (given, predicted) if side is not None]
    if given is not None:
        keep = keep & (given >= 0) & (given < num_classes)
        if ignore_index is not None:
            keep &= given != ignore_index
    if classes:
        involved = np.zeros_like(keep)
        for side in sides:
            involved |= np.isin(side, classes)
        keep = keep & involved
    for side in sides if exclude else ():
        keep = keep & ~np.isin(side, exclude)
    return keep


def check_filters(num_classes: int, classes: Sequence[int], exclude: Sequence[int]) -> None:
    """Class ids must be in 0..K-1."""
    for value in (*classes, *exclude):
        if not 0 <= int(value) < num_classes:
            raise InvalidInputError(f"class id {value} is outside 0..{num_classes - 1}.")


def tally_issues(
    issues: Any,
    labels: Any | None,
    predicted: Any | None,
    num_classes: int,
    *,
    classes: Sequence[int] = (),
    exclude: Sequence[int] = (),
    ignore_index: int | None = None,
    progress: Progress | None = None,
    batch_bytes: int = BATCH_BYTES,
) -> IssueTally:
    """Count filtered issue pixels per (given, predicted) pair and per image, streaming.

    ``predicted`` is an (N,H,W) array of predicted classes or an :class:`ArgmaxView`.
    Without ``labels`` or ``predicted`` only ``per_image`` is filled. Pixels whose
    given label is ``ignore_index`` or outside 0..K-1 never count.
    """
    check_filters(num_classes, classes, exclude)
    if (classes or exclude) and labels is None and predicted is None:
        raise InvalidInputError("class filters need labels or predictions to filter by.")
    progress = progress or NullProgress()
    num_images = int(issues.shape[0])
    k2 = num_classes * num_classes
    pixels = np.zeros(k2, dtype=np.int64)
    images = np.zeros(k2, dtype=np.int64)
    per_image = np.zeros(num_images, dtype=np.int64)
    per_pixel = int(np.prod(issues.shape[1:])) if num_images else 0
    bytes_per_image = per_pixel * (1 + (_itemsize(labels) if labels is not None else 0))
    if isinstance(predicted, ArgmaxView):
        bytes_per_image += predicted.bytes_per_image
    elif predicted is not None:
        bytes_per_image += per_pixel * _itemsize(predicted)
    progress.start("Counting issue pixels", num_images)
    for batch in image_batches(num_images, bytes_per_image, batch_bytes):
        issue_batch = np.asarray(issues[batch], dtype=bool)
        given = np.asarray(labels[batch]) if labels is not None else None
        pred = np.asarray(predicted[batch]) if predicted is not None else None
        keep = keep_mask(
            issue_batch,
            given,
            pred,
            num_classes,
            classes=classes,
            exclude=exclude,
            ignore_index=ignore_index,
        )
        counts = keep.sum(axis=(1, 2))
        per_image[batch] = counts
        if given is not None and pred is not None and counts.any():
            code = given[keep].astype(np.int64) * num_classes + pred[keep].astype(np.int64)
            pixels += np.bincount(code, minlength=k2)
            image_of = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
            pairs_per_image = np.unique(image_of * k2 + code)
            images += np.bincount(pairs_per_image % k2, minlength=k2)
        progress.advance(len(counts))
    progress.finish()
    shape = (num_classes, num_classes)
    return IssueTally(pixels.reshape(shape), images.reshape(shape), per_image)


def resolve_classes(specs: Sequence[str | int], class_names: Sequence[str]) -> list[int]:
    """Class ids for ids or names given by a user (exact name first, then case-insensitive)."""
    ids: list[int] = []
    lowered = [name.lower() for name in class_names]
    for spec in specs:
        text = str(spec).strip()
        if text in class_names:
            ids.append(list(class_names).index(text))
        elif text.lstrip("-").isdigit():
            value = int(text)
            if not 0 <= value < len(class_names):
                raise InvalidInputError(
                    f"class id {value} is outside 0..{len(class_names) - 1}; "
                    "pass an id in range or a class name."
                )
            ids.append(value)
        elif lowered.count(text.lower()) == 1:
            ids.append(lowered.index(text.lower()))
        else:
            shown = ", ".join(class_names[:12]) + (", ..." if len(class_names) > 12 else "")
            raise InvalidInputError(
                f"unknown class {text!r}; use an id 0..{len(class_names) - 1} or one of: {shown}."
            )
    return sorted(set(ids))


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only on success."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as error:
        raise OutputWriteError(
            f"writing {path} failed ({error.strerror or error}); check the folder is writable."
        ) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_swaps_csv(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    """Write the swap table as CSV, atomically."""
    with atomic_output(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=SWAP_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "share": f"{row['share']:.6f}"})
    return path


def default_names(num_classes: int, class_names: Sequence[str] | None) -> list[str]:
    """The given names, or ``"0"``, ``"1"``, ... as the reference shows unnamed classes."""
    if class_names is None:
        return [str(i) for i in range(num_classes)]
    if len(class_names) < num_classes:
        raise InvalidInputError(
            f"class_names has {len(class_names)} names but the data has {num_classes} classes."
        )
    return [str(name) for name in class_names]


def common_label_issues(
    issues: Any,
    labels: Any,
    pred_probs: Any,
    *,
    class_names: Sequence[str] | None = None,
    exclude: Sequence[int] | None = None,
    top: int | None = None,
    verbose: bool = False,
) -> list[dict[str, Any]]:
    """How often each given label is flagged as each predicted label (reference-compatible).

    Returns up to ``top`` (default 20, as the reference) rows, most issue pixels
    first, each a dict with the reference DataFrame's columns ``given_label``,
    ``predicted_label`` (class names, or ids as strings) and ``num_pixel_issues``,
    plus ``given_id``, ``predicted_id`` and ``num_images``.

    ``exclude`` drops issue pixels whose given or predicted class is excluded. The
    reference drops only those whose *predicted* class is excluded, so its table
    still lists rows whose given class was meant to be excluded; without exclude
    both agree exactly. ``verbose=True`` prints one line per row, as the reference
    does (the only place segaudit's library prints, and only when asked).
    """
    predicted = ArgmaxView(pred_probs)
    if tuple(labels.shape) != predicted.shape:
        raise InvalidInputError(
            f"labels must have shape (N, H, W) = {predicted.shape} to match pred_probs "
            f"{tuple(pred_probs.shape)}; got {tuple(labels.shape)}."
        )
    names = default_names(predicted.num_classes, class_names)
    tally = tally_issues(
        issues, labels, predicted, predicted.num_classes, exclude=tuple(exclude or ())
    )
    rows = [
        {
            "given_label": row["given_name"],
            "predicted_label": row["predicted_name"],
            "num_pixel_issues": row["pixels"],
            "given_id": row["given_id"],
            "predicted_id": row["predicted_id"],
            "num_images": row["images"],
        }
        for row in tally.rows(names)[: DEFAULT_TOP if top is None else top]
    ]
    if verbose:
        for row in rows:
            print(
                f"Class '{row['given_label']}' is potentially mislabeled as class for "
                f"'{row['predicted_label']}' {row['num_pixel_issues']} pixels in the dataset"
            )
    return rows


def filter_by_class(
    class_index: int | Sequence[int], issues: Any, labels: Any, pred_probs: Any
) -> np.ndarray:
    """Issues whose given or predicted class is ``class_index`` (same mask as the reference)."""
    predicted = ArgmaxView(pred_probs)
    out = np.zeros(tuple(int(d) for d in issues.shape), dtype=bool)
    bytes_per_image = predicted.bytes_per_image + out[0].size * (1 + _itemsize(labels))
    for batch in image_batches(out.shape[0], bytes_per_image):
        involved = np.isin(np.asarray(labels[batch]), class_index)
        involved |= np.isin(predicted[batch], class_index)
        out[batch] = np.asarray(issues[batch], dtype=bool) & involved
    return out


def run_swaps(
    run: Any,
    *,
    classes: Sequence[int] = (),
    exclude: Sequence[int] = (),
    progress: Progress | None = None,
) -> IssueTally:
    """The swap tally of a complete run, read from its compact per-pixel arrays."""
    return tally_issues(
        run.array("issues"),
        run.array("labels"),
        run.array("pred_labels"),
        run.num_classes,
        classes=classes,
        exclude=exclude,
        ignore_index=run.ignore_index,
        progress=progress,
    )
