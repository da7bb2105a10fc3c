"""Every input kind segaudit reads, behind one face: :func:`open_dataset` -> :class:`Dataset`.

A dataset is found by convention in a folder, or from explicit paths:

- ``DATASET/labels.{npy,zarr}`` and ``DATASET/pred_probs.{npy,zarr}`` (stacked arrays),
  or ``DATASET/labels/`` (mask PNG/TIFF files) and ``DATASET/pred_probs/`` (one
  ``.npy``/``.npz`` per image), in any combination; optional ``DATASET/images.{npy,zarr}``
  or ``DATASET/images/`` photos and ``DATASET/classes.txt``;
- ``--labels``, ``--pred-probs``, ``--images``: a stacked store, a folder or a glob;
- ``--manifest FILE.csv``: id, labels, pred_probs[, image] per row;
- ``--layout cityscapes|voc|ade20k|camvid`` with ``--split``: a public dataset as its
  maintainers lay it out (:mod:`segaudit.sources.layouts`), predictions from
  ``--pred-probs PRED_DIR`` at ``PRED_DIR/ID.npy`` or ``.npz``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segaudit.errors import InputNotFoundError, InvalidInputError
from segaudit.sources.dataset import Dataset
from segaudit.sources.files import MASK_SUFFIXES, PHOTO_SUFFIXES, PROBS_SUFFIXES
from segaudit.sources.folder import (
    FolderMasks,
    FolderPhotos,
    FolderProbs,
    find_files,
    listed_folder,
    read_manifest,
)
from segaudit.sources.labelmap import LabelMap, read_label_map
from segaudit.sources.layouts import LAYOUTS, KnownLayout, get_layout
from segaudit.sources.remote import is_url
from segaudit.sources.stacked import StackedLabels, StackedPhotos, StackedProbs

__all__ = ["LAYOUTS", "Dataset", "DatasetSpec", "open_dataset"]

_WILDCARDS = set("*?[")
# Files of one image, never a whole input: a stacked input is .npy or Zarr.
_ONE_IMAGE_SUFFIXES = tuple(
    s for s in (*MASK_SUFFIXES, *PHOTO_SUFFIXES) if s not in (".npy", ".npz", ".zarr")
)


@dataclass(frozen=True)
class DatasetSpec:
    """Where a dataset is and how to read it, as a user gives it."""

    dataset: Path | str | None = None  # a str only for a URL
    labels: str | None = None
    pred_probs: str | None = None
    images: str | None = None
    class_names: Path | None = None
    manifest: Path | None = None
    layout: str | None = None
    splits: tuple[str, ...] = ()
    label_map: Path | None = None
    skip_unmatched: bool = False
    channels_last: bool = False
    ignore_index: int | None = None
    allow_absent_chunks: bool = False


def open_dataset(spec: DatasetSpec) -> Dataset:
    """Open the dataset ``spec`` describes, checking everything that can be checked
    without decoding pixels; one sentence (a :class:`~segaudit.errors.SegauditError`)
    when something is missing or inconsistent."""
    if spec.splits and spec.layout is None:
        raise InvalidInputError(
            "--split picks splits of a public dataset read with --layout; without --layout, "
            "point DATASET (or --labels and --pred-probs) at the split's files instead."
        )
    if is_url(spec.dataset) and (spec.layout is not None or spec.manifest is not None):
        raise InvalidInputError(
            f"{spec.dataset}: --layout and --manifest read local folders; give the stores' "
            "URLs with --labels and --pred-probs instead."
        )
    _refuse_unread_options(spec)
    if spec.manifest is not None:
        return _from_manifest(spec)
    if spec.layout == "nnunet":
        from segaudit.sources.nnunet import open_nnunet

        if spec.dataset is None:
            raise InvalidInputError("--layout nnunet needs the DATASET folder it describes.")
        return open_nnunet(
            Path(spec.dataset),
            spec.pred_probs,
            ignore_index=spec.ignore_index,
            skip_unmatched=spec.skip_unmatched,
            splits=spec.splits,
        )
    if spec.layout is not None:
        return _from_layout(spec)
    return _from_folder(spec)


def _refuse_unread_options(spec: DatasetSpec) -> None:
    """Options asked for are honoured or refused, never dropped: a manifest names every
    file itself; a layout finds masks and photos in its own folders; nnU-Net's
    ``dataset.json`` also names the classes and their values."""
    if spec.manifest is not None:
        way = "--manifest"
        unread = {"--labels": spec.labels, "--pred-probs": spec.pred_probs, "--images": spec.images}
    elif spec.layout is not None:
        way = f"--layout {spec.layout}"
        unread = {"--labels": spec.labels, "--images": spec.images}
        if spec.layout == "nnunet":
            unread |= {"--class-names": spec.class_names, "--label-map": spec.label_map,
                       "--channels-last": spec.channels_last}  # fmt: skip
    else:
        return
    given = [option for option, value in unread.items() if value]
    if given:
        raise InvalidInputError(
            f"{way} finds what it reads itself, so {', '.join(given)} would not be read; "
            f"leave {'it' if len(given) == 1 else 'them'} out."
        )


def default_void(num_classes: int) -> int:
    """The value void pixels are stored as when the user names none: 255, or 65535 when
    255 is a class."""
    return 255 if num_classes <= 255 else 65535


# -- the three ways in ---------------------------------------------------------------------


def _from_folder(spec: DatasetSpec) -> Dataset:
    folder = spec.dataset
    if folder is not None:
        _check_dataset_folder(folder)
    probs = _open_probs(_locate(folder, "pred_probs", spec.pred_probs, required=True), spec)
    names_path = _class_names_path(folder, spec)
    names = _class_names(names_path, probs.num_classes)
    label_map = _label_map(spec, names, probs.num_classes)
    void = _void(spec, label_map, probs.num_classes)
    labels = _open_labels(_locate(folder, "labels", spec.labels, required=True), label_map, void)
    photos_at = _locate(folder, "images", spec.images, required=False)
    photos = _open_photos(photos_at) if photos_at is not None else None
    return Dataset(
        labels,
        probs,
        photos,
        class_names=names,
        ignore_index=void,
        skip_unmatched=spec.skip_unmatched,
        class_names_path=names_path,
        allow_absent_chunks=spec.allow_absent_chunks,
    )


def _from_manifest(spec: DatasetSpec) -> Dataset:
    assert spec.manifest is not None
    rows = read_manifest(spec.manifest)
    origin = os.path.abspath(spec.manifest)
    probs = FolderProbs(
        {row["id"]: Path(row["pred_probs"]) for row in rows}, origin, spec.channels_last
    )
    names_path = _class_names_path(spec.dataset, spec)
    names = _class_names(names_path, probs.num_classes)
    label_map = _label_map(spec, names, probs.num_classes)
    void = _void(spec, label_map, probs.num_classes)
    labels = FolderMasks({row["id"]: Path(row["labels"]) for row in rows}, origin, label_map, void)
    with_photos = {row["id"]: Path(row["image"]) for row in rows if row.get("image")}
    photos = FolderPhotos(with_photos, origin) if with_photos else None
    return Dataset(
        labels,
        probs,
        photos,
        class_names=names,
        ignore_index=void,
        class_names_path=names_path,
        allow_absent_chunks=spec.allow_absent_chunks,
    )


def _from_layout(spec: DatasetSpec) -> Dataset:
    assert spec.layout is not None
    layout = get_layout(spec.layout)
    if spec.dataset is None:
        raise InvalidInputError(f"--layout {layout.name} needs the DATASET folder it describes.")
    if spec.pred_probs is None:
        raise InvalidInputError(
            f"--layout {layout.name} needs --pred-probs PRED_DIR holding ID.npy or ID.npz "
            "for each image (ids are SPLIT/.../NAME)."
        )
    entries = layout.find(spec.dataset, spec.splits)
    probs = _layout_probs(spec, layout, {e.image_id.split("/", 1)[0] for e in entries})
    names_path = spec.class_names
    names = (
        _class_names(names_path, probs.num_classes)
        if names_path is not None
        else list(layout.class_names)
    )
    label_map = (
        read_label_map(spec.label_map, names) if spec.label_map is not None else layout.label_map
    )
    label_map.check_classes(probs.num_classes)
    void = spec.ignore_index if spec.ignore_index is not None else default_void(probs.num_classes)
    origin = f"{os.path.abspath(spec.dataset)} ({layout.name} layout)"
    labels = FolderMasks({e.image_id: e.mask for e in entries}, origin, label_map, void)
    _listed(labels, spec.dataset)
    with_photos = {e.image_id: e.photo for e in entries if e.photo is not None}
    photos = FolderPhotos(with_photos, origin) if with_photos else None
    return Dataset(
        labels,
        probs,
        photos,
        class_names=names,
        ignore_index=void,
        skip_unmatched=spec.skip_unmatched,
        layout=layout.name,
        background=layout.background,
        class_names_path=names_path,
        allow_absent_chunks=spec.allow_absent_chunks,
    )


# -- pieces ------------------------------------------------------------------------------


def _layout_probs(spec: DatasetSpec, layout: KnownLayout, chosen: set[str]) -> FolderProbs:
    """PRED_DIR's predictions for the chosen splits: with --split val, the predictions
    PRED_DIR/train/... of the dataset's other splits are not images of this run."""
    assert spec.dataset is not None and spec.pred_probs is not None
    if Path(spec.pred_probs).is_file():
        raise InvalidInputError(
            f"--layout {layout.name} reads predictions per image: --pred-probs must be a "
            f"folder holding ID.npy or ID.npz for each image, not the file {spec.pred_probs}."
        )
    found = find_files(Path(spec.pred_probs), PROBS_SUFFIXES, "pred_probs")
    others = set(layout.splits(layout.root(spec.dataset))) - chosen
    kept = {i: path for i, path in found.items() if i.split("/", 1)[0] not in others}
    if not kept:
        raise InputNotFoundError(
            f"pred_probs {spec.pred_probs} holds no predictions for the split(s) "
            f"{', '.join(sorted(chosen))}; predictions are PRED_DIR/SPLIT/.../NAME.npy."
        )
    return _listed(FolderProbs(kept, str(spec.pred_probs), spec.channels_last), spec.pred_probs)


