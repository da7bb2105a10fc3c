"""The output folder and the files every layout shares: ``classes.txt`` and ``synth.json``.

The folder is made (or cleared of an earlier dataset under ``force``) before anything is
generated and cleaned up after a failure; ``synth.json`` is written last, atomically, so
a dataset with a ``synth.json`` is complete.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from segaudit import __version__
from segaudit.errors import OutputWriteError
from segaudit.synth.annotation_errors import Event, kinds_of
from segaudit.synth.options import FORMATS, OutputNotEmptyError, SynthOptions

ARRAY_NAMES = ("labels", "pred_probs", "images", "true_labels", "is_corrupted", "errors")
FOLDER_ENTRIES = ("labels", "pred_probs", "images", "true_labels", "is_corrupted.csv", "errors")
# The error maps are not listed under "files" in synth.json: that record keeps the keys
# it always had, so datasets made before the maps existed read the same.
UNRECORDED_FILES = ("errors",)
_SHARED_FILES = ("classes.txt", "synth.json", "synth.json.tmp")
VOLUME_ENTRIES = (  # segaudit synth --volumes: nnU-Net's raw layout
    "dataset.json", "dataset.json.tmp", "imagesTr", "labelsTr", "predictions", "true_labels",
    "is_corrupted.csv", "errors.json", "errors.json.tmp",
)


def label_dtype(classes: int) -> type[np.unsignedinteger]:
    """The smallest unsigned integer type holding every class id."""
    return np.uint8 if classes <= 256 else np.uint16


def output_names() -> list[str]:
    """Every name a dataset of any layout puts in its folder."""
    stacked = [f"{name}.{fmt}" for fmt in FORMATS for name in ARRAY_NAMES]
    return [*stacked, *FOLDER_ENTRIES, *_SHARED_FILES, *VOLUME_ENTRIES]


def prepare_out(out: Path, force: bool, needed_bytes: int) -> list[Path]:
    """Create ``out`` (or clear our files from it under ``force``); return what to undo."""
    if out.exists() and not out.is_dir():
        raise OutputNotEmptyError(f"{out} is a file; choose a folder for the dataset.")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise OutputNotEmptyError(
            f"{out} is not empty; choose a new folder or pass --force to overwrite."
        )
    created = [] if out.exists() else [out]
    try:
        if force:  # a stale dataset of another format or layout would make the folder ambiguous
            for name in output_names():
                _remove(out / name)
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputWriteError(f"could not prepare {out}: {error}") from None
    free = shutil.disk_usage(out).free
    if needed_bytes > free:
        cleanup(out, created)
        raise OutputWriteError(
            f"the dataset needs {needed_bytes / 1e9:.2f} GB but {out} has only "
            f"{free / 1e9:.2f} GB free; use fewer or smaller images."
        )
    return created


@contextlib.contextmanager
def removed_on_failure(out: Path, created: list[Path]) -> Iterator[None]:
    """Remove a half-written dataset when writing it fails; an OS error (a full disk, a
    permission) is one sentence."""
    try:
        yield
    except OSError as error:
        cleanup(out, created)
        raise OutputWriteError(f"could not write the dataset to {out}: {error}") from None
    except BaseException:
        cleanup(out, created)
        raise


def cleanup(out: Path, created: list[Path]) -> None:
    """Remove a half-written dataset: our files, and ``out`` itself if we created it."""
    for name in output_names():
        _remove(out / name)
    for path in created:
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def new_report(
    options: SynthOptions,
    files: dict[str, Any],
    is_corrupted: np.ndarray,
    extras: dict[str, Any],
) -> dict[str, Any]:
    """What ``synth.json`` holds before any image is made; corruptions are added as made.

    ``extras`` (a layout's own keys) follow the list of corrupted images.
    """
    return {
        "generator": f"segaudit {__version__} synth",
        "parameters": _parameters(options),
        "files": files,
        "corrupted_images": [int(i) for i in np.flatnonzero(is_corrupted)],
        **extras,
        "corruptions": [],
        "noisy_pixels": 0,
    }


def _parameters(options: SynthOptions) -> dict[str, Any]:
    """The options as given; the stacked layout's keep the keys they always had, and
    ``difficulty`` appears only when it is not the standard one."""
    given = _layout_parameters(options)
    if options.difficulty != "standard":
        given["difficulty"] = options.difficulty
    return given


def _layout_parameters(options: SynthOptions) -> dict[str, Any]:
    height, width = options.sizes[0]
    if options.layout == "stacked":
        return {
            "images": options.images,
            "height": height,
            "width": width,
            "classes": options.classes,
            "seed": options.seed,
            "dtype": options.dtype,
            "format": options.fmt,
            "corrupt_fraction": options.corrupt_fraction,
            "class_names": list(options.class_names),
        }
    return {
        "images": options.images,
        "height": options.height,
        "width": options.width,
        "sizes": [list(size) for size in options.sizes],
        "classes": options.classes,
        "seed": options.seed,
        "dtype": options.dtype,
        "layout": options.layout,
        "corrupt_fraction": options.corrupt_fraction,
        "class_names": list(options.class_names),
    }


def record_image(
    report: dict[str, Any],
    i: int,
    events: list[Event],
    noisy_pixels: int,
    image_id: str | None = None,
) -> None:
    """Add corrupted image ``i`` (and its id, in a folder) with its errors to the report."""
    entry: dict[str, Any] = {"image": i}
    if image_id is not None:
        entry["id"] = image_id
    entry.update(kinds=kinds_of(events), events=events)
    report["corruptions"].append(entry)
    report["noisy_pixels"] += noisy_pixels


def write_small_files(out: Path, class_names: tuple[str, ...], report: dict[str, Any]) -> None:
    """``classes.txt``, then ``synth.json`` last and atomically: the dataset is complete."""
    (out / "classes.txt").write_text("".join(f"{n}\n" for n in class_names), encoding="utf-8")
    tmp = out / "synth.json.tmp"
    tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    tmp.replace(out / "synth.json")
