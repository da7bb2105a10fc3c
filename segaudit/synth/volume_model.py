"""A simulated segmentation model of a volume, and the CT "photo" the model would have seen.

The model sees each organ with a boundary of its own (the true wobble mixed with another
random field), is sure inside organs and unsure within a few voxels of their outline,
and takes a few small regions confidently for the wrong organ. Its probabilities are a
softmax over per-class logits, made slab by slab; it never sees the noisy labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from segaudit.synth.scene import smooth
from segaudit.synth.volume_scene import Blob, VolumeScene

_FAR = -7.0  # logit of an organ far from where the model sees it
_NOISE = 0.5  # per-voxel noise of every logit


@dataclass
class VolumeModel:
    """Per-class logits from blobs: the organs as the model sees them, and its mistakes."""

    classes: int
    blobs: list[tuple[int, Blob]]  # (class, blob): organs and confidently wrong regions
    slope: np.ndarray  # (K,) logit per voxel of distance to the outline
    cap: np.ndarray  # (K,) logit deep inside
    spread: float  # probability spread evenly over all classes
    rng: np.random.Generator  # per-voxel noise, drawn slab after slab in order

    @classmethod
    def build(cls, rng: np.random.Generator, scene: VolumeScene, classes: int) -> VolumeModel:
        blobs = [(c, blob.with_wobble(rng, 0.6)) for c, blob in scene.organs]
        depth, h, w = scene.shape
        for _ in range(int(rng.integers(0, 3))):  # confident mistakes of the model's own
            c = int(rng.integers(1, classes))
            ry, rx = scene.body.radii[depth // 2]
            centre = (
                rng.uniform(0.2, 0.8) * (depth - 1),
                scene.body.centre[0] + rng.uniform(-0.5, 0.5) * ry,
                scene.body.centre[1] + rng.uniform(-0.5, 0.5) * rx,
            )
            axes = (max(1.0, 0.04 * depth), max(1.5, 0.035 * h), max(1.5, 0.035 * w))
            blobs.append((c, Blob.make(rng, scene.shape, centre, axes)))
        slope = rng.uniform(0.6, 1.2, size=classes).astype(np.float32)
        cap = rng.uniform(3.0, 5.0, size=classes).astype(np.float32)
        return cls(classes, blobs, slope, cap, float(rng.uniform(0.0005, 0.002)), rng)

    def probs(self, z0: int, z1: int, out: np.ndarray) -> np.ndarray:
        """Probabilities of slices z0:z1 into ``out`` (K, slices, Y, X) float32; rows sum
        to 1 over K."""
        self.rng.standard_normal(out.shape, dtype=np.float32, out=out)
        out *= _NOISE
        out[1:] += _FAR
        for cls, blob in self.blobs:
            found = blob.slab(z0, z1)
            if found is None:
                continue
            region, level = found
            logit = np.clip(level * -self.slope[cls], _FAR, self.cap[cls])
            target = out[cls][region]
            target += logit - _FAR
        out -= out.max(axis=0)
        np.exp(out, out=out)
        total = out.sum(axis=0)
        np.divide(1 - self.spread, total, out=total)
        out *= total
        out += self.spread / self.classes
        return out


def organ_hounsfield(classes: int) -> np.ndarray:
    """(K,) float32 mean Hounsfield units of each class: distinct organs from 90 to 250
    (class 0, the background, is drawn as air, soft tissue, fat and bone instead)."""
    values = np.zeros(classes, dtype=np.float32)
    values[1:] = np.linspace(90, 250, classes - 1) if classes > 2 else 150
    return values


@dataclass
class Photographer:
    """The CT image of one volume, slab by slab: int16 Hounsfield-like values."""

    scene: VolumeScene
    tissue: np.ndarray  # (Y, X) soft tissue: 20..80 HU
    organs: np.ndarray  # (K,) organ HU
    rng: np.random.Generator

    @classmethod
    def build(cls, rng: np.random.Generator, scene: VolumeScene, classes: int) -> Photographer:
        _, h, w = scene.shape
        tissue = 20 + 60 * smooth(rng, 1, h, w, cells=4)[0]
        return cls(scene, tissue.astype(np.float32), organ_hounsfield(classes), rng)

    def slab(self, truth: np.ndarray, rings: np.ndarray) -> np.ndarray:
        """(slices, Y, X) int16: air -1000, soft tissue, a fat rim, bone 400+, organs."""
        image = np.full(truth.shape, -1000, dtype=np.float32)
        inside = rings < 1
        np.copyto(image, self.tissue[None], where=inside)
        image[inside & (rings > 0.9)] = -90  # fat under the skin
        spine = self.scene.spine_mask(truth.shape) & inside
        np.copyto(image, np.float32(700), where=spine)
        organ = truth > 0
        image[organ] = self.organs[truth[organ]]
        image += self.rng.standard_normal(truth.shape, dtype=np.float32) * 12
        image[spine] = np.maximum(image[spine], 400)
        return np.rint(image).astype(np.int16)
