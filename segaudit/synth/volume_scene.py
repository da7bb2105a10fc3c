"""Synthetic CT-like volumes: organ-shaped blobs inside a body outline, made slab by slab.

A volume is indexed (z, y, x). Every structure is an implicit function of the voxel
position (an ellipsoid whose radius wobbles by a smooth random field), so any slab of
slices can be computed on its own: a whole volume never has to sit in memory as floats.
Class 0 is the background (air, body, bone); each class 1..K-1 is one organ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from segaudit.synth.scene import interp_matrix

Shape3 = tuple[int, int, int]
_WOBBLE = 0.12  # how far (relative to its radius) an organ's boundary wanders
_TRIES = 30  # placements tried per organ to keep organs apart


@dataclass(frozen=True)
class Blob:
    """An ellipsoid with a wobbly boundary: ``level < 0`` inside."""

    centre: tuple[float, float, float]  # (z, y, x) in voxels
    axes: tuple[float, float, float]  # semi-axes in voxels
    box: tuple[int, int, int, int, int, int]  # z0, z1, y0, y1, x0, x1 (end-exclusive)
    wobble: np.ndarray  # (gz, ny, nx): the wobble field on the box's y, x and coarse z knots
    amplitude: float

    @classmethod
    def make(
        cls,
        rng: np.random.Generator,
        shape: Shape3,
        centre: tuple[float, float, float],
        axes: tuple[float, float, float],
        amplitude: float = _WOBBLE,
    ) -> Blob:
        reach = [a * (1 + amplitude) + 1 for a in axes]
        box = []
        for c, r, n in zip(centre, reach, shape, strict=True):
            box += [max(0, math.floor(c - r)), min(n, math.ceil(c + r) + 1)]
        z0, z1, y0, y1, x0, x1 = box
        wobble = _field(rng, y1 - y0, x1 - x0)
        return cls(centre, axes, (z0, z1, y0, y1, x0, x1), wobble, amplitude)

    def with_wobble(self, rng: np.random.Generator, mix: float) -> Blob:
        """The same blob, its boundary moved by another random field (``mix`` of it)."""
        other = _field(rng, *self.wobble.shape[1:])
        moved = ((1 - mix) * self.wobble + mix * other).astype(np.float32)
        return Blob(self.centre, self.axes, self.box, moved, self.amplitude)

    def slab(self, z0: int, z1: int) -> tuple[tuple[slice, slice, slice], np.ndarray] | None:
        """Where the blob's box meets slices z0:z1 (slices of the slab) and the signed
        distance there, in voxels of the in-plane radius (negative inside); None if apart."""
        bz0, bz1, y0, y1, x0, x1 = self.box
        lo, hi = max(z0, bz0), min(z1, bz1)
        if lo >= hi or y0 >= y1 or x0 >= x1:
            return None
        cz, cy, cx = self.centre
        az, ay, ax = self.axes
        zs = (np.arange(lo, hi, dtype=np.float32) - cz) / az
        ys = (np.arange(y0, y1, dtype=np.float32) - cy) / ay
        xs = (np.arange(x0, x1, dtype=np.float32) - cx) / ax
        radius = np.sqrt(zs[:, None, None] ** 2 + ys[None, :, None] ** 2 + xs[None, None, :] ** 2)
        knots = interp_matrix(bz1 - bz0, self.wobble.shape[0])[lo - bz0 : hi - bz0]
        wobble = np.tensordot(knots, self.wobble, axes=1)
        level = (radius - 1 - self.amplitude * wobble) * (0.5 * (ay + ax))
        return (slice(lo - z0, hi - z0), slice(y0, y1), slice(x0, x1)), level


def _field(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """(4, h, w) float32 smooth field in [-1, 1]: 4 coarse z knots, 5x5 knots in-plane."""
    grid = rng.uniform(-1, 1, size=(4, 5, 5)).astype(np.float32)
    rows, cols = interp_matrix(max(1, h), 5), interp_matrix(max(1, w), 5)
    return np.einsum("ab,gbc,dc->gad", rows, grid, cols, optimize=True).astype(np.float32)


@dataclass(frozen=True)
class Body:
    """The body outline: an ellipse in each slice, its size varying smoothly along z."""

    centre: tuple[float, float]  # (y, x)
    radii: np.ndarray  # (Z, 2) semi-axes (y, x) of each slice

    def rings(self, z0: int, z1: int, shape: Shape3) -> np.ndarray:
        """(slices, Y, X) float32 elliptic radius: < 1 inside the body."""
        _, h, w = shape
        ry, rx = self.radii[z0:z1, 0], self.radii[z0:z1, 1]
        ys = (np.arange(h, dtype=np.float32) - self.centre[0])[None, :, None] / ry[:, None, None]
        xs = (np.arange(w, dtype=np.float32) - self.centre[1])[None, None, :] / rx[:, None, None]
        return np.sqrt(ys**2 + xs**2)


@dataclass(frozen=True)
class VolumeScene:
    """The true labels of one volume: a body, a spine and one organ per class 1..K-1."""

    shape: Shape3
    body: Body
    spine: tuple[float, float, float]  # (y, x, radius) of the spine's disc in every slice
    organs: list[tuple[int, Blob]]  # (class, blob), painted in order: later organs win

    def truth(self, z0: int, z1: int, rings: np.ndarray | None = None) -> np.ndarray:
        """(slices, Y, X) uint8 true labels of slices z0:z1."""
        if rings is None:
            rings = self.body.rings(z0, z1, self.shape)
        labels = np.zeros(rings.shape, dtype=np.uint8)
        inside = rings < 1
        for cls, blob in self.organs:
            found = blob.slab(z0, z1)
            if found is not None:
                region, level = found
                labels[region][(level < 0) & inside[region]] = cls
        return labels

    def spine_mask(self, rings_shape: tuple[int, ...]) -> np.ndarray:
        """(1, Y, X) bool: the spine's disc (the same in every slice)."""
        _, h, w = rings_shape
        cy, cx, r = self.spine
        ys = (np.arange(h) - cy)[:, None]
        xs = (np.arange(w) - cx)[None, :]
        return (ys**2 + xs**2 < r * r)[None]


