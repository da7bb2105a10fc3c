"""Folder datasets of several image sizes: the exact result, every output, every command.

Confident Learning at downsample 1 does not depend on image boundaries, so a folder
dataset's issue masks, laid end to end, must equal cleanlab 2.9's ``find_label_issues``
on all scored pixels laid end to end as one image; each image's softmin must equal
cleanlab's for that image alone. With void pixels (which cleanlab cannot skip), the
naive reference of ``helpers.py`` stands in.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from cleanlab.segmentation.filter import find_label_issues as cleanlab_issues
from cleanlab.segmentation.rank import get_label_quality_scores as cleanlab_scores
from helpers import make_probs, naive_issues, run_outputs
from PIL import Image
from typer.testing import CliRunner

from segaudit.cli import app
from segaudit.runs.masks import read_issue_mask
from segaudit.runs.run import open_run

runner = CliRunner()
SIZES = {"a/first": (12, 20), "a/second": (9, 14), "b/third": (16, 8), "fourth": (12, 20)}
K = 5


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def well_posed_folder(root: Path, void: int | None = None, seed: int = 0, dtype: str = "float32"):
    """A folder dataset whose pixels, laid end to end, have no tie at the cut and no
    probability on a threshold; returns (labels, probs) per id, in sorted id order."""
    for attempt in range(seed, seed + 60):
        rng = np.random.default_rng(attempt)
        images = {}
        for image_id, (h, w) in sorted(SIZES.items()):
            labels, probs = make_probs(rng, 1, K, h, w, dtype)
            if void is not None:
                labels[0][rng.random((h, w)) < 0.1] = void
            images[image_id] = (labels[0], probs[0])
        flat_labels, flat_probs = end_to_end(images)
        naive = naive_issues(flat_labels, flat_probs, ignore=void)
        margin = 1e-3 if dtype == "float16" else 1e-9
        if not naive.tie_at_cut and naive.closest_to_threshold > margin and naive.issues.any():
            write_folder(root, images)
            return images, naive
    raise AssertionError("no well-posed folder dataset found")


def end_to_end(images: dict) -> tuple[np.ndarray, np.ndarray]:
    """All images' pixels as one (1, 1, P) labels image and (1, K, 1, P) probabilities."""
    labels = np.concatenate([lab.ravel() for lab, _ in images.values()])
    probs = np.concatenate([p.reshape(K, -1) for _, p in images.values()], axis=1)
    return labels.reshape(1, 1, -1), probs.reshape(1, K, 1, -1)


def write_folder(root: Path, images: dict) -> None:
    for image_id, (labels, probs) in images.items():
        mask = root / "labels" / f"{image_id}.png"
        mask.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(labels.astype(np.uint8)).save(mask)
        pred = root / "pred_probs" / f"{image_id}.npy"
        pred.parent.mkdir(parents=True, exist_ok=True)
        np.save(pred, probs)
    (root / "classes.txt").write_text("".join(f"c{k}\n" for k in range(K)))


def run_masks(run: Path) -> dict[str, np.ndarray]:
    opened = open_run(run)
    return {i: opened.read("issues", n) for n, i in enumerate(opened.images.ids)}


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_a_folder_of_several_sizes_scans_to_cleanlabs_exact_result(tmp_path, dtype):
    images, _ = well_posed_folder(tmp_path / "ds", dtype=dtype)
    labels, probs = end_to_end(images)
    expected = cleanlab_issues(labels, probs, verbose=False, n_jobs=1).ravel()
    result = invoke("scan", tmp_path / "ds", "-o", tmp_path / "run", "-q")
    assert result.exit_code == 0, result.output
    masks = run_masks(tmp_path / "run")
    assert list(masks) == sorted(SIZES)
    got = np.concatenate([masks[i].ravel() for i in sorted(SIZES)])
    assert got.any() and np.array_equal(got, expected)
    for image_id in images:
        assert masks[image_id].shape == SIZES[image_id]
        png = read_issue_mask(tmp_path / "run", image_id)
        assert np.array_equal(png, masks[image_id])
        raw = np.asarray(Image.open(tmp_path / "run" / "issues" / f"{image_id}.png"))
        assert raw.dtype == np.uint8 and set(np.unique(raw)) <= {0, 255}


