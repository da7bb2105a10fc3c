"""Region-level evaluation: a run's regions matched with the injected errors.

When the run has ``regions.csv`` and the truth has error maps
(``errors.{npy,zarr}`` or ``errors/ID.png``, pixel value e = the image's e-th event in
``synth.json``): every found region (pixels of value r in ``regions.zarr``) is compared
with every injected error (pixels of value e in the error map) of its image, and
*matches* it when their intersection over union, counted in pixels, is at least
:data:`REGION_IOU` (0.3). An injected error is one event with at least one pixel in the
map (an event wholly overwritten by a later one has nothing left to find).

- precision = found regions matching at least one injected error / found regions;
- recall = injected errors matched by at least one found region / injected errors;
- average precision: the found regions ranked by score, ascending (most suspicious
  first), AP = Σ_t P(t) · ΔN(t) / E over the distinct scores t, where P(t) is the
  precision of the regions scored ≤ t, ΔN(t) the injected errors first matched by the
  regions scored exactly t, and E the injected errors. Without ties this is
  Σ_k P@k · (errors the k-th region is first to match) / E. A ranking that puts every
  matching region first and finds every error scores 1.0; AP never exceeds recall.

One-to-many matches: an injected error matched by several found regions (say, a
dropped object found as two pieces) counts once for recall and AP, and each of those
regions counts as a true positive for precision; a region matching several errors
counts once for precision and adds each error to recall.

Per kind, each found-region kind is paired with the injected kind it should find
(:data:`KIND_PAIRS`: missing ↔ object_dropped, wrong-class ↔ class_swapped, boundary ↔
boundary_shifted, spurious ↔ spurious_object). Precision is per *found* kind (the
``kind`` column of ``regions.csv``: of the regions called "boundary", how many match any
injected error); recall is per *injected* kind (of the ``boundary_shifted`` errors, how
many any found region matches, whatever its kind); AP ranks the regions of the found
kind and credits the errors of its paired injected kind (E = the injected errors of
that kind), so it also asks whether the region was given the right kind.
"""

from __future__ import annotations

import csv
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segaudit.errors import InvalidInputError, RunDirectoryError
from segaudit.progress import Progress
from segaudit.report.truth import Truth
from segaudit.runs.run import Run

REGIONS_CSV = "regions.csv"


REGION_IOU = 0.3  # a found region matches an injected error from this pixel IoU up


# The injected kind each found-region kind should find.
KIND_PAIRS = {
    "missing": "object_dropped",
    "wrong-class": "class_swapped",
    "boundary": "boundary_shifted",
    "spurious": "spurious_object",
}


_REGION_FIELDS = ("image", "region", "score", "kind")


ErrorKey = tuple[int, int]  # (run image, event number in its error map)


def image_index(text: str, num_images: int) -> int:
    """A run image number from a CSV cell; ValueError unless it is one of the run's."""
    image = int(text)
    if not 0 <= image < num_images:
        raise ValueError(f"image {image} is not one of the run's {num_images} images")
    return image


@dataclass
class FoundRegion:
    """One row of ``regions.csv`` and the injected errors it matches."""

    image: int
    region: int
    score: float  # NaN in the table: +inf, least suspicious
    kind: str
    matches: set[ErrorKey] = field(default_factory=set)