def _check_dataset_folder(folder: Path | str) -> None:
    """DATASET must be a folder (or a Zarr group holding the arrays)."""
    from segaudit.sources.stores import group_arrays, is_zarr_path

    if is_url(folder):
        from segaudit.sources.remote import check_url_folder

        check_url_folder(str(folder))
        return
    folder = Path(folder)
    if not folder.exists():
        raise InputNotFoundError(f"dataset folder {folder} does not exist; check the path.")
    if is_zarr_path(folder):
        group_arrays(folder)  # one sentence when it is an array, or unreadable
    elif not folder.is_dir():
        raise InvalidInputError(
            f"dataset {folder} is a file, not a folder; pass the folder that holds it, "
            "or the file itself with --labels or --pred-probs."
        )


def _locate(
    folder: Path | str | None, name: str, override: str | None, *, required: bool
) -> tuple[str, Any] | None:
    """Where one input is: ("stacked", path) or ("files", folder-or-glob), or None."""
    from segaudit.sources.stores import is_zarr_path

    if override is not None:
        text = str(override)
        if is_url(text):
            return _locate_url(text, name)
        if any(char in _WILDCARDS for char in text):
            return "files", text
        path = Path(text)
        if path.is_dir() and not is_zarr_path(path):
            return "files", text
        if path.is_file() and path.name.lower().endswith(_ONE_IMAGE_SUFFIXES):
            raise InvalidInputError(
                f"--{name.replace('_', '-')} {text} is one image's file; give the folder of "
                "them (or a glob such as 'masks/*.png')."
            )
        return "stacked", path
    if folder is None:
        if required:
            raise InputNotFoundError(f"give a DATASET folder or --{name.replace('_', '-')} PATH.")
        return None
    if is_url(folder):
        return _locate_in_url(str(folder), name, required)
    folder = Path(folder)
    if is_zarr_path(folder) and _group_has(folder, name):
        return "stacked", folder
    stacked = [folder / f"{name}{suffix}" for suffix in (".npy", ".zarr")]
    found = [path for path in stacked if path.exists()]
    if found and (folder / name).is_dir():
        raise InvalidInputError(
            f"{folder} holds both {found[0].name} and a {name}/ folder; pass "
            f"--{name.replace('_', '-')} with the one to read."
        )
    if found:
        return "stacked", found[0]
    if (folder / name).is_dir():
        return "files", str(folder / name)
    if required:
        raise InputNotFoundError(
            f"{folder} has no {name}.npy, {name}.zarr or {name}/ folder; "
            f"pass --{name.replace('_', '-')} PATH."
        )
    return None


