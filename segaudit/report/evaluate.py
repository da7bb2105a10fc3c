"""How well a run finds known annotation errors (datasets from ``segaudit synth``).

Image level: average precision and AUROC of the run's image scores against the
dataset's ``is_corrupted`` (N,) flags, where a *lower* score means *more likely
corrupted*. Images without a score (NaN: nothing scored) count as least suspicious.
AP and AUROC follow scikit-learn's definitions (AP as the step-wise sum
Σ (R_n - R_{n-1}) P_n over distinct score thresholds; AUROC by the trapezoid rule,
so tied scores count one half), in plain numpy. Any score column of
``image_scores.csv`` may be ranked (:data:`SCORE_COLUMNS`): ``score`` or
``softmin_score`` (the default, lower is worse), ``region_score`` (the image's worst
region, 1.0 without regions; lower is worse) and ``issue_fraction`` (*higher* is worse,
so it is negated before ranking; NaN, nothing scored, is still least suspicious).

Pixel level, when the run has ``issues.zarr`` (a scan): precision, recall and F1 of
the issue masks against the true error masks ``labels != true_labels``, image by
image; pixels with the run's ignore label take no part. The truth is a stacked
dataset or a folder one (:class:`Truth`), matched to the run's images by id.

Region level, when the run has ``regions.csv`` and the truth has error maps
(``errors.{npy,zarr}`` or ``errors/ID.png``, pixel value e = the image's e-th event in
``synth.json``): every found region (pixels of value r in ``regions.zarr``) is compared
with every injected error (pixels of value e in the error map) of its image, and
*matches* it when their intersection over union, counted in pixels, is at least
:data:`REGION_IOU` (0.3). An injected error is one event with at least one pixel in the
map (an event wholly overwritten by a later one has nothing left to find).

- precision = found regions matching at least one injected error / found regions;
- recall = injected errors matched by at least one found region / injected errors;
- average precision: the found regions ranked by score, ascending (most suspicious
  first), AP = Σ_t P(t) · ΔN(t) / E over the distinct scores t, where P(t) is the
  precision of the regions scored ≤ t, ΔN(t) the injected errors first matched by the
  regions scored exactly t, and E the injected errors. Without ties this is
  Σ_k P@k · (errors the k-th region is first to match) / E. A ranking that puts every
  matching region first and finds every error scores 1.0; AP never exceeds recall.

One-to-many matches: an injected error matched by several found regions (say, a
dropped object found as two pieces) counts once for recall and AP, and each of those
regions counts as a true positive for precision; a region matching several errors
counts once for precision and adds each error to recall.

Per kind, each found-region kind is paired with the injected kind it should find
(:data:`KIND_PAIRS`: missing ↔ object_dropped, wrong-class ↔ class_swapped, boundary ↔
boundary_shifted, spurious ↔ spurious_object). Precision is per *found* kind (the
``kind`` column of ``regions.csv``: of the regions called "boundary", how many match any
injected error); recall is per *injected* kind (of the ``boundary_shifted`` errors, how
many any found region matches, whatever its kind); AP ranks the regions of the found
kind and credits the errors of its paired injected kind (E = the injected errors of
that kind), so it also asks whether the region was given the right kind.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segaudit.errors import InputNotFoundError, InvalidInputError, RunDirectoryError
from segaudit.progress import NullProgress, Progress
from segaudit.report.tables import SCORE_COLUMN_NAMES, read_scores
from segaudit.runs.run import Run, open_run
from segaudit.safetext import from_csv_cell
from segaudit.sources.stores import ArraySource, open_store, store_fingerprint


def _threshold_counts(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True and false positives at each distinct score, thresholds from high to low."""
    order = np.argsort(-y_score, kind="mergesort")
    hits = np.asarray(y_true, bool)[order].astype(np.int64)
    ranked = y_score[order]
    ends = np.r_[np.flatnonzero(ranked[1:] != ranked[:-1]), len(ranked) - 1]
    tps = np.cumsum(hits)[ends]
    return tps, ends + 1 - tps


