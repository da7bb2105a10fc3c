"""Swap counts: parity with cleanlab 2.9, streaming, filters, and `segaudit swaps`."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import zarr
from cleanlab.segmentation import summary as reference  # noqa: TID251 (test oracle)
from PIL import Image
from typer.testing import CliRunner

from segaudit.cli import app
from segaudit.errors import InvalidInputError
from segaudit.report.swaps import (
    ArgmaxView,
    common_label_issues,
    filter_by_class,
    resolve_classes,
    tally_issues,
)

IGNORE = 255


def random_dataset(k: int, seed: int, n: int = 5, h: int = 12, w: int = 14):
    """Labels with some ignored pixels, pred_probs with some exact ties, issues as a random mask."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, size=(n, h, w)).astype(np.int64)
    labels[rng.random((n, h, w)) < 0.05] = IGNORE
    pred_probs = rng.random((n, k, h, w)).astype(np.float32)
    tied = rng.random((n, h, w)) < 0.1
    pred_probs[:, :, tied[0]] = 0.0  # image 0's tied pixels: all classes equal
    pred_probs /= np.maximum(pred_probs.sum(axis=1, keepdims=True), 1e-12)
    issues = rng.random((n, h, w)) < 0.3
    return labels, pred_probs, issues


def reference_rows(df) -> list[tuple[str, str, int]]:
    return [(r.given_label, r.predicted_label, int(r.num_pixel_issues)) for r in df.itertuples()]


def ours(rows) -> list[tuple[str, str, int]]:
    return [(r["given_label"], r["predicted_label"], r["num_pixel_issues"]) for r in rows]


@pytest.mark.parametrize("k", [2, 5, 19])
def test_swap_counts_equal_cleanlab(k: int) -> None:
    labels, pred_probs, issues = random_dataset(k, seed=k)
    names = [f"c{i}" for i in range(k)]
    for top in (None, 3, 1000):
        expected = reference.common_label_issues(
            issues, labels, pred_probs, class_names=names, top=top, verbose=False
        )
        rows = common_label_issues(issues, labels, pred_probs, class_names=names, top=top)
        assert ours(rows) == reference_rows(expected)
    unnamed = reference.common_label_issues(issues, labels, pred_probs, top=1000, verbose=False)
    assert ours(common_label_issues(issues, labels, pred_probs, top=1000)) == reference_rows(
        unnamed
    )


def test_exclude_also_drops_pixels_whose_given_class_is_excluded() -> None:
    """cleanlab drops only pixels whose *predicted* class is excluded; we drop either side.

    So our table is exactly cleanlab's minus the rows whose given class is excluded.
    """
    labels, pred_probs, issues = random_dataset(5, seed=7)
    names = [f"c{i}" for i in range(5)]
    exclude = [1, 3]
    theirs = reference.common_label_issues(
        issues, labels, pred_probs, class_names=names, exclude=exclude, top=1000, verbose=False
    )
    rows = common_label_issues(
        issues, labels, pred_probs, class_names=names, exclude=exclude, top=1000
    )
    expected = [row for row in reference_rows(theirs) if row[0] not in ("c1", "c3")]
    assert ours(rows) == expected
    assert all(r["given_id"] not in exclude and r["predicted_id"] not in exclude for r in rows)


def test_verbose_prints_the_reference_lines(capsys: pytest.CaptureFixture[str]) -> None:
    labels, pred_probs, issues = random_dataset(3, seed=1)
    reference.common_label_issues(issues, labels, pred_probs, verbose=True)
    theirs = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Class")]
    common_label_issues(issues, labels, pred_probs, verbose=True)
    assert capsys.readouterr().out.splitlines() == theirs
    common_label_issues(issues, labels, pred_probs)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("k", [2, 5, 19])
def test_filter_by_class_equals_cleanlab(k: int) -> None:
    labels, pred_probs, issues = random_dataset(k, seed=100 + k)
    for class_index in (0, k - 1, [0, k - 1]):
        expected = reference.filter_by_class(class_index, issues, labels, pred_probs)
        mask = filter_by_class(class_index, issues, labels, pred_probs)
        assert mask.dtype == bool and np.array_equal(mask, expected)


