"""A dataset: images by id, each with its labels, predictions and (optionally) a photo.

Each input (labels, pred_probs, photos) is either stacked (one array, images by
index) or per-file (images by id). :class:`Dataset` pairs them: per-file inputs by
id, a stacked input with a per-file one in sorted id order (the stacked store's image
i is the i-th id), two stacked inputs by index (ids ``0``, ``1``, ...). Images may
have different sizes; the engine reads them one at a time.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segaudit.errors import InputChangedError, InvalidInputError
from segaudit.sources.files import Loaded
from segaudit.sources.folder import describe_unmatched
from segaudit.sources.remote import is_url
from segaudit.sources.volumes import check_volume_axes, iter_slabs


@dataclass
class Pairing:
    """Which entry of each input is image i, and what was left out."""

    ids: list[str]
    labels: list[Any]
    probs: list[Any]
    photos: list[Any] | None
    skipped: dict[str, Any] = field(default_factory=dict)


def pair_inputs(labels: Any, probs: Any, photos: Any | None, skip_unmatched: bool) -> Pairing:
    """Match images across inputs (see the module's docstring); unmatched images are an
    error naming the first few, or with ``skip_unmatched`` left out and counted."""
    skipped: dict[str, Any] = {}
    if labels.ids is not None and probs.ids is not None:
        label_ids, probs_ids = set(labels.ids), set(probs.ids)
        only_labels = sorted(label_ids - probs_ids)
        only_probs = sorted(probs_ids - label_ids)
        problems = []
        if only_labels:
            problems.append(describe_unmatched(only_labels, "masks", "a prediction"))
        if only_probs:
            problems.append(describe_unmatched(only_probs, "predictions", "a mask"))
        if problems and not skip_unmatched:
            raise InvalidInputError(
                f"{'; '.join(problems)}; pair every mask with a prediction of the same id, "
                "or pass --skip-unmatched to leave them out."
            )
        skipped = {
            "masks_without_prediction": len(only_labels),
            "predictions_without_mask": len(only_probs),
            "examples": (only_labels + only_probs)[:10],
        }
        ids = sorted(label_ids & probs_ids)
        if not ids:
            raise InvalidInputError(
                f"no image has both a mask in {labels.origin} and a prediction in "
                f"{probs.origin}; check that their file names match."
            )
        label_keys, probs_keys = list(ids), list(ids)
    else:
        ids, label_keys, probs_keys = _pair_by_order(labels, probs)
    photo_keys = _photo_keys(photos, ids, label_keys) if photos is not None else None
    if photos is not None and photos.ids is not None:
        missing = sum(key is None for key in photo_keys or [])
        skipped["images_without_photo"] = missing
    return Pairing(ids, label_keys, probs_keys, photo_keys, skipped)


def _check_stacked_shapes(labels: Any, probs: Any) -> None:
    """Two stacked inputs must agree on N, H and W."""
    if len(labels) == len(probs) and (len(labels) == 0 or labels.size(0) == probs.size(0)):
        return
    layout = "(N, H, W, K) with --channels-last" if probs.channels_last else "(N, K, H, W)"
    raise InvalidInputError(
        f"{probs.path} has shape {probs.source.shape} but {labels.path} has "
        f"{labels.source.shape}; N, H and W must match (pred_probs is read as {layout})."
    )


def _pair_by_order(labels: Any, probs: Any) -> tuple[list[str], list[Any], list[Any]]:
    """A stacked input with another input: index i is the i-th image in sorted id order."""
    if hasattr(labels, "source") and hasattr(probs, "source"):
        _check_stacked_shapes(labels, probs)
    if len(labels) != len(probs):
        raise InvalidInputError(
            f"{_where(labels)} holds {len(labels)} images but {_where(probs)} holds "
            f"{len(probs)}; a stacked input pairs with another input image by image."
        )
    named = labels if labels.ids is not None else probs if probs.ids is not None else None
    if named is None:
        ids = [str(i) for i in range(len(labels))]
        return ids, list(range(len(labels))), list(range(len(probs)))
    ids = sorted(named.ids)
    indices = list(range(len(ids)))
    return ids, (ids if named is labels else indices), (ids if named is probs else indices)


def _photo_keys(photos: Any, ids: list[str], label_keys: list[Any]) -> list[Any]:
    if photos.ids is None:
        if len(photos) != len(ids):
            raise InvalidInputError(
                f"{_where(photos)} holds {len(photos)} images but the dataset has {len(ids)}; "
                "pass photos for every image, or none."
            )
        return list(range(len(ids)))
    known = set(photos.ids)
    return [image_id if image_id in known else None for image_id in ids]


def _where(source: Any) -> str:
    return str(getattr(source, "path", None) or getattr(source, "origin", source.what))


@dataclass(frozen=True)
class Where:
    """How messages name one image's inputs: the labels' and predictions' file names,
    and the image's place in them (``"image 3, "`` in a stacked store, else empty)."""

    labels: str
    probs: str
    labels_place: str = ""
    probs_place: str = ""

    @property
    def probs_image(self) -> str:
        """The predictions of this one image: ``p.npy (image 3)`` or the file itself."""
        place = self.probs_place.rstrip(", ")
        return f"{self.probs} ({place})" if place else self.probs


def _name_in(source: Any, key: Any) -> tuple[str, str]:
    """(file name, place) of one image in an input: a stacked store names the image."""
    if source.ids is None:
        return str(source.path), f"image {key}, "
    return source.file_of(key), ""


class Dataset:
    """What every command reads images through, whatever the stores (see module doc)."""

    def __init__(
        self,
        labels: Any,
        probs: Any,
        photos: Any | None = None,
        *,
        class_names: Sequence[str] | None = None,
        ignore_index: int | None = None,
        skip_unmatched: bool = False,
        layout: str | None = None,
        class_names_path: Path | str | None = None,
        allow_absent_chunks: bool = False,
        background: Sequence[int] | None = None,
    ) -> None:
        from segaudit.sources.fingerprints import store_fingerprint

        refuse_absent_probs(probs, allow_absent_chunks)
        self._names_identity = (
            store_fingerprint(class_names_path) if class_names_path is not None else None
        )
        self.labels, self.probs, self.photos = labels, probs, photos
        pairing = pair_inputs(labels, probs, photos, skip_unmatched)
        photo_keys = [key for key in pairing.photos or [] if key is not None]
        for source, keys in (
            (labels, pairing.labels),
            (probs, pairing.probs),
            (photos, photo_keys),
        ):
            if source is not None and source.ids is not None:
                source.restrict(keys)
        self.ids = pairing.ids
        self._keys = (pairing.labels, pairing.probs, pairing.photos)
        self.skipped = pairing.skipped
        self.num_classes = int(probs.num_classes)
        self.probs_dtype = np.dtype(probs.dtype)
        self.channels_last = bool(probs.channels_last)
        self.ignore_index = ignore_index
        self.layout = layout
        self.modality: str | None = None  # a volume's scan: "CT", "MR", ... (nnU-Net)
        self.background = tuple(background) if background is not None else None
        self.class_names_path = class_names_path
        self.class_names = list(class_names) if class_names is not None else None
        self.sizes = np.array([labels.size(key) for key in pairing.labels], np.int64).reshape(-1, 2)
        self.volumes = [
            labels.volume(key) if hasattr(labels, "volume") else None for key in pairing.labels
        ]
        self.depths = np.array([v.shape[0] if v else 1 for v in self.volumes], np.int64)
        if self.has_volumes:
            self._check_volumes()
        if self.num_classes < 2:
            raise InvalidInputError(
                f"{_where(probs)} has {self.num_classes} class(es); at least 2 are needed."
            )
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            raise InvalidInputError(
                f"{class_names_path or 'the class list'} names {len(self.class_names)} classes "
                f"but the predictions have {self.num_classes}; give one name per class."
            )

    def _check_volumes(self) -> None:
        """Volumes need per-file (K, Z, Y, X) predictions whose axes agree with each mask."""
        if self.probs.ids is None or self.channels_last:
            raise InvalidInputError(
                f"{_where(self.probs)}: the masks are volumes, whose predictions are one "
                "(K, Z, Y, X) .npy or .npz file per volume, as nnU-Net writes them."
            )
        for index, volume in enumerate(self.volumes):
            key = self._keys[1][index]
            shape = self.probs.header(key).shape
            if volume is None:
                if len(shape) == 4:
                    raise InvalidInputError(
                        f"predictions {self.probs.file_of(key)} are a volume {shape} but the "
                        f"mask {self.labels.file_of(self._keys[0][index])} is a 2-D image."
                    )
                continue
            check_volume_axes(shape, volume, self.probs.file_of(key))

    # -- shape of the dataset ---------------------------------------------------------

    @property
    def has_volumes(self) -> bool:
        """Whether any image is a 3-D volume (see :mod:`segaudit.sources.volumes`)."""
        return any(v is not None for v in self.volumes)

    def volume(self, index: int) -> Any:
        """Image ``index``'s volume header (geometry), or None for a 2-D image."""
        return self.volumes[index]

    @property
    def num_images(self) -> int:
        return len(self.ids)

    @property
    def probs_name(self) -> str:
        """Where the predictions are, for messages about all of them."""
        return _where(self.probs)

    @property
    def uniform(self) -> bool:
        """Whether every image has the same size (runs then store (N, H, W) arrays)."""
        return bool(len(self.sizes) == 0 or (self.sizes == self.sizes[0]).all())

    def pixels(self, index: int) -> int:
        height, width = self.sizes[index]
        return int(height * width)

    @property
    def offsets(self) -> np.ndarray:
        """Pixels before each image, and the total at the end: (N + 1,) int64."""
        return np.concatenate([[0], np.cumsum(self.sizes[:, 0] * self.sizes[:, 1])])

    def image_bytes(self, index: int) -> int:
        """Bytes of one image's predictions (what a worker holds while it scans it)."""
        return self.pixels(index) * self.num_classes * self.probs_dtype.itemsize

    @property
    def label_dtype(self) -> np.dtype:
        return np.dtype(self.labels.dtype)

    @property
    def has_photos(self) -> bool:
        return self._keys[2] is not None and any(key is not None for key in self._keys[2])

    def names(self) -> list[str]:
        """Class names, or ``class_0``... when the dataset has none."""
        if self.class_names is not None:
            return list(self.class_names)
        return [f"class_{k}" for k in range(self.num_classes)]

    # -- reading ----------------------------------------------------------------------

    def read_labels(self, index: int) -> Loaded:
        """Image ``index``'s labels (H, W): class ids, void as the ignore value."""
        return self.labels.read(self._keys[0][index])

    def read_probs(self, index: int, populate: bool = True) -> Loaded:
        """Image ``index``'s predictions as stored: (K, h, w), or (h, w, K) channels-last."""
        key = self._keys[1][index]
        if self.probs.ids is None:
            return self.probs.read(key, populate=populate)
        return self.probs.read(key)

    def read_slabs(self, index: int, slices: int) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """A volume's (first sheet row, labels (s·Y, X), predictions (K, s·Y, X)), ``slices``
        slices at a time, in order: the volume is never read whole."""
        volume = self.volumes[index]
        assert volume is not None
        probs = self.probs.read_volume(self._keys[1][index])
        check_volume_axes(probs.array.shape, volume, self.probs.file_of(self._keys[1][index]))
        for start, labels, slab in iter_slabs(volume, probs, slices):
            depth, height, width = labels.shape
            sheet = self.labels.mapped(labels.reshape(depth * height, width), volume.path)
            yield start * height, sheet, slab.reshape(len(slab), depth * height, width)

    def read_photo(self, index: int) -> np.ndarray | None:
        """Image ``index``'s photo (H, W, 3) uint8 (a volume's scan: (Z, Y, X) float32), or
        None when it has none."""
        if self._keys[2] is None or self._keys[2][index] is None:
            return None
        assert self.photos is not None
        return np.asarray(self.photos.read(self._keys[2][index]).array)

    def where(self, index: int) -> Where:
        """Names of image ``index``'s labels and predictions, for messages."""
        labels, labels_place = _name_in(self.labels, self._keys[0][index])
        probs, probs_place = _name_in(self.probs, self._keys[1][index])
        return Where(labels, probs, labels_place, probs_place)

    def files_of(self, index: int) -> dict[str, str]:
        """Where image ``index`` comes from, per input (for tables and messages)."""
        found = {
            "labels": self.labels.file_of(self._keys[0][index]),
            "pred_probs": self.probs.file_of(self._keys[1][index]),
        }
        if self._keys[2] is not None and self._keys[2][index] is not None:
            assert self.photos is not None
            found["image"] = self.photos.file_of(self._keys[2][index])
        return found

    # -- identity ---------------------------------------------------------------------

    def inputs(self) -> dict[str, Any]:
        """Each input's description and identity (absolute paths), for summary.json."""
        described = {"labels": self.labels.describe(), "pred_probs": self.probs.describe()}
        if self.photos is not None:
            described["images"] = self.photos.describe()
        if self._names_identity is not None:
            assert self.class_names_path is not None
            described["class_names"] = {
                "path": absolute_or_url(self.class_names_path),
                "format": "text",
                **self._names_identity,
            }
        return described

    def input_paths(self) -> list[Path]:
        """Every file or folder this dataset reads, and every folder it lists for files (a
        run may not be written over them, nor inside a listed folder, where its files would
        join the input's)."""
        paths: list[Path] = []
        for source in self._sources():
            if getattr(source, "listed", None) is not None:
                paths.append(source.listed)
            if source.ids is None:
                if not is_url(source.path):  # a URL cannot overlap a local run
                    paths.append(Path(source.path))
            else:
                paths += [p for p in source.paths.values() if not is_url(p)]
        if self.class_names_path is not None and not is_url(self.class_names_path):
            paths.append(Path(self.class_names_path))
        return paths

    def check_unchanged(self) -> None:
        """Raise when an input (the class-names file included) changed since it was opened."""
        from segaudit.sources.fingerprints import store_fingerprint

        for source in self._sources():
            source.check_unchanged()
        if self._names_identity is not None:
            assert self.class_names_path is not None
            if store_fingerprint(self.class_names_path) != self._names_identity:
                raise InputChangedError(
                    f"{self.class_names_path} changed while segaudit was reading it; rerun "
                    "once the file is stable."
                )

    def absent_chunk_images(self) -> dict[str, list[int]]:
        """Images with absent Zarr chunks, per stacked input that has any."""
        return {
            name: source.absent
            for name, source in (
                ("labels", self.labels),
                ("pred_probs", self.probs),
                ("images", self.photos),
            )
            if source is not None and source.absent
        }

    def _sources(self) -> list[Any]:
        return [s for s in (self.labels, self.probs, self.photos) if s is not None]


def absolute_or_url(path: Any) -> str:
    """A local path made absolute (links kept); a URL as it is."""
    return str(path) if is_url(path) else os.path.abspath(path)


def shown_images(images: list[int], limit: int = 5) -> str:
    """``0, 4, 7, ...`` for messages: the first few image indices."""
    return ", ".join(str(i) for i in images[:limit]) + (", ..." if len(images) > limit else "")


def refuse_absent_probs(probs: Any, allowed: bool) -> None:
    """Absent pred_probs chunks can only mean one constant row for a whole image."""
    missing = probs.absent
    if missing and not allowed:
        raise InvalidInputError(
            f"{probs.path} has absent Zarr chunks in {len(missing)} image(s) "
            f"({shown_images(missing)}), which would read as one constant value instead of "
            "the model's probabilities; write those chunks, or pass --allow-absent-chunks "
            "to read them as the fill value."
        )