def _locate_url(url: str, name: str) -> tuple[str, Any]:
    """A URL is a stacked store (``.npy``, Zarr) or a folder of one file per image."""
    from segaudit.sources.remote import is_zarr_url

    if any(char in _WILDCARDS for char in url):
        raise InvalidInputError(
            f"--{name.replace('_', '-')} {url}: globs are not read behind URLs; give the "
            "folder's URL."
        )
    if url.rstrip("/").lower().endswith(".npy") or is_zarr_url(url):
        return "stacked", url
    return "files", url


def _locate_in_url(folder: str, name: str, required: bool) -> tuple[str, Any] | None:
    """An input in a DATASET URL, by the same conventions as in a local folder."""
    from segaudit.sources.remote import url_kind

    base = folder.rstrip("/")
    for candidate, wanted, kind in (
        (f"{base}/{name}.npy", "file", "stacked"),
        (f"{base}/{name}.zarr", "folder", "stacked"),
        (f"{base}/{name}", "folder", "files"),
    ):
        if url_kind(candidate) == wanted:
            return kind, candidate
    if required:
        raise InputNotFoundError(
            f"{folder} has no {name}.npy, {name}.zarr or {name}/ folder; "
            f"pass --{name.replace('_', '-')} URL."
        )
    return None


def _listed(source: Any, folder: Any) -> Any:
    """``source``, knowing the local folder it was found by listing (see
    :meth:`Dataset.input_paths`)."""
    if not is_url(folder):
        source.listed = listed_folder(Path(folder))
    return source


