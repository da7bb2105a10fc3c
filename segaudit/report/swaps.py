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
import errno
import os
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segaudit.errors import (
    InvalidInputError,
    OutputWriteError,
    RunDirectoryError,
    SegauditError,
)
from segaudit.progress import NullProgress, Progress
from segaudit.safetext import csv_cell, printable

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
    "regions",
)


def check_array(
    value: Any, name: str, axes: str, shape: Sequence[int | None] | None = None
) -> tuple[int, ...]:
    """The shape of the array argument ``name``, checked against ``axes`` such as "N, H, W".

    Anything without a shape and a dtype (a list, None, a string) is a TypeError and a
    wrong rank or size a ValueError, each naming the argument, where numpy would raise
    an AttributeError deep inside. ``shape`` gives the sizes the other arguments fixed
    (None where any size goes).
    """
    rank = axes.count(",") + 1
    if isinstance(value, str | bytes) or not all(
        hasattr(value, attribute) for attribute in ("shape", "dtype", "__getitem__")
    ):
        hint = f"; pass numpy.asarray({name})" if isinstance(value, list | tuple) else ""
        raise TypeError(
            f"{name} must be an array of shape ({axes}) (numpy, memmap or Zarr); "
            f"got {type(value).__name__}{hint}."
        )
    got = tuple(int(n) for n in value.shape)
    expected = tuple(shape) if shape is not None else (None,) * rank
    if len(got) != rank or any(e not in (None, g) for e, g in zip(expected, got, strict=True)):
        sizes = ", ".join("?" if e is None else str(e) for e in expected)
        raise InvalidInputError(
            f"{name} must have shape ({axes}) = ({sizes}) to match the other arrays; got {got}."
            if shape is not None
            else f"{name} must have shape ({axes}); got {got}."
        )
    return got


def check_top(top: Any) -> None:
    """``top`` is None or a whole number (a TypeError naming it otherwise)."""
    if top is not None and (isinstance(top, bool) or not isinstance(top, int | np.integer)):
        raise TypeError(f"top must be a whole number or None; got {type(top).__name__}.")


