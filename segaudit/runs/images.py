"""A run's image table, ``images.csv``: which image is which, how large, from which files.

One row per image, in image order (the order of the run's arrays):
``image, id, height, width, labels, pred_probs, photo`` — the index, the image's id,
its size in pixels and the files it was read from (``labels.npy[3]`` for image 3 of
a stacked store). Later commands (``swaps``, ``render``, ``eval``) find each image's
size and photo here, whatever the dataset's layout. Runs written before the table
existed are read from ``summary.json`` (one size, ids ``0``..``N-1``).

A run of volumes has three more columns after ``width``: ``depth`` (slices) and
``spacing_z, spacing_y, spacing_x`` (millimetres); ``height`` and ``width`` are then a
slice's, and the run's arrays hold each volume as its sheet of (depth·height, width).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segaudit.errors import RunDirectoryError
from segaudit.safetext import csv_cell, from_csv_cell

IMAGES_TABLE = "images.csv"
COLUMNS = ("image", "id", "height", "width", "labels", "pred_probs", "photo")
VOLUME_COLUMNS = ("depth", "spacing_z", "spacing_y", "spacing_x")


@dataclass
class ImageTable:
    """Ids, sizes (N, 2) and source files of a run's images, in image order."""

    ids: list[str]
    sizes: np.ndarray  # (N, 2): a volume's sheet (depth·height, width)
    files: list[dict[str, str]] = field(default_factory=list)
    depths: np.ndarray | None = None  # (N,) slices per volume (1 for a 2-D image)
    spacings: np.ndarray | None = None  # (N, 3) millimetres (z, y, x)

    def volume_shape(self, index: int) -> tuple[int, int, int] | None:
        """(Z, Y, X) of image ``index`` when it is a volume, else None."""
        if self.depths is None or self.depths[index] <= 1:
            return None
        depth = int(self.depths[index])
        height, width = (int(n) for n in self.sizes[index])
        return depth, height // depth, width

    @property
    def num_images(self) -> int:
        return len(self.ids)

    def pixels(self, index: int) -> int:
        height, width = self.sizes[index]
        return int(height * width)

    @property
    def uniform(self) -> bool:
        return bool(len(self.sizes) == 0 or (self.sizes == self.sizes[0]).all())

    def photo(self, index: int) -> str | None:
        """The photo file image ``index`` was scanned with, if any."""
        if not self.files:
            return None
        return self.files[index].get("photo") or None


def write_images_table(path: Path, table: ImageTable) -> None:
    """``images.csv`` for ``table`` (ids and file names are CSV-injection safe)."""
    volumes = table.depths is not None and table.spacings is not None
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(COLUMNS[:4] + (VOLUME_COLUMNS if volumes else ()) + COLUMNS[4:])
        for index, image_id in enumerate(table.ids):
            files = table.files[index] if table.files else {}
            height, width = (int(n) for n in table.sizes[index])
            geometry: list[Any] = []
            if volumes:
                assert table.depths is not None and table.spacings is not None
                depth = int(table.depths[index])
                height //= depth
                geometry = [depth, *(str(np.float32(v)) for v in table.spacings[index])]
            writer.writerow(
                [
                    index,
                    csv_cell(image_id),
                    height,
                    width,
                    *geometry,
                    *(csv_cell(files.get(name, "")) for name in ("labels", "pred_probs", "photo")),
                ]
            )


def read_images_table(run: Path, summary: dict[str, Any]) -> ImageTable:
    """The run's image table (from ``images.csv``, or ``summary.json`` for older runs)."""
    path = run / IMAGES_TABLE
    if not path.exists():
        return _table_from_summary(summary)
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        ids = [from_csv_cell(row["id"]) for row in rows]
        depths = spacings = None
        if rows and "depth" in rows[0]:
            depths = np.array([int(row["depth"]) for row in rows], np.int64)
            spacings = np.array(
                [[float(row[f"spacing_{axis}"]) for axis in "zyx"] for row in rows], np.float64
            )
        sizes = np.array([[int(row["height"]), int(row["width"])] for row in rows], np.int64)
        if depths is not None:
            sizes[:, 0] *= depths
        files = [
            {name: from_csv_cell(row[name]) for name in ("labels", "pred_probs", "photo")}
            for row in rows
        ]
        if [int(row["image"]) for row in rows] != list(range(len(rows))):
            raise ValueError("image indices are not 0..N-1 in order")
        expected = (summary.get("dataset") or {}).get("num_images")
        if isinstance(expected, int) and expected != len(rows):
            raise ValueError(f"{len(rows)} rows for the run's {expected} images")
    except (OSError, KeyError, TypeError, ValueError, csv.Error) as error:
        raise RunDirectoryError(f"{path} is malformed ({error}); rerun the scan.") from None
    return ImageTable(ids, sizes.reshape(-1, 2), files, depths, spacings)


def _table_from_summary(summary: dict[str, Any]) -> ImageTable:
    dataset = summary.get("dataset") or {}
    try:
        count = int(dataset["num_images"])
        height, width = int(dataset["height"]), int(dataset["width"])
    except (KeyError, TypeError, ValueError):
        raise RunDirectoryError(
            "the run has neither images.csv nor image sizes in summary.json; rerun the scan."
        ) from None
    sizes = np.tile(np.array([[height, width]], np.int64), (count, 1))
    return ImageTable([str(i) for i in range(count)], sizes)
