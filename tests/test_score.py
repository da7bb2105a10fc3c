"""Image and pixel label-quality scores: parity with cleanlab 2.9, the ignore extension,
bad input, and `segaudit score` end to end."""

from __future__ import annotations

import csv
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import zarr
from cleanlab.segmentation.rank import get_label_quality_scores as cleanlab_scores
from cleanlab.segmentation.rank import issues_from_scores as cleanlab_issues_from_scores
from helpers import PARITY_CASES as CASES
from helpers import make_probs, naive_issues, well_posed_case
from typer.testing import CliRunner

from segaudit.api import get_label_quality_scores, issues_from_scores
from segaudit.cli import app
from segaudit.errors import InvalidInputError
from segaudit.jobs import score as scoring
from segaudit.jobs.score import UnscoredImagesWarning

runner = CliRunner()


def reference(labels, probs, method, **kwargs):
    return cleanlab_scores(labels, probs, method=method, verbose=False, n_jobs=1, **kwargs)


def assert_scores_match(got, expected):
    got_images, got_pixels = got
    want_images, want_pixels = expected
    assert got_pixels.shape == want_pixels.shape
    np.testing.assert_array_equal(got_pixels, want_pixels)
    np.testing.assert_allclose(got_images, want_images, rtol=1e-9, atol=0)


# -- parity with cleanlab --------------------------------------------------------------


@pytest.mark.parametrize(("n", "k", "h", "w", "dtype", "absent"), CASES)
@pytest.mark.parametrize("temperature", [0.01, 0.1, 1.0])
def test_softmin_matches_cleanlab(n, k, h, w, dtype, absent, temperature):
    labels, probs = make_probs(np.random.default_rng(7), n, k, h, w, dtype, absent=absent)
    expected = reference(labels, probs, "softmin", temperature=temperature)
    got = get_label_quality_scores(labels, probs, temperature=temperature)
    assert_scores_match(got, expected)


@pytest.mark.parametrize(("n", "k", "h", "w", "dtype", "absent"), CASES)
def test_num_pixel_issues_matches_cleanlab(n, k, h, w, dtype, absent):
    labels, probs, _ = well_posed_case(n, k, h, w, dtype, absent=absent)
    expected = reference(labels, probs, "num_pixel_issues")
    got = get_label_quality_scores(labels, probs, method="num_pixel_issues")
    assert_scores_match(got, expected)
    assert (got[0] < 1).any(), "the case should flag something"


@pytest.mark.parametrize("method", ["softmin", "num_pixel_issues"])
@pytest.mark.parametrize("images_per_batch", [1, 2, 5, None])
@pytest.mark.parametrize("n_jobs", [1, 2])
def test_batching_never_changes_the_result(method, images_per_batch, n_jobs):
    labels, probs, _ = well_posed_case(5, 5, 16, 24, "float32")
    batch_size = None if images_per_batch is None else images_per_batch * 5 * 16 * 24
    expected = reference(labels, probs, method, batch_size=batch_size)
    got = get_label_quality_scores(
        labels, probs, method=method, batch_size=batch_size, n_jobs=n_jobs
    )
    assert_scores_match(got, expected)
    np.testing.assert_array_equal(got[0], get_label_quality_scores(labels, probs, method=method)[0])


def test_memmap_and_channels_last_give_the_same_scores(tmp_path):
    labels, probs = make_probs(np.random.default_rng(3), 3, 6, 16, 20, "float32")
    np.save(tmp_path / "p.npy", np.ascontiguousarray(np.moveaxis(probs, 1, -1)))
    mapped = np.load(tmp_path / "p.npy", mmap_mode="r")
    expected = reference(labels, probs, "softmin")
    assert_scores_match(get_label_quality_scores(labels, mapped, channels_last=True), expected)