def test_each_images_softmin_is_cleanlabs_for_that_image(tmp_path):
    images, _ = well_posed_folder(tmp_path / "ds")
    assert invoke("scan", tmp_path / "ds", "-o", tmp_path / "run", "-q").exit_code == 0
    with open(tmp_path / "run" / "image_scores.csv", newline="") as handle:
        rows = {row["id"]: row for row in csv.DictReader(handle)}
    for image_id, (labels, probs) in images.items():
        scores, _ = cleanlab_scores(labels[None], probs[None], n_jobs=1, verbose=False)
        assert float(rows[image_id]["softmin_score"]) == pytest.approx(scores[0], abs=1e-12)
        assert rows[image_id]["file"] == str(tmp_path / "ds" / "labels" / f"{image_id}.png")
    result = invoke("score", tmp_path / "ds", "-o", tmp_path / "scores", "-q")
    assert result.exit_code == 0, result.output
    with open(tmp_path / "scores" / "image_scores.csv", newline="") as handle:
        scored = {row["id"]: float(row["score"]) for row in csv.DictReader(handle)}
    for image_id in images:
        assert scored[image_id] == float(rows[image_id]["softmin_score"])


def test_void_pixels_in_a_folder_match_the_naive_reference(tmp_path):
    images, naive = well_posed_folder(tmp_path / "ds", void=255)
    result = invoke("scan", tmp_path / "ds", "-o", tmp_path / "run", "-q", "--ignore-index", 255)
    assert result.exit_code == 0, result.output
    masks = run_masks(tmp_path / "run")
    got = np.concatenate([masks[i].ravel() for i in sorted(SIZES)])
    assert np.array_equal(got, naive.issues.ravel())
    labels = np.concatenate([lab.ravel() for lab, _ in images.values()])
    assert not got[labels == 255].any()


def test_folder_runs_are_byte_identical_for_any_batch_size_and_worker_count(tmp_path):
    well_posed_folder(tmp_path / "ds")
    outputs = []
    for n, extra in enumerate([(), ("--batch-size", 1, "--workers", 1), ("--batch-size", 3)]):
        run = tmp_path / f"run{n}"
        assert invoke("scan", tmp_path / "ds", "-o", run, "-q", *extra).exit_code == 0
        outputs.append(run_outputs(run))
    assert outputs[0] == outputs[1] == outputs[2]
    assert "issues/a/first.png" in outputs[0]  # sub-folders of ids are kept


def test_every_command_works_on_a_folder_of_several_sizes(tmp_path):
    well_posed_folder(tmp_path / "ds")
    run = tmp_path / "run"
    assert invoke("scan", tmp_path / "ds", "-o", run, "-q").exit_code == 0
    swaps = invoke("swaps", run, "--json")
    assert swaps.exit_code == 0, swaps.output
    rows = json.loads(swaps.stdout)
    summary = json.loads((run / "summary.json").read_text())
    assert sum(r["pixels"] for r in rows) == summary["totals"]["issue_pixels"]
    render = invoke("render", run, "--top", 2, "-q", "--pages")
    assert render.exit_code == 0, render.output
    assert len(list((run / "render").glob("rank*.png"))) == 2
    gate = invoke("scan", tmp_path / "ds", "-o", tmp_path / "gated", "-q",
                  "--max-images-with-issues", 0)  # fmt: skip
    assert gate.exit_code == 1
    scores = invoke("score", tmp_path / "ds", "-o", tmp_path / "s", "-q",
                    "--method", "num_pixel_issues")  # fmt: skip
    assert scores.exit_code == 0, scores.output
    data = summary["dataset"]
    assert data["num_images"] == 4 and "height" not in data and data["sizes"]["distinct"] == 3


def test_the_api_takes_lists_of_images_of_several_sizes(tmp_path):
    from segaudit.api import find_label_issues, get_label_quality_scores

    images, _ = well_posed_folder(tmp_path / "ds")
    labels = [lab for lab, _ in images.values()]
    probs = [p for _, p in images.values()]
    flat_labels, flat_probs = end_to_end(images)
    masks = find_label_issues(labels, probs)
    assert [m.shape for m in masks] == [lab.shape for lab in labels]
    expected = cleanlab_issues(flat_labels, flat_probs, verbose=False, n_jobs=1).ravel()
    assert np.array_equal(np.concatenate([m.ravel() for m in masks]), expected)
    scores, pixels = get_label_quality_scores(labels, probs)
    for score, pixel, lab, prob in zip(scores, pixels, labels, probs, strict=True):
        reference, reference_pixels = cleanlab_scores(lab[None], prob[None], verbose=False)
        assert score == pytest.approx(reference[0], abs=1e-12)
        assert np.array_equal(pixel, reference_pixels[0])
    with pytest.raises(TypeError, match="both be arrays or both be lists"):
        find_label_issues(labels, np.stack([probs[0], probs[0]]))