def average_precision(y_true: np.ndarray, y_score: np.ndarray) -> float | None:
    """AP of ``y_score`` (higher = more likely positive); None without positives."""
    y_true, y_score = _check_pair(y_true, y_score)
    tps, fps = _threshold_counts(y_true, y_score)
    if tps[-1] == 0:
        return None
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def roc_auc(y_true: np.ndarray, y_score: np.ndarray) -> float | None:
    """Area under the ROC curve of ``y_score``; None without both classes."""
    y_true, y_score = _check_pair(y_true, y_score)
    tps, fps = _threshold_counts(y_true, y_score)
    if tps[-1] == 0 or fps[-1] == 0:
        return None
    tpr = np.r_[0, tps] / tps[-1]
    fpr = np.r_[0, fps] / fps[-1]
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def _check_pair(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both as flat arrays of one length (scores float64, no NaN), else a clear error."""
    y_true, y_score = np.asarray(y_true).ravel(), np.asarray(y_score, np.float64).ravel()
    if y_true.shape != y_score.shape or y_true.size == 0:
        raise InvalidInputError(
            f"need one truth value per score; got {y_true.size} and {y_score.size}."
        )
    if np.isnan(y_score).any():
        raise InvalidInputError("scores contain NaN; map them to -inf (least suspicious) first.")
    return y_true, y_score


def read_image_scores(run: Run) -> tuple[np.ndarray, str]:
    """The run's image scores in image order, and the CSV column they came from."""
    scores, _, column = read_scores(run.path / "image_scores.csv", run.num_images)
    return scores, column


def truth_store(folder: Path, name: str) -> ArraySource:
    """``folder/name.npy`` or ``folder/name.zarr``, of an integer type (bool too for flags).

    Truth is never a float: a 0.5 would be counted as corrupted (any non-zero value is
    True), and a float class id compares unequal to every label after rounding noise.
    """
    for suffix in (".npy", ".zarr"):
        if (folder / f"{name}{suffix}").exists():
            source = open_store(folder / f"{name}{suffix}", name)
            kinds, meaning = TRUTH_KINDS[name]
            if source.dtype.kind not in kinds:
                raise InvalidInputError(
                    f"{source.path} holds {source.dtype} values; {name} must be {meaning}."
                )
            return source
    raise InputNotFoundError(
        f"{folder} has no {name}.npy or {name}.zarr; --truth needs a dataset written by "
        "`segaudit synth`."
    )


# The dtype kinds each truth array may have, and what it must be, for the message.
TRUTH_KINDS = {
    "is_corrupted": ("biu", "bool flags (or integers 0 and 1), one per image"),
    "true_labels": ("iu", "integer class ids, like labels"),
    "errors": ("iu", "integer event numbers (uint16), one map per image"),
}


def corrupted_flags(flags: ArraySource, count: int) -> np.ndarray:
    """The truth's per-image flags as bools; any value other than 0 and 1 is refused."""
    values = np.asarray(flags.read(0, count))
    if values.dtype != bool and not np.isin(values, (0, 1)).all():
        bad = values[~np.isin(values, (0, 1))][0]
        raise InvalidInputError(
            f"{flags.path} holds the value {bad}; is_corrupted must be 0 or 1 (or bool) per image."
        )
    return values.astype(bool)


def image_metrics(scores: np.ndarray, corrupted: np.ndarray, column: str) -> dict[str, Any]:
    """AP and AUROC with lower scores as more suspicious; NaN scores least suspicious."""
    suspicion = np.where(np.isnan(scores), -np.inf, -scores)
    positives = int(np.count_nonzero(corrupted))
    return {
        "score_column": column,
        "images": int(len(scores)),
        "positives": positives,
        "negatives": int(len(scores)) - positives,
        "average_precision": average_precision(corrupted, suspicion),
        "auroc": roc_auc(corrupted, suspicion),
    }


# Image-score columns eval can rank images by: True where a higher value is more suspicious.
SCORE_COLUMNS = {
    "score": False,
    "softmin_score": False,
    "region_score": False,
    "issue_fraction": True,
}


def read_score_columns(path: Path, num_images: int) -> dict[str, np.ndarray]:
    """Every column of :data:`SCORE_COLUMNS` that ``image_scores.csv`` holds, in image order."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            present = [c for c in SCORE_COLUMNS if c in (reader.fieldnames or [])]
            values = {column: np.full(num_images, np.nan) for column in present}
            seen = np.zeros(num_images, bool)
            for row in reader:
                image = _image_index(row["image"], num_images)
                for column in present:
                    values[column][image] = float(row[column])
                seen[image] = True
    except FileNotFoundError:
        raise RunDirectoryError(f"{path} is missing; rerun the scan.") from None
    except (OSError, ValueError, TypeError, KeyError, csv.Error) as error:
        raise RunDirectoryError(f"{path} is malformed ({error}); rerun the scan.") from None
    if not seen.all():
        raise RunDirectoryError(f"{path} lists {int(seen.sum())} of {num_images} images; rerun.")
    return values


def _image_index(text: str, num_images: int) -> int:
    """A run image number from a CSV cell; ValueError unless it is one of the run's."""
    image = int(text)
    if not 0 <= image < num_images:
        raise ValueError(f"image {image} is not one of the run's {num_images} images")
    return image


def choose_score_column(columns: dict[str, np.ndarray], requested: str | None, path: Path) -> str:
    """The column images are ranked by: ``requested``, else the run's own score column."""
    if requested is None:
        default = next((c for c in SCORE_COLUMN_NAMES if c in columns), None)
        if default is None:
            raise RunDirectoryError(
                f"{path} has no score column ({' or '.join(SCORE_COLUMN_NAMES)}); rerun the scan."
            )
        return default
    if requested not in columns:
        have = ", ".join(columns) or "none"
        raise InvalidInputError(
            f"{path} has no {requested} column (its score columns: {have}); "
            "pass one of those to --score-column."
        )
    return requested


def column_metrics(column: str, values: np.ndarray, corrupted: np.ndarray) -> dict[str, Any]:
    """:func:`image_metrics` of one score column, negated where higher is more suspicious."""
    higher = SCORE_COLUMNS[column]
    metrics = image_metrics(-values if higher else values, corrupted, column)
    metrics["more_suspicious"] = "higher" if higher else "lower"
    return metrics


class Truth:
    """What a synthetic dataset knows about its errors, in a run's image order.

    A stacked dataset holds ``is_corrupted.{npy,zarr}`` (N,) and ``true_labels.{npy,zarr}``
    (N, H, W); a folder dataset (``segaudit synth --layout folder``) holds
    ``is_corrupted.csv`` (id, is_corrupted) and ``true_labels/ID.png``, matched to the
    run's images by id. Either may hold error maps (``errors.{npy,zarr}`` (N, H, W), or
    ``errors/ID.png``) and lists its events in ``synth.json``.
    """

    def __init__(self, folder: Path, ids: list[str]) -> None:
        self.folder, self.ids = folder, ids
        self.by_id = (folder / "is_corrupted.csv").is_file()

    def corrupted(self) -> np.ndarray:
        """(N,) bool: which of the run's images the truth calls corrupted."""
        if self.by_id:
            flags = read_flags_csv(self.folder / "is_corrupted.csv")
            missing = [image_id for image_id in self.ids if image_id not in flags]
            if missing:
                raise InvalidInputError(
                    f"{self.folder / 'is_corrupted.csv'} has no row for image {missing[0]!r} "
                    f"({len(missing)} of the run's images); --truth must be the dataset the "
                    "run scored."
                )
            return np.array([flags[image_id] for image_id in self.ids], bool)
        flags = truth_store(self.folder, "is_corrupted")
        if flags.shape != (len(self.ids),):
            raise InvalidInputError(
                f"{flags.path} has shape {flags.shape} but the run scored {len(self.ids)} "
                "images; --truth must be the dataset the run scored."
            )
        return corrupted_flags(flags, len(self.ids))

    def label_reader(self) -> Callable[[int], np.ndarray]:
        """``read(i)``: the true labels of the run's image i."""
        return self._reader("true_labels")

    def has_error_maps(self) -> bool:
        """Whether the dataset holds error maps (datasets from older generators do not)."""
        if self.by_id:
            return (self.folder / "errors").is_dir()
        return any((self.folder / f"errors{suffix}").exists() for suffix in (".npy", ".zarr"))

    def error_reader(self) -> Callable[[int], np.ndarray]:
        """``read(i)``: the error map of the run's image i (0 = untouched, e = event e)."""
        return self._reader("errors")

    def event_kinds(self) -> list[list[str]]:
        """Per run image, the kind of each event ``synth.json`` lists (event e is item e-1)."""
        path = self.folder / "synth.json"
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
            listed = {
                entry["id"] if self.by_id else int(entry["image"]): [
                    str(event["kind"]) for event in entry["events"]
                ]
                for entry in report["corruptions"]
            }
        except FileNotFoundError:
            raise InputNotFoundError(
                f"{self.folder} has error maps but no synth.json; region-level metrics need "
                "the events it lists."
            ) from None
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise InvalidInputError(
                f"{path} is not a synth.json as `segaudit synth` writes it ({error})."
            ) from None
        keys: Iterable[Any] = self.ids if self.by_id else range(len(self.ids))
        return [listed.get(key, []) for key in keys]

    def _reader(self, name: str) -> Callable[[int], np.ndarray]:
        """``read(i)``: image i (in run order) of the per-image truth ``name``."""
        if self.by_id:
            from segaudit.sources.files import MASK_SUFFIXES
            from segaudit.sources.folder import FolderMasks, find_files

            found = find_files(self.folder / name, MASK_SUFFIXES, name)
            missing = [image_id for image_id in self.ids if image_id not in found]
            if missing:
                raise InputNotFoundError(
                    f"{self.folder / name} has no mask for image {missing[0]!r}; "
                    "--truth must be the dataset the run scored."
                )
            masks = FolderMasks({i: found[i] for i in self.ids}, str(self.folder))
            return lambda index: masks.read(self.ids[index]).array
        store = truth_store(self.folder, name)
        if store.shape[0] != len(self.ids):
            raise InvalidInputError(
                f"{store.path} holds {store.shape[0]} images but the run has {len(self.ids)}; "
                "--truth must be the dataset the run scored."
            )
        return lambda index: np.array(store.read(index, index + 1)[0])


def read_flags_csv(path: Path) -> dict[str, bool]:
    """``is_corrupted.csv``: id -> flag (0 or 1)."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        flags = {}
        for row in rows:
            value = row["is_corrupted"].strip()
            if value not in ("0", "1"):
                raise ValueError(f"is_corrupted must be 0 or 1, got {value!r}")
            flags[from_csv_cell(row["id"])] = value == "1"
    except (OSError, KeyError, ValueError, csv.Error) as error:
        raise InvalidInputError(
            f"{path} is not a readable id,is_corrupted table ({error})."
        ) from None
    return flags


def pixel_metrics(run: Run, truth: Truth, progress: Progress) -> dict[str, Any]:
    """Precision, recall and F1 of the run's issue masks against labels != true_labels."""
    read_truth = truth.label_reader()
    ignore = run.ignore_index
    n = run.num_images
    counts = np.zeros(4, np.int64)  # true positives, flagged, true errors, scored pixels
    progress.start("comparing with true labels", n)
    for index in range(n):
        given = run.read("labels", index)
        true = read_truth(index)
        if true.shape != given.shape:
            raise InvalidInputError(
                f"the true labels of image {run.images.ids[index]!r} are {true.shape} but the "
                f"run's are {given.shape}; --truth must be the dataset the run scanned."
            )
        flagged = run.read("issues", index).astype(bool)
        wrong = given != true
        if ignore is not None:
            valid = given != ignore
            flagged, wrong = flagged & valid, wrong & valid
            counts[3] += int(np.count_nonzero(valid))
        else:
            counts[3] += given.size
        counts[0] += int(np.count_nonzero(flagged & wrong))
        counts[1] += int(np.count_nonzero(flagged))
        counts[2] += int(np.count_nonzero(wrong))
        progress.advance()
    progress.finish()
    tp, flagged_total, errors, scored = (int(c) for c in counts)
    precision = tp / flagged_total if flagged_total else None
    recall = tp / errors if errors else None
    f1 = (2 * tp / (flagged_total + errors)) if flagged_total + errors else None
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "true_positives": tp,
        "flagged": flagged_total,
        "true_errors": errors,
        "scored_pixels": scored,
    }