@pytest.mark.parametrize("threshold", [0.0, 0.05, 0.1, 0.5, 0.9, 1.0])
def test_issues_from_scores_matches_cleanlab(threshold):
    labels, probs = make_probs(np.random.default_rng(5), 6, 4, 12, 16, "float32")
    image_scores, pixel_scores = get_label_quality_scores(labels, probs)
    want = cleanlab_issues_from_scores(image_scores, pixel_scores, threshold=threshold)
    np.testing.assert_array_equal(issues_from_scores(image_scores, pixel_scores, threshold), want)
    want = cleanlab_issues_from_scores(image_scores, threshold=threshold)
    np.testing.assert_array_equal(issues_from_scores(image_scores, threshold=threshold), want)


def test_issues_from_scores_rejects_what_the_reference_rejects():
    with pytest.raises(ValueError, match="threshold must be between 0 and 1"):
        issues_from_scores(np.ones(3), threshold=1.5)
    with pytest.raises(ValueError, match="threshold must be between 0 and 1"):
        issues_from_scores(np.ones(3), threshold=None)
    with pytest.raises(ValueError, match="image_scores must be provided"):
        issues_from_scores(None)


# -- the ignore extension --------------------------------------------------------------


def naive_softmin(scores: np.ndarray, temperature: float) -> float:
    s = scores.astype(np.float64)
    w = np.exp((1 - s) / temperature - ((1 - s) / temperature).max())
    return float((s * w).sum() / w.sum())


def test_ignored_pixels_take_no_part_in_softmin():
    labels, probs = make_probs(np.random.default_rng(11), 3, 5, 16, 16, "float32")
    labels[:, :4] = 255
    labels[1, 10:, 3:9] = 255
    image_scores, pixel_scores = get_label_quality_scores(labels, probs, ignore_index=255)
    assert np.isnan(pixel_scores[labels == 255]).all()
    for i in range(3):
        valid = labels[i] != 255
        gathered = np.take_along_axis(probs[i], np.where(valid, labels[i], 0)[None], 0)[0]
        np.testing.assert_array_equal(pixel_scores[i][valid], gathered[valid])
        assert math.isclose(image_scores[i], naive_softmin(gathered[valid], 0.1), rel_tol=1e-9)


def test_ignored_pixels_leave_the_num_pixel_issues_denominator():
    labels, probs, _ = well_posed_case(3, 5, 16, 24, "float32")
    labels[:, :6] = 255
    image_scores, _ = get_label_quality_scores(
        labels, probs, method="num_pixel_issues", ignore_index=255
    )
    issues = naive_issues(labels, probs, ignore=255).issues
    scored = (labels != 255).sum(axis=(1, 2))
    np.testing.assert_allclose(image_scores, 1 - issues.sum(axis=(1, 2)) / scored, rtol=1e-12)


@pytest.mark.parametrize("method", ["softmin", "num_pixel_issues"])
def test_an_image_without_scored_pixels_scores_nan_with_a_warning(method):
    labels, probs = make_probs(np.random.default_rng(2), 3, 4, 8, 8, "float32")
    labels[1] = 255
    with pytest.warns(UnscoredImagesWarning, match="1 image"):
        image_scores, _ = get_label_quality_scores(labels, probs, method=method, ignore_index=255)
    assert np.isnan(image_scores[1]) and not np.isnan(image_scores[[0, 2]]).any()


# -- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [0, -0.5, float("nan"), float("inf")])
def test_bad_temperature_is_refused(temperature):
    labels, probs = make_probs(np.random.default_rng(0), 1, 3, 4, 4)
    with pytest.raises(InvalidInputError, match="temperature must be a positive finite number"):
        get_label_quality_scores(labels, probs, temperature=temperature)


def test_unknown_method_is_refused():
    labels, probs = make_probs(np.random.default_rng(0), 1, 3, 4, 4)
    with pytest.raises(InvalidInputError, match="unknown scoring method 'mean'"):
        get_label_quality_scores(labels, probs, method="mean")