def candidates_naive(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Confident Learning's candidates (steps 2-4) on pixels laid end to end, ties at the
    cut to the lowest flat index."""
    result = naive_issues(labels, probs)
    flat_probs = np.moveaxis(probs, 1, -1).reshape(-1, probs.shape[1])
    flat_labels = labels.ravel()
    s = flat_probs[np.arange(len(flat_labels)), flat_labels]
    order = np.lexsort((np.arange(len(s)), s))
    chosen = np.zeros(len(s), bool)
    chosen[order[: result.m]] = True
    return chosen


def test_downsampled_folders_of_several_sizes_follow_the_exact_rule(tmp_path):
    from helpers import pool_mean_reference

    sizes = {"a": (16, 24), "b": (8, 12), "c": (12, 8)}
    rng = np.random.default_rng(3)
    images = {}
    for image_id, (h, w) in sizes.items():
        labels, probs = make_probs(rng, 1, K, h, w)
        images[image_id] = (labels[0], probs[0])
    write_folder(tmp_path / "ds", images)
    result = invoke("scan", tmp_path / "ds", "-o", tmp_path / "run", "-q",
                    "--downsample", 2, "--label-pooling", "mean")  # fmt: skip
    assert result.exit_code == 0, result.output
    pooled = [pool_mean_reference(lab[None], p[None], 2) for lab, p in images.values()]
    small_labels = np.concatenate([lab.ravel() for lab, _ in pooled]).reshape(1, 1, -1)
    small_probs = np.concatenate([p.reshape(K, -1) for _, p in pooled], 1).reshape(1, K, 1, -1)
    chosen = candidates_naive(small_labels, small_probs)
    masks = run_masks(tmp_path / "run")
    start = 0
    for image_id, (labels, probs) in images.items():
        h, w = sizes[image_id]
        candidate = chosen[start : start + (h // 2) * (w // 2)].reshape(h // 2, w // 2)
        start += (h // 2) * (w // 2)
        full = candidate.repeat(2, axis=0).repeat(2, axis=1)
        expected = full & (probs.argmax(axis=0) != labels)
        assert np.array_equal(masks[image_id], expected), image_id
    assert any(mask.any() for mask in masks.values())


def test_ties_at_the_cut_across_images_go_to_the_lowest_flat_index(tmp_path):
    rng = np.random.default_rng(5)
    images = {}
    for image_id, (h, w) in sorted(SIZES.items()):
        labels, probs = make_probs(rng, 1, K, h, w)
        coarse = np.round(probs[0] * 8) + 1e-3  # few distinct values: many exact ties
        images[image_id] = (labels[0], (coarse / coarse.sum(axis=0)).astype(np.float32))
    write_folder(tmp_path / "ds", images)
    labels, probs = end_to_end(images)
    naive = naive_issues(labels, probs)
    assert naive.tie_at_cut, "the data should tie at the cut"
    assert invoke("scan", tmp_path / "ds", "-o", tmp_path / "run", "-q").exit_code == 0
    masks = run_masks(tmp_path / "run")
    got = np.concatenate([masks[i].ravel() for i in sorted(SIZES)])
    assert np.array_equal(got, naive.issues.ravel())


def test_an_image_whose_every_pixel_is_void_is_named_in_a_warning(tmp_path):
    # It has nothing to score: no issues, a NaN score ranked last, and the scan says so
    # (also with --quiet) and records it in summary.json.
    rng = np.random.default_rng(4)
    images = {}
    for image_id, (h, w) in sorted(SIZES.items()):
        labels, probs = make_probs(rng, 1, K, h, w)
        images[image_id] = (labels[0], probs[0])
    images["b/third"][0][:] = 255
    write_folder(tmp_path / "ds", images)
    run = tmp_path / "run"
    done = invoke("scan", tmp_path / "ds", "-o", run, "--ignore-index", 255, "--quiet")
    assert done.exit_code == 0, done.output
    assert "warning: 1 image(s) have no scored pixel" in done.stderr
    assert "b/third" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    summary = json.loads((run / "summary.json").read_text())
    assert summary["dataset"]["unscored"] == {"count": 1, "examples": ["b/third"]}
    with open(run / "image_scores.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows[-1]["id"] == "b/third" and rows[-1]["softmin_score"] in ("", "nan", "NaN")
    assert not run_masks(run)["b/third"].any()
    clean = invoke("scan", tmp_path / "ds", "-o", tmp_path / "clean", "--quiet")
    assert clean.exit_code == 2  # without --ignore-index, 255 is a label outside 0..4
