"""``image_scores.csv``: one row per image, worst first, keyed by id, with its source file.

A scan writes ``image, id, softmin_score, issue_pixels, issue_fraction, rank, file,
region_score`` (the image's worst region score, 1.0 without regions);
a score run writes ``image, id, score, rank`` (plus ``issue_pixels, scored_pixels`` for
``num_pixel_issues``) and ``file``. ``file`` is the image's label mask (or
``labels.npy[3]`` for image 3 of a stacked store): where a reviewer fixes it. Ids and
file names go through :func:`segaudit.safetext.csv_cell`; :func:`read_scores` reads
either table back.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from segaudit.errors import RunDirectoryError
from segaudit.safetext import csv_cell, from_csv_cell

SCAN_COLUMNS = (
    "image", "id", "softmin_score", "issue_pixels", "issue_fraction", "rank", "file",
    "region_score",
)  # fmt: skip
SCORE_COLUMNS = ("image", "id", "score", "rank")
ISSUE_COLUMNS = ("issue_pixels", "scored_pixels")
SCORE_COLUMN_NAMES = ("score", "softmin_score")  # score runs, then scan runs


def rank_images(scores: np.ndarray) -> np.ndarray:
    """Image order worst first: ascending score, ties by index, NaN (nothing scored) last."""
    keys = np.where(np.isnan(scores), np.inf, scores)
    return np.lexsort((np.arange(len(scores)), keys))


def _number(value: float) -> str:
    return "nan" if math.isnan(value) else repr(float(value))


def write_scan_scores(
    path: Path,
    softmin: np.ndarray,
    issues: np.ndarray,
    scored: np.ndarray,
    ids: Sequence[str],
    files: Sequence[str],
    region_scores: np.ndarray,
) -> None:
    """A scan's ``image_scores.csv``: softmin score, issue pixels and the worst region's
    score per image, worst first (by softmin)."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(SCAN_COLUMNS)
        for rank, image in enumerate(rank_images(softmin).tolist(), start=1):
            fraction = issues[image] / scored[image] if scored[image] else float("nan")
            writer.writerow(
                [
                    image,
                    csv_cell(ids[image]),
                    _number(softmin[image]),
                    int(issues[image]),
                    _number(fraction),
                    rank,
                    csv_cell(files[image]),
                    _number(region_scores[image]),
                ]
            )


def score_rows(
    scores: np.ndarray,
    ids: Sequence[str],
    top: int | None = None,
    issues: np.ndarray | None = None,
    scored: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """The ``top`` worst images (all when None) as rows of a score run's table."""
    rows = []
    for rank, image in enumerate(rank_images(scores)[:top].tolist(), start=1):
        row: dict[str, Any] = {
            "image": image,
            "id": ids[image],
            "score": float(scores[image]),
            "rank": rank,
        }
        if issues is not None and scored is not None:
            row["issue_pixels"] = int(issues[image])
            row["scored_pixels"] = int(scored[image])
        rows.append(row)
    return rows


def write_score_table(path: Path, rows: list[dict[str, Any]], files: Sequence[str]) -> None:
    """A score run's ``image_scores.csv`` from :func:`score_rows`."""
    extra = ISSUE_COLUMNS if rows and "issue_pixels" in rows[0] else ()
    columns = (*SCORE_COLUMNS, *extra, "file")
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            cells = {**row, "id": csv_cell(row["id"]), "file": csv_cell(files[row["image"]])}
            writer.writerow([_cell(cells[column]) for column in columns])


def _cell(value: Any) -> Any:
    return "nan" if isinstance(value, float) and math.isnan(value) else value


def read_scores(path: Path, num_images: int) -> tuple[np.ndarray, list[str], str]:
    """Image scores in image order, ids, and the column they came from, from either table.

    One reader for both tables: a scan's ``softmin_score`` or a score run's ``score``.
    """
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            fields = reader.fieldnames or []
            column = next((c for c in SCORE_COLUMN_NAMES if c in fields), None)
            if column is None:
                raise RunDirectoryError(
                    f"{path} has no score column ({' or '.join(SCORE_COLUMN_NAMES)}); "
                    "rerun the scan."
                )
            scores = np.full(num_images, np.nan)
            ids = [str(i) for i in range(num_images)]
            seen = np.zeros(num_images, bool)
            for row in reader:
                image = int(row["image"])
                scores[image] = float(row[column])
                ids[image] = from_csv_cell(row.get("id") or str(image))
                seen[image] = True
    except FileNotFoundError:
        raise RunDirectoryError(f"{path} is missing; rerun the scan.") from None
    except (ValueError, IndexError, KeyError, csv.Error) as error:
        raise RunDirectoryError(f"{path} is malformed ({error}); rerun the scan.") from None
    if not seen.all():
        raise RunDirectoryError(f"{path} lists {int(seen.sum())} of {num_images} images; rerun.")
    return scores, ids, column
