"""Issue voxels of a 3-D label volume lifted to regions, as :mod:`segaudit.engine.regions`
lifts the issue pixels of an image.

A volume of shape (Z, Y, X) (z slowest, axial slices ``volume[z]``) has flat voxel
indices ``q = (z * Y + y) * X + x``: the same as those of its (Z * Y, X) sheet. Its issue
voxels of one (given class, predicted class) pair that touch (26-connectivity: the
3 × 3 × 3 cube around a voxel) form a region: the connected components
(:func:`scipy.sparse.csgraph.connected_components`) of the graph whose nodes are the
issue voxels and whose edges join 26-neighbours of one pair. Regions are numbered from 1
in the raster order of their first voxel (z, then y, then x); regions smaller than
``min_pixels`` voxels are dropped from the list and the map. On one slice (Z = 1),
26-connectivity is the 8-connectivity of images, and every column but the z ones and
the volume is what :func:`segaudit.engine.regions.image_regions` gives for that slice.

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

Work and memory scale with the issue voxels and the boxes around them: the neighbour
links come from one int32 position lookup over the flat span of the issue voxels (the
volume at most), the depths from scipy's chessboard distance transform over the box of
the regions' interior voxels, the edge test from one labelled-edge map over the box of
the kept voxels; no float copy of the volume is made.
"""

from __future__ import annotations

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

FORWARD = tuple(
    [(0, 0, 1), (0, 1, -1), (0, 1, 0), (0, 1, 1)]
    + [(1, dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
)
"""The 13 neighbour offsets (dz, dy, dx) after a voxel in raster order; the other 13 of
its 26 neighbours are their opposites."""


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
    if index.size >= 2**31 // len(FORWARD):
        raise ValueError(f"{index.size:,} issue voxels in one volume: more than regions index")
    num_codes = int(max(pixels.given.max(), pixels.predicted.max())) + 1
    pair = pixels.given.astype(np.int64) * num_codes
    pair += pixels.predicted
    coords = _coords(shape, index)
    found = voxel_links(shape, index, pair, coords)
    indptr, targets = _graph(found)
    region = _numbered_regions(indptr, targets, index.size, min_pixels)
    kept = region > 0
    if not kept.any():
        return ImageRegions(_columns({}, 0), region_map)
    depth = _depths(shape, coords, found, targets, kept)
    del found, targets, indptr
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


def voxel_links(
    shape: tuple[int, int, int],
    index: np.ndarray,
    pair: np.ndarray,
    coords: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """(13, n) int32: for each issue voxel (``index``: ascending flat indices) and each
    offset of :data:`FORWARD`, the position in ``index`` of its neighbour there when that
    is an issue voxel of the same ``pair`` code, else -1."""
    depth, height, width = shape
    z, y, x = coords if coords is not None else _coords(shape, index)
    low = int(index[0])
    span = int(index[-1]) - low + 1
    position = np.full(span, -1, np.int32)  # the flat span of the issue voxels, not more
    position[index - low] = np.arange(index.size, dtype=np.int32)
    found = np.full((len(FORWARD), index.size), -1, np.int32)
    inside_x = {-1: x >= 1, 0: None, 1: x < width - 1}
    inside_y = {-1: y >= 1, 0: None, 1: y < height - 1}
    below = z < depth - 1
    for row, (dz, dy, dx) in enumerate(FORWARD):
        masks = [m for m in (inside_x[dx], inside_y[dy], below if dz else None) if m is not None]
        valid = np.logical_and.reduce(masks) if masks else np.ones(index.size, bool)
        step = (dz * height + dy) * width + dx
        target = index - low + step
        valid &= target < span  # beyond the last issue voxel: none there
        np.clip(target, 0, span - 1, out=target)
        hit = position[target]
        hit[~valid] = -1
        linked = hit >= 0
        linked[linked] = pair[hit[linked]] == pair[linked]
        found[row, linked] = hit[linked]
    return found


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
    from scipy import ndimage

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
    near = ndimage.maximum_filter(edge, size=2 * reach + 1, mode="constant", cval=False)
    return near[z - box[0][0], y - box[1][0], x - box[2][0]]


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


def _graph(found: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The forward links as CSR arrays (indptr, targets), int32, row i listing voxel i's."""
    links = found.T  # (n, 13): row-major order groups the targets by voxel
    linked = links >= 0
    indptr = np.zeros(found.shape[1] + 1, np.int32)
    np.cumsum(linked.sum(axis=1), out=indptr[1:])
    return indptr, links[linked]


def _numbered_regions(
    indptr: np.ndarray, targets: np.ndarray, count: int, min_pixels: int
) -> np.ndarray:
    """Each issue voxel's region number: the connected components of the links, of at
    least ``min_pixels`` voxels, numbered from 1 by their first voxel; 0 when dropped."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    graph = csr_matrix((np.ones(targets.size), targets, indptr), shape=(count, count))
    _, component = connected_components(graph, directed=False)
    sizes = np.bincount(component)
    first = np.full(sizes.size, count, np.int64)
    np.minimum.at(first, component, np.arange(count))  # voxels ascend: the first in raster
    kept = np.flatnonzero(sizes >= min_pixels)
    number = np.zeros(sizes.size, np.int64)
    number[kept[np.argsort(first[kept])]] = np.arange(1, kept.size + 1)
    return number[component]


def _depths(
    shape: tuple[int, int, int],
    coords: tuple[np.ndarray, np.ndarray, np.ndarray],
    found: np.ndarray,
    targets: np.ndarray,
    kept: np.ndarray,
) -> np.ndarray:
    """Each kept voxel's chessboard distance from outside its region (beyond the edge
    along the axes the volume extends counting as outside): 1 where it lacks one of its
    possible neighbours in its region, else 1 + the distance transform of the interior
    voxels (those with all of them). The nearest voxel outside the interior is on the
    voxel's own region's rim (chessboard distances are path lengths), so one transform
    over the interior voxels of every kept region gives each its own depths."""
    from scipy import ndimage

    extends = [length > 1 for length in shape]
    possible = 3 ** sum(extends) - 1
    degree = (found >= 0).sum(axis=0) + np.bincount(targets, minlength=found.shape[1])
    depth = np.ones(found.shape[1], np.int64)
    interior = np.flatnonzero((degree == possible) & kept)
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
