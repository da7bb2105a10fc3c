"""Street-like scenes: a background of stuff, sky and road, with objects painted on top.

A scene is the ground truth of one image: its class map, which object covers each pixel,
and what each object was painted over (so an annotation error can drop it again).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from segaudit.synth.world import World

# fmt: off
# (shape, aspect = height/width range): shapes are "ellipse", "rect", "blob" or "any".
_SHAPES = {
    "person": ("blob", 1.8, 3.0), "rider": ("blob", 1.4, 2.2), "pole": ("rect", 6.0, 12.0),
    "traffic light": ("rect", 1.8, 3.0), "traffic sign": ("rect", 0.8, 1.3),
    "car": ("rect", 0.45, 0.7), "truck": ("rect", 0.55, 0.9), "bus": ("rect", 0.45, 0.65),
    "train": ("rect", 0.3, 0.5), "motorcycle": ("ellipse", 0.6, 0.9),
    "bicycle": ("ellipse", 0.55, 0.8),
}
# fmt: on

Box = tuple[int, int, int, int]  # y0, y1, x0, x1


@dataclass
class SceneObject:
    """One painted object: its class, bounding box and the labels it was painted over."""

    cls: int
    box: Box
    under: np.ndarray


@dataclass
class Scene:
    """The true class map of one image, its objects, and where its horizon lies."""

    truth: np.ndarray  # (H, W) int32 class map
    inst: np.ndarray  # (H, W) int32: 0 background, j + 1 object j
    objects: list[SceneObject] = field(default_factory=list)
    horizon: float = 0.0

    def visible(self, j: int) -> tuple[tuple[slice, slice], np.ndarray]:
        """Object ``j``'s box and, inside it, the pixels no later object covers."""
        y0, y1, x0, x1 = self.objects[j].box
        region = (slice(y0, y1), slice(x0, x1))
        return region, self.inst[region] == j + 1