def _found(target: str, suffixes: tuple[str, ...], what: str) -> tuple[dict[str, Any], str]:
    """One per-file input's files by id, and where they are (for messages)."""
    if is_url(target):
        from segaudit.sources.remote import find_url_files

        return find_url_files(target, suffixes, what), target
    return find_files(Path(target), suffixes, what), os.path.abspath(target)


def _group_has(folder: Path, name: str) -> bool:
    """Whether the Zarr group ``folder`` holds an array ``name``."""
    from segaudit.sources.stores import group_arrays

    arrays = group_arrays(folder)
    return arrays is not None and name in arrays


def _open_probs(where: tuple[str, Any] | None, spec: DatasetSpec) -> Any:
    from segaudit.sources.stores import open_store

    assert where is not None
    kind, target = where
    if kind == "stacked":
        return StackedProbs(open_store(target, "pred_probs"), spec.channels_last)
    probs = FolderProbs(*_found(target, PROBS_SUFFIXES, "pred_probs"), spec.channels_last)
    return _listed(probs, target)


def _open_labels(where: tuple[str, Any] | None, label_map: LabelMap | None, void: Any) -> Any:
    from segaudit.sources.stores import open_store

    assert where is not None
    kind, target = where
    if kind == "stacked":
        if label_map is not None:
            raise InvalidInputError(
                "--label-map applies to mask files; stacked labels already hold class ids."
            )
        return StackedLabels(open_store(target, "labels"))
    return _listed(FolderMasks(*_found(target, MASK_SUFFIXES, "labels"), label_map, void), target)


def _open_photos(where: tuple[str, Any]) -> Any:
    from segaudit.sources.stores import open_store

    kind, target = where
    if kind == "stacked":
        return StackedPhotos(open_store(target, "images"))
    return _listed(FolderPhotos(*_found(target, PHOTO_SUFFIXES, "images")), target)


def _class_names_path(folder: Path | str | None, spec: DatasetSpec) -> Path | str | None:
    if spec.class_names is not None:
        return spec.class_names
    if is_url(folder):
        from segaudit.sources.remote import url_kind

        names = f"{str(folder).rstrip('/')}/classes.txt"
        return names if url_kind(names) == "file" else None
    folder = Path(folder) if folder is not None else None
    if folder is not None and (folder / "classes.txt").is_file():
        return folder / "classes.txt"
    return None


def _class_names(path: Path | str | None, num_classes: int) -> list[str] | None:
    from segaudit.sources.stores import read_class_names

    return read_class_names(path, num_classes) if path is not None else None


def _label_map(spec: DatasetSpec, names: list[str] | None, num_classes: int) -> LabelMap | None:
    if spec.label_map is None:
        return None
    label_map = read_label_map(spec.label_map, names)
    label_map.check_classes(num_classes)
    return label_map


def _void(spec: DatasetSpec, label_map: LabelMap | None, num_classes: int) -> int | None:
    """The ignore value: the user's, or a default when a label map has void entries."""
    if spec.ignore_index is not None or label_map is None:
        return spec.ignore_index
    return default_void(num_classes)
