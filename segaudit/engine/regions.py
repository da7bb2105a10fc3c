"""Issue pixels lifted to regions: what a reviewer fixes ("this car is labelled road").

Per image, the issue pixels of one (given class, predicted class) pair that touch
(8-connectivity) form a region: the connected components
(:func:`scipy.sparse.csgraph.connected_components`) of the graph whose nodes are the
issue pixels and whose edges join 8-neighbours of one pair. Working on the issue
pixels alone, not on whole images, keeps the step a small part of a scan. Regions are
numbered from 1 in the raster order of their first pixel (row by row, then column),
which depends on the image alone. Regions smaller than ``min_pixels`` are dropped from
the region list and map; the issue mask itself is unchanged.

Each region gets its size, inclusive bounding box, centroid, mean self-confidence
(the probability of the given label), mean predicted probability, and two shape
features its kind and score use (:mod:`segaudit.engine.region_scores`): the fraction
of its pixels within ``EDGE_REACH`` pixels of an edge between two labelled classes,
and its thickness (the largest chessboard distance of its pixels from its outside or
the image's edge, so a band two pixels wide has thickness 1).

Everything comes from the issue pixels themselves (their classes and probabilities,
recorded by the streaming pass) and the given labels around each region: no image is
scanned whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

EDGE_REACH = 2  # pixels from a labelled edge that count as "along the edge"
DEFAULT_MIN_PIXELS = 10

REGION_COLUMNS = (
    "region",
    "given_class",
    "predicted_class",
    "pixels",
    "x0",
    "y0",
    "x1",
    "y1",
    "centroid_x",
    "centroid_y",
    "mean_self_confidence",
    "mean_predicted_probability",
    "edge_fraction",
    "thickness",
)


@dataclass
class IssuePixels:
    """One image's issue pixels: flat indices (ascending) and, aligned with them, their
    given and predicted classes, self-confidence and predicted-class probability."""

    index: np.ndarray
    given: np.ndarray
    predicted: np.ndarray
    score: np.ndarray
    top: np.ndarray


@dataclass
class ImageRegions:
    """One image's regions, as columns (one entry per region), and its region map."""

    columns: dict[str, np.ndarray]
    region_map: np.ndarray  # (H, W) uint32, 0 outside kept regions

    @property
    def count(self) -> int:
        return len(self.columns["region"])


def image_regions(
    shape: tuple[int, int],
    pixels: IssuePixels,
    labels: np.ndarray,
    *,
    ignore: int | None = None,
    min_pixels: int = DEFAULT_MIN_PIXELS,
) -> ImageRegions:
    """The regions of one image's issue pixels; ``labels`` (H, W) are its given labels."""
    region_map = np.zeros(shape, np.uint32)
    index = pixels.index.astype(np.int64)
    if index.size == 0:
        return ImageRegions(_columns({}, 0), region_map)
    num_codes = int(max(pixels.given.max(), pixels.predicted.max())) + 1
    pair = pixels.given.astype(np.int64) * num_codes + pixels.predicted.astype(np.int64)
    found = _neighbours(shape, index, pair)
    region = _numbered_regions(found, min_pixels)
    kept = region > 0
    depth = _depths(found)[kept]  # a region is a whole component: its links are its own
    index, number = index[kept], region[kept] - 1
    count = int(number.max()) + 1 if number.size else 0
    region_map.ravel()[index] = (number + 1).astype(np.uint32)
    if count == 0:
        return ImageRegions(_columns({}, 0), region_map)
    width = shape[1]
    ys, xs = index // width, index % width
    sizes = np.bincount(number, minlength=count)
    order = np.argsort(number, kind="stable")
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])

    def mean(values: np.ndarray) -> np.ndarray:
        return np.bincount(number, weights=values, minlength=count) / sizes

    columns = {
        "given_class": pixels.given[kept][order][starts].astype(np.int64),
        "predicted_class": pixels.predicted[kept][order][starts].astype(np.int64),
        "pixels": sizes.astype(np.int64),
        "x0": np.minimum.reduceat(xs[order], starts),
        "y0": ys[order][starts],  # a region's first pixel (in raster order) is on its top row
        "x1": np.maximum.reduceat(xs[order], starts),
        "y1": np.maximum.reduceat(ys[order], starts),
        "centroid_x": mean(xs.astype(np.float64)),
        "centroid_y": mean(ys.astype(np.float64)),
        "mean_self_confidence": mean(pixels.score[kept].astype(np.float64)),
        "mean_predicted_probability": mean(pixels.top[kept].astype(np.float64)),
        "edge_fraction": mean(near_labelled_edge(labels, ys, xs, ignore).astype(np.float64)),
        "thickness": np.maximum.reduceat(depth[order], starts),
    }
    return ImageRegions(_columns(columns, count), region_map)


FORWARD = [(0, 1), (1, -1), (1, 0), (1, 1)]  # each pair of 8-neighbours once


