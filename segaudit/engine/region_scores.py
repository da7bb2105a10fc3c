"""Each region's kind and score: what kind of annotation error it looks like, and how
likely it is to be one rather than the model's own mistake.

Kinds (the rule, in order):

- ``boundary``: a thin band (thickness at most ``BAND_THICKNESS``) lying mostly
  (``BAND_EDGE_FRACTION`` of its pixels or more) along an edge between two labelled
  classes: an outline drawn a few pixels off;
- ``missing``: given a background-like class where the model sees an object class;
- ``spurious``: given an object class where the model sees a background-like class;
- ``wrong-class``: every other region (an object labelled as another object, or
  background as other background).

Which classes are background-like is a parameter: by default the first class (id 0),
or ``--background CLASS ...``; the known layouts name their "stuff" classes.

Score: a number in [0, 1], lower = more likely a real annotation error, from the
region's features by a logistic function whose weights were fitted on synthetic
datasets with injected errors (``bench/fit_region_score.py``)::

    z = b + w_gap·(p̄ − s̄) + w_size·log10(pixels) + w_edge·edge_fraction + w_pair·pair_share
    score = 1 / (1 + exp(z))

with p̄ the mean probability of the predicted class, s̄ the mean probability of the
given label, and ``pair_share`` the fraction of the dataset's images in which the same
(given, predicted) pair forms a region: a model's own confusion repeats across many
images, an annotator's slip tends to be one object.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BAND_THICKNESS = 2
BAND_EDGE_FRACTION = 0.6
KINDS = ("missing", "wrong-class", "boundary", "spurious")

# Fitted by bench/fit_region_score.py on three synth sets (standard, hard, 60% corrupted;
# 40 images of 256×512, 19 classes): a logistic regression of "this region is an
# injected error" on the features, whose logit is z below.
INTERCEPT = -11.271
WEIGHT_GAP = 3.888
WEIGHT_SIZE = 3.344
WEIGHT_EDGE = -1.901
WEIGHT_PAIR = -11.459

def region_kinds(columns: dict[str, np.ndarray], background: Sequence[int]) -> np.ndarray:
    """The kind of every region (see the module's docstring for the rule)."""
    count = len(columns["region"])
    kinds = np.full(count, "wrong-class", dtype=object)
    back = set(int(k) for k in background)
    given_back = np.array([int(g) in back for g in columns["given_class"]], bool)
    predicted_back = np.array([int(p) in back for p in columns["predicted_class"]], bool)
    kinds[given_back & ~predicted_back] = "missing"
    kinds[~given_back & predicted_back] = "spurious"
    band = (columns["thickness"] <= BAND_THICKNESS) & (
        columns["edge_fraction"] >= BAND_EDGE_FRACTION
    )
    kinds[band] = "boundary"
    return kinds


def pair_shares(
    image: np.ndarray, given: np.ndarray, predicted: np.ndarray, num_images: int
) -> np.ndarray:
    """For every region, the fraction of the dataset's images holding a region of its
    (given, predicted) pair."""
    if len(image) == 0:
        return np.zeros(0)
    pairs = given.astype(np.int64) * (int(predicted.max()) + 1) + predicted.astype(np.int64)
    distinct = np.unique(np.stack([pairs, image.astype(np.int64)]), axis=1)
    pair_ids, images_per_pair = np.unique(distinct[0], return_counts=True)
    return images_per_pair[np.searchsorted(pair_ids, pairs)] / max(1, num_images)


def region_scores(columns: dict[str, np.ndarray], share: np.ndarray) -> np.ndarray:
    """The score of every region, in [0, 1]: lower = more likely a real error."""
    gap = columns["mean_predicted_probability"] - columns["mean_self_confidence"]
    size = np.log10(np.maximum(columns["pixels"], 1))
    z = (
        INTERCEPT
        + WEIGHT_GAP * gap
        + WEIGHT_SIZE * size
        + WEIGHT_EDGE * columns["edge_fraction"]
        + WEIGHT_PAIR * share
    )
    return 1.0 / (1.0 + np.exp(np.clip(z, -700, 700)))


def score_formula() -> str:
    """The fitted formula, for summary.json and the README."""
    return (
        f"1 / (1 + exp({INTERCEPT:+.3f} {WEIGHT_GAP:+.3f}·(p̄ − s̄) "
        f"{WEIGHT_SIZE:+.3f}·log10(pixels) {WEIGHT_EDGE:+.3f}·edge_fraction "
        f"{WEIGHT_PAIR:+.3f}·pair_share))"
    )