def test_numpy_memmap_and_zarr_inputs_and_any_batch_size_agree(tmp_path: Path) -> None:
    labels, pred_probs, issues = random_dataset(5, seed=3, n=7)
    np.save(tmp_path / "labels.npy", labels)
    np.save(tmp_path / "pred_probs.npy", pred_probs)
    mapped_labels = np.load(tmp_path / "labels.npy", mmap_mode="r")
    mapped_probs = np.load(tmp_path / "pred_probs.npy", mmap_mode="r")
    zarr_issues = zarr.create_array(
        str(tmp_path / "issues.zarr"), shape=issues.shape, chunks=(1, 12, 14), dtype=bool
    )
    zarr_issues[...] = issues
    expected = common_label_issues(issues, labels, pred_probs, top=1000)
    assert common_label_issues(zarr_issues, mapped_labels, mapped_probs, top=1000) == expected
    assert np.array_equal(
        filter_by_class(2, zarr_issues, mapped_labels, mapped_probs),
        reference.filter_by_class(2, issues, labels, pred_probs),
    )
    predicted = ArgmaxView(pred_probs)
    whole = tally_issues(issues, labels, predicted, 5)
    for batch_bytes in (1, 5000, 10**9):  # one image per batch ... everything at once
        tally = tally_issues(issues, labels, predicted, 5, batch_bytes=batch_bytes)
        assert np.array_equal(tally.pixels, whole.pixels)
        assert np.array_equal(tally.images, whole.images)
        assert np.array_equal(tally.per_image, whole.per_image)


def test_images_per_pair_and_class_filters_match_a_brute_force_count() -> None:
    labels, pred_probs, issues = random_dataset(4, seed=11, n=6)
    predicted = pred_probs.argmax(axis=1)
    for classes, exclude in (((), ()), ((2,), ()), ((), (0,)), ((1, 3), (2,))):
        tally = tally_issues(issues, labels, predicted, 4, classes=classes, exclude=exclude)
        pixels = np.zeros((4, 4), int)
        images = np.zeros((4, 4), int)
        for i in range(6):
            seen = set()
            for y, x in zip(*np.nonzero(issues[i]), strict=True):
                g, p = int(labels[i, y, x]), int(predicted[i, y, x])
                if g == IGNORE or (classes and g not in classes and p not in classes):
                    continue
                if g in exclude or p in exclude:
                    continue
                pixels[g, p] += 1
                seen.add((g, p))
            for g, p in seen:
                images[g, p] += 1
        assert np.array_equal(tally.pixels, pixels)
        assert np.array_equal(tally.images, images)
        assert tally.total == pixels.sum()


def test_rows_are_sorted_by_pixels_then_given_then_predicted() -> None:
    pixels = np.array([[0, 5, 2], [5, 0, 7], [2, 5, 0]])
    rows = tally_issues(np.zeros((0, 1, 1), bool), None, None, 3).rows(["a", "b", "c"])
    assert rows == []
    from segaudit.report.swaps import IssueTally

    tally = IssueTally(pixels, (pixels > 0).astype(int), np.array([26]))
    order = [(r["given_id"], r["predicted_id"]) for r in tally.rows(["a", "b", "c"])]
    assert order == [(1, 2), (0, 1), (1, 0), (2, 1), (0, 2), (2, 0)]
    assert sum(r["share"] for r in tally.rows(["a", "b", "c"])) == pytest.approx(1.0)


def test_resolve_classes_by_id_name_and_case() -> None:
    names = ["road", "sidewalk", "Car"]
    assert resolve_classes(["road", "2", "car", 1], names) == [0, 1, 2]
    with pytest.raises(InvalidInputError, match="unknown class 'sky'; use an id 0..2 or one of"):
        resolve_classes(["sky"], names)
    with pytest.raises(InvalidInputError, match="class id 7 is outside 0..2"):
        resolve_classes(["7"], names)


# --- the command ---------------------------------------------------------------------------

NAMES = ["road", "sidewalk", "building", "sky"]