REGIONS_CSV = "regions.csv"
REGION_IOU = 0.3  # a found region matches an injected error from this pixel IoU up
# The injected kind each found-region kind should find.
KIND_PAIRS = {
    "missing": "object_dropped",
    "wrong-class": "class_swapped",
    "boundary": "boundary_shifted",
    "spurious": "spurious_object",
}
_REGION_FIELDS = ("image", "region", "score", "kind")

ErrorKey = tuple[int, int]  # (run image, event number in its error map)


@dataclass
class FoundRegion:
    """One row of ``regions.csv`` and the injected errors it matches."""

    image: int
    region: int
    score: float  # NaN in the table: +inf, least suspicious
    kind: str
    matches: set[ErrorKey] = field(default_factory=set)


def read_regions(path: Path, num_images: int) -> list[FoundRegion]:
    """The found regions of ``regions.csv``, as listed (worst first)."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            fields, rows = reader.fieldnames or [], list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise RunDirectoryError(f"{path} is unreadable ({error}); rerun the scan.") from None
    missing = [name for name in _REGION_FIELDS if name not in fields]
    if missing:
        raise RunDirectoryError(f"{path} has no {missing[0]} column; rerun the scan.")
    try:
        return [_found_region(row, num_images) for row in rows]
    except (ValueError, TypeError) as error:
        raise RunDirectoryError(f"{path} is malformed ({error}); rerun the scan.") from None


def _found_region(row: dict[str, str], num_images: int) -> FoundRegion:
    """One row of ``regions.csv``; ValueError or TypeError when a cell is not a number."""
    score = float(row["score"])
    return FoundRegion(
        image=_image_index(row["image"], num_images),
        region=int(row["region"]),
        score=math.inf if math.isnan(score) else score,
        kind=row["kind"].strip(),
    )


def match_image(
    region_map: np.ndarray, error_map: np.ndarray, iou: float = REGION_IOU
) -> tuple[list[tuple[int, int]], np.ndarray]:
    """The (region, error) number pairs of one image whose pixel IoU is at least ``iou``,
    and the pixel count of each error number (index e; index 0 = untouched pixels)."""
    regions = region_map.ravel().astype(np.int64)
    errors = error_map.ravel().astype(np.int64)
    region_pixels, error_pixels = np.bincount(regions), np.bincount(errors)
    both = (regions > 0) & (errors > 0)
    base = len(error_pixels)
    pairs, inter = np.unique(regions[both] * base + errors[both], return_counts=True)
    region, error = np.divmod(pairs, base)
    union = region_pixels[region] + error_pixels[error] - inter
    keep = inter / union >= iou
    return list(zip(region[keep].tolist(), error[keep].tolist(), strict=True)), error_pixels


def collect_matches(
    run: Run, truth: Truth, found: list[FoundRegion], progress: Progress
) -> dict[ErrorKey, str]:
    """Match found regions with injected errors image by image: fills each region's
    ``matches`` and returns every injected error with its kind."""
    kinds = truth.event_kinds()
    read_errors = truth.error_reader()
    by_image: dict[int, dict[int, FoundRegion]] = {}
    for region in found:
        by_image.setdefault(region.image, {})[region.region] = region
    images = sorted(set(by_image) | {i for i, listed in enumerate(kinds) if listed})
    injected: dict[ErrorKey, str] = {}
    progress.start("matching regions with injected errors", len(images))
    for index in images:
        error_map = read_errors(index)
        _check_error_map(run, index, error_map, len(kinds[index]))
        injected.update(_match_regions(run, index, error_map, kinds[index], by_image.get(index)))
        progress.advance()
    progress.finish()
    return injected


def _check_error_map(run: Run, index: int, error_map: np.ndarray, events: int) -> None:
    """An error map numbers only the events ``synth.json`` lists for its image."""
    low, top = int(error_map.min(initial=0)), int(error_map.max(initial=0))
    if low < 0 or top > events:
        raise InvalidInputError(
            f"the error map of image {run.images.ids[index]!r} holds event number "
            f"{low if low < 0 else top} but synth.json lists {events} events for it; "
            "--truth must be one dataset, as written."
        )


def _match_regions(
    run: Run,
    index: int,
    error_map: np.ndarray,
    kinds: list[str],
    found: dict[int, FoundRegion] | None,
) -> dict[ErrorKey, str]:
    """Fill in the matches of image ``index``'s regions; return its injected errors."""
    if found:
        region_map = run.read("regions", index)
        if region_map.shape != error_map.shape:
            raise InvalidInputError(
                f"the error map of image {run.images.ids[index]!r} is {error_map.shape} but "
                f"the run's regions are {region_map.shape}; --truth must be the dataset the "
                "run scanned."
            )
        pairs, error_pixels = match_image(region_map, error_map)
        for region, error in pairs:
            if region in found:
                found[region].matches.add((index, error))
    else:
        error_pixels = np.bincount(error_map.ravel().astype(np.int64))
    return {(index, e): kinds[e - 1] for e in range(1, len(error_pixels)) if error_pixels[e] > 0}


