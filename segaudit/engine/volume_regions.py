"""Issue voxels of a 3-D label volume lifted to regions, as :mod:`segaudit.engine.regions`
lifts the issue pixels of an image.

A volume of shape (Z, Y, X) (z slowest, axial slices ``volume[z]``) has flat voxel
indices ``q = (z * Y + y) * X + x``: the same as those of its (Z * Y, X) sheet. Its issue
voxels of one (given class, predicted class) pair that touch (26-connectivity: the
3 × 3 × 3 cube around a voxel) form a region: the connected components of the graph
whose nodes are the issue voxels and whose edges join 26-neighbours of one pair.
Regions are numbered from 1 in the raster order of their first voxel (z, then y, then
x); regions smaller than ``min_pixels`` voxels are dropped from the list and the map.
On one slice (Z = 1), 26-connectivity is the 8-connectivity of images, and every column
but the z ones and the volume is what :func:`segaudit.engine.regions.image_regions`
gives for that slice.

Each region gets the columns of an image region (:data:`VOLUME_REGION_COLUMNS`), with
its voxel count under ``pixels``, its inclusive box and centroid in all three axes, and
its volume in mm³ (voxels × sz × sy × sx). The two shape features extend to 3-D:

- ``thickness``: the largest chessboard (26-neighbour) distance of its voxels from
  outside the region or beyond the volume's edge, so a slab two voxels thick has
  thickness 1. Beyond the edge counts as outside along the axes the volume extends
  (more than one voxel long); an axis one voxel long is not a direction the region can
  be thin in, so a single slice has the thickness of the image it is.
- ``edge_fraction``: the fraction of its voxels within ``EDGE_REACH`` voxels
  (chessboard, inside the volume) of an edge voxel of the given labels, an edge voxel
  being either voxel of a 6-adjacent pair of different labelled classes (``ignore``
  voxels are no class): the 2-D rule of ``_regions.c``'s ``near_edge`` with the pairs
  along z added.

The components are found over runs rather than voxels: the issue voxels are grouped
into runs of one pair along x (:class:`Runs`), the runs touching each run are found by
binary search in the four rows after it, and scipy's components of the runs give the
regions (a solid region of a million voxels is ten thousand runs). Work and memory
scale with the issue voxels and the boxes around them: besides per-voxel arrays, the
edge test holds boolean maps over the box of the kept voxels (widened by
``EDGE_REACH`` + 1), the depths one over the box of the interior voxels with scipy's
int32 distances over it; the labels are never copied into another type.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from segaudit.engine.regions import (
    DEFAULT_MIN_PIXELS,
    EDGE_REACH,
    ImageRegions,
    IssuePixels,
)

VOLUME_REGION_COLUMNS = (
    "region",
    "given_class",
    "predicted_class",
    "pixels",
    "volume_mm3",
    "x0",
    "y0",
    "z0",
    "x1",
    "y1",
    "z1",
    "centroid_x",
    "centroid_y",
    "centroid_z",
    "mean_self_confidence",
    "mean_predicted_probability",
    "edge_fraction",
    "thickness",
)

_INT_COLUMNS = (
    "given_class", "predicted_class", "pixels", "x0", "y0", "z0", "x1", "y1", "z1", "thickness",
)  # fmt: skip

NEXT_ROWS = ((0, 1), (1, -1), (1, 0), (1, 1))
"""The rows (dz, dy) after a row of the volume whose voxels can touch it; the rows before
it are their opposites."""


def volume_regions(
    shape: tuple[int, int, int],
    pixels: IssuePixels,
    labels: np.ndarray,
    *,
    spacing: tuple[float, float, float],
    ignore: int | None = None,
    min_pixels: int = DEFAULT_MIN_PIXELS,
    map_dtype: Any = np.uint32,
) -> ImageRegions:
    """The regions of one volume's issue voxels (``pixels.index``: ascending flat voxel
    indices into ``shape`` = (Z, Y, X)); ``labels`` are its given labels (Z, Y, X) (or
    its (Z * Y, X) sheet), ``spacing`` (sz, sy, sx) its voxel size in mm. The region map
    is (Z, Y, X) in ``map_dtype``."""
    shape = tuple(int(n) for n in shape)
    if len(shape) != 3:
        raise ValueError(f"a volume's shape is (Z, Y, X); got {shape}")
    region_map = np.zeros(shape, map_dtype)
    index = np.asarray(pixels.index).astype(np.int64, copy=False)
    if index.size == 0:
        return ImageRegions(_columns({}, 0), region_map)
    num_codes = int(max(pixels.given.max(), pixels.predicted.max())) + 1
    pair = pixels.given.astype(np.int64) * num_codes
    pair += pixels.predicted
    coords = _coords(shape, index)
    runs = Runs.of(shape, index, pair, coords[2])
    touching = runs.touching()
    region = _numbered_regions(runs, touching, min_pixels)[runs.of_voxel]
    kept = region > 0
    if not kept.any():
        return ImageRegions(_columns({}, 0), region_map)
    depth = _depths(shape, coords, runs, touching, kept)
    del runs, touching
    index, number = index[kept], region[kept] - 1
    z, y, x = (c[kept] for c in coords)
    count = int(number.max()) + 1
    region_map.reshape(-1)[index] = number + 1
    near = near_labelled_edge(labels, shape, (z, y, x), EDGE_REACH, ignore)
    score = np.asarray(pixels.score)[kept].astype(np.float64, copy=False)
    top = np.asarray(pixels.top)[kept].astype(np.float64, copy=False)
    sizes = np.bincount(number, minlength=count)
    first = np.full(count, index.size, np.int64)
    np.minimum.at(first, number, np.arange(index.size))
    size = sizes.astype(np.float64)

    def mean(values: np.ndarray) -> np.ndarray:
        return np.bincount(number, weights=values, minlength=count) / size

    columns = {
        "given_class": np.asarray(pixels.given)[kept][first].astype(np.int64),
        "predicted_class": np.asarray(pixels.predicted)[kept][first].astype(np.int64),
        "pixels": sizes,
        "volume_mm3": size * float(np.prod(np.asarray(spacing, np.float64))),
        "centroid_x": mean(x.astype(np.float64)),
        "centroid_y": mean(y.astype(np.float64)),
        "centroid_z": mean(z.astype(np.float64)),
        "mean_self_confidence": mean(score),
        "mean_predicted_probability": mean(top),
        "edge_fraction": mean(near.astype(np.float64)),
        "thickness": _per_region(np.maximum, number, depth, count, 0),
    }
    for name, values in (("x", x), ("y", y), ("z", z)):
        columns[f"{name}0"] = _per_region(np.minimum, number, values, count, np.iinfo(np.int64).max)
        columns[f"{name}1"] = _per_region(np.maximum, number, values, count, -1)
    return ImageRegions(_columns(columns, count), region_map)


@dataclass
class Runs:
    """The issue voxels as runs: maximal stretches of consecutive voxels of one pair code
    along a row (fixed z and y) of the volume. Runs come in raster order of their first
    voxel, and a run's voxels are consecutive in the issue voxels."""

    shape: tuple[int, int, int]
    first: np.ndarray
    """Position of each run's first voxel in the issue voxels; its last is the next run's
    first, less one."""
    row: np.ndarray
    """z * Y + y of each run."""
    x0: np.ndarray
    x1: np.ndarray
    pair: np.ndarray
    of_voxel: np.ndarray
    """Each issue voxel's run."""

    @classmethod
    def of(
        cls, shape: tuple[int, int, int], index: np.ndarray, pair: np.ndarray, x: np.ndarray
    ) -> Runs:
        starts = np.ones(index.size, bool)
        np.not_equal(index[1:], index[:-1] + 1, out=starts[1:])
        starts[1:] |= pair[1:] != pair[:-1]
        starts[1:] |= x[1:] == 0
        first = np.flatnonzero(starts)
        last = np.append(first[1:], index.size) - 1
        return cls(
            shape, first, index[first] // shape[2], x[first], x[last], pair[first],
            np.cumsum(starts) - 1,
        )  # fmt: skip

    @property
    def count(self) -> int:
        return int(self.first.size)

    def touching(self) -> tuple[np.ndarray, np.ndarray]:
        """(a, b): every run ``a`` and run ``b`` of the same pair in one of the
        :data:`NEXT_ROWS` after ``a``'s row that touch it (26-connectivity: their x
        extents overlap once ``a``'s is widened by one voxel each way)."""
        depth, height, width = self.shape
        stride = width + 2  # keys of the rows never reach each other, widened by one
        start_key = self.row * stride + self.x0
        end_key = self.row * stride + self.x1  # ascending too: a row's runs are disjoint
        z, y = np.divmod(self.row, height)
        found_a, found_b = [], []
        for dz, dy in NEXT_ROWS:
            valid = (z + dz < depth) & (y + dy >= 0) & (y + dy < height)
            target = (self.row + dz * height + dy) * stride
            low = np.searchsorted(end_key, target + self.x0 - 1, "left")
            high = np.searchsorted(start_key, target + self.x1 + 1, "right")
            count = np.where(valid, np.maximum(high - low, 0), 0)
            a = np.repeat(np.arange(self.count), count)
            b = low[a] + np.arange(a.size) - np.repeat(np.cumsum(count) - count, count)
            same = self.pair[a] == self.pair[b]
            found_a.append(a[same])
            found_b.append(b[same])
        return np.concatenate(found_a), np.concatenate(found_b)


