"""Reading a complete run back: its summary, its image table and its per-pixel arrays.

Every later command (``score`` reusing a scan, ``swaps``, ``render``, ``eval``) reads a
run through :class:`Run`, image by image, whatever the images' sizes: ``run.read(name,
i)`` is image i of the array ``name`` (``labels``, ``pred_labels``, ``pixel_scores``,
``issues``) at its own size. A run on an object store (``s3://bucket/runs/nightly``) is
read through a local copy filled as it is read (:mod:`segaudit.runs.remote_read`).
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


def array_entry(name: str) -> str:
    """The name of the run's folder holding the per-pixel array ``name``."""
    return f"{name}.zarr"


def array_path(run: Path, name: str) -> Path:
    """Where the run keeps the per-pixel array ``name``."""
    return run / array_entry(name)


@dataclass
class Run:
    """A complete run directory, opened read-only; for a run on an object store,
    ``path`` is its local copy and ``objects`` fetches into it what is read."""

    path: Path
    summary: dict[str, Any]
    objects: Any = field(default=None, repr=False)
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

    @property
    def location(self) -> str:
        """Where the run is, as it was named: its folder or its URL."""
        return self.objects.url if self.objects is not None else str(self.path)

    def where(self, entry: str) -> str:
        """Where the run's top-level ``entry`` is, for messages."""
        return f"{self.objects.url.rstrip('/')}/{entry}" if self.objects else str(self.path / entry)

    def local(self, entry: str) -> Path:
        """The local path of the run's top-level file or folder ``entry`` (fetched
        first for a run on an object store)."""
        return self.objects.fetch(entry) if self.objects is not None else self.path / entry

    def has(self, name: str) -> bool:
        """Whether the run holds the per-pixel array ``name``."""
        if self.objects is not None:
            return bool(self.objects.holds(array_entry(name)))
        return array_path(self.path, name).is_dir()

    def publish(self, entries: list[str], command: str) -> None:
        """Upload what ``command`` wrote into the run's local copy (``swaps.csv``,
        ``render``) to its object store; nothing to do for a run directory."""
        if self.objects is not None:
            self.objects.publish(entries, self.summary, command)

    def current_summary(self) -> dict[str, Any] | None:
        """The summary the run's location holds now; None when it holds no complete run."""
        if self.objects is not None:
            from segaudit.runs.remote_read import current_summary

            return current_summary(self.objects.url)
        try:
            return open_run(self.path).summary
        except RunDirectoryError:
            return None

    def read(self, name: str, index: int) -> np.ndarray:
        """Image ``index`` of the per-pixel array ``name``, at the image's own size."""
        array = self._array(name)
        try:
            return array.read_image(index)
        except (OSError, ValueError) as error:
            raise RunDirectoryError(
                f"{self.where(array_entry(name))} is damaged at image {index} ({error}); "
                f"rerun `segaudit scan` into {self.location}."
            ) from None

    def _array(self, name: str) -> ImageArray:
        if name not in self._arrays:
            shown = self.where(array_entry(name))
            path = self.local(array_entry(name))
            if not path.exists():
                raise RunDirectoryError(
                    f"{shown} is missing from the run; rerun `segaudit scan` into {self.location}."
                )
            try:
                self._arrays[name] = open_image_array(path)
            except (OSError, ValueError, KeyError) as error:
                raise RunDirectoryError(
                    f"{shown} is not readable ({error}); "
                    f"rerun `segaudit scan` into {self.location}."
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
    if is_url(path):  # checked against its manifest, then read through a local copy
        from segaudit.runs.remote_read import open_remote_run

        return open_remote_run(str(path))
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
    check_summary(summary, summary_path)
    return Run(run, summary)


def check_summary(summary: Any, where: Any) -> None:
    """Refuse a ``summary.json`` without what every reader of a run looks up in it."""
    dataset = summary.get("dataset") if isinstance(summary, dict) else None
    classes = summary.get("classes") if isinstance(summary, dict) else None
    parameters = summary.get("parameters") if isinstance(summary, dict) else None
    usable = (
        isinstance(dataset, dict)
        and isinstance(dataset.get("num_classes"), int)
        and isinstance(classes, dict)
        and isinstance(classes.get("names"), list)
        and isinstance(parameters, dict)
    )
    if not usable:
        raise RunDirectoryError(
            f"{where} is not a segaudit run's summary (it lacks the dataset, its classes or "
            "the parameters); rerun the scan."
        )


def is_complete_run(path: Path) -> bool:
    return (path / SUMMARY).is_file()