def region_metrics(found: list[FoundRegion], injected: dict[ErrorKey, str]) -> dict[str, Any]:
    """Precision, recall and AP of the matched regions, overall and per kind (see the
    module notes for the definitions)."""
    errors = set(injected)
    return {
        "iou_threshold": REGION_IOU,
        **_precision(found),
        **_recall(found, errors),
        "average_precision": ranked_average_precision(found, errors),
        "per_kind": [
            _kind_row(found_kind, injected_kind, found, injected)
            for found_kind, injected_kind in _kind_rows(found, injected)
        ],
    }


def _kind_rows(
    found: list[FoundRegion], injected: dict[ErrorKey, str]
) -> list[tuple[str | None, str | None]]:
    """The paired kinds, then any found or injected kind outside the pairs on its own."""
    rows: list[tuple[str | None, str | None]] = list(KIND_PAIRS.items())
    rows += [(kind, None) for kind in sorted({r.kind for r in found} - set(KIND_PAIRS))]
    rows += [(None, kind) for kind in sorted(set(injected.values()) - set(KIND_PAIRS.values()))]
    return rows


def _kind_row(
    found_kind: str | None,
    injected_kind: str | None,
    found: list[FoundRegion],
    injected: dict[ErrorKey, str],
) -> dict[str, Any]:
    """Precision of the regions of ``found_kind``, recall of the errors of
    ``injected_kind`` (by any region), AP of the one crediting the other."""
    regions = [region for region in found if region.kind == found_kind]
    errors = {key for key, kind in injected.items() if kind == injected_kind}
    return {
        "kind": found_kind,
        "injected_kind": injected_kind,
        **_precision(regions),
        **_recall(found, errors),
        "average_precision": ranked_average_precision(regions, errors),
    }


