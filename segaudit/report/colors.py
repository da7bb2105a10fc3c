"""Class colours and the fixed colours of the pictures segaudit draws.

:func:`distinct_colors` follows the idea of the reference library's colour map
(hues spread evenly around the HSV wheel, lower entries darkened, higher entries
lightened) but is laid out so that neighbouring classes stay apart for any K:

- up to ``HUES_PER_TIER`` (24) classes: one tier of pure, fully saturated hues
  spread evenly around the wheel (offset half a step, so no class is pure red);
- more classes: tiers of 24 evenly spread hues; the lowest tier is darkened to
  ``DARKEST`` (0.65) of full value, the highest lightened ``LIGHTEST`` (0.5) of
  the way to white, the tiers between ramp from one to the other. Tier 0 starts
  at hue 0 (its hues then never straddle an RGB sector boundary, which keeps the
  first 20 colours apart), odd tiers are rotated half a hue step and later even
  tiers a quarter step, so tiers interleave and no class is the issue red.

Measured over every K from 2 to 256 (see ``tests/test_colors.py``): all colours
distinct; the first 20 colours at least ``MIN_DISTANCE_FIRST_20`` = 40 apart in
RGB (Euclidean, 0..255 per channel) -- the reference's map drops to 11 at K=256;
any two colours at least 15 apart (the reference's: 6); none equal to the
issue red, and every one at least 100 from the ignore grey and the white
background.
"""

from __future__ import annotations

import numpy as np

HUES_PER_TIER = 24
DARKEST = 0.65
LIGHTEST = 0.5
MIN_DISTANCE_FIRST_20 = 40.0

ISSUE_RED = (255, 0, 0)
"""Issue pixels, in the issue panel and over the photo."""
IGNORE_GREY = (128, 128, 128)
"""Ignored pixels (label == ignore_index) in the given-labels panel."""
NEUTRAL_WHITE = (255, 255, 255)
"""Background of the issue panel: red on white reads at a glance, also when printed."""


def hsv_to_rgb(hue: np.ndarray) -> np.ndarray:
    """Fully saturated, full-value HSV colours for hues in [0, 1), as floats in [0, 1]."""
    k = (np.array([5.0, 3.0, 1.0]) + np.asarray(hue, dtype=np.float64)[:, None] * 6.0) % 6.0
    return 1.0 - np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def distinct_colors(k: int) -> np.ndarray:
    """``k`` well-separated class colours as a (k, 3) uint8 array, the same for the same ``k``."""
    if k < 1:
        raise ValueError(f"distinct_colors needs at least one class; got k={k}.")
    if k <= HUES_PER_TIER:
        rgb = hsv_to_rgb((np.arange(k) + 0.5) / k)
        return np.round(rgb * 255).astype(np.uint8)
    index = np.arange(k)
    tier, position = np.divmod(index, HUES_PER_TIER)
    rotation = np.where(tier % 2 == 1, 0.5, np.where(tier == 0, 0.0, 0.25))
    rgb = hsv_to_rgb(((position + rotation) / HUES_PER_TIER) % 1.0)
    level = tier / tier.max()  # 0 for the darkest tier, 1 for the lightest
    value = np.where(level < 0.5, DARKEST + (1.0 - DARKEST) * level / 0.5, 1.0)
    towards_white = np.where(level > 0.5, LIGHTEST * (level - 0.5) / 0.5, 0.0)
    rgb = rgb * value[:, None]
    rgb = rgb + (1.0 - rgb) * towards_white[:, None]
    return np.round(rgb * 255).astype(np.uint8)
