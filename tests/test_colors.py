"""The class colour map keeps classes apart for every K a dataset might have."""

from __future__ import annotations

import numpy as np
import pytest

from segaudit.report.colors import (
    IGNORE_GREY,
    ISSUE_RED,
    MIN_DISTANCE_FIRST_20,
    NEUTRAL_WHITE,
    distinct_colors,
)


def pairwise_min(colors: np.ndarray) -> float:
    values = colors.astype(np.float64)
    distances = np.sqrt(((values[:, None, :] - values[None, :, :]) ** 2).sum(axis=-1))
    distances[np.diag_indices(len(values))] = np.inf
    return float(distances.min())


def test_colours_are_distinct_and_the_first_20_far_apart_for_every_k() -> None:
    assert MIN_DISTANCE_FIRST_20 == 40.0
    for k in range(2, 257):
        colors = distinct_colors(k)
        assert colors.shape == (k, 3) and colors.dtype == np.uint8
        assert len({tuple(c) for c in colors.tolist()}) == k, f"K={k}: repeated colour"
        assert pairwise_min(colors[:20]) >= MIN_DISTANCE_FIRST_20, f"K={k}: first 20 too close"
        assert pairwise_min(colors) >= 15.0, f"K={k}: two colours closer than 15"


def test_no_class_is_the_issue_red_the_ignore_grey_or_the_background() -> None:
    for k in range(1, 257):
        colors = distinct_colors(k)
        assert ISSUE_RED not in {tuple(c) for c in colors.tolist()}, f"K={k}"
        for neutral in (IGNORE_GREY, NEUTRAL_WHITE):
            distance = np.sqrt(((colors.astype(np.float64) - neutral) ** 2).sum(axis=1))
            assert distance.min() >= 100.0, f"K={k}: a class is close to {neutral}"


def test_deterministic_and_lower_tiers_darker_than_higher() -> None:
    assert np.array_equal(distinct_colors(150), distinct_colors(150))
    colors = distinct_colors(150).astype(int)
    brightness = colors.sum(axis=1)
    assert brightness[:24].mean() < brightness[-24:].mean()
    assert colors[:24].max() <= round(0.65 * 255)  # darkest tier: value 0.65
    assert colors[-6:].min(axis=1).min() >= 100  # lightest tier: half-way to white


def test_rejects_zero_classes() -> None:
    with pytest.raises(ValueError, match="at least one class"):
        distinct_colors(0)
