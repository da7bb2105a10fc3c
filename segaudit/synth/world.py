"""What every image of one synthetic dataset shares: random streams, class roles, colours."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Random-stream tags: every (seed, tag, image) triple gets an independent generator.
# New tags go at the end, so existing streams (and the files made from them) never change.
WORLD, CHOICE, SCENE, ERRORS, MODEL, PHOTO, SIZES = range(7)
# Volumes (segaudit.synth.volumes): one stream each for the scene, errors, model, image, void.
VOLUME_SCENE, VOLUME_ERRORS, VOLUME_MODEL, VOLUME_PHOTO, VOLUME_VOID = range(7, 12)

# Name-based hints that make default street scenes look right; other names get defaults.
_STUFF_NAMES = ("building", "vegetation", "wall", "fence", "terrain")
# fmt: off
_PARTNER_NAMES = {
    "road": "sidewalk", "sidewalk": "road", "building": "wall", "wall": "fence",
    "fence": "wall", "vegetation": "terrain", "terrain": "vegetation", "sky": "building",
    "person": "rider", "rider": "person", "car": "truck", "truck": "bus", "bus": "train",
    "train": "bus", "motorcycle": "bicycle", "bicycle": "motorcycle", "pole": "traffic sign",
    "traffic light": "traffic sign", "traffic sign": "pole",
}
_BASE_COLOURS = {
    "road": (88, 86, 92), "sidewalk": (172, 162, 150), "building": (142, 112, 92),
    "wall": (168, 150, 120), "fence": (120, 104, 80), "pole": (70, 70, 74),
    "traffic light": (40, 44, 40), "traffic sign": (210, 190, 40), "vegetation": (62, 118, 48),
    "terrain": (150, 142, 92), "sky": (138, 182, 230), "person": (196, 128, 104),
    "rider": (160, 70, 120), "car": (40, 60, 140), "truck": (160, 40, 40),
    "bus": (220, 150, 30), "train": (110, 110, 130), "motorcycle": (30, 30, 30),
    "bicycle": (40, 150, 150),
}
# fmt: on


def rng(seed: int, tag: int, index: int = 0) -> np.random.Generator:
    """The random stream ``tag`` of image ``index``: independent of every other stream."""
    return np.random.default_rng([seed, tag, index])


def choose_corrupted(seed: int, count: int, fraction: float) -> np.ndarray:
    """(count,) bool: exactly ``round(fraction * count)`` images (or volumes) to corrupt,
    chosen by the seed's CHOICE stream."""
    chosen = rng(seed, CHOICE).choice(count, size=round(fraction * count), replace=False)
    corrupted = np.zeros(count, dtype=bool)
    corrupted[chosen] = True
    return corrupted


@dataclass
class World:
    """What every image of one dataset shares: class roles, confusions, colours."""

    seed: int
    names: list[str]
    road: int
    sidewalk: int | None
    sky: int
    stuff: list[int]
    things: list[int]
    partner: np.ndarray  # (K,) the class a model or annotator confuses each class with
    palette: np.ndarray  # (K, 3) float32 base colours
    hard: bool = False  # the "hard" difficulty: a less accurate model, smaller errors

    @classmethod
    def build(cls, seed: int, names: list[str], hard: bool = False) -> World:
        stream = rng(seed, WORLD)
        k = len(names)
        index = {n.lower(): i for i, n in enumerate(names)}
        road, sidewalk, sky = index.get("road"), index.get("sidewalk"), index.get("sky")
        stuff = [index[n] for n in _STUFF_NAMES if n in index]
        taken = {road, sidewalk, sky, *stuff}
        things = [i for i in range(k) if i not in taken] or list(range(k))
        road = things[0] if road is None else road
        sky = (things[-1] if things[-1] != road else (road + 1) % k) if sky is None else sky
        if not stuff:
            stuff = [c for c in things if c not in (road, sky)][:3] or [sky]
        partner = cls._partners(stream, names, index, [things, stuff, [road, sky]])
        palette = stream.uniform(40, 220, size=(k, 3))
        for name, colour in _BASE_COLOURS.items():
            if name in index:
                palette[index[name]] = colour
        palette = np.clip(palette + stream.uniform(-12, 12, size=(k, 3)), 0, 255)
        return cls(
            seed, names, road, sidewalk, sky, stuff, things, partner, palette.astype(np.float32),
            hard,
        )

    @staticmethod
    def _partners(
        stream: np.random.Generator,
        names: list[str],
        index: dict[str, int],
        groups: list[list[int]],
    ) -> np.ndarray:
        """A confusable class for each class: a named partner, else one of its group."""
        k = len(names)
        partner = (np.arange(k) + 1 + stream.integers(0, k - 1, size=k)) % k  # never itself
        for group in groups:
            if len(group) > 1:
                for pos, c in enumerate(group):
                    partner[c] = group[(pos + 1 + stream.integers(0, len(group) - 1)) % len(group)]
        for i, name in enumerate(names):
            other = index.get(_PARTNER_NAMES.get(name.lower(), ""))
            if other is not None and other != i:
                partner[i] = other
        return partner

    def thing_classes(self, avoid: int) -> list[int]:
        """Classes an object may have, other than ``avoid`` (any class if no thing is left)."""
        return [c for c in self.things if c != avoid] or [
            c for c in range(len(self.names)) if c != avoid
        ]