def interp_matrix(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) linear-interpolation weights spreading n_in knots over n_out samples."""
    pos = (np.arange(n_out) + 0.5) * ((n_in - 1) / n_out)
    i0 = np.minimum(pos.astype(np.int64), n_in - 2)
    frac = (pos - i0).astype(np.float32)
    m = np.zeros((n_out, n_in), dtype=np.float32)
    m[np.arange(n_out), i0] = 1 - frac
    m[np.arange(n_out), i0 + 1] = frac
    return m


def smooth(rng: np.random.Generator, n: int, h: int, w: int, cells: float) -> np.ndarray:
    """(n, H, W) smooth random fields in [0, 1]: a coarse random grid, bilinearly upsampled.

    ``cells`` is the number of grid cells along the shorter side.
    """
    scale = cells / min(h, w)
    gh, gw = max(2, round(h * scale) + 1), max(2, round(w * scale) + 1)
    grid = rng.random((n, gh, gw), dtype=np.float32)
    rows = interp_matrix(h, gh) @ grid  # (n, h, gw)
    return (rows.reshape(n * h, gw) @ interp_matrix(w, gw).T).reshape(n, h, w)


def nearness(labels: np.ndarray, reach: int) -> np.ndarray:
    """How near each pixel is to a class boundary: 1 on it, falling to 0 at ``reach``."""
    edge = np.zeros(labels.shape, dtype=bool)
    edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edge[1:] |= labels[1:] != labels[:-1]
    edge[:-1] |= labels[:-1] != labels[1:]
    return np.minimum(1.0, _box_mean(edge, reach) * ((2 * reach + 1) / 2)).astype(np.float32)


def _box_mean(a: np.ndarray, radius: int) -> np.ndarray:
    """Mean over a (2r+1)² window with edge replication, by cumulative sums (float32 out)."""
    size = 2 * radius + 1
    for axis in (0, 1):
        padded = np.pad(
            a, [(radius, radius) if ax == axis else (0, 0) for ax in (0, 1)], mode="edge"
        )
        c = np.cumsum(padded, axis=axis, dtype=np.float64)
        c = np.concatenate([np.zeros_like(c.take([0], axis=axis)), c], axis=axis)
        n = a.shape[axis]
        a = c.take(np.arange(size, size + n), axis=axis) - c.take(np.arange(n), axis=axis)
    return (a / (size * size)).astype(np.float32)


def make_scene(rng: np.random.Generator, h: int, w: int, world: World) -> Scene:
    """A street-like class map: sky, buildings and vegetation, road, then objects on top."""
    truth, horizon = _background(rng, h, w, world)
    scene = Scene(truth=truth, inst=np.zeros((h, w), dtype=np.int32), horizon=horizon)
    base = 4 + int(10 * min(1.0, math.sqrt(h * w) / 700))
    count = int(rng.integers(base, 2 * base + 1))
    short = min(h, w)
    smallest = max(1.5, 0.01 * short)
    radii = np.exp(rng.uniform(math.log(smallest), math.log(max(smallest, 0.3 * short)), count))
    for j, radius in enumerate(np.sort(radii)[::-1]):  # large first so small ones stay visible
        cy = rng.uniform(max(0.0, horizon - 0.15 * h), h)
        cx = rng.uniform(0, w)
        centre = truth[min(h - 1, int(cy)), min(w - 1, int(cx))]
        choices = world.thing_classes(avoid=int(centre))
        cls = int(choices[rng.integers(len(choices))])
        box, mask = shape_mask(rng, h, w, cy, cx, float(radius), world.names[cls].lower())
        region = (slice(box[0], box[1]), slice(box[2], box[3]))
        scene.objects.append(SceneObject(cls, box, truth[region].copy()))
        truth[region][mask] = cls
        scene.inst[region][mask] = j + 1
    return scene


def _background(rng: np.random.Generator, h: int, w: int, world: World) -> tuple[np.ndarray, float]:
    """Stuff regions with irregular borders under a skyline, a road in perspective below."""
    yy = np.arange(h, dtype=np.float32)[:, None]
    xx = np.arange(w, dtype=np.float32)[None, :]
    horizon = float(h * rng.uniform(0.3, 0.5))
    fields = smooth(rng, len(world.stuff) + 2, h, w, cells=4)
    fine = smooth(rng, len(world.stuff), h, w, cells=12)
    # stuff: whichever smooth field is largest, so borders wander
    stuff = np.asarray(world.stuff)[np.argmax(fields[2:] + 0.35 * fine, axis=0)]
    # skyline: flat roofs of random widths plus bumps, above the horizon
    edges = np.sort(rng.uniform(0, w, size=max(1, w // 48)))
    roofs = rng.uniform(0.05, 0.3, size=edges.size + 1)[np.searchsorted(edges, xx[0])]
    skyline = horizon - h * (roofs * (0.6 + 0.8 * fields[0, 0]) + 0.04 * fine[0, 0])
    truth = np.where(yy < skyline[None, :], world.sky, stuff).astype(np.int32)
    # ground: a road widening towards the bottom, sidewalks on both sides
    ground = horizon + h * 0.06 * (fields[1, :, :].mean(axis=0) - 0.5)
    depth = np.clip((yy - horizon) / max(1.0, h - horizon), 0, 1)
    off = np.abs(xx - w * rng.uniform(0.35, 0.65))
    half_road = depth * w * rng.uniform(0.3, 0.6) + 1
    on_ground = yy > ground[None, :]
    if world.sidewalk is not None:
        side = on_ground & (off < half_road + depth * w * rng.uniform(0.1, 0.25) + 1)
        truth[side] = world.sidewalk
    truth[on_ground & (off < half_road)] = world.road
    return truth, horizon


def shape_mask(
    rng: np.random.Generator, h: int, w: int, cy: float, cx: float, radius: float, name: str
) -> tuple[Box, np.ndarray]:
    """An ellipse, rectangle or wobbly blob around (cy, cx), clipped to the image.

    ``name`` (a lower-case class name) picks a typical shape, e.g. tall blobs for people;
    other names, and ``""``, get any shape at any angle.
    """
    kind, lo, hi = _SHAPES.get(name, ("any", 0.4, 2.5))
    if kind == "any":
        kind = ("ellipse", "rect", "blob")[rng.integers(3)]
    aspect = math.exp(rng.uniform(math.log(lo), math.log(hi)))
    ry, rx = radius * math.sqrt(aspect), radius / math.sqrt(aspect)
    ry, rx = max(ry, 0.75), max(rx, 0.75)
    angle = rng.normal(0, 0.08) if name in _SHAPES else rng.uniform(0, math.pi)
    reach = 1.5 * max(ry, rx) + 1
    y0, y1 = max(0, int(cy - reach)), min(h, int(cy + reach) + 1)
    x0, x1 = max(0, int(cx - reach)), min(w, int(cx + reach) + 1)
    dy = np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5 - cy
    dx = np.arange(x0, x1, dtype=np.float32)[None, :] + 0.5 - cx
    cos, sin = math.cos(angle), math.sin(angle)
    u, v = (dx * cos + dy * sin) / rx, (dy * cos - dx * sin) / ry
    if kind == "rect":
        mask = (np.abs(u) <= 1) & (np.abs(v) <= 1)
    elif kind == "ellipse":
        mask = u * u + v * v <= 1
    else:
        theta = np.arctan2(v, u)
        wobble = np.ones_like(theta)
        for order in (2, 3, 5):
            wobble += rng.uniform(0, 0.15) * np.cos(order * theta + rng.uniform(0, 2 * math.pi))
        mask = np.sqrt(u * u + v * v) <= wobble
    mask[min(int(cy), y1 - 1) - y0, min(int(cx), x1 - 1) - x0] = True  # never empty
    return (y0, y1, x0, x1), mask
