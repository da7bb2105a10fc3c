"""Reading a complete run back: its summary, its image table and its per-pixel arrays.

Every later command (``score`` reusing a scan, ``swaps``, ``render``, ``eval``) reads a
run through :class:`Run`, image by image, whatever the images' sizes: ``run.read(name,
i)`` is image i of the array ``name`` (``labels``, ``pred_labels``, ``pixel_scores``,
``issues``) at its own size.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segaudit.errors import RunDirectoryError
from segaudit.runs.chunkstore import ImageArray, open_image_array
from segaudit.runs.images import ImageTable, read_images_table
from segaudit.sources.remote import is_url

SUMMARY = "summary.json"


def array_path(run: Path, name: str) -> Path:
    """Where the run keeps the per-pixel array ``name``."""
    return run / f"{name}.zarr"


@dataclass
class Run:
    """A complete run directory, opened read-only."""

    path: Path
    summary: dict[str, Any]
    _arrays: dict[str, ImageArray] = field(default_factory=dict, repr=False)
    _images: ImageTable | None = field(default=None, repr=False)

    @property
    def images(self) -> ImageTable:
        """Ids, sizes and source files of the run's images, in image order."""
        if self._images is None:
            self._images = read_images_table(self.path, self.summary)
        return self._images

    @property
    def num_images(self) -> int:
        return self.images.num_images

    def has(self, name: str) -> bool:
        """Whether the run holds the per-pixel array ``name``."""
        return array_path(self.path, name).is_dir()

    def read(self, name: str, index: int) -> np.ndarray:
        """Image ``index`` of the per-pixel array ``name``, at the image's own size."""
        array = self._array(name)
        try:
            return array.read_image(index)
        except (OSError, ValueError) as error:
            raise RunDirectoryError(
                f"{array_path(self.path, name)} is damaged at image {index} ({error}); "
                f"rerun `segaudit scan` into {self.path}."
            ) from None

    def _array(self, name: str) -> ImageArray:
        if name not in self._arrays:
            path = array_path(self.path, name)
            if not path.exists():
                raise RunDirectoryError(
                    f"{path} is missing from the run; rerun `segaudit scan` into {self.path}."
                )
            try:
                self._arrays[name] = open_image_array(path)
            except (OSError, ValueError, KeyError) as error:
                raise RunDirectoryError(
                    f"{path} is not readable ({error}); rerun `segaudit scan` into {self.path}."
                ) from None
        return self._arrays[name]

    @property
    def num_classes(self) -> int:
        return int(self.summary["dataset"]["num_classes"])

    @property
    def class_names(self) -> list[str]:
        return list(self.summary["classes"]["names"])

    @property
    def ignore_index(self) -> int | None:
        return self.summary["parameters"].get("ignore_index")


def open_run(path: str | os.PathLike[str]) -> Run:
    """Open a complete run, or say plainly why ``path`` is not one."""
    if is_url(path):
        from segaudit.runs.objectstore import check_manifest

        check_manifest(str(path))  # a prefix without summary.json is refused here
        raise RunDirectoryError(
            f"{path} is a complete run on an object store, but the commands that read runs "
            f"read local folders; copy it down first (e.g. aws s3 sync {path} DIR)."
        )
    run = Path(path)
    if not run.is_dir():
        raise RunDirectoryError(
            f"{run} does not exist; create it with `segaudit scan DATASET -o {run}`."
        )
    summary_path = run / SUMMARY
    if not summary_path.is_file():
        raise RunDirectoryError(
            f"{run} is not a complete segaudit run (no {SUMMARY}); "
            f"create it with `segaudit scan DATASET -o {run}`."
        )
    try:
        summary = json.loads(summary_path.read_text())
    except (OSError, ValueError) as error:
        raise RunDirectoryError(
            f"{summary_path} is unreadable ({error}); rerun the scan."
        ) from None
    return Run(run, summary)


def is_complete_run(path: Path) -> bool:
    return (path / SUMMARY).is_file()