def _precision(regions: list[FoundRegion]) -> dict[str, Any]:
    """Found regions, those matching some injected error, and their ratio."""
    matched = sum(1 for region in regions if region.matches)
    return {
        "found_regions": len(regions),
        "matched_regions": matched,
        "precision": matched / len(regions) if regions else None,
    }


def _recall(regions: list[FoundRegion], errors: set[ErrorKey]) -> dict[str, Any]:
    """Injected errors, those matched by at least one of ``regions``, and their ratio."""
    hit: set[ErrorKey] = set()
    for region in regions:
        hit |= region.matches & errors
    return {
        "injected_errors": len(errors),
        "found_errors": len(hit),
        "recall": len(hit) / len(errors) if errors else None,
    }


def ranked_average_precision(regions: list[FoundRegion], errors: set[ErrorKey]) -> float | None:
    """Σ_t P(t) · ΔN(t) / E over the distinct scores t, ascending (see the module notes);
    None without injected errors."""
    if not errors:
        return None
    ordered = sorted(regions, key=_score_of)
    credited: set[ErrorKey] = set()
    total, count, matched = 0.0, 0, 0
    for _, tied in itertools.groupby(ordered, key=_score_of):
        group = list(tied)
        count += len(group)
        matched += sum(1 for region in group if region.matches)
        new = set().union(*(region.matches for region in group)) & errors - credited
        credited |= new
        total += matched / count * len(new)
    return total / len(errors)


