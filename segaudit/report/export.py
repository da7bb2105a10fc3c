"""``segaudit export``: a run's regions handed to the tools where labels are fixed.

``coco``: one COCO instances document (the format CVAT, Label Studio, FiftyOne and
Datumaro import). ``images`` are the run's images that hold an exported region, each
with ``file_name`` the photo's path relative to the folder all the run's photos share
(the image's id where the dataset has no photo files) and ``segaudit_id`` its id;
``categories`` are the dataset's classes, id = class + 1, named, with supercategory
``background`` or ``object``; each region is an annotation whose ``category_id`` is the
*predicted* class (the label a reviewer most likely wants), whose ``segmentation`` is
its pixels as compressed RLE from ``pycocotools`` (``iscrowd`` 1, as COCO pairs RLE
masks), ``bbox`` ``[x, y, width, height]`` and ``area`` its pixel count, and whose
``attributes`` hold ``region, score, kind, given_class, predicted_class`` (and the
class names and rank), as CVAT's COCO import reads them.

``csv``: ``regions.csv``'s rows with each image's ``labels_file`` and ``photo_file``.

Both keep regions.csv's order (worst first) after the filters (``--kind``,
``--class``, then ``--top``). An existing file at the output path is replaced only
when it is an earlier export (or with ``force``). An output URL (``s3://bucket/x.json``)
is written locally, then uploaded as one object.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segaudit import __version__
from segaudit.engine.region_scores import KINDS
from segaudit.errors import InvalidInputError, OutputWriteError, SegauditError, reason
from segaudit.report.regions import (
    CSV_COLUMNS,
    REGIONS_TABLE,
    VOLUME_CSV_COLUMNS,
    read_regions_table,
)
from segaudit.report.swaps import atomic_output
from segaudit.runs.run import Run
from segaudit.safetext import csv_cell, printable
from segaudit.sources.remote import is_url

FORMATS = ("coco", "csv")
FILE_COLUMNS = ("labels_file", "photo_file")
MARKER = "segaudit"  # info.contributor of a COCO export


@dataclass(frozen=True)
class RegionFilter:
    """Which regions to export: their kinds, a class on either side, the worst ``top``."""

    top: int | None = None
    kinds: tuple[str, ...] = ()
    classes: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.top is not None and self.top < 1:
            raise InvalidInputError(f"--top must be at least 1; got {self.top}.")
        unknown = [kind for kind in self.kinds if kind not in KINDS]
        if unknown:
            raise InvalidInputError(
                f"unknown kind {printable(unknown[0])!r}; kinds are {', '.join(KINDS)}."
            )

    def apply(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        kept = [
            row
            for row in rows
            if (not self.kinds or row["kind"] in self.kinds)
            and (
                not self.classes
                or row["given_class"] in self.classes
                or row["predicted_class"] in self.classes
            )
        ]
        return kept[: self.top] if self.top is not None else kept


def export_regions(
    run: Run, out: str | os.PathLike[str], fmt: str, chosen: RegionFilter, *, force: bool = False
) -> dict[str, int]:
    """Write the run's chosen regions to ``out`` (a file or a URL) as ``fmt``; return the
    counts written."""
    if fmt not in FORMATS:
        raise InvalidInputError(f"unknown format {printable(fmt)!r}; use coco or csv.")
    if is_url(out):
        return _export_to_url(run, str(out), fmt, chosen, force)
    out = Path(out)
    refuse_run_and_inputs(out, run)
    check_target(out, fmt, force)
    if fmt == "coco":
        coco_mask()  # a missing extra is said before anything is read or written
        refuse_volumes(run)
    rows = chosen.apply(read_regions_table(run.path))
    with atomic_output(out) as tmp:
        if fmt == "coco":
            document = coco_document(run, rows)
            tmp.write_text(json.dumps(document, separators=(",", ":")), encoding="utf-8")
        else:
            write_regions_csv(tmp, run, rows)
    return {"regions": len(rows), "images": len({row["image"] for row in rows})}


def refuse_volumes(run: Run) -> None:
    """COCO annotations are 2-D: a run of volumes exports its regions as CSV."""
    depths = run.images.depths
    if depths is not None and (depths > 1).any():
        raise InvalidInputError(
            f"{printable(run.location)} holds volumes, and COCO annotations are 2-D; export "
            "its regions with --format csv (the issues themselves are issues/ID.nii.gz)."
        )


def _export_to_url(
    run: Run, url: str, fmt: str, chosen: RegionFilter, force: bool
) -> dict[str, int]:
    """The export written locally, then uploaded to ``url`` as one object (replacing an
    object there only when it is an earlier export, or with ``force``)."""
    from segaudit.sources.remote import filesystem

    try:
        fs, path = filesystem(url)
    except SegauditError as error:
        raise InvalidInputError(str(error)) from None
    with tempfile.TemporaryDirectory(prefix="segaudit-export-") as folder:
        local = Path(folder) / (path.rstrip("/").rsplit("/", 1)[-1] or "export")
        try:
            if fs.isdir(path):
                raise InvalidInputError(f"{url} is a folder; give -o a file name.")
            if not force and fs.exists(path):  # to tell an earlier export from another file
                fs.get_file(path, str(local))
            counts = export_regions(run, local, fmt, chosen, force=force)
            fs.put_file(str(local), path)
        except SegauditError as error:
            raise type(error)(str(error).replace(str(local), url)) from None
        except Exception as error:  # each backend has its own errors
            raise OutputWriteError(
                f"writing {url} failed ({reason(error)}); check the URL and the credentials."
            ) from None
    return counts


def refuse_run_and_inputs(out: Path, run: Run) -> None:
    """An export is written beside the run and its inputs, never into them, ``--force`` or
    not: it would replace a file of the run (or a user's data), or leave one no run writes."""
    target = Path(os.path.realpath(out))
    protected = [("the run", Path(run.path))]
    for name, record in (run.summary.get("inputs") or {}).items():
        path = record.get("path") if isinstance(record, dict) else None
        if isinstance(path, str) and not is_url(path):
            protected.append((f"the run's input {name}", Path(path.split(" (", 1)[0])))
    for what, path in protected:
        held = Path(os.path.realpath(path))
        if target == held or held in target.parents:
            raise InvalidInputError(
                f"{printable(out)} is inside {what} ({printable(path)}); exports are written "
                "beside runs and their inputs, never into them: choose another -o."
            )


def check_target(out: Path, fmt: str, force: bool) -> None:
    """Refuse an output path that is a folder, or a file that no export wrote."""
    if out.is_dir():
        raise InvalidInputError(f"{printable(out)} is a folder; give -o a file name.")
    if not out.parent.is_dir():
        raise InvalidInputError(
            f"the folder of {printable(out)} does not exist; create it first."
        )
    if os.path.lexists(out) and not force and not _is_earlier_export(out, fmt):
        raise InvalidInputError(
            f"{printable(out)} exists and is not a segaudit export; choose another -o "
            "or pass --force to replace it."
        )


def _is_earlier_export(path: Path, fmt: str) -> bool:
    if path.is_symlink() or not path.is_file():
        return False
    try:
        with open(path, encoding="utf-8") as handle:
            if fmt == "csv":
                found = next(csv.reader(handle), None)
                known = (CSV_COLUMNS, VOLUME_CSV_COLUMNS)
                return found in ([*columns, *FILE_COLUMNS] for columns in known)
            info = json.load(handle).get("info") or {}
            return info.get("contributor") == MARKER
    except (OSError, ValueError, AttributeError):
        return False


# -- COCO -------------------------------------------------------------------------------


def coco_document(run: Run, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The COCO instances document of ``rows`` (regions.csv rows of ``run``)."""
    encode = coco_mask().encode
    names = run.class_names
    background = set((run.summary.get("regions") or {}).get("background_classes") or [0])
    file_names = photo_file_names(run)
    by_image: dict[int, list[tuple[int, dict[str, Any]]]] = {}
    for number, row in enumerate(rows, start=1):
        by_image.setdefault(int(row["image"]), []).append((number, row))
    images, annotations = [], []
    for image in sorted(by_image):
        region_map = run.read("regions", image)
        height, width = (int(n) for n in region_map.shape)
        images.append({
            "id": image + 1, "file_name": file_names[image], "width": width,
            "height": height, "segaudit_id": run.images.ids[image],
        })  # fmt: skip
        for number, row in by_image[image]:
            pixels = np.asfortranarray(region_map == row["region"], dtype=np.uint8)
            rle = encode(pixels)
            annotations.append(_annotation(number, image, row, rle))
    annotations.sort(key=lambda item: item["id"])
    categories = [
        {"id": k + 1, "name": name, "supercategory": "background" if k in background else "object"}
        for k, name in enumerate(names)
    ]
    return {
        "info": {
            "description": f"label-issue regions of the segaudit run {run.path.name}",
            "version": __version__,
            "contributor": MARKER,
        },
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }


def coco_mask() -> Any:
    """``pycocotools.mask``, or one sentence on how to install it."""
    try:
        from pycocotools import mask
    except ImportError:
        raise InvalidInputError(
            "--format coco needs pycocotools, the standard COCO mask encoder: "
            "pip install 'segaudit[coco]'."
        ) from None
    return mask


def _annotation(number: int, image: int, row: dict[str, Any], rle: dict) -> dict[str, Any]:
    width, height = row["x1"] - row["x0"] + 1, row["y1"] - row["y0"] + 1
    return {
        "id": number,
        "image_id": image + 1,
        "category_id": row["predicted_class"] + 1,
        "segmentation": {"size": [int(n) for n in rle["size"]],
                         "counts": rle["counts"].decode("ascii")},  # fmt: skip
        "area": row["pixels"],
        "bbox": [row["x0"], row["y0"], width, height],
        "iscrowd": 1,
        "attributes": {
            "region": row["region"],
            "score": row["score"],
            "kind": row["kind"],
            "given_class": row["given_class"],
            "predicted_class": row["predicted_class"],
            "given_name": row["given_name"],
            "predicted_name": row["predicted_name"],
            "rank": row["rank"],
        },
    }


def photo_file_names(run: Run) -> list[str]:
    """Each image's photo path relative to the folder all the run's photo files share;
    the image's id where a photo is not a file of its own (none, or a stacked store)."""
    table = run.images
    photos = [table.photo(i) for i in range(table.num_images)]
    if not photos or any(p is None or p.endswith("]") for p in photos):
        return list(table.ids)
    paths = [Path(p) for p in photos if p is not None]
    common = Path(os.path.commonpath([str(p.parent) for p in paths]))
    return [p.relative_to(common).as_posix() for p in paths]


# -- CSV --------------------------------------------------------------------------------


def write_regions_csv(path: Path, run: Run, rows: Sequence[dict[str, Any]]) -> None:
    """regions.csv's lines for ``rows``, as written there, and each region's image files
    (CSV-injection safe)."""
    with open(run.path / REGIONS_TABLE, newline="", encoding="utf-8") as handle:
        lines = list(csv.reader(handle))
    header, lines = lines[0], lines[1:]  # worst first: line r - 1 holds rank r
    table = run.images
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow([*header, *FILE_COLUMNS])  # a run of volumes has its own columns
        for row in rows:
            files = table.files[row["image"]] if table.files else {}
            writer.writerow([*lines[row["rank"] - 1], csv_cell(files.get("labels", "")),
                             csv_cell(files.get("photo", ""))])  # fmt: skip