def _neighbours(shape: tuple[int, int], index: np.ndarray, pair: np.ndarray) -> np.ndarray:
    """(8, n): for each issue pixel, the position in ``index`` (ascending flat indices) of
    its neighbour in each of the 8 directions when that is an issue pixel of the same
    pair, else -1; rows 0-3 the ``FORWARD`` directions, rows 4-7 their opposites."""
    height, width = shape
    ys, xs = index // width, index % width
    found = np.full((8, index.size), -1, np.int64)
    for row, (dy, dx) in enumerate(FORWARD):
        target = index + dy * width + dx
        inside = (xs + dx >= 0) & (xs + dx < width) & (ys + dy < height)
        at = np.minimum(np.searchsorted(index, target), index.size - 1)
        same = inside & (index[at] == target) & (pair[at] == pair)
        found[row, same] = at[same]
        found[row + 4, at[same]] = np.flatnonzero(same)  # the same link seen from there
    return found


def _numbered_regions(found: np.ndarray, min_pixels: int) -> np.ndarray:
    """Each issue pixel's region number: the connected components of the links in
    ``found``, of at least ``min_pixels`` pixels, numbered from 1 by their first pixel
    (pixels ascend in raster order); 0 when dropped."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    count = found.shape[1]
    links = found[:4] >= 0
    source = np.nonzero(links)[1]
    graph = coo_matrix((np.ones(source.size, np.int8), (source, found[:4][links])),
                       shape=(count, count))  # fmt: skip
    _, component = connected_components(graph, directed=False)
    sizes = np.bincount(component)
    first = np.full(sizes.size, count, np.int64)
    np.minimum.at(first, component, np.arange(count))  # pixels ascend: the first in raster
    kept = np.flatnonzero(sizes >= min_pixels)
    number = np.zeros(sizes.size, np.int64)
    number[kept[np.argsort(first[kept])]] = np.arange(1, kept.size + 1)
    return number[component]


def _depths(found: np.ndarray) -> np.ndarray:
    """Each issue pixel's chessboard distance from outside its region (or the image):
    1 on its rim, and k + 1 where all 8 neighbours are at least k deep."""
    depth = np.ones(found.shape[1], np.int64)
    deeper = np.flatnonzero((found >= 0).all(axis=0))
    level = 1
    while deeper.size:
        level += 1
        depth[deeper] = level
        deeper = deeper[(depth[found[:, deeper]] == level).all(axis=0)]
    return depth


def near_labelled_edge(
    labels: np.ndarray, ys: np.ndarray, xs: np.ndarray, ignore: int | None
) -> np.ndarray:
    """Whether each pixel (ys, xs) lies within ``EDGE_REACH`` pixels (chessboard) of an
    edge between two labelled (not ignored) classes of the given labels; looks only at
    the box around the pixels."""
    reach = EDGE_REACH
    top, left = max(0, int(ys.min()) - reach - 1), max(0, int(xs.min()) - reach - 1)
    bottom = min(labels.shape[0], int(ys.max()) + reach + 2)
    right = min(labels.shape[1], int(xs.max()) + reach + 2)
    window = labels[top:bottom, left:right]
    valid = np.ones(window.shape, bool) if ignore is None else window != ignore
    edge = np.zeros(window.shape, bool)
    down = (window[1:] != window[:-1]) & valid[1:] & valid[:-1]
    across = (window[:, 1:] != window[:, :-1]) & valid[:, 1:] & valid[:, :-1]
    edge[1:] |= down
    edge[:-1] |= down
    edge[:, 1:] |= across
    edge[:, :-1] |= across
    tall = edge.copy()  # grown by `reach` pixels, rows then columns: a (2r+1)² square
    for step in range(1, reach + 1):
        tall[step:] |= edge[:-step]
        tall[:-step] |= edge[step:]
    near = tall.copy()
    for step in range(1, reach + 1):
        near[:, step:] |= tall[:, :-step]
        near[:, :-step] |= tall[:, step:]
    return near[ys - top, xs - left]


def _columns(columns: dict[str, np.ndarray], count: int) -> dict[str, np.ndarray]:
    out = {
        name: np.asarray(columns.get(name, np.zeros(0)), dtype=np.float64)
        for name in REGION_COLUMNS[1:]
    }
    for name in ("given_class", "predicted_class", "pixels", "x0", "y0", "x1", "y1", "thickness"):
        out[name] = out[name].astype(np.int64)
    out["region"] = np.arange(1, count + 1, dtype=np.int64)
    return out


@dataclass(frozen=True)
class RegionFinder:
    """What each image's issues go through when regions are asked for: their regions
    (:func:`image_regions`, against the given labels the sink holds) and the region map
    into the sink's ``regions`` array. Plain data, so it runs on any executor."""

    ignore: int | None
    min_pixels: int

    def __call__(
        self, sink: Any, index: int, mask: np.ndarray, pixels: IssuePixels
    ) -> dict[str, np.ndarray]:
        """Image ``index``'s regions as columns (its map written to ``sink``)."""
        if pixels.index.size == 0:
            sink.write("regions", index, np.zeros(mask.shape, np.uint32))
            return image_regions(mask.shape, pixels, mask).columns
        labels = np.asarray(sink.read("labels", index))
        found = image_regions(
            mask.shape, pixels, labels, ignore=self.ignore, min_pixels=self.min_pixels
        )
        sink.write("regions", index, found.region_map)
        return found.columns
