"""The three kinds of annotation error injected into the labels of corrupted volumes.

- ``slices_missing``: an organ left unlabelled (background) on a run of consecutive slices;
- ``boundary_shifted``: an organ's outline 2 voxels off in every slice, either grown by 2
  voxels into the background (``mode: dilated``) or moved 2 voxels (``mode: shifted``);
- ``class_swapped``: a whole organ given another organ's class.

Errors are planned once per volume (:func:`plan_errors`) and applied slab by slab
(:func:`apply_errors`); each event then gets its changed voxels and box as the slabs go by
(:class:`EventTally`). A voxel changed by several events counts for the last one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from segaudit.synth.volume_scene import VolumeScene

VOLUME_ERROR_KINDS = ("slices_missing", "boundary_shifted", "class_swapped")
BOUNDARY_VOXELS = 2  # how far off a shifted outline is


@dataclass(frozen=True)
class PlannedError:
    """One error to inject: its kind, the organ's class and what the kind needs."""

    kind: str
    cls: int
    new_class: int = 0  # class_swapped
    slices: tuple[int, int] = (0, 0)  # slices_missing: z0, z1 (end-exclusive)
    mode: str = ""  # boundary_shifted: "dilated" or "shifted"
    shift: tuple[int, int] = (0, 0)  # boundary_shifted, shifted: (dy, dx)


def plan_errors(rng: np.random.Generator, scene: VolumeScene) -> list[PlannedError]:
    """1-3 errors of distinct kinds, each on its own organ, chosen by ``rng``."""
    organs = [cls for cls, _ in scene.organs]
    rng.shuffle(organs)
    count = min(len(organs), int(rng.integers(1, 4)))
    kinds = list(rng.choice(VOLUME_ERROR_KINDS, size=count, replace=False))
    blobs = dict(scene.organs)
    plans = []
    for kind, cls in zip(kinds, organs, strict=False):
        if kind == "class_swapped" and len(blobs) < 2:
            kind = "slices_missing"  # one organ only: nothing to swap it with
        if kind == "slices_missing":
            cz, az = blobs[cls].centre[0], blobs[cls].axes[0]
            length = int(rng.integers(2, max(3, round(0.5 * az)) + 1))
            low, high = cz - 0.6 * az, cz + 0.6 * az - length
            z0 = max(0, int(round(rng.uniform(low, max(low, high)))))
            plans.append(PlannedError(kind, cls, slices=(z0, min(scene.shape[0], z0 + length))))
        elif kind == "class_swapped":
            others = [c for c in blobs if c != cls]
            plans.append(PlannedError(kind, cls, new_class=int(others[rng.integers(len(others))])))
        else:
            mode = "dilated" if rng.random() < 0.5 else "shifted"
            step = BOUNDARY_VOXELS
            shift = [(0, step), (0, -step), (step, 0), (-step, 0)][int(rng.integers(4))]
            plans.append(PlannedError(kind, cls, mode=mode, shift=shift))
    return plans


def apply_errors(
    noisy: np.ndarray, truth: np.ndarray, z0: int, plans: list[PlannedError]
) -> np.ndarray:
    """Inject ``plans`` into the slab ``noisy`` (a copy of ``truth``, slices from z0);
    return its (slices, Y, X) uint8 error map: 0 untouched, e for the e-th event."""
    error_map = np.zeros(noisy.shape, dtype=np.uint8)
    for number, plan in enumerate(plans, start=1):
        before = noisy.copy()
        organ = truth == plan.cls
        if plan.kind == "slices_missing":
            lo, hi = max(0, plan.slices[0] - z0), max(0, plan.slices[1] - z0)
            noisy[lo:hi][organ[lo:hi]] = 0
        elif plan.kind == "class_swapped":
            noisy[organ] = plan.new_class
        elif plan.mode == "dilated":
            noisy[dilate_in_plane(organ, BOUNDARY_VOXELS) & (truth == 0)] = plan.cls
        else:
            moved = shift_in_plane(organ, plan.shift)
            noisy[organ & ~moved] = 0
            noisy[moved & (truth == 0)] = plan.cls
        error_map[noisy != before] = number
    error_map[noisy == truth] = 0  # changed, then changed back
    return error_map


def dilate_in_plane(mask: np.ndarray, radius: int) -> np.ndarray:
    """Dilation of each slice by a (2r+1)² square, done separably; nothing past the edges."""
    _, h, w = mask.shape
    padded = np.pad(mask, ((0, 0), (radius, radius), (radius, radius)))
    rows = np.zeros((mask.shape[0], h + 2 * radius, w), dtype=bool)
    for d in range(2 * radius + 1):
        rows |= padded[:, :, d : d + w]
    result = np.zeros(mask.shape, dtype=bool)
    for d in range(2 * radius + 1):
        result |= rows[:, d : d + h]
    return result


def shift_in_plane(mask: np.ndarray, shift: tuple[int, int]) -> np.ndarray:
    """Each slice moved by (dy, dx) voxels; what moves past the edge is lost."""
    dy, dx = shift
    _, h, w = mask.shape
    moved = np.zeros_like(mask)
    moved[:, max(0, dy) : h + min(0, dy), max(0, dx) : w + min(0, dx)] = mask[
        :, max(0, -dy) : h + min(0, -dy), max(0, -dx) : w + min(0, -dx)
    ]
    return moved


@dataclass
class EventTally:
    """Changed voxels and box [z0, y0, x0, z1, y1, x1] of each event, slab after slab."""

    count: int
    voxels: np.ndarray = field(init=False)
    boxes: list[list[int] | None] = field(init=False)

    def __post_init__(self) -> None:
        self.voxels = np.zeros(self.count + 1, dtype=np.int64)
        self.boxes = [None] * (self.count + 1)

    def add(self, error_map: np.ndarray, z0: int) -> None:
        self.voxels += np.bincount(error_map.ravel(), minlength=self.count + 1)[: self.count + 1]
        for number in range(1, self.count + 1):
            hit = error_map == number
            if not hit.any():
                continue
            spans = [np.flatnonzero(hit.any(axis=axes)) for axes in ((1, 2), (0, 2), (0, 1))]
            lo = [int(s[0]) for s in spans]
            hi = [int(s[-1]) + 1 for s in spans]
            lo[0], hi[0] = lo[0] + z0, hi[0] + z0
            old = self.boxes[number]
            if old is not None:
                lo = [min(a, b) for a, b in zip(lo, old[:3], strict=True)]
                hi = [max(a, b) for a, b in zip(hi, old[3:], strict=True)]
            self.boxes[number] = lo + hi

    def events(
        self, plans: list[PlannedError], names: list[str], case: str
    ) -> list[dict[str, Any]]:
        """The events that changed voxels, as ``errors.json`` lists them."""
        events = []
        for number, plan in enumerate(plans, start=1):
            if self.voxels[number] == 0:
                continue
            event: dict[str, Any] = {
                "case": case,
                "kind": plan.kind,
                "class": names[plan.cls],
                "label": plan.cls,
                "voxels": int(self.voxels[number]),
                "bbox": self.boxes[number],
            }
            if plan.kind == "slices_missing":
                event["slices"] = list(plan.slices)
            elif plan.kind == "class_swapped":
                event.update(new_class=names[plan.new_class], new_label=plan.new_class)
            else:
                event.update(mode=plan.mode, voxels_off=BOUNDARY_VOXELS)
                if plan.mode == "shifted":
                    event["shift_yx"] = list(plan.shift)
            events.append(event)
        return events