def near_labelled_edge(
    labels: np.ndarray,
    shape: tuple[int, int, int],
    coords: tuple[np.ndarray, np.ndarray, np.ndarray],
    reach: int,
    ignore: int | None,
) -> np.ndarray:
    """Whether each voxel at ``coords`` (z, y, x) lies within ``reach`` voxels
    (chessboard) of either voxel of a 6-adjacent pair of different labelled (not
    ``ignore``) classes of ``labels`` (Z, Y, X). One edge map over the box of the voxels
    widened by ``reach`` + 1, dilated by the (2 ``reach`` + 1)³ cube."""
    volume = np.asarray(labels).reshape(shape)
    z, y, x = coords
    if z.size == 0:
        return np.zeros(0, bool)
    box = [  # the voxels' box widened by reach + 1: the pairs of every edge voxel in reach
        (max(0, int(values.min()) - reach - 1), min(length, int(values.max()) + reach + 2))
        for values, length in zip(coords, shape, strict=True)
    ]
    crop = volume[tuple(slice(a, b) for a, b in box)]
    valid = _labelled(crop, ignore)
    edge = np.zeros(crop.shape, bool)
    for axis in range(3):
        if crop.shape[axis] < 2:
            continue
        ahead = [slice(None)] * 3
        behind = [slice(None)] * 3
        ahead[axis], behind[axis] = slice(1, None), slice(None, -1)
        ahead, behind = tuple(ahead), tuple(behind)
        differ = crop[ahead] != crop[behind]
        if valid is not None:
            differ &= valid[ahead]
            differ &= valid[behind]
        edge[ahead] |= differ
        edge[behind] |= differ
    near = cube_dilation(edge, reach)
    return near[z - box[0][0], y - box[1][0], x - box[2][0]]