def _score_of(region: FoundRegion) -> float:
    """The key regions are ranked (and tied) by."""
    return region.score


def _region_level(
    run: Run, truth: Truth, notes: list[str], progress: Progress
) -> dict[str, Any] | None:
    """Region metrics when the run has regions and the truth error maps; else None."""
    path = run.path / REGIONS_CSV
    if not path.is_file():
        return None
    if not truth.has_error_maps():
        notes.append(
            f"{truth.folder} has no error maps (errors.npy, errors.zarr or errors/), so "
            "region-level metrics are left out; regenerate it with `segaudit synth` to get them."
        )
        return None
    found = read_regions(path, run.num_images)
    injected = collect_matches(run, truth, found, progress)
    return region_metrics(found, injected)


def _provenance_notes(run: Run, truth: Path) -> list[str]:
    """Say when the run was not computed from the truth dataset's labels."""
    stored = (run.summary.get("inputs") or {}).get("labels") or {}
    for suffix in (".npy", ".zarr"):
        candidate = truth / f"labels{suffix}"
        if candidate.exists():
            current = store_fingerprint(candidate)
            shared = [key for key in current if key in stored]  # older runs record fewer
            if not shared or any(stored[key] != current[key] for key in shared):
                return [
                    f"{run.path} was computed from {stored.get('path', 'other labels')}, "
                    f"not {candidate} as it is now; the metrics assume both hold the same "
                    "images."
                ]
            return []
    return []