@pytest.fixture
def swap_run(make_run):
    """Image 0: road->sidewalk x3, sky->road x1; image 1: road->sidewalk x2, building->sky x4."""
    labels = np.zeros((3, 4, 6), np.uint8)
    pred = np.zeros((3, 4, 6), np.uint8)
    issues = np.zeros((3, 4, 6), bool)
    labels[0, 0, :3], pred[0, 0, :3] = 0, 1
    labels[0, 1, 0], pred[0, 1, 0] = 3, 0
    labels[1, 2, :2], pred[1, 2, :2] = 0, 1
    labels[1, 3, :4], pred[1, 3, :4] = 2, 3
    labels[2, 0, 0] = IGNORE  # ignored pixels are never issues
    issues[:2] = labels[:2] != pred[:2]
    return make_run(labels, pred, issues, num_classes=4, names=NAMES, ignore_index=IGNORE)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_swaps_writes_csv_png_and_prints_a_table(swap_run: Path) -> None:
    result = CliRunner().invoke(app, ["swaps", str(swap_run)])
    assert result.exit_code == 0, result.output
    rows = read_csv(swap_run / "swaps.csv")
    assert [(r["given_name"], r["predicted_name"], r["pixels"], r["images"]) for r in rows] == [
        ("road", "sidewalk", "5", "2"),
        ("building", "sky", "4", "1"),
        ("sky", "road", "1", "1"),
    ]
    assert list(rows[0]) == [
        "given_id",
        "given_name",
        "predicted_id",
        "predicted_name",
        "pixels",
        "share",
        "images",
        "regions",
    ]
    assert rows[0]["regions"] == ""  # a run written without regions.csv
    assert rows[0]["share"] == "0.500000"
    assert "road (0)" in result.stdout and "sidewalk (1)" in result.stdout
    assert "10 issue pixels" in result.stdout
    with Image.open(swap_run / "swaps.png") as png:
        assert png.width > 300 and png.height > 300
    assert not list(swap_run.glob(".*tmp*")), "temporary files left behind"


def test_swaps_filters_json_and_quiet(swap_run: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["swaps", str(swap_run), "--class", "sky", "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [(r["given_name"], r["predicted_name"], r["pixels"]) for r in rows] == [
        ("building", "sky", 4),
        ("sky", "road", 1),
    ]
    result = runner.invoke(app, ["swaps", str(swap_run), "--exclude", "3", "--quiet"])
    assert result.exit_code == 0 and result.stdout == ""
    assert [r["given_name"] for r in read_csv(swap_run / "swaps.csv")] == ["road"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--top", "0"], "--top must be at least 1; got 0."),
        (["--class", "tree"], "unknown class 'tree'; use an id 0..3 or one of: road, sidewalk"),
        (["--exclude", "9"], "class id 9 is outside 0..3"),
    ],
)
def test_swaps_bad_options_exit_2_with_one_line(swap_run: Path, args, message) -> None:
    result = CliRunner().invoke(app, ["swaps", str(swap_run), *args])
    assert result.exit_code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (swap_run / "swaps.csv").exists()


def test_swaps_refuses_an_incomplete_run(tmp_path: Path) -> None:
    (tmp_path / "half").mkdir()
    result = CliRunner().invoke(app, ["swaps", str(tmp_path / "half")])
    assert result.exit_code == 2
    assert "is not a complete segaudit run (no summary.json)" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_end_to_end_scan_then_swaps_agrees_with_cleanlab(tmp_path: Path) -> None:
    """`segaudit scan` then `swaps` on a small dataset: swaps.csv == cleanlab's table."""
    rng = np.random.default_rng(5)
    k, n, h, w = 5, 6, 16, 20
    truth = np.repeat(np.repeat(rng.integers(0, k, size=(n, 4, 5)), 4, axis=1), 4, axis=2)
    logits = rng.normal(size=(n, k, h, w)) + 4.0 * np.eye(k)[truth].transpose(0, 3, 1, 2)
    pred_probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = truth.copy()
    labels[:, 5:9, 6:12] = (truth[:, 5:9, 6:12] + 1) % k  # a block of annotation errors
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    np.save(dataset / "labels.npy", labels.astype(np.uint8))
    np.save(dataset / "pred_probs.npy", pred_probs.astype(np.float32))
    run = tmp_path / "run"
    runner = CliRunner()
    scanned = runner.invoke(app, ["scan", str(dataset), "-o", str(run), "--quiet"])
    assert scanned.exit_code == 0, scanned.output
    assert runner.invoke(app, ["swaps", str(run), "--quiet"]).exit_code == 0
    issues = np.asarray(zarr.open_array(str(run / "issues.zarr"), mode="r")[...])
    assert issues.any()
    expected = reference.common_label_issues(
        issues, labels, pred_probs.astype(np.float32), top=1000, verbose=False
    )
    rows = read_csv(run / "swaps.csv")
    got = [(f"class_{r['given_id']}", f"class_{r['predicted_id']}", int(r["pixels"])) for r in rows]
    assert got == [(f"class_{g}", f"class_{p}", c) for g, p, c in reference_rows(expected)]