def cube_dilation(mask: np.ndarray, reach: int) -> np.ndarray:
    """Whether each voxel lies within ``reach`` voxels (chessboard) of a set voxel of
    ``mask``, inside the array: the (2 ``reach`` + 1)³ cube as three passes of shifted ORs
    (scipy's ``maximum_filter`` with ``size=2 * reach + 1``, several times faster on
    booleans)."""
    out = mask.copy()
    for axis in range(mask.ndim):
        before = out.copy()
        for shift in range(1, min(reach, mask.shape[axis] - 1) + 1):
            ahead = [slice(None)] * mask.ndim
            behind = [slice(None)] * mask.ndim
            ahead[axis], behind[axis] = slice(shift, None), slice(None, -shift)
            out[tuple(ahead)] |= before[tuple(behind)]
            out[tuple(behind)] |= before[tuple(ahead)]
    return out


def _labelled(labels: np.ndarray, ignore: int | None) -> np.ndarray | None:
    """Where ``labels`` are a class (not ``ignore``); None when every voxel is. As the 2-D
    edge test: an ``ignore`` the labels' type cannot hold matches nothing."""
    if ignore is None:
        return None
    if np.issubdtype(labels.dtype, np.integer):
        limits = np.iinfo(labels.dtype)
        if not limits.min <= int(ignore) <= limits.max:
            return None
    return labels != ignore