def evaluate_run(
    run: str | os.PathLike[str],
    truth: str | os.PathLike[str],
    *,
    score_column: str | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Image-level (and, for scans, pixel- and region-level) metrics of ``run`` against
    ``truth``; images are ranked by ``score_column`` (default: the run's own score)."""
    progress = progress or NullProgress()
    opened = open_run(run)
    folder = Path(truth)
    if not folder.is_dir():
        raise InputNotFoundError(f"--truth {folder} is not a dataset folder; check the path.")
    table = opened.path / "image_scores.csv"
    columns = read_score_columns(table, opened.num_images)
    chosen = choose_score_column(columns, score_column, table)
    truth_of = Truth(folder, list(opened.images.ids))
    corrupted = truth_of.corrupted()
    metrics: dict[str, Any] = {
        "run": str(opened.path),
        "truth": str(folder),
        "image": column_metrics(chosen, columns[chosen], corrupted),
        "image_by_column": {c: column_metrics(c, v, corrupted) for c, v in columns.items()},
        "pixel": None,
        "region": None,
    }
    notes = _provenance_notes(opened, folder) + _undefined_notes(metrics["image"])
    if opened.has("issues"):
        metrics["pixel"] = pixel_metrics(opened, truth_of, progress)
    metrics["region"] = _region_level(opened, truth_of, notes, progress)
    metrics["notes"] = notes
    return metrics


def _undefined_notes(image: dict[str, Any]) -> list[str]:
    """Say which image-level metrics the truth leaves undefined (one class only)."""
    return [
        f"image-level {key} is undefined: the truth has {image['positives']} corrupted of "
        f"{image['images']} images."
        for key in ("average_precision", "auroc")
        if image[key] is None
    ]