def make_volume_scene(rng: np.random.Generator, shape: Shape3, classes: int) -> VolumeScene:
    """A body along z with a spine at its back and one organ for each class 1..K-1."""
    depth, h, w = shape
    centre = (h * rng.uniform(0.48, 0.52), w * rng.uniform(0.48, 0.52))
    z = np.linspace(0, 1, depth, dtype=np.float32)
    swell = 1 + 0.06 * np.sin(2 * math.pi * (z * rng.uniform(0.5, 1.2) + rng.uniform(0, 1)))
    radii = np.stack([0.40 * h * swell, 0.46 * w * swell], axis=1).astype(np.float32)
    body = Body(centre, radii)
    spine = (centre[0] + 0.28 * h, centre[1], max(1.5, 0.06 * min(h, w)))
    organs: list[tuple[int, Blob]] = []
    placed: list[tuple[np.ndarray, np.ndarray]] = []
    count = classes - 1
    size = min(1.0, 2.6 / math.sqrt(count))  # many organs: smaller ones
    for cls in range(1, classes):
        centre3, axes = _place(rng, shape, body, size, placed)
        placed.append((np.array(centre3), np.array(axes)))
        organs.append((cls, Blob.make(rng, shape, centre3, axes)))
    return VolumeScene(shape, body, spine, organs)


def _place(
    rng: np.random.Generator,
    shape: Shape3,
    body: Body,
    size: float,
    placed: list[tuple[np.ndarray, np.ndarray]],
) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """An organ's centre (inside the body, away from the spine) and semi-axes, apart from
    the organs placed so far when it can be."""
    depth, h, w = shape
    best, best_gap = None, -math.inf
    for _ in range(_TRIES):
        axes = (
            max(1.5, depth * rng.uniform(0.12, 0.28)),
            max(1.5, h * size * rng.uniform(0.06, 0.12)),
            max(1.5, w * size * rng.uniform(0.06, 0.12)),
        )
        cz = rng.uniform(0.25, 0.75) * (depth - 1)
        ry, rx = body.radii[int(round(cz))]
        angle = rng.uniform(0, 2 * math.pi)
        reach = rng.uniform(0, 0.6)
        cy = body.centre[0] + reach * ry * math.sin(angle) - 0.12 * h  # in front of the spine
        cx = body.centre[1] + reach * rx * math.cos(angle)
        centre = np.array([cz, cy, cx])
        gap = min(
            (float(np.linalg.norm((centre - c) / (a + np.array(axes)))) for c, a in placed),
            default=math.inf,
        )
        if gap > best_gap:
            best, best_gap = ((float(cz), float(cy), float(cx)), axes), gap
        if gap > 1.1:
            break
    assert best is not None
    return best