def test_softmin_downsample_warns_like_the_reference():
    labels, probs = make_probs(np.random.default_rng(0), 1, 3, 4, 4)
    with pytest.warns(UserWarning, match="num_pixel_issues"):
        get_label_quality_scores(labels, probs, downsample=2)


def corrupt(probs: np.ndarray, labels: np.ndarray, how: str):
    probs, labels = probs.copy(), labels.copy()
    if how == "nan":
        probs[1, labels[1, 3, 5], 3, 5] = np.nan
    elif how == "label":
        labels[1, 3, 5] = 9
    elif how == "logits":
        probs = np.log(probs)
    elif how == "above_one":
        probs[1, labels[1, 3, 5], 3, 5] = 1.5
    elif how == "unnormalised":
        probs = probs * 0.5
    return probs, labels


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("nan", "has NaN or infinite probabilities at image 1, pixel (3, 5)"),
        ("label", "has label 9 outside 0..3 at image 1, pixel (3, 5)"),
        ("logits", "has negative probabilities at image 0, pixel (0, 0)"),
        ("above_one", "has probabilities above 1 at image 1, pixel (3, 5)"),
        ("unnormalised", "do not sum to 1 at image 0, pixel (0, 0)"),
    ],
)
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_malformed_input_is_named(how, message, dtype):
    labels, probs = make_probs(np.random.default_rng(0), 2, 4, 8, 8, dtype)
    probs, labels = corrupt(probs, labels, how)
    with pytest.raises(InvalidInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        get_label_quality_scores(labels, probs)


# -- segaudit score ---------------------------------------------------------------------


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def write_dataset(folder: Path, labels, probs) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "labels.npy", labels)
    np.save(folder / "pred_probs.npy", probs)
    return folder


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def dataset(tmp_path):
    labels, probs, _ = well_posed_case(6, 5, 16, 24, "float32")
    return write_dataset(tmp_path / "data", labels.astype(np.uint8), probs), labels, probs