def read_regions(path: Path, num_images: int) -> list[FoundRegion]:
    """The found regions of ``regions.csv``, as listed (worst first)."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            fields, rows = reader.fieldnames or [], list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise RunDirectoryError(f"{path} is unreadable ({error}); rerun the scan.") from None
    missing = [name for name in _REGION_FIELDS if name not in fields]
    if missing:
        raise RunDirectoryError(f"{path} has no {missing[0]} column; rerun the scan.")
    try:
        return [_found_region(row, num_images) for row in rows]
    except (ValueError, TypeError) as error:
        raise RunDirectoryError(f"{path} is malformed ({error}); rerun the scan.") from None


def _found_region(row: dict[str, str], num_images: int) -> FoundRegion:
    """One row of ``regions.csv``; ValueError or TypeError when a cell is not a number."""
    score = float(row["score"])
    return FoundRegion(
        image=image_index(row["image"], num_images),
        region=int(row["region"]),
        score=math.inf if math.isnan(score) else score,
        kind=row["kind"].strip(),
    )


def match_image(
    region_map: np.ndarray, error_map: np.ndarray, iou: float = REGION_IOU
) -> tuple[list[tuple[int, int]], np.ndarray]:
    """The (region, error) number pairs of one image whose pixel IoU is at least ``iou``,
    and the pixel count of each error number (index e; index 0 = untouched pixels)."""
    regions = region_map.ravel().astype(np.int64)
    errors = error_map.ravel().astype(np.int64)
    region_pixels, error_pixels = np.bincount(regions), np.bincount(errors)
    both = (regions > 0) & (errors > 0)
    base = len(error_pixels)
    pairs, inter = np.unique(regions[both] * base + errors[both], return_counts=True)
    region, error = np.divmod(pairs, base)
    union = region_pixels[region] + error_pixels[error] - inter
    keep = inter / union >= iou
    return list(zip(region[keep].tolist(), error[keep].tolist(), strict=True)), error_pixels


def collect_matches(
    run: Run, truth: Truth, found: list[FoundRegion], progress: Progress
) -> dict[ErrorKey, str]:
    """Match found regions with injected errors image by image: fills each region's
    ``matches`` and returns every injected error with its kind."""
    kinds = truth.event_kinds()
    read_errors = truth.error_reader()
    by_image: dict[int, dict[int, FoundRegion]] = {}
    for region in found:
        by_image.setdefault(region.image, {})[region.region] = region
    images = sorted(set(by_image) | {i for i, listed in enumerate(kinds) if listed})
    injected: dict[ErrorKey, str] = {}
    progress.start("matching regions with injected errors", len(images))
    for index in images:
        error_map = read_errors(index)
        _check_error_map(run, index, error_map, len(kinds[index]))
        injected.update(_match_regions(run, index, error_map, kinds[index], by_image.get(index)))
        progress.advance()
    progress.finish()
    return injected


def _check_error_map(run: Run, index: int, error_map: np.ndarray, events: int) -> None:
    """An error map numbers only the events ``synth.json`` lists for its image."""
    low, top = int(error_map.min(initial=0)), int(error_map.max(initial=0))
    if low < 0 or top > events:
        raise InvalidInputError(
            f"the error map of image {run.images.ids[index]!r} holds event number "
            f"{low if low < 0 else top} but synth.json lists {events} events for it; "
            "--truth must be one dataset, as written."
        )


def _match_regions(
    run: Run,
    index: int,
    error_map: np.ndarray,
    kinds: list[str],
    found: dict[int, FoundRegion] | None,
) -> dict[ErrorKey, str]:
    """Fill in the matches of image ``index``'s regions; return its injected errors."""
    if found:
        region_map = run.read("regions", index)
        if region_map.shape != error_map.shape:
            raise InvalidInputError(
                f"the error map of image {run.images.ids[index]!r} is {error_map.shape} but "
                f"the run's regions are {region_map.shape}; --truth must be the dataset the "
                "run scanned."
            )
        pairs, error_pixels = match_image(region_map, error_map)
        for region, error in pairs:
            if region in found:
                found[region].matches.add((index, error))
    else:
        error_pixels = np.bincount(error_map.ravel().astype(np.int64))
    return {(index, e): kinds[e - 1] for e in range(1, len(error_pixels)) if error_pixels[e] > 0}


