"""The photos a run's pictures are drawn over, checked to be the ones it was scanned with.

A run records its photos as it recorded every input: a stacked store (path and
fingerprint in ``summary.json``) or one file per image (paths in ``images.csv``, and
a fingerprint of all of them). Pages are drawn over those photos only while they are
still the same files; ``--images PATH`` draws others (a stacked store, or a folder
matched to the run's images by id). Every photo is opened like an input: a pipe, a
device or an unreadable store is refused with one sentence.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from segaudit.errors import InputChangedError, InputNotFoundError, InvalidInputError
from segaudit.safetext import printable


class PhotoReader:
    """Photos of a stacked store indexed by image, read through the store's checked reader."""

    def __init__(self, source: Any) -> None:
        self.source = source
        self.shape = source.shape

    def __getitem__(self, index: int) -> np.ndarray:
        return self.source.read(index, index + 1, populate=False)[0]


class FilePhotos:
    """One photo file per image (None where an image has none), indexed by image. A
    single-slice NIfTI scan (the photo of a one-slice volume, which the pass reads as a
    2-D image) is shown through the window of its ``modality``, as volumes are."""

    def __init__(self, paths: list[Path | None], sizes: np.ndarray, modality: str = "") -> None:
        self.paths, self.sizes, self.modality = paths, sizes, modality

    def has(self, index: int) -> bool:
        return self.paths[index] is not None

    def __getitem__(self, index: int) -> np.ndarray | None:
        from segaudit.sources.files import read_photo
        from segaudit.sources.volumes import is_volume_file

        path = self.paths[index]
        if path is None:
            return None
        photo = self._scan(path) if is_volume_file(path) else read_photo(path)
        if photo.shape[:2] != tuple(int(n) for n in self.sizes[index]):
            raise InvalidInputError(
                f"photo {printable(path)} is {photo.shape[0]}×{photo.shape[1]} but its mask is "
                f"{self.sizes[index][0]}×{self.sizes[index][1]}; pass --images with photos "
                "of the masks' sizes."
            )
        return photo

    def _scan(self, path: Path) -> np.ndarray:
        from segaudit.report.volume_pictures import grey_to_rgb, window_photo
        from segaudit.sources.volumes import nifti_header, read_scan

        scan = read_scan(nifti_header(path, "image"))
        if scan.shape[0] != 1:
            raise InvalidInputError(
                f"photo {printable(path)} is a scan of {scan.shape[0]} slices, but its mask "
                "has one; pass --images with the masks' own scans."
            )
        return grey_to_rgb(window_photo(scan, self.modality)[0])


def open_images(path: str | os.PathLike[str], shape: tuple[int, int, int]) -> PhotoReader:
    """Photos (N,H,W,3) uint8 from ``.npy`` (memory-mapped) or Zarr, checked against the labels.

    Opened like every input: a pipe, a device or an unreadable store is refused with one
    sentence instead of being waited on or failing later.
    """
    from segaudit.sources.stores import open_store

    path = Path(path)
    if not os.path.lexists(path):
        raise InputNotFoundError(
            f"images {printable(path)} do not exist; pass --images PATH to the photos."
        )
    source = open_store(path, "images")
    expected = (*shape, 3)
    if source.shape != expected or source.dtype != np.uint8:
        raise InvalidInputError(
            f"images {printable(path)} must be uint8 of shape {expected} to match the labels; "
            f"got {source.dtype} {source.shape}."
        )
    return PhotoReader(source)


def check_recorded_images(path: str | os.PathLike[str], recorded: dict[str, Any]) -> None:
    """Refuse photos that are not the file the run was scanned with.

    A run records its inputs' fingerprints; a file at the same path with another size,
    time or content (replaced, regenerated, or another dataset's) would be drawn under
    this run's labels. Only the fingerprint fields the run recorded are compared.
    """
    from segaudit.sources.fingerprints import store_fingerprint

    _refuse_changed(path, store_fingerprint(Path(path)), recorded)


def _refuse_changed(path: Any, now: dict[str, Any], recorded: dict[str, Any]) -> None:
    changed = [key for key, value in now.items() if key in recorded and recorded[key] != value]
    if changed:
        raise InputChangedError(
            f"images {printable(path)} are not the photos this run was scanned with (their "
            f"{', '.join(changed)} changed); pass --images PATH to draw these or other photos."
        )


def recorded_images(run: Any) -> tuple[str | None, dict[str, Any]]:
    """The photos' path and fingerprint as the run recorded them (None when it had none)."""
    record = (run.summary.get("inputs") or {}).get("images") or {}
    return record.get("path"), record


def run_photos(run: Any, images: str | os.PathLike[str] | None) -> Any:
    """The photos to draw a run's pages over: ``images`` if given, else those it recorded."""
    table = run.images
    if images is not None:
        return _given_photos(Path(images), run)
    path, record = recorded_images(run)
    if not path:
        return None
    recorded = [table.photo(i) for i in range(table.num_images)]
    if record.get("format") == "run":  # kept in the run itself (a Scanner's photos)
        for entry in sorted({Path(p).parts[0] for p in recorded if p}):
            run.local(entry)  # fetched first from a run on an object store
        return FilePhotos([run.path / p if p else None for p in recorded], table.sizes)
    if record.get("format") != "files":
        photos = open_images(path, (table.num_images, *_one_size(run, path)))
        check_recorded_images(path, record)
        return photos
    from segaudit.sources.folder import files_fingerprint

    paths = [Path(p) if p else None for p in recorded]
    _refuse_changed(path, files_fingerprint([p for p in paths if p is not None]), record)
    volumes = (run.summary.get("dataset") or {}).get("volumes") or {}
    return FilePhotos(paths, table.sizes, str(volumes.get("modality") or ""))


def _one_size(run: Any, path: Any) -> tuple[int, int]:
    table = run.images
    if not table.uniform:
        raise InvalidInputError(
            f"images {printable(path)} are one stacked store, but the run's images have "
            "several sizes; pass --images with a folder of one photo per image."
        )
    return int(table.sizes[0, 0]), int(table.sizes[0, 1])


def _given_photos(path: Path, run: Any) -> Any:
    """``--images PATH``: a stacked store, or a folder of photos named by the run's ids."""
    from segaudit.sources.stores import is_zarr_path

    table = run.images
    if path.is_dir() and not is_zarr_path(path):
        from segaudit.sources.files import PHOTO_SUFFIXES
        from segaudit.sources.folder import find_files

        found = find_files(path, PHOTO_SUFFIXES, "images")
        return FilePhotos([found.get(image_id) for image_id in table.ids], table.sizes)
    return open_images(path, (table.num_images, *_one_size(run, path)))
