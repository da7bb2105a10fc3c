"""`segaudit eval`: AP and AUROC against scikit-learn, pixel precision/recall/F1 of scans,
region precision/recall/AP against synth's error maps."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import softmax
from PIL import Image
from sklearn.metrics import average_precision_score, roc_auc_score
from typer.testing import CliRunner

from segaudit.api import find_label_issues, get_label_quality_scores
from segaudit.cli import app
from segaudit.report.evaluate import average_precision, evaluate_run, roc_auc
from segaudit.report.region_match import KIND_PAIRS, FoundRegion, match_image, region_metrics
from segaudit.runs.chunkstore import ImageChunkedArray
from segaudit.runs.images import ImageTable, write_images_table
from segaudit.runs.run import array_path
from segaudit.synth import generate

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


# --- region level ------------------------------------------------------------------------

REGION_HEADER = [
    "image", "id", "region", "given_class", "predicted_class", "given_name", "predicted_name",
    "pixels", "x0", "y0", "x1", "y1", "centroid_x", "centroid_y", "mean_self_confidence",
    "mean_predicted_probability", "score", "kind", "rank",
]  # fmt: skip


def write_regions(run: Path, region_maps: np.ndarray, rows: list[tuple]) -> None:
    """regions.zarr and regions.csv (worst first) from maps and (image, region, score, kind)."""
    ImageChunkedArray(array_path(run, "regions"), region_maps.shape, np.uint32)[:] = region_maps
    ranked = sorted(rows, key=lambda row: row[2])
    with open(run / "regions.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(REGION_HEADER)
        for rank, (image, region, score, kind) in enumerate(ranked, start=1):
            ys, xs = np.nonzero(region_maps[image] == region)
            box = [xs.min(), ys.min(), xs.max(), ys.max()] if len(ys) else [0, 0, 0, 0]
            centre = [xs.mean(), ys.mean()] if len(ys) else [0, 0]
            writer.writerow(
                [image, str(image), region, 0, 1, "a", "b", len(ys), *box, *centre, 0.1, 0.9]
                + [score, kind, rank]
            )


def write_truth(folder: Path, error_maps: np.ndarray, kinds: list[list[str]]) -> None:
    """A stacked dataset holding only what eval reads: flags, true labels, error maps and
    the events of synth.json (kinds[i] lists image i's events in order)."""
    folder.mkdir()
    np.save(folder / "true_labels.npy", np.zeros(error_maps.shape, np.uint8))
    np.save(folder / "is_corrupted.npy", np.array([bool(k) for k in kinds]))
    np.save(folder / "errors.npy", error_maps.astype(np.uint16))
    corruptions = [
        {"image": i, "kinds": sorted(set(k)), "events": [{"kind": kind} for kind in k]}
        for i, k in enumerate(kinds)
        if k
    ]
    (folder / "synth.json").write_text(json.dumps({"corruptions": corruptions}))


@pytest.fixture
def region_case(tmp_path, make_run):
    """``case(error_maps, kinds, region_maps, rows)`` -> the region metrics of eval."""

    def case(error_maps, kinds, region_maps, rows) -> dict:
        n, h, w = error_maps.shape
        labels = np.zeros((n, h, w), np.uint8)
        run = make_run(labels, labels, np.zeros((n, h, w), bool), num_classes=3)
        write_regions(run, region_maps, rows)
        truth = tmp_path / f"truth_{run.name}"
        write_truth(truth, error_maps, kinds)
        return evaluate_run(run, truth)["region"]

    return case


def blocks(shape: tuple[int, ...], *placed: tuple[int, slice, slice, int]) -> np.ndarray:
    """A stack of maps with ``value`` painted at (image, rows, cols), later ones on top."""
    maps = np.zeros(shape, np.int64)
    for image, rows, cols, value in placed:
        maps[image, rows, cols] = value
    return maps


S = slice
SHAPE = (2, 12, 16)
# image 0: a dropped object (1) and a shifted boundary (2); image 1: a spurious object (1)
ERRORS_MAPS = blocks(
    SHAPE, (0, S(1, 5), S(1, 6), 1), (0, S(7, 11), S(2, 12), 2), (1, S(3, 9), S(4, 10), 1)
)
KINDS = [["object_dropped", "boundary_shifted"], ["spurious_object"]]


def row_of(metrics: dict, kind: str) -> dict:
    return next(row for row in metrics["per_kind"] if row["kind"] == kind)


def test_regions_equal_to_the_errors_score_one(region_case):
    rows = [(0, 1, 0.1, "missing"), (0, 2, 0.2, "boundary"), (1, 1, 0.3, "spurious")]
    metrics = region_case(ERRORS_MAPS, KINDS, ERRORS_MAPS, rows)
    assert metrics["iou_threshold"] == 0.3
    assert (metrics["found_regions"], metrics["matched_regions"]) == (3, 3)
    assert (metrics["injected_errors"], metrics["found_errors"]) == (3, 3)
    assert metrics["precision"] == metrics["recall"] == metrics["average_precision"] == 1.0
    for kind in ("missing", "boundary", "spurious"):
        row = row_of(metrics, kind)
        assert row["precision"] == row["recall"] == row["average_precision"] == 1.0
    swapped = row_of(metrics, "wrong-class")
    assert swapped["injected_kind"] == "class_swapped" and swapped["found_regions"] == 0
    assert swapped["precision"] is swapped["recall"] is swapped["average_precision"] is None
    assert [row["kind"] for row in metrics["per_kind"]] == [
        "missing", "wrong-class", "boundary", "spurious"
    ]  # fmt: skip


def test_half_right_regions(region_case):
    # region 1 (most suspicious) is elsewhere; region 2 is the dropped object; region 3
    # covers 3 of the boundary's 40 pixels (IoU 0.075): no match
    found = blocks(SHAPE, (0, S(0, 1), S(10, 16), 1), (0, S(1, 5), S(1, 6), 2))
    found[0, 7, 2:5] = 3
    rows = [(0, 1, 0.1, "spurious"), (0, 2, 0.5, "missing"), (0, 3, 0.7, "boundary")]
    metrics = region_case(ERRORS_MAPS, KINDS, found, rows)
    assert (metrics["found_regions"], metrics["matched_regions"]) == (3, 1)
    assert metrics["precision"] == pytest.approx(1 / 3)
    assert metrics["recall"] == pytest.approx(1 / 3)
    # ranked: miss, hit (P@2 = 1/2, a new error), miss
    assert metrics["average_precision"] == pytest.approx(1 / 2 * 1 / 3)
    assert row_of(metrics, "missing")["average_precision"] == 1.0
    assert row_of(metrics, "spurious")["precision"] == 0.0
    assert row_of(metrics, "spurious")["recall"] == 0.0
    assert row_of(metrics, "boundary")["recall"] == 0.0


def test_an_iou_of_exactly_the_threshold_matches():
    errors = np.zeros((1, 4, 5), np.int64)
    errors[0, 0, :] = 1  # 5 pixels
    errors[0, 1, :] = 1  # 10 pixels
    regions = np.zeros_like(errors)
    regions[0, 0, :3] = 1  # 3 of them: IoU 3 / 10
    regions[0, 2, :] = 2  # no overlap
    pairs, pixels = match_image(regions[0], errors[0])
    assert pairs == [(1, 1)] and pixels.tolist() == [10, 10]
    regions[0, 0, 2] = 0  # IoU 2 / 10
    assert match_image(regions[0], errors[0])[0] == []


def test_one_error_found_in_pieces_counts_once_for_recall(region_case):
    # the dropped object (20 pixels) found as two halves (IoU 0.5 each)
    found = blocks(SHAPE, (0, S(1, 3), S(1, 6), 1), (0, S(3, 5), S(1, 6), 2))
    rows = [(0, 1, 0.1, "missing"), (0, 2, 0.2, "missing")]
    metrics = region_case(ERRORS_MAPS, KINDS, found, rows)
    assert (metrics["matched_regions"], metrics["found_errors"]) == (2, 1)
    assert metrics["precision"] == 1.0
    assert metrics["recall"] == pytest.approx(1 / 3)
    assert metrics["average_precision"] == pytest.approx(1 / 3)  # second piece adds nothing
    assert row_of(metrics, "missing")["average_precision"] == 1.0


def test_one_region_over_two_errors_finds_both(region_case):
    errors = blocks((1, 8, 8), (0, S(0, 4), S(0, 4), 1), (0, S(4, 8), S(0, 4), 2))
    found = blocks((1, 8, 8), (0, S(0, 8), S(0, 4), 1))  # IoU 0.5 with each
    metrics = region_case(
        errors, [["class_swapped", "class_swapped"]], found, [(0, 1, 0.5, "wrong-class")]
    )
    assert (metrics["matched_regions"], metrics["found_errors"]) == (1, 2)
    assert metrics["precision"] == metrics["recall"] == metrics["average_precision"] == 1.0


def test_no_regions(region_case):
    metrics = region_case(ERRORS_MAPS, KINDS, np.zeros(SHAPE, np.int64), [])
    assert (metrics["found_regions"], metrics["injected_errors"]) == (0, 3)
    assert metrics["precision"] is None
    assert metrics["recall"] == 0.0 and metrics["average_precision"] == 0.0


def test_no_injected_errors(region_case):
    found = blocks(SHAPE, (1, S(0, 2), S(0, 2), 1))
    metrics = region_case(np.zeros(SHAPE, np.int64), [[], []], found, [(1, 1, 0.2, "boundary")])
    assert (metrics["found_regions"], metrics["injected_errors"]) == (1, 0)
    assert metrics["precision"] == 0.0
    assert metrics["recall"] is None and metrics["average_precision"] is None


def test_tied_scores_count_as_one_threshold(region_case):
    found = blocks(SHAPE, (0, S(0, 1), S(10, 16), 1), (1, S(3, 9), S(4, 10), 1))
    for first in (0, 1):  # the table's order within a tie does not matter
        rows = [(0, 1, 0.4, "spurious"), (1, 1, 0.4, "spurious")]
        metrics = region_case(ERRORS_MAPS, KINDS, found, rows[first:] + rows[:first])
        assert metrics["average_precision"] == pytest.approx(1 / 2 * 1 / 3)


def test_an_error_found_under_another_kind(region_case):
    """Recall per injected kind counts any region; AP per kind credits only its pair."""
    rows = [(0, 1, 0.1, "wrong-class")]
    metrics = region_case(ERRORS_MAPS, KINDS, ERRORS_MAPS, rows)
    missing, swapped = row_of(metrics, "missing"), row_of(metrics, "wrong-class")
    assert missing["recall"] == 1.0 and missing["average_precision"] == 0.0
    assert swapped["precision"] == 1.0 and swapped["average_precision"] is None
    assert metrics["average_precision"] == pytest.approx(1 / 3)


def naive_region_metrics(region_maps, error_maps, rows):
    """Pairwise IoU by boolean masks and AP by the k-th-region sum, scores distinct."""
    matches = []
    for image, region, _, _ in rows:
        mask = region_maps[image] == region
        hit = set()
        for e in range(1, int(error_maps[image].max()) + 1):
            error = error_maps[image] == e
            if error.any() and (mask & error).sum() / (mask | error).sum() >= 0.3:
                hit.add((image, e))
        matches.append(hit)
    errors = {(i, int(e)) for i in range(len(error_maps)) for e in np.unique(error_maps[i]) if e}
    credited, total, hits = set(), 0.0, 0
    for k, index in enumerate(np.argsort([row[2] for row in rows]), start=1):
        hits += bool(matches[index])
        new = matches[index] - credited
        credited |= new
        total += hits / k * len(new)
    found = set().union(*matches)
    return sum(map(bool, matches)) / len(rows), len(found) / len(errors), total / len(errors)


@pytest.mark.parametrize("seed", range(5))
def test_region_metrics_match_a_naive_reference(seed):
    gen = np.random.default_rng(seed)
    n, h, w = 3, 24, 32
    error_maps, region_maps = np.zeros((n, h, w), np.int64), np.zeros((n, h, w), np.int64)
    kinds: dict[tuple[int, int], str] = {}
    rows = []
    for image in range(n):
        boxes = []
        for number in range(1, 5):  # errors: rectangles, later ones on top
            y, x = gen.integers(0, h - 6), gen.integers(0, w - 6)
            dy, dx = gen.integers(2, 7, size=2)
            error_maps[image, y : y + dy, x : x + dx] = number
            boxes.append((y, x, dy, dx))
        for number, (y, x, dy, dx) in enumerate(boxes, start=1):  # regions: near the errors
            y, x = max(0, y + gen.integers(-2, 3)), max(0, x + gen.integers(-2, 3))
            region_maps[image, y : y + dy + gen.integers(-1, 3), x : x + dx] = number
        y, x = gen.integers(0, h - 6), gen.integers(0, w - 6)
        region_maps[image, y : y + 4, x : x + 4] = 5  # and one anywhere
        for number in np.unique(region_maps[image])[1:]:
            rows.append((image, int(number), float(gen.random()), "boundary"))
        for number in np.unique(error_maps[image])[1:]:
            kinds[(image, int(number))] = "boundary_shifted"
    found = [FoundRegion(image, region, score, kind) for image, region, score, kind in rows]
    for region in found:
        pairs, _ = match_image(region_maps[region.image], error_maps[region.image])
        region.matches = {(region.image, e) for r, e in pairs if r == region.region}
    metrics = region_metrics(found, kinds)
    precision, recall, ap = naive_region_metrics(region_maps, error_maps, rows)
    assert metrics["precision"] == pytest.approx(precision)
    assert metrics["recall"] == pytest.approx(recall)
    assert metrics["average_precision"] == pytest.approx(ap)
    assert row_of(metrics, "boundary")["average_precision"] == pytest.approx(ap)
    assert 0 < metrics["matched_regions"] < len(found)  # the case is not trivial


@pytest.mark.parametrize("layout", ["stacked", "folder"])
def test_regions_made_from_synth_error_maps_score_one(tmp_path, make_run, layout):
    """A run whose regions are exactly the injected errors, kinds paired, is perfect."""
    out = tmp_path / "data"
    report = generate(
        out, images=6, height=32, width=40, classes=6, seed=2, corrupt_fraction=0.5,
        layout=layout,
    )  # fmt: skip
    ids = [f"img_{i:05d}" for i in range(6)] if layout == "folder" else None
    if layout == "folder":
        maps = np.stack([read_png(out / "errors" / f"{image_id}.png") for image_id in ids])
    else:
        maps = np.load(out / "errors.npy")
    labels = np.zeros(maps.shape, np.uint8)
    if layout == "folder":  # eval reads the true labels for the pixel metrics
        labels = np.stack([read_png(out / "true_labels" / f"{image_id}.png") for image_id in ids])
    run = make_run(labels, labels, np.zeros(maps.shape, bool), num_classes=6, ids=ids)
    if ids is not None:  # a folder dataset's run names its images
        sizes = np.tile(np.array([maps.shape[1:]]), (len(ids), 1))
        write_images_table(run / "images.csv", ImageTable(ids, sizes))
    pairs = {injected: found for found, injected in KIND_PAIRS.items()}
    rows, count = [], 0
    for entry in report["corruptions"]:
        for number, event in enumerate(entry["events"], start=1):
            if (maps[entry["image"]] == number).any():
                rows.append((entry["image"], number, 0.01 * len(rows), pairs[event["kind"]]))
                count += 1
    write_regions(run, maps, rows)
    metrics = evaluate_run(run, out)["region"]
    assert metrics["found_regions"] == metrics["injected_errors"] == count > 0
    assert metrics["precision"] == metrics["recall"] == metrics["average_precision"] == 1.0
    for row in metrics["per_kind"]:
        assert row["average_precision"] in (1.0, None)


def read_png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


# --- the command line --------------------------------------------------------------------


ONLY_FIRST = ERRORS_MAPS * [[[1]], [[0]]]  # image 1 clean: its region is a false positive


def scan_run_with_regions(tmp_path, make_run) -> tuple[Path, Path, np.ndarray]:
    """A scan-like run (regions, its own image table) and a truth with error maps."""
    corrupted = np.array([True, False])
    labels = np.zeros(SHAPE, np.uint8)
    run = make_run(labels, labels, np.zeros(SHAPE, bool), num_classes=3)
    rows = [(0, 1, 0.1, "missing"), (0, 2, 0.2, "boundary"), (1, 1, 0.3, "spurious")]
    write_regions(run, ERRORS_MAPS, rows)
    write_truth(tmp_path / "truth", ONLY_FIRST, [KINDS[0], []])
    return run, tmp_path / "truth", corrupted


def test_eval_prints_the_region_table(tmp_path, make_run):
    run, truth, _ = scan_run_with_regions(tmp_path, make_run)
    result = invoke("eval", run, "--truth", truth)
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "regions (a match: pixel IoU >= 0.3)" in text
    lines = {line.split()[0]: line.split() for line in text.splitlines() if "│" in line}
    # kind, regions, matching, precision, errors, found, recall, AP
    cells = [cell for cell in lines["all"] if cell != "│"]
    assert cells == ["all", "3", "2", "0.6667", "2", "2", "1.0000", "1.0000"]
    cells = [cell for cell in lines["spurious"] if cell != "│"]
    assert cells == ["spurious", "1", "0", "0.0000", "0", "0", "n/a", "n/a"]
    assert "missing = object_dropped" in text and "spurious = spurious_object" in text


def test_region_kinds_outside_the_pairs_get_their_own_row_shown_as_text(tmp_path, make_run):
    run, truth, _ = scan_run_with_regions(tmp_path, make_run)
    text = (run / "regions.csv").read_text().replace(",spurious,", ",[bold]odd\x1b,")
    (run / "regions.csv").write_text(text)
    result = invoke("eval", run, "--truth", truth)
    assert result.exit_code == 0, result.output
    assert "[bold]odd\\x1b" in result.stdout and "\x1b" not in result.stdout
    metrics = json.loads(invoke("eval", run, "--truth", truth, "--json").stdout)["region"]
    odd = metrics["per_kind"][-1]
    assert odd["kind"] == "[bold]odd\x1b" and odd["injected_kind"] is None
    assert (odd["found_regions"], odd["precision"], odd["recall"]) == (1, 0.0, None)


def test_eval_json_has_the_region_metrics_and_every_score_column(tmp_path, make_run):
    run, truth, _ = scan_run_with_regions(tmp_path, make_run)
    result = invoke("eval", run, "--truth", truth, "--json")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    region = metrics["region"]
    assert (region["found_regions"], region["matched_regions"], region["injected_errors"]) == (
        3, 2, 2
    )  # fmt: skip
    assert region["average_precision"] == 1.0 and len(region["per_kind"]) == 4
    assert metrics["image"]["score_column"] == "softmin_score"
    assert set(metrics["image_by_column"]) == {"softmin_score", "issue_fraction"}


def write_scores(run: Path, columns: dict[str, np.ndarray]) -> None:
    """Replace the run's image table with one holding ``columns`` (image order)."""
    n = len(next(iter(columns.values())))
    with open(run / "image_scores.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "id", *columns, "rank"])
        for image in range(n):
            writer.writerow([image, str(image), *(v[image] for v in columns.values()), image + 1])


def test_score_column_picks_the_image_ranking(tmp_path, make_run):
    gen = np.random.default_rng(4)
    labels = np.zeros((12, 4, 4), np.uint8)
    run = make_run(labels, labels, np.zeros(labels.shape, bool), num_classes=3)
    truth = tmp_path / "truth"
    corrupted = gen.random(12) < 0.4
    corrupted[:2] = [True, False]
    write_truth(truth, np.zeros(labels.shape, np.int64), [[] for _ in range(12)])
    np.save(truth / "is_corrupted.npy", corrupted)
    columns = {name: gen.random(12) for name in ("softmin_score", "issue_fraction", "region_score")}
    write_scores(run, columns)
    expected = {
        "softmin_score": -columns["softmin_score"],
        "region_score": -columns["region_score"],
        "issue_fraction": columns["issue_fraction"],  # higher is more suspicious
    }
    everything = json.loads(invoke("eval", run, "--truth", truth, "--json").stdout)
    assert everything["image"]["score_column"] == "softmin_score"
    for name, suspicion in expected.items():
        result = invoke("eval", run, "--truth", truth, "--json", "--score-column", name)
        assert result.exit_code == 0, result.output
        image = json.loads(result.stdout)["image"]
        assert image["score_column"] == name
        assert image["average_precision"] == pytest.approx(
            average_precision_score(corrupted, suspicion)
        )
        assert image["auroc"] == pytest.approx(roc_auc_score(corrupted, suspicion))
        assert everything["image_by_column"][name] == image
    assert everything["image_by_column"]["issue_fraction"]["more_suspicious"] == "higher"
    text = invoke("eval", run, "--truth", truth, "--score-column", "region_score").stdout
    assert "region_score (12 images" in text and "AP of softmin_score" in text


def test_a_missing_score_column_exits_2(tmp_path):
    make_truth(tmp_path / "data")
    assert invoke("score", tmp_path / "data", "-o", tmp_path / "run", "-q").exit_code == 0
    result = invoke(
        "eval", tmp_path / "run", "--truth", tmp_path / "data", "--score-column", "issue_fraction"
    )
    assert result.exit_code == 2
    assert "has no issue_fraction column (its score columns: score)" in result.stderr
    bad = invoke("eval", tmp_path / "run", "--truth", tmp_path / "data", "--score-column", "x")
    assert bad.exit_code == 2 and "--score-column" in bad.stderr


def test_regions_without_error_maps_are_noted(tmp_path, make_run):
    run, truth, _ = scan_run_with_regions(tmp_path, make_run)
    (truth / "errors.npy").unlink()
    result = invoke("eval", run, "--truth", truth, "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["region"] is None
    assert "has no error maps" in result.stderr


def test_a_run_without_regions_has_no_region_metrics(tmp_path):
    labels, probs, true, corrupted = make_truth(tmp_path / "data")
    assert invoke("score", tmp_path / "data", "-o", tmp_path / "run", "-q").exit_code == 0
    metrics = json.loads(
        invoke("eval", tmp_path / "run", "--truth", tmp_path / "data", "--json").stdout
    )
    assert metrics["region"] is None


def test_damaged_region_inputs_exit_2(tmp_path, make_run):
    run, truth, _ = scan_run_with_regions(tmp_path, make_run)
    np.save(truth / "errors.npy", (ONLY_FIRST * 2).astype(np.uint16))  # event 4 of 2
    result = invoke("eval", run, "--truth", truth)
    assert result.exit_code == 2 and "holds event number 4 but synth.json lists 2" in result.stderr
    np.save(truth / "errors.npy", ONLY_FIRST.astype(np.uint16))
    (truth / "synth.json").unlink()
    result = invoke("eval", run, "--truth", truth)
    assert result.exit_code == 2 and "has error maps but no synth.json" in result.stderr
    write_truth(tmp_path / "again", ONLY_FIRST, [KINDS[0], []])
    text = (run / "regions.csv").read_text().replace(",kind,", ",sort,")
    (run / "regions.csv").write_text(text)
    result = invoke("eval", run, "--truth", tmp_path / "again")
    assert result.exit_code == 2 and "regions.csv has no kind column" in result.stderr
    (run / "regions.csv").write_text(
        text.replace(",sort,", ",kind,").replace(",0.1,missing", ",x,missing")
    )
    result = invoke("eval", run, "--truth", tmp_path / "again")
    assert result.exit_code == 2 and "regions.csv is malformed" in result.stderr