class ArgmaxView:
    """Predicted labels (N,H,W) computed lazily from pred_probs (N,K,H,W), batch by batch."""

    def __init__(self, pred_probs: Any) -> None:
        check_array(pred_probs, "pred_probs", "N, K, H, W")
        self.pred_probs = pred_probs
        n, k, h, w = (int(d) for d in pred_probs.shape)
        self.shape = (n, h, w)
        self.dtype = np.dtype(np.intp)  # what argmax returns
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
    ``per_image[i]`` counts image i's issue pixels; ``regions[g, p]``, when the run has
    ``regions.csv``, its regions of that pair (those kept by the same filters).
    """

    pixels: np.ndarray
    images: np.ndarray
    per_image: np.ndarray
    regions: np.ndarray | None = None

    @classmethod
    def empty(cls, num_classes: int, num_images: int) -> IssueTally:
        pairs = (num_classes, num_classes)
        return cls(
            np.zeros(pairs, np.int64), np.zeros(pairs, np.int64), np.zeros(num_images, np.int64)
        )

    def add(
        self,
        start: int,
        keep: np.ndarray,
        given: np.ndarray | None,
        predicted: np.ndarray | None,
    ) -> None:
        """Count the kept issue pixels of images ``start``, ``start + 1``, ... (arrays of
        shape (b, ...)) by image and by (given, predicted) pair."""
        counts = keep.reshape(len(keep), -1).sum(axis=1)
        self.per_image[start : start + len(counts)] = counts
        if given is None or predicted is None or not counts.any():
            return
        k = self.pixels.shape[0]
        code = given[keep].astype(np.int64) * k + predicted[keep].astype(np.int64)
        self.pixels.reshape(-1)[:] += np.bincount(code, minlength=k * k)
        image_of = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
        pairs_per_image = np.unique(image_of * k * k + code)
        self.images.reshape(-1)[:] += np.bincount(pairs_per_image % (k * k), minlength=k * k)

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
            if self.regions is not None:
                rows[-1]["regions"] = int(self.regions[given, predicted])
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
    """Class ids must be whole numbers in 0..K-1."""
    for name, ids in (("classes", classes), ("exclude", exclude)):
        if isinstance(ids, str | bytes) or not isinstance(ids, Sequence | np.ndarray):
            raise TypeError(f"{name} must be a list of class ids; got {type(ids).__name__}.")
        for value in ids:
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise TypeError(f"{name} must hold class ids (whole numbers); got {value!r}.")
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
    if isinstance(num_classes, bool) or not isinstance(num_classes, int | np.integer):
        raise TypeError(f"num_classes must be a whole number; got {type(num_classes).__name__}.")
    shape = check_array(issues, "issues", "N, H, W")
    for name, side in (("labels", labels), ("predicted", predicted)):
        if side is not None:
            check_array(side, name, "N, H, W", shape)
    check_filters(num_classes, classes, exclude)
    if (classes or exclude) and labels is None and predicted is None:
        raise InvalidInputError("class filters need labels or predictions to filter by.")
    progress = progress or NullProgress()
    num_images = shape[0]
    tally = IssueTally.empty(num_classes, num_images)
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
        tally.add(batch.start, keep, given, pred)
        progress.advance(len(keep))
    progress.finish()
    return tally


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


def write_failure(where: Any, error: OSError, unchanged: Any) -> OutputWriteError:
    """One sentence for a failed write: what, why, the fix, and that ``unchanged`` is intact."""
    reason = error.strerror or str(error) or type(error).__name__
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = "free some space and run it again"
    elif error.errno == errno.EFBIG:
        fix = "the file size limit (ulimit -f) is too low; raise it and run it again"
    elif error.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        fix = "the folder is not writable; make it writable or write elsewhere"
    else:
        fix = "check the folder is writable and has free space"
    return OutputWriteError(
        f"writing {printable(where)} failed ({reason}): {fix}; {printable(unchanged)} is unchanged."
    )


@contextlib.contextmanager
def atomic_outputs(*paths: Path) -> Iterator[list[Path]]:
    """Yield a temporary path beside each of ``paths``; rename them into place on success.

    Files that belong together (a table and its picture) are all written before any
    is renamed, so a full disk or a read-only folder leaves every one as it was. On
    failure the temporary files are removed and the error names the file that failed.
    """
    temps = [p.with_name(f".{p.name}.{uuid.uuid4().hex[:12]}.tmp{p.suffix}") for p in paths]
    try:
        yield temps
        for tmp, path in zip(temps, paths, strict=True):
            os.replace(tmp, path)
    except SegauditError:  # already one sentence (some are OSErrors too)
        raise
    except OSError as error:
        named = {str(tmp): path for tmp, path in zip(temps, paths, strict=True)}
        where = named.get(str(error.filename), " and ".join(str(p) for p in paths))
        raise write_failure(where, error, paths[0].parent) from None
    finally:
        for tmp in temps:
            with contextlib.suppress(OSError):  # never made, or a read-only folder
                tmp.unlink()


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only on success."""
    with atomic_outputs(path) as (tmp,):
        yield tmp


def write_swap_rows(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """The swap table as CSV; class names a spreadsheet would run as formulas are quoted."""
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=SWAP_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {
                    **row,
                    "given_name": csv_cell(row["given_name"]),
                    "predicted_name": csv_cell(row["predicted_name"]),
                    "share": f"{row['share']:.6f}",
                }
            )