def region_metrics(found: list[FoundRegion], injected: dict[ErrorKey, str]) -> dict[str, Any]:
    """Precision, recall and AP of the matched regions, overall and per kind (see the
    module notes for the definitions)."""
    errors = set(injected)
    return {
        "iou_threshold": REGION_IOU,
        **_precision(found),
        **_recall(found, errors),
        "average_precision": ranked_average_precision(found, errors),
        "per_kind": [
            _kind_row(found_kind, injected_kind, found, injected)
            for found_kind, injected_kind in _kind_rows(found, injected)
        ],
    }


def _kind_rows(
    found: list[FoundRegion], injected: dict[ErrorKey, str]
) -> list[tuple[str | None, str | None]]:
    """The paired kinds, then any found or injected kind outside the pairs on its own."""
    rows: list[tuple[str | None, str | None]] = list(KIND_PAIRS.items())
    rows += [(kind, None) for kind in sorted({r.kind for r in found} - set(KIND_PAIRS))]
    rows += [(None, kind) for kind in sorted(set(injected.values()) - set(KIND_PAIRS.values()))]
    return rows


def _kind_row(
    found_kind: str | None,
    injected_kind: str | None,
    found: list[FoundRegion],
    injected: dict[ErrorKey, str],
) -> dict[str, Any]:
    """Precision of the regions of ``found_kind``, recall of the errors of
    ``injected_kind`` (by any region), AP of the one crediting the other."""
    regions = [region for region in found if region.kind == found_kind]
    errors = {key for key, kind in injected.items() if kind == injected_kind}
    return {
        "kind": found_kind,
        "injected_kind": injected_kind,
        **_precision(regions),
        **_recall(found, errors),
        "average_precision": ranked_average_precision(regions, errors),
    }


def _precision(regions: list[FoundRegion]) -> dict[str, Any]:
    """Found regions, those matching some injected error, and their ratio."""
    matched = sum(1 for region in regions if region.matches)
    return {
        "found_regions": len(regions),
        "matched_regions": matched,
        "precision": matched / len(regions) if regions else None,
    }


def _recall(regions: list[FoundRegion], errors: set[ErrorKey]) -> dict[str, Any]:
    """Injected errors, those matched by at least one of ``regions``, and their ratio."""
    hit: set[ErrorKey] = set()
    for region in regions:
        hit |= region.matches & errors
    return {
        "injected_errors": len(errors),
        "found_errors": len(hit),
        "recall": len(hit) / len(errors) if errors else None,
    }


def ranked_average_precision(regions: list[FoundRegion], errors: set[ErrorKey]) -> float | None:
    """Σ_t P(t) · ΔN(t) / E over the distinct scores t, ascending (see the module notes);
    None without injected errors."""
    if not errors:
        return None
    ordered = sorted(regions, key=_score_of)
    credited: set[ErrorKey] = set()
    total, count, matched = 0.0, 0, 0
    for _, tied in itertools.groupby(ordered, key=_score_of):
        group = list(tied)
        count += len(group)
        matched += sum(1 for region in group if region.matches)
        new = set().union(*(region.matches for region in group)) & errors - credited
        credited |= new
        total += matched / count * len(new)
    return total / len(errors)


def _score_of(region: FoundRegion) -> float:
    """The key regions are ranked (and tied) by."""
    return region.score


def region_level(
    run: Run, truth: Truth, notes: list[str], progress: Progress
) -> dict[str, Any] | None:
    """Region metrics when the run has regions and the truth error maps; else None."""
    path = run.path / REGIONS_CSV
    if not path.is_file():
        return None
    if not truth.has_error_maps():
        if (truth.folder / "errors.json").is_file():  # segaudit synth --volumes
            notes.append(
                f"{truth.folder} is a volume dataset, which lists its errors in errors.json "
                "but has no error maps, so region-level metrics are left out."
            )
            return None
        notes.append(
            f"{truth.folder} has no error maps (errors.npy, errors.zarr or errors/), so "
            "region-level metrics are left out; regenerate it with `segaudit synth` to get them."
        )
        return None
    found = read_regions(path, run.num_images)
    injected = collect_matches(run, truth, found, progress)
    return region_metrics(found, injected)
