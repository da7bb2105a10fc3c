"""`segaudit eval`: AP and AUROC against scikit-learn, pixel precision/recall/F1 of scans."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import softmax
from sklearn.metrics import average_precision_score, roc_auc_score
from typer.testing import CliRunner

from segaudit.api import find_label_issues, get_label_quality_scores
from segaudit.cli import app
from segaudit.report.evaluate import average_precision, roc_auc

runner = CliRunner()
CORRUPTED = [1, 4, 6]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("decimals", [1, 3, None])
def test_ap_and_auroc_match_sklearn(seed, decimals):
    rng = np.random.default_rng(seed)
    y = rng.random(200) < 0.3
    scores = rng.random(200) + 0.3 * y
    if decimals is not None:  # ties
        scores = np.round(scores, decimals)
    assert average_precision(y, scores) == pytest.approx(average_precision_score(y, scores), 1e-12)
    assert roc_auc(y, scores) == pytest.approx(roc_auc_score(y, scores), rel=1e-12)


def test_ap_and_auroc_by_hand():
    # ranked: positive, negative, positive, negative
    y, scores = np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.7, 0.1])
    assert average_precision(y, scores) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert roc_auc(y, scores) == pytest.approx(3 / 4)  # 3 of 4 (positive, negative) pairs
    # one tie between a positive and a negative counts one half
    assert roc_auc(np.array([1, 0]), np.array([0.5, 0.5])) == 0.5
    assert average_precision(np.array([1, 0]), np.array([0.5, 0.5])) == 0.5
    assert average_precision(np.array([1, 1, 0]), np.array([3.0, 2.0, 1.0])) == 1.0


def test_undefined_metrics_are_none():
    assert average_precision(np.zeros(3, bool), np.arange(3.0)) is None
    assert roc_auc(np.ones(3, bool), np.arange(3.0)) is None


def make_truth(folder: Path, *, seed: int = 0) -> tuple[np.ndarray, ...]:
    """A dataset like `segaudit synth` writes: the model is right, some images mislabeled."""
    rng = np.random.default_rng(seed)
    probs = softmax(rng.normal(size=(8, 5, 16, 24)) * 2.5).astype(np.float32)
    true = probs.argmax(axis=1).astype(np.uint8)
    labels = true.copy()
    corrupted = np.zeros(8, bool)
    corrupted[CORRUPTED] = True
    for i in CORRUPTED:
        labels[i, 2:8, 3:12] = (true[i, 2:8, 3:12] + 1) % 5
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in (
        ("labels", labels),
        ("pred_probs", probs),
        ("true_labels", true),
        ("is_corrupted", corrupted),
    ):
        np.save(folder / f"{name}.npy", array)
    return labels, probs, true, corrupted


def test_eval_of_a_softmin_run(tmp_path):
    labels, probs, _, corrupted = make_truth(tmp_path / "data")
    assert invoke("score", tmp_path / "data", "-o", tmp_path / "run", "-q").exit_code == 0
    result = invoke("eval", tmp_path / "run", "--truth", tmp_path / "data", "--json")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    scores, _ = get_label_quality_scores(labels, probs)
    image = metrics["image"]
    assert image["score_column"] == "score" and image["positives"] == 3
    assert image["average_precision"] == pytest.approx(average_precision_score(corrupted, -scores))
    assert image["auroc"] == pytest.approx(roc_auc_score(corrupted, -scores))
    assert image["average_precision"] == 1.0  # the corrupted images score worst
    assert metrics["pixel"] is None
    text = invoke("eval", tmp_path / "run", "--truth", tmp_path / "data")
    assert "average precision" in text.stdout and "pixel-level metrics need a scan" in text.stdout


@pytest.mark.parametrize("ignore", [None, 255])
def test_eval_of_a_scan_adds_pixel_metrics(tmp_path, ignore):
    labels, probs, true, corrupted = make_truth(tmp_path / "data")
    if ignore is not None:
        labels[:, :2] = ignore
        np.save(tmp_path / "data" / "labels.npy", labels)
    extra = [] if ignore is None else ["--ignore-index", ignore]
    assert invoke("scan", tmp_path / "data", "-o", tmp_path / "run", "-q", *extra).exit_code == 0
    result = invoke("eval", tmp_path / "run", "--truth", tmp_path / "data", "--json")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["image"]["score_column"] == "softmin_score"
    issues = find_label_issues(labels, probs, ignore_index=ignore)
    wrong = labels != true
    if ignore is not None:
        wrong &= labels != ignore
    tp = int((issues & wrong).sum())
    pixel = metrics["pixel"]
    assert pixel["true_positives"] == tp and tp > 0
    assert pixel["flagged"] == int(issues.sum()) and pixel["true_errors"] == int(wrong.sum())
    assert pixel["precision"] == pytest.approx(tp / issues.sum())
    assert pixel["recall"] == pytest.approx(tp / wrong.sum())
    assert pixel["f1"] == pytest.approx(2 * tp / (issues.sum() + wrong.sum()))


def test_unscored_images_count_as_least_suspicious(tmp_path):
    labels, _, _, corrupted = make_truth(tmp_path / "data")
    labels[CORRUPTED[0]] = 255  # a corrupted image with nothing scored
    np.save(tmp_path / "data" / "labels.npy", labels)
    run = tmp_path / "run"
    assert invoke("score", tmp_path / "data", "-o", run, "-q", "--ignore-index", 255).exit_code == 0
    metrics = json.loads(invoke("eval", run, "--truth", tmp_path / "data", "--json").stdout)
    # the two other corrupted images rank first, the unscored one last of all
    assert metrics["image"]["average_precision"] == pytest.approx((1 + 1 + 3 / 8) / 3)
    assert metrics["image"]["auroc"] == pytest.approx(2 / 3)


def test_eval_notes_a_run_of_other_labels(tmp_path):
    make_truth(tmp_path / "data")
    make_truth(tmp_path / "other", seed=1)
    assert invoke("score", tmp_path / "other", "-o", tmp_path / "run", "-q").exit_code == 0
    result = invoke("eval", tmp_path / "run", "--truth", tmp_path / "data")
    assert result.exit_code == 0 and "the metrics assume both hold the same images" in result.stderr


def test_eval_bad_input_exits_2(tmp_path):
    make_truth(tmp_path / "data")
    assert invoke("score", tmp_path / "data", "-o", tmp_path / "run", "-q").exit_code == 0
    missing = invoke("eval", tmp_path / "run", "--truth", tmp_path / "nowhere")
    assert missing.exit_code == 2 and "is not a dataset folder" in missing.stderr
    (tmp_path / "data" / "is_corrupted.npy").unlink()
    no_flags = invoke("eval", tmp_path / "run", "--truth", tmp_path / "data")
    assert (
        no_flags.exit_code == 2
        and "has no is_corrupted.npy or is_corrupted.zarr" in no_flags.stderr
    )
    np.save(tmp_path / "data" / "is_corrupted.npy", np.zeros(5, bool))
    wrong = invoke("eval", tmp_path / "run", "--truth", tmp_path / "data")
    assert wrong.exit_code == 2 and "has shape (5,) but the run scored 8 images" in wrong.stderr
    not_run = invoke("eval", tmp_path / "data", "--truth", tmp_path / "data")
    assert not_run.exit_code == 2 and "not a complete segaudit run" in not_run.stderr
