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
dataset or a folder one (:class:`segaudit.report.truth.Truth`), matched to the run's
images by id.

Region level, when the run has regions and the truth has error maps: precision,
recall and AP of the regions against the injected errors
(:mod:`segaudit.report.region_match`).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import numpy as np

from segaudit.errors import InputNotFoundError, InvalidInputError, RunDirectoryError
from segaudit.progress import NullProgress, Progress
from segaudit.report.region_match import image_index, region_level
from segaudit.report.tables import SCORE_COLUMN_NAMES, read_scores
from segaudit.report.truth import Truth
from segaudit.runs.run import Run, open_run
from segaudit.sources.fingerprints import store_fingerprint


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
                image = image_index(row["image"], num_images)
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


def _size(shape: tuple[int, ...], volume: tuple[int, int, int] | None = None) -> str:
    """A size as the user knows it: H×W, or for a sheet of ``volume``'s slices (Z·Y, X)
    the volume's Z×Y×X, when its rows are whole slices of that height."""
    rows, width = (int(n) for n in shape[:2])
    if volume is not None and rows % volume[1] == 0:
        return f"{rows // volume[1]}×{volume[1]}×{width}"
    return f"{rows}×{width}"


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
            volume = run.images.volume_shape(index)
            raise InvalidInputError(
                f"the true labels of image {run.images.ids[index]!r} are "
                f"{_size(true.shape, volume)} but the run's are {_size(given.shape, volume)}; "
                "--truth must be the dataset the run scanned."
            )
        outside = (true >= run.num_classes) & (true != ignore if ignore is not None else True)
        if outside.any():
            raise InvalidInputError(
                f"the true labels of image {run.images.ids[index]!r} hold the value "
                f"{int(true[outside].flat[0])}, outside 0..{run.num_classes - 1}; --truth "
                "must be the dataset the run scanned."
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
                    f"{run.location} was computed from {stored.get('path', 'other labels')}, "
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
        "run": opened.location,
        "truth": str(folder),
        "image": column_metrics(chosen, columns[chosen], corrupted),
        "image_by_column": {c: column_metrics(c, v, corrupted) for c, v in columns.items()},
        "pixel": None,
        "region": None,
    }
    notes = _provenance_notes(opened, folder) + _undefined_notes(metrics["image"])
    if opened.has("issues"):
        metrics["pixel"] = pixel_metrics(opened, truth_of, progress)
    metrics["region"] = region_level(opened, truth_of, notes, progress)
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
