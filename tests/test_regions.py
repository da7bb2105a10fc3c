"""Regions: issue pixels grouped per image into 8-connected regions of one class pair.

Every run's ``regions.csv`` and ``regions.zarr`` are checked against an independent
labelling written here in plain Python (a flood fill over each image's issue pixels,
read back from the run): the same regions, numbered in the raster order of their first
pixel, with the same pixel counts, boxes, centroids and mean probabilities. Then the
kinds rule, the region score per image, the options, and byte-identity across batch
sizes, worker counts and downsampling.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import run_outputs
from typer.testing import CliRunner

import segaudit
from segaudit.cli import app
from segaudit.engine.regions import EDGE_REACH
from segaudit.runs.run import open_run
from segaudit.sources import DatasetSpec, open_dataset

runner = CliRunner()
SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
NEIGHBOURS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def flood_fill_regions(issues, labels, pred, min_pixels):
    """Each 8-connected group of issue pixels sharing one (given, predicted) pair, in
    the raster order of its first pixel, as (pair, pixel list); specks dropped."""
    height, width = issues.shape
    seen = np.zeros(issues.shape, bool)
    found = []
    for y, x in zip(*np.nonzero(issues), strict=True):  # raster order
        if seen[y, x]:
            continue
        pair = (int(labels[y, x]), int(pred[y, x]))
        seen[y, x] = True
        stack, pixels = [(int(y), int(x))], []
        while stack:
            cy, cx = stack.pop()
            pixels.append((cy, cx))
            for dy, dx in NEIGHBOURS:
                ny, nx = cy + dy, cx + dx
                if not (0 <= ny < height and 0 <= nx < width) or seen[ny, nx]:
                    continue
                if issues[ny, nx] and (labels[ny, nx], pred[ny, nx]) == pair:
                    seen[ny, nx] = True
                    stack.append((ny, nx))
        if len(pixels) >= min_pixels:
            found.append((pair, pixels))
    return found


def labelled_edges_near(labels: np.ndarray, ignore: int | None, reach: int) -> np.ndarray:
    """Whether each pixel is within ``reach`` (chessboard) of either pixel of a
    4-adjacent pair of different labelled classes: a whole-image edge map, dilated."""
    from scipy import ndimage

    valid = np.ones(labels.shape, bool) if ignore is None else labels != ignore
    edge = np.zeros(labels.shape, bool)
    for a, b, va, vb in (
        (labels[1:], labels[:-1], valid[1:], valid[:-1]),
        (labels[:, 1:], labels[:, :-1], valid[:, 1:], valid[:, :-1]),
    ):
        pair = (a != b) & va & vb
        if a.shape[0] < labels.shape[0]:
            edge[1:] |= pair
            edge[:-1] |= pair
        else:
            edge[:, 1:] |= pair
            edge[:, :-1] |= pair
    return ndimage.maximum_filter(edge, size=2 * reach + 1, mode="constant", cval=False)


def region_thickness(shape: tuple[int, int], ys: np.ndarray, xs: np.ndarray) -> int:
    """The largest chessboard distance of a region's pixels from its outside, the
    image's border counting as outside: scipy's distance transform of the padded mask."""
    from scipy import ndimage

    mask = np.zeros((shape[0] + 2, shape[1] + 2), bool)
    mask[ys + 1, xs + 1] = True
    return int(ndimage.distance_transform_cdt(mask, metric="chessboard")[ys + 1, xs + 1].max())


def read_regions(run: Path) -> list[dict]:
    with open(run / "regions.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def assert_regions_match_flood_fill(run: Path, probs_of=None, min_pixels: int = 10) -> int:
    """regions.csv and regions.zarr against :func:`flood_fill_regions` of every image;
    returns how many regions the run has. ``probs_of(i)`` (K, H, W) checks the means."""
    opened = open_run(run)
    rows = read_regions(run)
    by_image: dict[int, list[dict]] = {}
    for row in rows:
        by_image.setdefault(int(row["image"]), []).append(row)
    for image in range(opened.num_images):
        issues = opened.read("issues", image)
        labels, pred = opened.read("labels", image), opened.read("pred_labels", image)
        expected = flood_fill_regions(issues, labels, pred, min_pixels)
        got = sorted(by_image.get(image, []), key=lambda row: int(row["region"]))
        assert len(got) == len(expected), f"image {image}"
        region_map = opened.read("regions", image)
        want_map = np.zeros(issues.shape, np.int64)
        near = labelled_edges_near(labels, opened.ignore_index, EDGE_REACH)
        for number, (row, (pair, pixels)) in enumerate(zip(got, expected, strict=True), 1):
            ys, xs = np.array(pixels).T
            assert int(row["region"]) == number
            assert (int(row["given_class"]), int(row["predicted_class"])) == pair
            assert int(row["pixels"]) == len(pixels)
            box = [int(row[c]) for c in ("x0", "y0", "x1", "y1")]
            assert box == [xs.min(), ys.min(), xs.max(), ys.max()]
            assert float(row["centroid_x"]) == pytest.approx(xs.mean(), abs=1e-9)
            assert float(row["centroid_y"]) == pytest.approx(ys.mean(), abs=1e-9)
            assert row["id"] == opened.images.ids[image]
            assert int(row["thickness"]) == region_thickness(issues.shape, ys, xs)
            assert float(row["edge_fraction"]) == pytest.approx(near[ys, xs].mean(), abs=1e-9)
            want_map[ys, xs] = number
            if probs_of is not None:
                probs = np.asarray(probs_of(image), np.float64)
                self_conf = probs[pair[0], ys, xs].mean()
                top = probs[:, ys, xs].max(axis=0).mean()
                assert float(row["mean_self_confidence"]) == pytest.approx(self_conf, abs=1e-6)
                assert float(row["mean_predicted_probability"]) == pytest.approx(top, abs=1e-6)
        np.testing.assert_array_equal(region_map, want_map)
    return len(rows)


@pytest.fixture(scope="module")
def synth_set(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("regions") / "synth"
    result = invoke("synth", root, "--images", 12, "--height", 72, "--width", 96,
                    "--classes", 8, "--seed", 3, "--corrupt-fraction", 0.5, "-q")  # fmt: skip
    assert result.exit_code == 0, result.output
    return root


def test_sample_data_regions_match_a_flood_fill_of_the_issue_pixels(tmp_path):
    run = tmp_path / "run"
    assert invoke("scan", SAMPLE, "-o", run, "-q").exit_code == 0
    probs = np.load(SAMPLE / "pred_probs.npy", mmap_mode="r")
    count = assert_regions_match_flood_fill(run, lambda i: probs[i])
    assert count > 0
    summary = json.loads((run / "summary.json").read_text())["regions"]
    assert summary["count"] == count
    kinds = [row["kind"] for row in read_regions(run)]
    assert summary["by_kind"] == {k: kinds.count(k) for k in summary["by_kind"]}
    assert sum(summary["by_kind"].values()) == count


def test_a_folder_of_several_sizes_gives_the_flood_fill_regions(tmp_path):
    folder = SAMPLE / "folder"
    run = tmp_path / "run"
    assert invoke("scan", folder, "-o", run, "-q").exit_code == 0
    ids = open_run(run).images.ids
    assert len({open_run(run).read("labels", i).shape for i in range(len(ids))}) > 1
    count = assert_regions_match_flood_fill(
        run, lambda i: np.load(folder / "pred_probs" / f"{ids[i]}.npy")
    )
    assert count > 0


def test_regions_are_byte_identical_for_any_batch_size_and_worker_count(tmp_path, synth_set):
    outputs = []
    for n, extra in enumerate([(), ("--batch-size", 1, "--workers", 1),
                                ("--batch-size", 5, "--workers", 2)]):  # fmt: skip
        run = tmp_path / f"run{n}"
        assert invoke("scan", synth_set, "-o", run, "-q", *extra).exit_code == 0
        outputs.append(run_outputs(run))
    assert outputs[0] == outputs[1] == outputs[2]
    assert outputs[0]["regions.csv"].count(b"\n") > 5
    probs = np.load(synth_set / "pred_probs.npy", mmap_mode="r")
    assert_regions_match_flood_fill(tmp_path / "run0", lambda i: probs[i])


def test_folder_regions_are_byte_identical_for_any_batch_size(tmp_path):
    outputs = []
    for n, extra in enumerate([(), ("--batch-size", 1, "--workers", 1), ("--batch-size", 3)]):
        run = tmp_path / f"run{n}"
        assert invoke("scan", SAMPLE / "folder", "-o", run, "-q", *extra).exit_code == 0
        outputs.append({k: v for k, v in run_outputs(run).items() if k.startswith("regions")})
    assert outputs[0] == outputs[1] == outputs[2]
    assert any(name.startswith("regions.zarr/") for name in outputs[0])


@pytest.mark.parametrize("pooling", ["mode", "mean"])
def test_downsampled_runs_group_the_full_resolution_issue_pixels(tmp_path, synth_set, pooling):
    outputs = []
    for n, extra in enumerate([(), ("--batch-size", 1, "--workers", 1), ("--batch-size", 4)]):
        run = tmp_path / f"run{n}"
        result = invoke("scan", synth_set, "-o", run, "-q", "--downsample", 2,
                        "--label-pooling", pooling, *extra)  # fmt: skip
        assert result.exit_code == 0, result.output
        outputs.append(run_outputs(run))
    assert outputs[0] == outputs[1] == outputs[2]
    probs = np.load(synth_set / "pred_probs.npy", mmap_mode="r")
    assert assert_regions_match_flood_fill(tmp_path / "run0", lambda i: probs[i]) > 0


def test_min_region_pixels_drops_specks_from_the_list_but_not_from_the_mask(tmp_path, synth_set):
    small, large = tmp_path / "small", tmp_path / "large"
    assert invoke("scan", synth_set, "-o", small, "-q", "--min-region-pixels", 1).exit_code == 0
    assert invoke("scan", synth_set, "-o", large, "-q", "--min-region-pixels", 40).exit_code == 0
    assert_regions_match_flood_fill(small, min_pixels=1)
    assert_regions_match_flood_fill(large, min_pixels=40)
    sizes = [int(row["pixels"]) for row in read_regions(small)]
    assert min(sizes) < 40 <= min(int(row["pixels"]) for row in read_regions(large))
    for name in ("issues.zarr", "issues"):
        a = sorted((small / name).rglob("*"))
        assert [f.read_bytes() for f in a if f.is_file()] == [
            f.read_bytes() for f in sorted((large / name).rglob("*")) if f.is_file()
        ]
    summaries = [json.loads((r / "summary.json").read_text())["regions"] for r in (small, large)]
    assert [s["min_region_pixels"] for s in summaries] == [1, 40]
    assert summaries[0]["count"] == len(sizes)


def test_the_default_min_region_pixels_is_the_engines():
    from segaudit.cli.scan import DEFAULT_MIN_REGION_PIXELS
    from segaudit.engine.regions import DEFAULT_MIN_PIXELS

    assert DEFAULT_MIN_REGION_PIXELS == DEFAULT_MIN_PIXELS


def test_regions_csv_is_worst_first_and_each_images_region_score_is_its_worst(tmp_path, synth_set):
    run = tmp_path / "run"
    assert invoke("scan", synth_set, "-o", run, "-q").exit_code == 0
    rows = read_regions(run)
    keys = [(float(r["score"]), int(r["image"]), int(r["region"])) for r in rows]
    assert keys == sorted(keys)
    assert [int(r["rank"]) for r in rows] == list(range(1, len(rows) + 1))
    assert all(0 <= float(r["score"]) <= 1 for r in rows)
    with open(run / "image_scores.csv", newline="") as handle:
        images = {row["id"]: float(row["region_score"]) for row in csv.DictReader(handle)}
    for image_id, score in images.items():
        mine = [float(r["score"]) for r in rows if r["id"] == image_id]
        assert score == (min(mine) if mine else 1.0)


def test_regions_csv_written_in_blocks_is_the_same_file(tmp_path, synth_set, monkeypatch):
    # regions.csv is made into text a block of rows at a time (memory flat in the number
    # of regions): blocks of 3 rows must give the same bytes, ranks running on.
    import segaudit.report.regions as region_table

    whole = tmp_path / "whole"
    assert invoke("scan", synth_set, "-o", whole, "-q").exit_code == 0
    monkeypatch.setattr(region_table, "CSV_BLOCK_ROWS", 3)
    blocks = tmp_path / "blocks"
    assert invoke("scan", synth_set, "-o", blocks, "-q").exit_code == 0
    text = (blocks / "regions.csv").read_bytes()
    assert text == (whole / "regions.csv").read_bytes()
    assert text.count(b"\n") > 3 * 3


# -- kinds, on a dataset built to hold one of each ------------------------------------

K = 4  # 0 road (background), 1 car, 2 person, 3 sign


def designed_image() -> tuple[np.ndarray, np.ndarray]:
    """Labels and a confident model that disagree in four known places: a car the
    annotator missed (given road), a person labelled on empty road, a sign labelled as
    a person, and a car outline drawn one pixel too wide all round."""
    labels = np.zeros((40, 60), np.uint8)
    truth = np.zeros((40, 60), np.uint8)
    truth[4:12, 4:14] = 1  # missed car: labels keep road
    labels[4:12, 40:50] = 2  # spurious person: truth is road
    truth[20:30, 4:12] = 3
    labels[20:30, 4:12] = 2  # sign labelled person
    truth[20:34, 30:50] = 1
    labels[19:35, 29:51] = 1  # car outline one pixel too wide
    probs = np.full((K, 40, 60), 0.02, np.float32)
    np.put_along_axis(probs, truth[None].astype(np.intp), 0.94, axis=0)
    return labels, probs


def test_each_kind_comes_from_the_rule(tmp_path):
    labels, probs = designed_image()
    run = tmp_path / "run"
    with segaudit.Scanner(run, num_classes=K, class_names=["road", "car", "person", "sign"],
                          background=["road"], min_region_pixels=1) as scanner:  # fmt: skip
        scanner.add(labels[None], probs[None])
    rows = {(int(r["given_class"]), int(r["predicted_class"])): r for r in read_regions(run)}
    assert rows[(0, 1)]["kind"] == "missing"
    assert rows[(0, 1)]["pixels"] == "80"
    assert rows[(2, 0)]["kind"] == "spurious"
    assert rows[(2, 3)]["kind"] == "wrong-class"
    assert rows[(1, 0)]["kind"] == "boundary"
    assert int(rows[(1, 0)]["pixels"]) == 16 * 22 - 14 * 20
    assert (rows[(1, 0)]["given_name"], rows[(1, 0)]["predicted_name"]) == ("car", "road")
    assert float(rows[(1, 0)]["edge_fraction"]) == 1.0
    summary = scanner.summary["regions"]
    assert summary["by_kind"] == {"missing": 1, "wrong-class": 1, "boundary": 1, "spurious": 1}
    assert summary["background_classes"] == [0]
    assert_regions_match_flood_fill(run, lambda i: probs, min_pixels=1)


def test_background_classes_change_which_regions_are_missing_or_spurious(tmp_path):
    labels, probs = designed_image()
    with segaudit.Scanner(tmp_path / "run", num_classes=K, background=[0, 2],
                          min_region_pixels=1) as scanner:  # fmt: skip
        scanner.add(labels[None], probs[None])
    rows = {(int(r["given_class"]), int(r["predicted_class"])): r["kind"]
            for r in read_regions(tmp_path / "run")}  # fmt: skip
    assert rows[(2, 0)] == "wrong-class"  # person and road both background now
    assert rows[(2, 3)] == "missing"
    assert scanner.summary["regions"]["background_classes"] == [0, 2]


@pytest.mark.parametrize(
    ("value", "message"),
    [("tree", "unknown class 'tree'"), ("9", "class id 9 is outside 0..7")],
)
def test_an_unknown_background_class_is_one_sentence_and_nothing_written(tmp_path, value, message):
    run = tmp_path / "run"
    result = invoke("scan", SAMPLE, "-o", run, "-q", "--background", value)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert not run.exists()


def test_background_names_and_ids_may_be_mixed(tmp_path):
    run = tmp_path / "run"
    result = invoke("scan", SAMPLE, "-o", run, "-q", "--background", "sky",
                    "--background", "0", "--background", "building")  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads((run / "summary.json").read_text())["regions"]
    assert summary["background_classes"] == [0, 2, 4]


def test_a_layouts_stuff_classes_are_its_default_background(tmp_path):
    from layout_fixtures import build_cityscapes

    built = build_cityscapes(tmp_path / "cityscapes", tmp_path / "preds")
    dataset = open_dataset(DatasetSpec(dataset=built.root, layout="cityscapes",
                                       pred_probs=str(built.pred_dir)))  # fmt: skip
    names = dataset.names()
    assert {names[k] for k in dataset.background} >= {"road", "sky", "building"}
    assert not {"car", "person"} & {names[k] for k in dataset.background}


def test_scan_help_names_the_region_options():
    result = invoke("scan", "--help")
    assert "--min-region-pixels" in result.output and "--background" in result.output


def test_swaps_counts_each_pairs_regions_under_the_same_filters(tmp_path, synth_set):
    run = tmp_path / "run"
    assert invoke("scan", synth_set, "-o", run, "-q").exit_code == 0
    regions = read_regions(run)
    chosen, dropped = regions[0]["given_name"], regions[0]["predicted_name"]
    for filters in ([], ["--class", chosen], ["--exclude", dropped]):
        assert invoke("swaps", run, "-q", *filters).exit_code == 0
        with open(run / "swaps.csv", newline="") as handle:
            swaps = list(csv.DictReader(handle))
        counted = {(r["given_name"], r["predicted_name"]): int(r["regions"]) for r in swaps}
        expected: dict[tuple[str, str], int] = {}
        for row in regions:
            pair = (row["given_name"], row["predicted_name"])
            if filters and filters[0] == "--class" and chosen not in pair:
                continue
            if filters and filters[0] == "--exclude" and dropped in pair:
                continue
            expected[pair] = expected.get(pair, 0) + 1
        assert {pair: n for pair, n in counted.items() if n} == expected
        assert sum(expected.values()) > 0 or filters[0] == "--exclude"


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.int64, np.int16, np.uint32])
@pytest.mark.parametrize("ignore", [None, 3, -1])
def test_region_kernels_equal_whole_image_references(dtype, ignore):
    """The compiled links, depths and edge test on random blobs and labels of every
    integer type, against scipy's chessboard distance transform and a dilated edge map
    (an ignore value the type cannot hold matches nothing)."""
    from scipy import ndimage

    from segaudit.engine.region_kernels import near_edge, region_depths, region_links

    rng = np.random.default_rng(7)
    shape = (37, 53)
    labels = ndimage.zoom(rng.integers(0, 5, (8, 11)), 5, order=0)[: shape[0], : shape[1]]
    labels = labels.astype(dtype)
    issues = ndimage.binary_dilation(rng.random(shape) < 0.04, iterations=2)
    index = np.flatnonzero(issues)
    pair = np.zeros(index.size, np.int64)  # one pair: regions are the 8-connected blobs
    found = region_links(shape, index, pair)
    depth = region_depths(found)
    padded = np.pad(issues, 1)
    want = ndimage.distance_transform_cdt(padded, metric="chessboard")[1:-1, 1:-1]
    np.testing.assert_array_equal(depth, want.ravel()[index])
    applies = ignore is not None and np.iinfo(dtype).min <= ignore <= np.iinfo(dtype).max
    reference = labelled_edges_near(labels, ignore if applies else None, EDGE_REACH)
    near = near_edge(labels, index, EDGE_REACH, ignore)
    np.testing.assert_array_equal(near, reference.ravel()[index])


def test_region_map_dtype_is_uint16_unless_an_image_could_hold_more_regions():
    from segaudit.engine.regions import region_map_dtype

    assert region_map_dtype([[512, 1024]], 10) == np.uint16  # at most 52,428 regions
    assert region_map_dtype([[256, 256], [256, 257]], 1) == np.uint32  # 65,792
    assert region_map_dtype([[256, 256]], 1) == np.uint32  # 65,536 regions: 1..65536
    assert region_map_dtype([[255, 257]], 1) == np.uint16  # 65,535
    assert region_map_dtype(np.zeros((0, 2)), 10) == np.uint16  # no image


@pytest.mark.parametrize("min_pixels, dtype", [(10, "uint16"), (1, "uint32")])
def test_region_maps_in_either_type_hold_the_flood_fill_regions(tmp_path, min_pixels, dtype):
    data = tmp_path / "data"
    made = invoke("synth", data, "--images", 2, "--height", 256, "--width", 320,
                  "--classes", 5, "--seed", 2, "-q")  # fmt: skip
    assert made.exit_code == 0, made.output
    run = tmp_path / "run"
    scanned = invoke("scan", data, "-o", run, "--min-region-pixels", min_pixels, "-q")
    assert scanned.exit_code == 0, scanned.output
    assert open_run(run).read("regions", 0).dtype == np.dtype(dtype)
    assert assert_regions_match_flood_fill(run, min_pixels=min_pixels) > 0