def test_score_writes_a_complete_run(dataset, tmp_path):
    folder, labels, probs = dataset
    run = tmp_path / "run"
    result = invoke(
        "score", folder, "-o", run, "--top", "3", "--temperature", "0.2", "--pixel-scores"
    )
    assert result.exit_code == 0, result.output
    assert "worst 3 images" in result.output
    assert sorted(p.name for p in run.iterdir()) == [
        ".segaudit-run",
        "image_scores.csv",
        "images.csv",
        "pixel_scores.zarr",
        "summary.json",
    ]
    image_scores, pixel_scores = get_label_quality_scores(labels, probs, temperature=0.2)
    rows = read_csv(run / "image_scores.csv")
    assert list(rows[0]) == ["image", "id", "score", "rank", "file"]
    order = np.lexsort((np.arange(6), image_scores))
    assert [int(r["image"]) for r in rows] == order.tolist()
    assert [int(r["rank"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [float(r["score"]) for r in rows] == image_scores[order].tolist()
    np.testing.assert_array_equal(zarr.open_array(str(run / "pixel_scores.zarr"))[:], pixel_scores)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["command"] == "score"
    assert summary["parameters"]["method"] == "softmin"
    assert summary["parameters"]["temperature"] == 0.2
    assert summary["scores"]["scan"] is None
    assert summary["inputs"]["pred_probs"]["shape"] == [6, 5, 16, 24]


@pytest.mark.parametrize("options", [(), ("--batch-size", "4")])
def test_softmin_maps_one_image_of_a_npy_at_a_time(dataset, tmp_path, monkeypatch, options):
    # The gather keeps only the pages it touches mapped until the batch is released, and
    # that depends on how many classes each image holds: one image per batch bounds it.
    from segaudit.sources.stores import ArraySource

    folder, labels, probs = dataset
    reads: list[tuple[int, int]] = []
    original = ArraySource.read

    def counting_read(self, start, stop, **kwargs):
        if self.path.name == "pred_probs.npy":
            reads.append((start, stop))
        return original(self, start, stop, **kwargs)

    monkeypatch.setattr(ArraySource, "read", counting_read)
    run = tmp_path / "run"
    assert invoke("score", folder, "-o", run, "-q", "--workers", "1", *options).exit_code == 0
    assert sorted(reads) == [(i, i + 1) for i in range(6)]  # whatever the batch size
    image_scores, _ = get_label_quality_scores(labels, probs)
    rows = sorted(read_csv(run / "image_scores.csv"), key=lambda r: int(r["image"]))
    assert [float(r["score"]) for r in rows] == image_scores.tolist()


def test_score_json_and_no_pixel_scores_by_default(dataset, tmp_path):
    folder, labels, probs = dataset
    run = tmp_path / "run"
    result = invoke("score", folder, "-o", run, "--json", "--top", "2")
    assert result.exit_code == 0
    payload = json.loads(result.stdout)
    assert payload["command"] == "score" and len(payload["worst_images"]) == 2
    assert not (run / "pixel_scores.zarr").exists()
    assert payload["scores"]["pixel_scores"] is False


def test_ties_rank_by_image_index(tmp_path):
    labels, probs = make_probs(np.random.default_rng(4), 1, 3, 8, 8, "float32")
    folder = write_dataset(tmp_path / "d", np.repeat(labels, 4, 0), np.repeat(probs, 4, 0))
    assert invoke("score", folder, "-o", tmp_path / "r", "-q").exit_code == 0
    rows = read_csv(tmp_path / "r" / "image_scores.csv")
    assert [r["image"] for r in rows] == ["0", "1", "2", "3"]
    assert len({r["score"] for r in rows}) == 1


def test_num_pixel_issues_runs_a_scan_then_reuses_it(dataset, tmp_path):
    folder, labels, probs = dataset
    run = tmp_path / "run"
    first = invoke("score", folder, "-o", run, "--method", "num_pixel_issues", "--json")
    assert first.exit_code == 0
    summary = json.loads(first.stdout)
    assert summary["scores"]["scan"] == "computed"
    assert (run / "issues.zarr").exists() and not (run / "pixel_scores.zarr").exists()
    image_scores, _ = get_label_quality_scores(labels, probs, method="num_pixel_issues")
    rows = read_csv(run / "image_scores.csv")
    assert list(rows[0]) == [
        "image", "id", "score", "rank", "issue_pixels", "scored_pixels", "file"
    ]  # fmt: skip
    assert {int(r["image"]): float(r["score"]) for r in rows} == dict(enumerate(image_scores))
    again = invoke("score", folder, "-o", run, "--method", "num_pixel_issues", "--json")
    assert json.loads(again.stdout)["scores"]["scan"] == "kept"
    assert read_csv(run / "image_scores.csv") == rows
    # softmin keeps the scan's arrays too, so swaps/render/eval still work
    assert invoke("score", folder, "-o", run, "-q").exit_code == 0
    assert (run / "issues.zarr").exists()
    assert invoke("scan", folder, "-o", run, "-q").exit_code == 0
    assert invoke("score", folder, "-o", run, "-q", "--method", "num_pixel_issues").exit_code == 0
    assert (run / "pixel_scores.zarr").exists(), "a kept scan keeps its own pixel scores"
    assert json.loads((run / "summary.json").read_text())["scores"]["scan"] == "kept"


def test_a_scan_of_other_inputs_is_not_discarded_silently(dataset, tmp_path):
    folder, labels, probs = dataset
    run = tmp_path / "run"
    assert invoke("scan", folder, "-o", run, "-q", "--ignore-index", "255").exit_code == 0
    refused = invoke("score", folder, "-o", run, "--method", "num_pixel_issues")
    assert refused.exit_code == 2
    assert "holds a scan of other parameters (ignore_index was 255, now None)" in refused.stderr
    assert "--replace" in refused.stderr
    assert json.loads((run / "summary.json").read_text())["command"] == "scan"
    replaced = invoke("score", folder, "-o", run, "--replace", "--json")
    assert replaced.exit_code == 0 and not (run / "issues.zarr").exists()
    other = write_dataset(tmp_path / "other", labels.astype(np.uint8), probs[::-1].copy())
    assert invoke("scan", folder, "-o", run, "-q").exit_code == 0
    refused = invoke("score", other, "-o", run)
    assert refused.exit_code == 2 and "holds a scan of other inputs (labels was" in refused.stderr
    np.save(folder / "pred_probs.npy", probs[::-1].copy())  # rewritten in place
    refused = invoke("score", folder, "-o", run)
    assert refused.exit_code == 2 and "pred_probs.npy changed since" in refused.stderr


def test_ignore_index_and_unscored_image_on_the_command_line(dataset, tmp_path):
    folder, labels, probs = dataset
    labels = labels.astype(np.uint8)
    labels[2] = 255
    labels[0, :3] = 255
    folder = write_dataset(tmp_path / "ignored", labels, probs)
    run = tmp_path / "run"
    result = invoke("score", folder, "-o", run, "--ignore-index", "255", "--json")
    assert result.exit_code == 0
    assert "1 image(s) have no scored pixel" in result.stderr and "2" in result.stderr
    rows = read_csv(run / "image_scores.csv")
    assert rows[-1]["image"] == "2" and rows[-1]["score"] == "nan"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnscoredImagesWarning)
        expected, _ = get_label_quality_scores(labels, probs, ignore_index=255)
    assert float(rows[0]["score"]) == np.nanmin(expected)
    assert json.loads(result.stdout)["scores"]["images_without_scored_pixels"] == 1


@pytest.mark.parametrize("temperature", ["0", "-1", "nan"])
def test_bad_temperature_exits_2(dataset, tmp_path, temperature):
    folder, _, _ = dataset
    result = invoke("score", folder, "-o", tmp_path / "r", "--temperature", temperature)
    assert result.exit_code == 2
    assert "temperature must be a positive finite number" in result.stderr
    assert not (tmp_path / "r").exists()


def test_unknown_method_exits_2(dataset, tmp_path):
    folder, _, _ = dataset
    result = invoke("score", folder, "-o", tmp_path / "r", "--method", "mean")
    assert result.exit_code == 2 and "mean" in result.stderr


def test_malformed_probabilities_exit_2_and_leave_no_run(tmp_path):
    labels, probs = make_probs(np.random.default_rng(0), 2, 4, 8, 8, "float32")
    folder = write_dataset(tmp_path / "d", labels, np.log(probs))
    result = invoke("score", folder, "-o", tmp_path / "r")
    assert result.exit_code == 2
    assert "look like logits" in result.stderr and "pred_probs.npy" in result.stderr
    assert not (tmp_path / "r").exists()


def test_zarr_input(tmp_path):
    labels, probs = make_probs(np.random.default_rng(9), 3, 4, 8, 12, "float16")
    folder = tmp_path / "z"
    folder.mkdir()
    for name, array in (("labels", labels), ("pred_probs", probs)):
        z = zarr.create_array(
            store=str(folder / f"{name}.zarr"),
            shape=array.shape,
            dtype=array.dtype,
            chunks=(1, *array.shape[1:]),
        )
        z[:] = array
    result = invoke("score", folder, "-o", tmp_path / "r", "--json", "--batch-size", "2")
    assert result.exit_code == 0
    expected, _ = reference(labels, probs, "softmin")
    got = {r["image"]: r["score"] for r in json.loads(result.stdout)["worst_images"]}
    np.testing.assert_allclose([got[i] for i in range(3)], expected, rtol=1e-9)


@pytest.mark.parametrize("size", [1, 2, 5, 6])
def test_summary_median_matches_numpy(size):
    values = np.random.default_rng(size).random(size)
    assert scoring.median(values) == float(np.median(values))
