"""A run's volumes drawn as 2-D pictures, so the review page and PNG pages show them as
they show images.

Each volume becomes one picture (its "views"): on top, the axial slices with the most
issue voxels (:data:`AXIAL_SLICES` of them, most first, left to right); under them the
coronal and sagittal views through the volume's worst region (its centroid; without
regions, the middle of the worst slice's issue voxels). Every view is resized to
physical proportions from the voxel spacing (:mod:`segaudit.report.volume_pictures`),
labels and issues by the nearest voxel (an issue voxel never disappears when
shrinking), scans bilinearly after windowing (a soft-tissue window for CT, percentiles
otherwise). Between views, a gap of pixels that are no class (drawn grey).

The same layout is applied to the issues, the given and predicted labels and the scan,
so the page's exact-pixel hover and its toggles work unchanged, and a region is boxed
on the first axial view through it (else on the coronal view).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segaudit.report.panels import Sources
from segaudit.report.volume_pictures import (
    SEPARATOR,
    grey_to_rgb,
    resize_view,
    view_size,
    window_photo,
    worst_slices,
)

AXIAL_SLICES = 4
LAYOUT_NOTE = (
    f"volumes: the {AXIAL_SLICES} axial slices with the most issue voxels (left to right), "
    "then coronal and sagittal views through the worst region"
)


@dataclass(frozen=True)
class Tile:
    """One view in a volume's picture: which (``axial`` at z, ``coronal`` at y,
    ``sagittal`` at x) and where (top, left, height, width in picture pixels)."""

    view: str
    at: int
    top: int
    left: int
    height: int
    width: int


@dataclass(frozen=True)
class VolumeLayout:
    """Where each view of one volume goes in its picture of ``size`` (height, width)."""

    shape: tuple[int, int, int]
    tiles: tuple[Tile, ...]
    size: tuple[int, int]


def volume_layout(
    issues: np.ndarray,
    spacing: tuple[float, float, float],
    point: tuple[float, float, float] | None = None,
    slices: int = AXIAL_SLICES,
    gap: int = SEPARATOR,
) -> VolumeLayout:
    """The views of a volume whose issues are ``issues`` (Z, Y, X), through ``point``
    (z, y, x) or, without one, the middle of the worst slice's issue voxels."""
    depth, height, width = issues.shape
    chosen = worst_slices(issues, slices)
    if point is None:
        ys, xs = np.nonzero(issues[chosen[0]])
        middle = (np.median(ys), np.median(xs)) if ys.size else (height / 2, width / 2)
        point = (chosen[0], float(middle[0]), float(middle[1]))
    z, y, x = (min(max(0, int(round(p))), n - 1) for p, n in zip(point, issues.shape, strict=True))
    tiles, left = [], gap
    axial = view_size((height, width), "axial", spacing)
    for at in chosen:
        tiles.append(Tile("axial", at, gap, left, *axial))
        left += axial[1] + gap
    top, right = gap + axial[0] + gap, left
    left = gap
    for view, at, shape in (("coronal", y, (depth, width)), ("sagittal", x, (depth, height))):
        size = view_size(shape, view, spacing)
        tiles.append(Tile(view, at, top, left, *size))
        left += size[1] + gap
    bottom = max(t.top + t.height for t in tiles) + gap
    return VolumeLayout((depth, height, width), tuple(tiles), (bottom, max(right, left)))


def compose(volume: np.ndarray, layout: VolumeLayout, kind: str, fill: Any) -> np.ndarray:
    """``volume`` (Z, Y, X[, 3]) laid out as ``layout`` says (``kind``: ``labels``,
    ``mask`` or ``photo``, how views are resized); ``fill`` between views."""
    out = np.full((*layout.size, *volume.shape[3:]), fill, volume.dtype)
    for tile in layout.tiles:
        if tile.view == "axial":
            pixels = volume[tile.at]
        elif tile.view == "coronal":
            pixels = volume[:, tile.at]
        else:
            pixels = volume[:, :, tile.at]
        shown = resize_view(pixels, (tile.height, tile.width), kind)
        out[tile.top : tile.top + tile.height, tile.left : tile.left + tile.width] = shown
    return out


def region_box(row: dict[str, Any], layout: VolumeLayout) -> tuple[int, int, int, int]:
    """A region's box (x0, y0, x1, y1) in its volume's picture: on the first axial view
    through it, else on the coronal view (z down, x across)."""
    depth, height, width = layout.shape
    for tile in layout.tiles:
        if tile.view == "axial" and int(row["z0"]) <= tile.at <= int(row["z1"]):
            return _scaled(tile, (row["x0"], row["y0"], row["x1"], row["y1"]), width, height)
    tile = next(t for t in layout.tiles if t.view == "coronal")
    return _scaled(tile, (row["x0"], row["z0"], row["x1"], row["z1"]), width, depth)


