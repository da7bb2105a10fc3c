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

The links between neighbouring issue pixels, their depths and their nearness to a
labelled edge come from compiled loops over the issue pixels (``_regions.c``, through
:mod:`segaudit.engine.region_kernels`); the components from scipy. Everything comes from the
issue pixels themselves (their classes and probabilities,
recorded by the streaming pass) and the given labels around each region: no image is
scanned whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from segaudit.engine.region_kernels import (
    near_edge,
    region_depths,
    region_features,
    region_graph,
    region_links,
)

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
    region_map: np.ndarray  # (H, W) region numbers (uint16 or uint32), 0 outside kept regions

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
    map_dtype: Any = np.uint32,
) -> ImageRegions:
    """The regions of one image's issue pixels; ``labels`` (H, W) are its given labels;
    the region map in ``map_dtype`` (see :func:`region_map_dtype`)."""
    region_map = np.zeros(shape, map_dtype)
    index = pixels.index.astype(np.int64, copy=False)
    if index.size == 0:
        return ImageRegions(_columns({}, 0), region_map)
    num_codes = int(max(pixels.given.max(), pixels.predicted.max())) + 1
    pair = pixels.given.astype(np.int64) * num_codes
    pair += pixels.predicted
    found = region_links(shape, index, pair)
    region = _numbered_regions(found, min_pixels)
    kept = region > 0
    depth = region_depths(found)[kept]  # a region is a whole component: its links are its own
    index, number = index[kept], region[kept] - 1
    count = int(number.max()) + 1 if number.size else 0
    region_map.ravel()[index] = number + 1
    if count == 0:
        return ImageRegions(_columns({}, 0), region_map)
    near = near_edge(labels, index, EDGE_REACH, ignore)
    score, top = pixels.score[kept], pixels.top[kept]
    ints, sums = region_features(index, number, score, top, near, depth, shape[1], count)
    sizes, first = ints[0].astype(np.float64), ints[6]
    columns = {
        "given_class": pixels.given[kept][first].astype(np.int64),
        "predicted_class": pixels.predicted[kept][first].astype(np.int64),
        "pixels": ints[0],
        "x0": ints[1],
        "y0": ints[2],
        "x1": ints[3],
        "y1": ints[4],
        "centroid_x": sums[0] / sizes,
        "centroid_y": sums[1] / sizes,
        "mean_self_confidence": sums[2] / sizes,
        "mean_predicted_probability": sums[3] / sizes,
        "edge_fraction": sums[4] / sizes,
        "thickness": ints[5],
    }
    return ImageRegions(_columns(columns, count), region_map)


def region_map_dtype(sizes: Any, min_pixels: int) -> np.dtype:
    """The region maps' type: uint16 when no image can hold 65,536 regions or more (a
    kept region has at least ``min_pixels`` pixels), else uint32. Half the bytes to
    write and compress for the common case (a 512×1024 image at the default 10 pixels
    holds at most 52,428 regions)."""
    sizes = np.asarray(sizes, np.int64).reshape(-1, 2)
    most = int((sizes[:, 0] * sizes[:, 1]).max(initial=0)) // max(1, int(min_pixels))
    return np.dtype(np.uint16 if most <= np.iinfo(np.uint16).max else np.uint32)


def _numbered_regions(found: np.ndarray, min_pixels: int) -> np.ndarray:
    """Each issue pixel's region number: the connected components of the links in
    ``found``, of at least ``min_pixels`` pixels, numbered from 1 by their first pixel
    (pixels ascend in raster order); 0 when dropped."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    count = found.shape[1]
    indptr, targets = region_graph(found)
    # float64 weights and int32 indices: the types csgraph works in, so it copies nothing
    graph = csr_matrix((np.ones(targets.size), targets, indptr), shape=(count, count))
    _, component = connected_components(graph, directed=False)
    sizes = np.bincount(component)
    first = np.full(sizes.size, count, np.int64)
    np.minimum.at(first, component, np.arange(count))  # pixels ascend: the first in raster
    kept = np.flatnonzero(sizes >= min_pixels)
    number = np.zeros(sizes.size, np.int64)
    number[kept[np.argsort(first[kept])]] = np.arange(1, kept.size + 1)
    return number[component]


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
    map_dtype: Any = np.uint32
    volumes: tuple[Any, ...] | None = None  # per image: (shape (Z, Y, X), spacing) or None

    def __call__(
        self, sink: Any, index: int, mask: np.ndarray, pixels: IssuePixels
    ) -> dict[str, np.ndarray]:
        """Image ``index``'s regions as columns (its map written to ``sink``); a volume's
        in 3-D (:func:`segaudit.engine.volume_regions.volume_regions`)."""
        volume = self.volumes[index] if self.volumes is not None else None
        if volume is not None:
            return self._volume(sink, index, mask, pixels, *volume)
        if pixels.index.size == 0:
            sink.write("regions", index, np.zeros(mask.shape, self.map_dtype))
            return image_regions(mask.shape, pixels, mask).columns
        labels = np.asarray(sink.read("labels", index))
        found = image_regions(
            mask.shape, pixels, labels, ignore=self.ignore, min_pixels=self.min_pixels,
            map_dtype=self.map_dtype,
        )  # fmt: skip
        sink.write("regions", index, found.region_map)
        return found.columns

    def _volume(
        self,
        sink: Any,
        index: int,
        mask: np.ndarray,
        pixels: IssuePixels,
        shape: tuple[int, int, int],
        spacing: tuple[float, float, float],
    ) -> dict[str, np.ndarray]:
        from segaudit.engine.volume_regions import volume_regions

        labels = np.asarray(sink.read("labels", index)) if pixels.index.size else mask
        found = volume_regions(
            shape, pixels, labels, spacing=spacing, ignore=self.ignore,
            min_pixels=self.min_pixels, map_dtype=self.map_dtype,
        )  # fmt: skip
        sink.write("regions", index, found.region_map.reshape(mask.shape))
        return found.columns
