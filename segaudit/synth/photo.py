"""The "photo" of a synthetic scene, so overlays and review pages have something to show."""

from __future__ import annotations

import numpy as np

from segaudit.synth.scene import Scene, nearness, smooth
from segaudit.synth.world import World


def photo(rng: np.random.Generator, scene: Scene, world: World) -> np.ndarray:
    """A plausible (H, W, 3) uint8 photo of the true scene: class colours, shading, noise."""
    h, w = scene.truth.shape
    colour = world.palette[scene.truth]  # (H, W, 3)
    fields = smooth(rng, 2, h, w, cells=5)
    light = 0.78 + 0.3 * fields[0] + 0.12 * (fields[1] - 0.5)  # soft shadows and lighting
    yy = np.arange(h, dtype=np.float32)[:, None]
    tops = np.array([0] + [o.box[0] for o in scene.objects], dtype=np.float32)
    heights = np.array([1] + [max(1, o.box[1] - o.box[0]) for o in scene.objects], dtype=np.float32)
    rel = np.clip((yy - tops[scene.inst]) / heights[scene.inst], 0, 1)
    light = np.where(scene.inst > 0, light * (1.15 - 0.35 * rel), light)  # lit from above
    sky = scene.truth == world.sky
    light = np.where(sky, 0.95 + 0.12 * (yy / max(1.0, scene.horizon)), light)
    light *= 1 - 0.25 * nearness(scene.truth, 1)  # dark outlines where regions meet
    grain = rng.standard_normal((h, w, 3), dtype=np.float32) * 7
    return np.clip(colour * light[..., None] + grain, 0, 255).astype(np.uint8)
