"""A simulated segmentation model: per-pixel class probabilities made from the true scene.

The model is mostly right and confident inside regions, unsure near boundaries and on
small objects, and confidently wrong in a few small regions, as trained models are. It
never sees the noisy labels, so annotation errors show up as labels it finds unlikely.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from segaudit.synth.scene import Scene, interp_matrix, nearness, shape_mask, smooth
from segaudit.synth.world import World


@dataclass
class Model:
    """Per-pixel fields of a simulated model, from which pred_probs rows are produced.

    The model believes the true class (except in a few small confidently-wrong regions)
    with confidence ``conf``, gives the rest of the top mass to ``other`` (the class across
    the nearest boundary, else a confusable class) and spreads ``spread`` over all classes.
    """

    belief: np.ndarray  # (H, W) int64
    other: np.ndarray  # (H, W) int64
    p_belief: np.ndarray  # (H, W) float32 probability added to the believed class
    p_other: np.ndarray  # (H, W) float32 probability added to the other class
    scale: np.ndarray  # (H, W) float32: spread mass / sum over K of the smooth noise
    noise: np.ndarray  # (K, gh, gw) coarse per-class noise
    cols: np.ndarray  # (gw, W) column interpolation
    rows: np.ndarray  # (H, gh) row interpolation

    @classmethod
    def build(cls, rng: np.random.Generator, scene: Scene, world: World) -> Model:
        h, w = scene.truth.shape
        short = min(h, w)
        belief, inst, wrong = _belief(rng, scene, world)
        reach = max(2, round(short / 96))
        near = nearness(belief, reach) ** 2
        other = _nearest_other(belief, reach, near > 0)
        far = other == belief
        other[far] = world.partner[belief[far]]
        fields = smooth(rng, 3, h, w, cells=6)
        # confident inside regions, unsure (but still right) near boundaries
        unsure = (0.06, 0.1) if world.hard else (0.15, 0.2)  # the hard set's model: surer
        conf = 0.95 + 0.045 * fields[0] - near * (unsure[0] + unsure[1] * fields[1])
        conf += rng.normal(0, 0.015, size=(h, w)).astype(np.float32)
        areas = np.bincount(scene.inst.ravel(), minlength=len(scene.objects) + 1)
        grow = np.log(np.maximum(areas, 1) / 8) / math.log(max(2.0, 0.01 * h * w / 8))
        cap = (0.45 + 0.5 * np.clip(grow, 0, 1)).astype(np.float32)  # small objects: unsure
        cap[0] = 1.0
        conf = np.where(wrong, np.maximum(conf, 0.85), np.minimum(conf, cap[inst]))
        conf = np.clip(conf, 0.05, 0.995)
        spread = 0.005 + 0.03 * fields[2] + 0.04 * near  # mass spread over all classes
        cells = 5 / short
        gh, gw = max(2, round(h * cells) + 1), max(2, round(w * cells) + 1)
        noise = rng.random((len(world.names), gh, gw), dtype=np.float32) ** 3 + 0.02
        rows, cols = interp_matrix(h, gh), interp_matrix(w, gw).T.copy()
        # interpolation is linear, so the noise sums over K without making all K planes
        total = rows @ noise.sum(axis=0, dtype=np.float64).astype(np.float32) @ cols
        return cls(
            belief=belief.astype(np.int64),
            other=other.astype(np.int64),
            p_belief=((1 - spread) * conf).astype(np.float32),
            p_other=((1 - spread) * (1 - conf)).astype(np.float32),
            scale=(spread / total).astype(np.float32),
            noise=noise,
            cols=cols,
            rows=rows,
        )

    @property
    def shape(self) -> tuple[int, int, int]:
        """(K, H, W) of the probabilities this model gives."""
        return self.noise.shape[0], self.rows.shape[0], self.cols.shape[1]

    def probs(self, r0: int, r1: int, out: np.ndarray) -> np.ndarray:
        """pred_probs rows r0:r1 into ``out`` (K, r1 - r0, W) float32; sums to 1 over K."""
        k, gh, gw = self.noise.shape
        rows, w = r1 - r0, self.cols.shape[1]
        coarse = self.rows[r0:r1] @ self.noise  # (K, rows, gw)
        np.matmul(coarse.reshape(k * rows, gw), self.cols, out=out.reshape(k * rows, w))
        out *= self.scale[r0:r1]
        flat = out.reshape(k, -1)
        pixels = np.arange(rows * w)
        flat[self.belief[r0:r1].ravel(), pixels] += self.p_belief[r0:r1].ravel()
        flat[self.other[r0:r1].ravel(), pixels] += self.p_other[r0:r1].ravel()
        return out


def _belief(
    rng: np.random.Generator, scene: Scene, world: World
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What the model sees: the true map with wobbly boundaries and a few small regions
    confidently taken for a confusable class. Returns it, the matching instance map and
    the mask of those wrong regions."""
    h, w = scene.truth.shape
    short = min(h, w)
    shift = max(1.0, short / (256 if world.hard else 80))  # boundary wobble in pixels
    moves = np.rint(np.clip((smooth(rng, 2, h, w, cells=6) - 0.5) * 4, -1, 1) * shift)
    rows = np.clip(np.arange(h)[:, None] + moves[0].astype(np.intp), 0, h - 1)
    cols = np.clip(np.arange(w)[None, :] + moves[1].astype(np.intp), 0, w - 1)
    belief, inst = scene.truth[rows, cols], scene.inst[rows, cols]
    wrong = np.zeros((h, w), dtype=bool)
    blobs = (1, 5) if world.hard else (0, 3)
    for _ in range(int(rng.integers(*blobs))):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        radius = max(1.5, rng.uniform(0.015, 0.04) * short)
        box, mask = shape_mask(rng, h, w, cy, cx, radius, "")
        region = (slice(box[0], box[1]), slice(box[2], box[3]))
        belief[region][mask] = world.partner[belief[int(cy), int(cx)]]
        wrong[region] |= mask
    return belief, inst, wrong


def _nearest_other(labels: np.ndarray, reach: int, where: np.ndarray) -> np.ndarray:
    """The nearest different class within ``reach`` of each pixel in ``where`` (elsewhere,
    and where there is none, the pixel's own class)."""
    h, w = labels.shape
    ys, xs = np.nonzero(where)
    own = labels[ys, xs]
    found = own.copy()
    steps = sorted({*(2**e for e in range(reach.bit_length())), reach})
    for step in steps:  # nearest first, so the closest different class wins
        for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0), (1, 1), (1, -1), (-1, 1), (-1, -1)):
            moved = labels[np.clip(ys + dy * step, 0, h - 1), np.clip(xs + dx * step, 0, w - 1)]
            take = (found == own) & (moved != own)
            found[take] = moved[take]
    other = labels.copy()
    other[ys, xs] = found
    return other