def _scaled(tile: Tile, box: tuple[Any, ...], across: int, down: int) -> tuple[int, int, int, int]:
    fx, fy = tile.width / across, tile.height / down
    x0, y0, x1, y1 = (int(v) for v in box)
    return (
        tile.left + int(x0 * fx),
        tile.top + int(y0 * fy),
        tile.left + min(tile.width - 1, int((x1 + 1) * fx) - 1),
        tile.top + min(tile.height - 1, int((y1 + 1) * fy) - 1),
    )


class VolumeViews:
    """A run's arrays with each volume replaced by its picture (2-D images unchanged)."""

    def __init__(self, run: Any, sources: Sources, regions: list[dict[str, Any]] | None) -> None:
        self.run, self.sources = run, sources
        self.table = run.images
        volumes = (run.summary.get("dataset") or {}).get("volumes") or {}
        self.modality = str(volumes.get("modality") or "")
        self.points = _worst_points(regions or [])
        self._cached: tuple[int, VolumeLayout] | None = None

    def layout(self, index: int) -> VolumeLayout | None:
        shape = self.table.volume_shape(index)
        if shape is None:
            return None
        if self._cached is None or self._cached[0] != index:
            issues = np.asarray(self.sources.issues[index], bool).reshape(shape)
            spacing = tuple(float(s) for s in self.table.spacings[index])
            self._cached = (index, volume_layout(issues, spacing, self.points.get(index)))
        return self._cached[1]

    def array(self, source: Any, kind: str, fill: Any) -> _Shown:
        return _Shown(self, source, kind, fill)

    def photo(self, index: int) -> np.ndarray | None:
        layout = self.layout(index)
        photos = self.sources.photos
        if layout is None:
            return photos[index] if photos is not None else None
        path = self.table.photo(index)
        if not path or not Path(path).is_file():
            return None
        from segaudit.sources.volumes import nifti_header, read_scan

        scan = read_scan(nifti_header(Path(path), "image"))
        if scan.shape != layout.shape:
            return None
        return grey_to_rgb(compose(window_photo(scan, self.modality), layout, "photo", 0))

    def sources_view(self) -> Sources:
        """The :class:`Sources` pages are drawn from, volumes as their pictures."""
        base = self.sources
        ignore_fill = base.num_classes  # no class: drawn grey
        return Sources(
            self.array(base.issues, "mask", False),
            None if base.labels is None else self.array(base.labels, "labels", ignore_fill),
            None if base.predicted is None else self.array(base.predicted, "labels", ignore_fill),
            _Photos(self),
            base.num_classes,
            base.ignore_index,
            base.classes,
            base.exclude,
            extras=self.page_extras,
        )

    def page_extras(self, index: int) -> dict[str, Any] | None:
        """What the review page needs to name the voxel under the cursor: the volume's
        shape (Z, Y, X) and its views ([view, at, top, left, height, width], in picture
        pixels). None for a 2-D image."""
        layout = self.layout(index)
        if layout is None:
            return None
        tiles = [[t.view, t.at, t.top, t.left, t.height, t.width] for t in layout.tiles]
        return {"volume": {"shape": list(layout.shape), "tiles": tiles}}

    def page_regions(self, rows: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        """Region rows with their boxes in their volume's picture."""
        if rows is None:
            return None
        shown = []
        for row in rows:
            layout = self.layout(int(row["image"]))
            if layout is not None and "z0" in row:
                x0, y0, x1, y1 = region_box(row, layout)
                row = {**row, "x0": x0, "y0": y0, "x1": x1, "y1": y1}
            shown.append(row)
        return shown


class _Shown:
    """One per-pixel array, a volume as its picture."""

    def __init__(self, views: VolumeViews, source: Any, kind: str, fill: Any) -> None:
        self.views, self.source, self.kind, self.fill = views, source, kind, fill

    def __getitem__(self, index: int) -> np.ndarray:
        layout = self.views.layout(index)
        sheet = np.asarray(self.source[index])
        if layout is None:
            return sheet
        volume = sheet.reshape(layout.shape)
        fill = self.fill if self.kind != "labels" else _fill_value(volume.dtype, self.fill)
        return compose(volume, layout, self.kind, fill)


class _Photos:
    def __init__(self, views: VolumeViews) -> None:
        self.views = views

    def __getitem__(self, index: int) -> np.ndarray | None:
        return self.views.photo(index)


def _fill_value(dtype: np.dtype, wanted: int) -> int:
    """``wanted`` (no class) if ``dtype`` holds it, else its largest value."""
    info = np.iinfo(dtype) if dtype.kind in "iu" else None
    return wanted if info is None or wanted <= info.max else int(info.max)


def _worst_points(rows: list[dict[str, Any]]) -> dict[int, tuple[float, float, float]]:
    """Each volume's worst region's centroid (z, y, x), from regions worst first."""
    points: dict[int, tuple[float, float, float]] = {}
    for row in rows:
        if "centroid_z" in row and int(row["image"]) not in points:
            points[int(row["image"])] = (
                float(row["centroid_z"]), float(row["centroid_y"]), float(row["centroid_x"])
            )
    return points


def has_volumes(run: Any) -> bool:
    table = run.images
    return table.depths is not None and bool((table.depths > 1).any())
