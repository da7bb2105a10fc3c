"""The four kinds of annotation error injected into the labels of corrupted images.

Each error edits the noisy copy of the true map in place and returns one event: its kind,
class, changed pixels and the affected box ``[y0, x0, y1, x1]`` (end-exclusive), as
``synth.json`` lists them.

:func:`corrupt_with_map` also returns the image's *error map*: (H, W) uint16, 0 where the
pixel is untouched and ``e >= 1`` where the e-th event (in the order ``synth.json`` lists
the image's events) changed it. A pixel changed by several events belongs to the last
one that changed it (later events win). A pixel that ends up with its true label again
(an event undid an earlier one) counts as untouched, so the map is non-zero exactly where
the noisy labels differ from the truth.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from segaudit.synth.scene import Scene, shape_mask
from segaudit.synth.world import World

ERROR_KINDS = ("object_dropped", "class_swapped", "boundary_shifted", "spurious_object")
ERROR_MAP_DTYPE = np.uint16  # event numbers of the error map; 0 = untouched
SMALL_OBJECT = 0.012  # the "hard" difficulty's errors: objects of at most this image share

Event = dict[str, Any]


def corrupt(rng: np.random.Generator, scene: Scene, world: World) -> tuple[np.ndarray, list[Event]]:
    """Copy the true map and inject 1-3 kinds of annotation error; return it and the log."""
    noisy, events, _ = corrupt_with_map(rng, scene, world)
    return noisy, events


def corrupt_with_map(
    rng: np.random.Generator, scene: Scene, world: World
) -> tuple[np.ndarray, list[Event], np.ndarray]:
    """:func:`corrupt`, plus the error map: which event (1, 2, ...) changed each pixel.

    Draws exactly the random numbers :func:`corrupt` draws, so the labels and events are
    the same; the map is bookkeeping only.
    """
    noisy = scene.truth.copy()
    error_map = np.zeros(noisy.shape, dtype=ERROR_MAP_DTYPE)
    h, w = noisy.shape
    min_area = max(12, 0.004 * h * w)
    areas = np.bincount(scene.inst.ravel(), minlength=len(scene.objects) + 1)[1:]
    eligible = list(np.flatnonzero(areas >= min_area))
    if world.hard:  # small objects only (the smallest eligible one when none is small)
        small = [j for j in eligible if areas[j] <= SMALL_OBJECT * h * w]
        eligible = small or sorted(eligible, key=lambda j: areas[j])[:1]
    rng.shuffle(eligible)
    kinds = list(rng.choice(ERROR_KINDS, size=int(rng.integers(1, 4)), replace=False))
    events: list[Event] = []
    for kind in kinds:
        before = noisy.copy()
        if kind == "spurious_object":
            event = _add_spurious(rng, noisy, scene, world)
        elif eligible:
            event = _OBJECT_ERRORS[kind](rng, noisy, scene, world, int(eligible.pop()))
        else:
            event = None
        if event is not None and event["pixels"] > 0:  # 0: e.g. same class as an earlier error
            events.append(event)
            _mark_changed(error_map, noisy, before, event["box"], len(events))
    if not np.any(noisy != scene.truth):  # nothing took: a spurious object always does
        before = noisy.copy()
        events.append(_add_spurious(rng, noisy, scene, world))
        _mark_changed(error_map, noisy, before, events[-1]["box"], len(events))
    error_map[noisy == scene.truth] = 0  # changed, then changed back
    return noisy, events, error_map


def _mark_changed(
    error_map: np.ndarray, noisy: np.ndarray, before: np.ndarray, box: list[int], number: int
) -> None:
    """Give event ``number`` every pixel of its box whose label it changed (later wins)."""
    y0, x0, y1, x1 = box
    changed = noisy[y0:y1, x0:x1] != before[y0:y1, x0:x1]
    error_map[y0:y1, x0:x1][changed] = number


def kinds_of(events: list[Event]) -> list[str]:
    """The kinds among ``events``, in :data:`ERROR_KINDS` order."""
    return [kind for kind in ERROR_KINDS if any(e["kind"] == kind for e in events)]


def _event(
    kind: str, world: World, cls: int, region: tuple[slice, slice], changed: int, **extra: Any
) -> Event:
    ys, xs = region
    return {
        "kind": kind,
        "class": world.names[cls],
        "pixels": int(changed),
        "box": [ys.start, xs.start, ys.stop, xs.stop],
        **extra,
    }


def _drop_object(
    rng: np.random.Generator, noisy: np.ndarray, scene: Scene, world: World, j: int
) -> Event:
    """The annotator missed the object: it is painted with what surrounds it."""
    region, vis = scene.visible(j)
    before = noisy[region].copy()
    noisy[region][vis] = scene.objects[j].under[vis]
    changed = np.count_nonzero(noisy[region] != before)
    return _event("object_dropped", world, scene.objects[j].cls, region, changed)


def _swap_class(
    rng: np.random.Generator, noisy: np.ndarray, scene: Scene, world: World, j: int
) -> Event:
    """The annotator picked the wrong class for the whole object (often a confusable one)."""
    cls = scene.objects[j].cls
    others = world.thing_classes(avoid=cls)
    new = int(world.partner[cls]) if rng.random() < 0.7 else int(others[rng.integers(len(others))])
    region, vis = scene.visible(j)
    before = noisy[region].copy()
    noisy[region][vis] = new
    changed = np.count_nonzero(noisy[region] != before)
    return _event("class_swapped", world, cls, region, changed, new_class=world.names[new])


def _shift_boundary(
    rng: np.random.Generator, noisy: np.ndarray, scene: Scene, world: World, j: int
) -> Event:
    """The annotator traced the object a few pixels too wide or too tight."""
    h, w = noisy.shape
    obj = scene.objects[j]
    most = 2 if world.hard else max(3, round(0.012 * min(h, w)))
    radius = int(rng.integers(1 if world.hard else 2, most + 1))
    y0, y1, x0, x1 = obj.box
    ys = slice(max(0, y0 - radius), min(h, y1 + radius))
    xs = slice(max(0, x0 - radius), min(w, x1 + radius))
    vis = scene.inst[ys, xs] == j + 1
    before = noisy[ys, xs].copy()
    eroded = ~_dilate(~vis, radius)  # the image edge does not erode the object
    mode = "dilated" if rng.random() < 0.5 or not eroded.any() else "eroded"
    if mode == "dilated":
        noisy[ys, xs][_dilate(vis, radius) & ~vis] = obj.cls
    else:
        under = np.full(vis.shape, -1, dtype=np.int32)  # what lies under the object
        under[y0 - ys.start : y1 - ys.start, x0 - xs.start : x1 - xs.start] = obj.under
        ring = vis & ~eroded
        noisy[ys, xs][ring] = under[ring]
    changed = np.count_nonzero(noisy[ys, xs] != before)
    return _event("boundary_shifted", world, obj.cls, (ys, xs), changed, mode=mode, radius=radius)


def _add_spurious(rng: np.random.Generator, noisy: np.ndarray, scene: Scene, world: World) -> Event:
    """The annotator drew an object that is not there, of a class absent from the image."""
    h, w = noisy.shape
    present = np.zeros(len(world.names), dtype=bool)
    present[np.unique(scene.truth)] = True
    absent = [c for c in world.things if not present[c]] or list(np.flatnonzero(~present))
    cy, cx = rng.uniform(0, h), rng.uniform(0, w)
    if not absent:
        absent = world.thing_classes(avoid=int(scene.truth[int(cy), int(cx)]))
    cls = int(absent[rng.integers(len(absent))])
    low, high = (0.02, 0.045) if world.hard else (0.05, 0.12)
    radius = max(2.0, rng.uniform(low, high) * min(h, w))
    box, mask = shape_mask(rng, h, w, cy, cx, radius, "")
    region = (slice(box[0], box[1]), slice(box[2], box[3]))
    before = noisy[region].copy()
    noisy[region][mask] = cls
    changed = np.count_nonzero(noisy[region] != before)
    return _event("spurious_object", world, cls, region, changed)


_OBJECT_ERRORS: dict[str, Callable[..., Event]] = {
    "object_dropped": _drop_object,
    "class_swapped": _swap_class,
    "boundary_shifted": _shift_boundary,
}


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation by a (2r+1)² square, done separably; nothing lies past the edges."""
    h, w = mask.shape
    padded = np.pad(mask, radius)
    rows = np.zeros((h + 2 * radius, w), dtype=bool)
    for d in range(2 * radius + 1):
        rows |= padded[:, d : d + w]
    result = np.zeros((h, w), dtype=bool)
    for d in range(2 * radius + 1):
        result |= rows[d : d + h]
    return result