def _coords(
    shape: tuple[int, int, int], index: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    z, rest = np.divmod(index, shape[1] * shape[2])
    y, x = np.divmod(rest, shape[2])
    return z, y, x


def _numbered_regions(
    runs: Runs, touching: tuple[np.ndarray, np.ndarray], min_pixels: int
) -> np.ndarray:
    """Each run's region number: the connected components of the touching runs, of at
    least ``min_pixels`` voxels, numbered from 1 by their first voxel (that of their first
    run: runs come in raster order); 0 when dropped."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    count = runs.count
    a, b = touching
    graph = csr_matrix((np.ones(a.size), (a, b)), shape=(count, count))
    _, component = connected_components(graph, directed=False)
    lengths = np.diff(np.append(runs.first, runs.of_voxel.size))
    sizes = np.bincount(component, weights=lengths).astype(np.int64)
    first = np.full(sizes.size, count, np.int64)
    np.minimum.at(first, component, np.arange(count))
    kept = np.flatnonzero(sizes >= min_pixels)
    number = np.zeros(sizes.size, np.int64)
    number[kept[np.argsort(first[kept])]] = np.arange(1, kept.size + 1)
    return number[component]


def _depths(
    shape: tuple[int, int, int],
    coords: tuple[np.ndarray, np.ndarray, np.ndarray],
    runs: Runs,
    touching: tuple[np.ndarray, np.ndarray],
    kept: np.ndarray,
) -> np.ndarray:
    """Each kept voxel's chessboard distance from outside its region (beyond the edge
    along the axes the volume extends counting as outside): 1 where one of its possible
    26 neighbours is not of its region, else 1 + the distance transform of these interior
    voxels. The nearest voxel outside the interior is on the voxel's own region's rim
    (chessboard distances are path lengths), so one transform over the interior voxels of
    every kept region gives each its own depths.

    A voxel is interior when its own run holds its x neighbours and, in each of the rows
    around its own, a run of its pair holds the voxels at x - 1, x and x + 1: touching
    runs (one per row around at most, runs of a row and pair being apart) cover it from
    each side, counted over the issue voxels' positions with one running sum."""
    from scipy import ndimage

    extends = [length > 1 for length in shape]
    rows_around = 3 ** (int(extends[0]) + int(extends[1])) - 1
    reach = int(extends[2])  # x neighbours to hold: none in a volume one voxel wide
    a, b = touching
    x, run = coords[2], runs.of_voxel
    n = run.size
    begins, ends = [], []
    for this, other in ((a, b), (b, a)):  # a run covered by a touching run, each way
        low = np.maximum(runs.x0[this], runs.x0[other] + reach)
        high = np.minimum(runs.x1[this], runs.x1[other] - reach)
        some = low <= high
        this, low, high = this[some], low[some], high[some]
        begins.append(runs.first[this] + low - runs.x0[this])
        ends.append(runs.first[this] + high - runs.x0[this] + 1)
    cover = np.cumsum(
        np.bincount(np.concatenate(begins), minlength=n + 1)
        - np.bincount(np.concatenate(ends), minlength=n + 1)
    )[:n]
    own = (x - runs.x0[run] >= reach) & (runs.x1[run] - x >= reach)
    depth = np.ones(n, np.int64)
    interior = np.flatnonzero(own & (cover == rows_around) & kept)
    if interior.size:
        inner = [c[interior] for c in coords]
        lows = [int(c.min()) - int(e) for c, e in zip(inner, extends, strict=True)]
        sides = [
            int(c.max()) - low + 1 + int(e) for c, low, e in zip(inner, lows, extends, strict=True)
        ]
        mask = np.zeros(sides, bool)  # the interior's box, one voxel wider where it can be
        at = tuple(c - low for c, low in zip(inner, lows, strict=True))
        mask[at] = True
        depth[interior] += ndimage.distance_transform_cdt(mask, metric="chessboard")[at]
    return depth[kept]


def _per_region(
    ufunc: np.ufunc, number: np.ndarray, values: np.ndarray, count: int, start: int
) -> np.ndarray:
    out = np.full(count, start, np.int64)
    ufunc.at(out, number, values.astype(np.int64, copy=False))
    return out


def _columns(columns: dict[str, np.ndarray], count: int) -> dict[str, np.ndarray]:
    out = {
        name: np.asarray(columns.get(name, np.zeros(0)), dtype=np.float64)
        for name in VOLUME_REGION_COLUMNS[1:]
    }
    for name in _INT_COLUMNS:
        out[name] = out[name].astype(np.int64)
    out["region"] = np.arange(1, count + 1, dtype=np.int64)
    return {name: out[name] for name in VOLUME_REGION_COLUMNS}