def write_swaps_csv(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    """Write the swap table as CSV, atomically."""
    with atomic_output(path) as tmp:
        write_swap_rows(tmp, rows)
    return path


# --- commands that write into a run --------------------------------------------------------


@contextlib.contextmanager
def writing_into_run(run: Any, command: str, *, elsewhere: str = "") -> Iterator[None]:
    """Hold ``run``'s writer lock while a command reads it and writes its outputs into it.

    A scan replacing the run holds the same lock, so the outputs are never computed from
    one run and written into another; a scan started meanwhile is refused, and so is
    this command while a scan runs. The run must still be the one ``run`` was opened
    as. ``elsewhere`` names the option writing outside the run, for the read-only hint.
    """
    from segaudit.runs.rundir import run_lock

    path = Path(os.path.realpath(run.path))
    if not os.access(path, os.W_OK):
        where = f", or pass {elsewhere}" if elsewhere else ""
        raise OutputWriteError(
            f"{printable(run.path)} is not writable (a read-only folder or file system) and "
            f"`segaudit {command}` writes into it; make it writable or copy the run{where}."
        )
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(run_lock(path))
        except RunDirectoryError:
            raise RunDirectoryError(
                f"another segaudit process is writing {printable(run.path)}; run "
                f"`segaudit {command}` again once it has finished."
            ) from None
        check_same_run(run, command)
        yield


def check_same_run(run: Any, command: str) -> None:
    """Refuse when the run's location no longer holds the run ``run`` was opened as."""
    if run.current_summary() != run.summary:
        raise RunDirectoryError(
            f"{printable(run.location)} was replaced by another segaudit process while "
            f"`segaudit {command}` read it; nothing was written, run it again."
        )


def default_names(num_classes: int, class_names: Sequence[str] | None) -> list[str]:
    """The given names, or ``"0"``, ``"1"``, ... as the reference shows unnamed classes."""
    if class_names is None:
        return [str(i) for i in range(num_classes)]
    if isinstance(class_names, str | bytes) or not isinstance(class_names, Sequence | np.ndarray):
        raise TypeError(f"class_names must be a list of names; got {type(class_names).__name__}.")
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
    check_array(labels, "labels", "N, H, W", predicted.shape)
    check_array(issues, "issues", "N, H, W", predicted.shape)
    check_top(top)
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
    check_array(labels, "labels", "N, H, W", predicted.shape)
    check_array(issues, "issues", "N, H, W", predicted.shape)
    ids = np.asarray(class_index)
    whole = np.issubdtype(ids.dtype, np.integer) and ids.dtype != np.bool_
    if ids.ndim > 1 or (ids.size and not whole):
        raise TypeError(f"class_index must be a class id or a list of them; got {class_index!r}.")
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
    """The swap tally of a complete run, read image by image from its compact arrays."""
    check_filters(run.num_classes, classes, exclude)
    progress = progress or NullProgress()
    tally = IssueTally.empty(run.num_classes, run.num_images)
    progress.start("Counting issue pixels", run.num_images)
    for index in range(run.num_images):
        given, predicted = run.read("labels", index), run.read("pred_labels", index)
        keep = keep_mask(
            run.read("issues", index),
            given,
            predicted,
            run.num_classes,
            classes=classes,
            exclude=exclude,
            ignore_index=run.ignore_index,
        )
        tally.add(index, keep[None], given[None], predicted[None])
        progress.advance()
    progress.finish()
    tally.regions = region_pairs(run, classes, exclude)
    return tally


def region_pairs(run: Any, classes: Sequence[int], exclude: Sequence[int]) -> np.ndarray | None:
    """Regions per (given, predicted) pair from the run's ``regions.csv`` (None when the
    run has none), kept by the same class filters as the issue pixels."""
    from segaudit.report.regions import REGIONS_TABLE, read_regions_table

    if not (run.path / REGIONS_TABLE).is_file():
        return None
    counts = np.zeros((run.num_classes, run.num_classes), np.int64)
    chosen, dropped = set(classes), set(exclude)
    for row in read_regions_table(run.path):
        pair = {row["given_class"], row["predicted_class"]}
        if (chosen and not pair & chosen) or pair & dropped:
            continue
        counts[row["given_class"], row["predicted_class"]] += 1
    return counts
