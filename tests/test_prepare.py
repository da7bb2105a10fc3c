"""Predictions as models write them: upsampled, normalised, channels moved, softmaxed."""

from __future__ import annotations

import numpy as np
import pytest

from segaudit.engine.prepare import normalize_rows, prepare_probs, resize_bilinear, softmax
from segaudit.errors import InvalidInputError


def bilinear_by_hand(planes: np.ndarray, height: int, width: int) -> np.ndarray:
    """PyTorch's bilinear upsampling (align_corners=False), one output pixel at a time."""
    k, h, w = planes.shape
    out = np.zeros((k, height, width))
    for y in range(height):
        sy = max((y + 0.5) * h / height - 0.5, 0.0)
        y0 = min(int(np.floor(sy)), h - 1)
        y1, wy = min(y0 + 1, h - 1), sy - y0
        for x in range(width):
            sx = max((x + 0.5) * w / width - 0.5, 0.0)
            x0 = min(int(np.floor(sx)), w - 1)
            x1, wx = min(x0 + 1, w - 1), sx - x0
            out[:, y, x] = (
                planes[:, y0, x0] * (1 - wy) * (1 - wx)
                + planes[:, y0, x1] * (1 - wy) * wx
                + planes[:, y1, x0] * wy * (1 - wx)
                + planes[:, y1, x1] * wy * wx
            )
    return out


SIZES = [(4, 6, 16, 24), (5, 7, 20, 13), (3, 3, 3, 9)]


@pytest.mark.parametrize(("h", "w", "height", "width"), SIZES)
def test_bilinear_upsampling_is_pytorchs(h, w, height, width):
    rng = np.random.default_rng(h * w)
    probs = rng.random((3, h, w))
    probs /= probs.sum(axis=0)
    got = resize_bilinear(probs, height, width)
    assert got.dtype == np.float64 and got.shape == (3, height, width)
    np.testing.assert_allclose(got, bilinear_by_hand(probs, height, width), atol=1e-14)
    np.testing.assert_allclose(got.sum(axis=0), 1.0, atol=1e-12)  # still probabilities
    half = resize_bilinear(probs.astype(np.float16), height, width)
    assert half.dtype == np.float32


def test_prepare_orders_the_steps_as_a_model_would():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 3, 5)).astype(np.float32)
    stored = np.ascontiguousarray(logits.transpose(1, 2, 0))  # (H, W, K) as saved
    got = prepare_probs(stored, (6, 10), channels_last=True, logits=True, resize="bilinear")
    expected = softmax(resize_bilinear(logits, 6, 10))  # upsample the logits, then softmax
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert got.flags.c_contiguous


def test_scores_that_are_not_probabilities_are_normalised_per_pixel():
    scores = np.array([[[2.0, 0.0]], [[6.0, 0.0]]], np.float32)  # (K=2, 1, 2)
    got = normalize_rows(scores)
    np.testing.assert_allclose(got[:, 0, 0], [0.25, 0.75])
    assert np.isnan(got[:, 0, 1]).all()  # nothing to divide: the kernel names the pixel


def test_a_stored_array_the_right_size_is_used_as_it_is():
    probs = np.full((2, 3, 4), 0.5, np.float32)
    assert prepare_probs(probs, (3, 4)) is probs  # a memory map stays a memory map


@pytest.mark.parametrize(("stored", "fix"), [((2, 3, 4), "--resize-probs bilinear"),
                                              ((2, 12, 16), "pixel for pixel")])  # fmt: skip
def test_sizes_that_differ_from_the_mask_name_the_fix(stored, fix):
    probs = np.full(stored, 0.5, np.float32)
    with pytest.raises(InvalidInputError, match=fix) as error:
        prepare_probs(probs, (6, 8), where="preds/a.npy")
    assert "preds/a.npy" in str(error.value)
    if fix.startswith("--resize"):
        assert prepare_probs(probs, (6, 8), resize="bilinear").shape == (2, 6, 8)
