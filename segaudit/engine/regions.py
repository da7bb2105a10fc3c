"""Issue pixels lifted to regions: what a reviewer fixes ("this car is labelled road").

Per image, the issue pixels of one (given class, predicted class) pair that touch
(8-connectivity) form a region (:func:`scipy.ndimage.label`, run on the pair's
bounding box only). Regions are numbered from 1 in the raster order of their first
pixel (row by row, then column), which depends on the image alone. Regions smaller
than ``min_pixels`` are dropped from the region list and map; the issue mask itself is
unchanged.

Each region gets its size, inclusive bounding box, centroid, mean self-confidence
(the probability of the given label), mean predicted probability, and two shape
features its kind and score use (:mod:`segaudit.engine.region_scores`): the fraction
of its pixels within ``EDGE_REACH`` pixels of an edge between two labelled classes,
and its thickness (the largest chessboard distance from its outside, so a band two
pixels wide has thickness 1).

Everything comes from the issue pixels themselves (their classes and probabilities,
recorded by the streaming pass) and the given labels around each region: no image is
scanned whole.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EIGHT = np.ones((3, 3), bool)  # 8-connectivity
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
    from scipy import ndimage

    region_map = np.zeros(shape, np.uint32)
    if pixels.index.size == 0:
        return ImageRegions(_columns([]), region_map)
    num_codes = int(max(pixels.given.max(), pixels.predicted.max())) + 1
    codes = np.zeros(shape, np.int32)
    pair = pixels.given.astype(np.int64) * num_codes + pixels.predicted.astype(np.int64)
    codes.ravel()[pixels.index] = (pair + 1).astype(np.int32)
    values = _value_images(shape, pixels)
    found: list[tuple[int, dict[str, float], np.ndarray]] = []
    for code, box in enumerate(ndimage.find_objects(codes), start=1):
        if box is None:
            continue
        components, _ = ndimage.label(codes[box] == code, structure=EIGHT)
        given, predicted = divmod(code - 1, num_codes)
        for part, part_box in enumerate(ndimage.find_objects(components), start=1):
            local = components[part_box] == part  # label() leaves no gaps: never None
            if int(local.sum()) < min_pixels:
                continue
            origin = (box[0].start + part_box[0].start, box[1].start + part_box[1].start)
            first, row = _describe(local, origin, (given, predicted), values, labels, ignore)
            found.append((first, row, local))
    found.sort(key=lambda item: item[0])
    for number, (_, row, local) in enumerate(found, start=1):
        y, x = int(row["y0"]), int(row["x0"])
        region_map[y : y + local.shape[0], x : x + local.shape[1]][local] = number
    return ImageRegions(_columns([row for _, row, _ in found]), region_map)


def _value_images(shape: tuple[int, int], pixels: IssuePixels) -> tuple[np.ndarray, np.ndarray]:
    """Self-confidence and predicted probability as images (zero off the issue pixels)."""
    score = np.zeros(shape, np.float64)
    top = np.zeros(shape, np.float64)
    score.ravel()[pixels.index] = pixels.score
    top.ravel()[pixels.index] = pixels.top
    return score, top


def _describe(
    local: np.ndarray,
    origin: tuple[int, int],
    classes: tuple[int, int],
    values: tuple[np.ndarray, np.ndarray],
    labels: np.ndarray,
    ignore: int | None,
) -> tuple[int, dict[str, float]]:
    """(raster index of the first pixel, the region's columns) of one component."""
    from scipy import ndimage

    ys, xs = np.nonzero(local)  # raster order
    rows, cols = ys + origin[0], xs + origin[1]
    score, top = values
    depth = ndimage.distance_transform_cdt(np.pad(local, 1), metric="chessboard")
    row: dict[str, float] = {
        "given_class": classes[0],
        "predicted_class": classes[1],
        "pixels": len(rows),
        "x0": int(cols.min()),
        "y0": int(rows.min()),
        "x1": int(cols.max()),
        "y1": int(rows.max()),
        "centroid_x": float(cols.mean()),
        "centroid_y": float(rows.mean()),
        "mean_self_confidence": float(score[rows, cols].mean()),
        "mean_predicted_probability": float(top[rows, cols].mean()),
        "edge_fraction": edge_fraction(labels, local, origin, ignore),
        "thickness": int(depth.max()),
    }
    return int(rows[0] * labels.shape[1] + cols[0]), row


def edge_fraction(
    labels: np.ndarray, local: np.ndarray, origin: tuple[int, int], ignore: int | None
) -> float:
    """The fraction of a region's pixels within ``EDGE_REACH`` pixels of an edge between
    two labelled (not ignored) classes of the given labels, looked at around it only."""
    from scipy import ndimage

    reach = EDGE_REACH
    y0, x0 = origin
    top, left = max(0, y0 - reach - 1), max(0, x0 - reach - 1)
    bottom = min(labels.shape[0], y0 + local.shape[0] + reach + 1)
    right = min(labels.shape[1], x0 + local.shape[1] + reach + 1)
    window = labels[top:bottom, left:right]
    valid = np.ones(window.shape, bool) if ignore is None else window != ignore
    edge = np.zeros(window.shape, bool)
    down = (window[1:] != window[:-1]) & valid[1:] & valid[:-1]
    across = (window[:, 1:] != window[:, :-1]) & valid[:, 1:] & valid[:, :-1]
    edge[1:] |= down
    edge[:-1] |= down
    edge[:, 1:] |= across
    edge[:, :-1] |= across
    if not edge.any():
        return 0.0
    near = ndimage.binary_dilation(edge, structure=EIGHT, iterations=reach)
    ry, rx = y0 - top, x0 - left
    return float(near[ry : ry + local.shape[0], rx : rx + local.shape[1]][local].mean())


def _columns(rows: list[dict[str, float]]) -> dict[str, np.ndarray]:
    columns = {
        name: np.array([row[name] for row in rows], dtype=np.float64)
        for name in REGION_COLUMNS[1:]
    }
    for name in ("given_class", "predicted_class", "pixels", "x0", "y0", "x1", "y1", "thickness"):
        columns[name] = columns[name].astype(np.int64)
    columns["region"] = np.arange(1, len(rows) + 1, dtype=np.int64)
    return columns
