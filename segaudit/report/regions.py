"""``regions.csv``: every issue region of a run, worst first, for a reviewer to work through.

Columns: ``image, id, region, given_class, predicted_class, given_name,
predicted_name, pixels, x0, y0, x1, y1, centroid_x, centroid_y, mean_self_confidence,
mean_predicted_probability, score, kind, rank`` (bounding box inclusive, in pixels of
the full-resolution image; ``region`` numbers regions within their image from 1 in the
raster order of their first pixel; ``rank`` 1 is the lowest score, ties by image then
region), then the features the score came from: ``edge_fraction, thickness,
pair_share``. Each region's pixels are ``RUN/regions.zarr`` (image i's region
numbers, 0 elsewhere).

A run of volumes has regions in 3-D (26-connected voxels,
:mod:`segaudit.engine.volume_regions`) and four more columns: ``volume_mm3`` after
``pixels`` (voxels times the voxel's volume from the header's spacing), ``z0`` and
``z1`` in the bounding box (``x0, y0, z0, x1, y1, z1``) and ``centroid_z``.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segaudit.engine.region_scores import (
    KINDS,
    pair_shares,
    region_kinds,
    region_scores,
    score_formula,
)
from segaudit.engine.regions import REGION_COLUMNS
from segaudit.engine.volume_regions import VOLUME_REGION_COLUMNS
from segaudit.errors import RunDirectoryError, reason
from segaudit.safetext import csv_cell, from_csv_cell

REGIONS_TABLE = "regions.csv"
CSV_COLUMNS = (
    "image", "id", "region", "given_class", "predicted_class", "given_name", "predicted_name",
    "pixels", "x0", "y0", "x1", "y1", "centroid_x", "centroid_y", "mean_self_confidence",
    "mean_predicted_probability", "score", "kind", "rank", "edge_fraction", "thickness",
    "pair_share",
)  # fmt: skip
VOLUME_CSV_COLUMNS = (
    "image", "id", "region", "given_class", "predicted_class", "given_name", "predicted_name",
    "pixels", "volume_mm3", "x0", "y0", "z0", "x1", "y1", "z1", "centroid_x", "centroid_y",
    "centroid_z", "mean_self_confidence", "mean_predicted_probability", "score", "kind", "rank",
    "edge_fraction", "thickness", "pair_share",
)  # fmt: skip
INTEGER_COLUMNS = (
    "image", "region", "given_class", "predicted_class", "pixels", "x0", "y0", "x1", "y1",
    "rank", "thickness", "z0", "z1",
)  # fmt: skip
TEXT_COLUMNS = ("id", "given_name", "predicted_name", "kind")
_VOLUME_ONLY = {"volume_mm3": np.nan, "z0": 0, "z1": 0, "centroid_z": 0.0}  # for 2-D images


@dataclass
class RegionTable:
    """All regions of a run as columns, in image then region order, with their kind,
    pair share and score; ``order`` lists them worst first."""

    columns: dict[str, np.ndarray]
    kinds: np.ndarray
    shares: np.ndarray
    scores: np.ndarray
    order: np.ndarray

    @property
    def count(self) -> int:
        return len(self.scores)


def build_region_table(
    per_image: dict[int, dict[str, np.ndarray]], num_images: int, background: Sequence[int]
) -> RegionTable:
    """The run's region table from each image's regions (:func:`image_regions` columns,
    or a volume's :data:`VOLUME_REGION_COLUMNS`)."""
    images = sorted(per_image)
    names = REGION_COLUMNS
    if any("z0" in per_image[i] for i in images):
        names = VOLUME_REGION_COLUMNS
        per_image = {i: _with_volume_columns(per_image[i]) for i in images}
    columns = {
        name: np.concatenate([per_image[i][name] for i in images]) if images else np.zeros(0)
        for name in names
    }
    columns["image"] = np.concatenate(
        [np.full(len(per_image[i]["region"]), i, np.int64) for i in images]
    ) if images else np.zeros(0, np.int64)  # fmt: skip
    for name in ("region", "given_class", "predicted_class", "pixels", "thickness"):
        columns[name] = columns[name].astype(np.int64)
    kinds = region_kinds(columns, background)
    shares = pair_shares(
        columns["image"], columns["given_class"], columns["predicted_class"], num_images
    )
    scores = region_scores(columns, shares)
    order = np.lexsort((columns["region"], columns["image"], scores))
    return RegionTable(columns, kinds, shares, scores, order)


def _with_volume_columns(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A 2-D image's regions in a run of volumes: one slice, z = 0, no volume."""
    count = len(columns["region"])
    missing = {
        name: np.full(count, fill) for name, fill in _VOLUME_ONLY.items() if name not in columns
    }
    return {**columns, **missing}


def image_region_scores(table: RegionTable, num_images: int) -> np.ndarray:
    """Each image's worst (lowest) region score; 1.0 for an image without regions."""
    best = np.ones(num_images)
    np.minimum.at(best, table.columns["image"].astype(np.intp), table.scores)
    return best


def region_summary(table: RegionTable, min_pixels: int, background: Sequence[int]) -> dict:
    """The ``regions`` block of summary.json."""
    return {
        "count": table.count,
        "by_kind": {kind: int(np.count_nonzero(table.kinds == kind)) for kind in KINDS},
        "images_with_regions": int(len(np.unique(table.columns["image"]))),
        "min_region_pixels": min_pixels,
        "background_classes": [int(k) for k in background],
        "score": score_formula(),
    }


# Rows of regions.csv made into text at a time: a run's regions are compact numpy
# columns, but as Python cells they take ~1.5 kB a region, so they are written in blocks
# and the table never costs memory in proportion to the dataset.
CSV_BLOCK_ROWS = 4096


def write_regions_table(
    path: Path, table: RegionTable, ids: Sequence[str], names: Sequence[str]
) -> None:
    """``regions.csv``, worst first (names and ids are CSV-injection safe)."""
    volumes = "z0" in table.columns
    header = VOLUME_CSV_COLUMNS if volumes else CSV_COLUMNS
    safe_ids = [csv_cell(i) for i in ids]
    safe_names = [csv_cell(n) for n in names]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        for start in range(0, table.count, CSV_BLOCK_ROWS):
            cells = _region_cells(table, start, volumes, safe_ids, safe_names)
            writer.writerows(zip(*(cells[name] for name in header), strict=True))


def _region_cells(
    table: RegionTable,
    start: int,
    volumes: bool,
    safe_ids: Sequence[str],
    safe_names: Sequence[str],
) -> dict[str, list[Any]]:
    """The cells of ranks ``start + 1`` to ``start + CSV_BLOCK_ROWS`` of ``regions.csv``,
    by column."""
    order = table.order[start : start + CSV_BLOCK_ROWS]
    numeric = VOLUME_REGION_COLUMNS if volumes else REGION_COLUMNS
    cells = {name: _cells(table.columns[name][order]) for name in numeric}
    images = table.columns["image"][order].astype(np.int64).tolist()
    cells.update({
        "image": images,
        "id": [safe_ids[i] for i in images],
        "given_name": [safe_names[k] for k in cells["given_class"]],
        "predicted_name": [safe_names[k] for k in cells["predicted_class"]],
        "score": [repr(v) for v in table.scores[order].tolist()],
        "kind": table.kinds[order].tolist(),
        "rank": list(range(start + 1, start + len(order) + 1)),
        "pair_share": [repr(v) for v in table.shares[order].tolist()],
    })  # fmt: skip
    return cells


def _cells(values: np.ndarray) -> list[Any]:
    """A column as CSV cells: integers as integers (whole floats too), other floats by
    ``repr`` (the shortest text that reads back as the same number)."""
    if values.dtype.kind in "iu":
        return values.astype(np.int64).tolist()
    return [
        int(v) if v.is_integer() and abs(v) < 2**53 else repr(v)
        for v in values.astype(np.float64).tolist()
    ]


def read_regions_table(run: Path) -> list[dict[str, Any]]:
    """A run's ``regions.csv`` rows, worst first, with numbers as numbers."""
    path = run / REGIONS_TABLE
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except FileNotFoundError:
        raise RunDirectoryError(
            f"{path} is missing; rerun `segaudit scan` (regions come with every scan)."
        ) from None
    except (OSError, csv.Error) as error:
        raise RunDirectoryError(f"{path} is unreadable ({error}); rerun the scan.") from None
    for number, row in enumerate(rows, start=2):
        try:
            _parse_region_row(row)
        except (TypeError, ValueError, KeyError, AttributeError) as error:
            raise RunDirectoryError(
                f"{path} is damaged at line {number} ({reason(error)}); rerun the scan."
            ) from None
    return rows


def _parse_region_row(row: dict[str, Any]) -> None:
    """One ``regions.csv`` row's cells as their values, in place."""
    for name in ("id", "given_name", "predicted_name"):
        row[name] = from_csv_cell(row[name])
    for name in VOLUME_CSV_COLUMNS:
        if name in TEXT_COLUMNS or name not in row:
            continue
        row[name] = int(row[name]) if name in INTEGER_COLUMNS else float(row[name])
