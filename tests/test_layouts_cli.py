"""Public layouts, manifests, globs and stacked stores through the command line.

Each public dataset is built by `layout_fixtures.py` exactly as its maintainers
distribute it, then scanned with the one-line command a user would type. A run must
hold the right ids, sizes, mapped labels (void stored as 255), photos and issue masks;
at downsample 1 the issue masks, laid end to end, equal the naive reference of
``helpers.py`` on all scored pixels. Bad input is one ``error:`` line, exit status 2,
no run, no temporary run and untouched inputs.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from helpers import naive_issues
from layout_fixtures import (
    FOLDER_IMAGES,
    VOC_CLASSES,
    Built,
    build_ade20k,
    build_camvid,
    build_cityscapes,
    build_folder,
    build_half_stacked,
    build_voc,
    label_map_text,
    save_mask,
    save_probs,
    voc_palette,
)
from PIL import Image
from typer.testing import CliRunner

from segaudit.cli import app
from segaudit.runs.run import open_run

runner = CliRunner()

# name: builder, the split a user scans alone, the default splits, class count, the first
# and last class names, and the folder without which the layout is not recognised.
LAYOUTS = {
    "cityscapes": (build_cityscapes, "val", ("train", "val"), 19, ("road", "bicycle"), "gtFine"),
    "voc": (
        build_voc,
        "val",
        ("train", "val"),
        21,
        ("background", "tvmonitor"),
        "VOCdevkit/VOC2012/ImageSets/Segmentation",
    ),
    "ade20k": (
        build_ade20k,
        "validation",
        ("training", "validation"),
        150,
        ("wall", "flag"),
        "ADEChallengeData2016/annotations",
    ),
    "camvid": (build_camvid, "test", ("test", "train", "val"), 11, ("sky", "bicyclist"), None),
}
ARRAYS = ("labels", "issues", "pred_labels", "pixel_scores")
ZOOM = 24  # render pages: panels this many times the image size outgrow the header line


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def build(name: str, tmp_path: Path) -> Built:
    """A public layout at tmp_path/data/NAME with predictions at tmp_path/data/pred."""
    return LAYOUTS[name][0](tmp_path / "data" / name, tmp_path / "data" / "pred")


def listing(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``root`` with its size and modification time."""
    return {
        str(path.relative_to(root)): (path.lstat().st_size, path.lstat().st_mtime_ns)
        for path in sorted(root.rglob("*"))
    }


def scanned(*args: object) -> object:
    """``segaudit scan ARGS`` succeeded."""
    result = invoke("scan", *args)
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def refused(inputs: Path, run: Path, *args: object, phrases: tuple[str, ...] = ()) -> str:
    """``segaudit scan ARGS -o RUN`` is refused: one ``error:`` line holding ``phrases``,
    exit status 2, no traceback, no run and no temporary run beside it, and nothing
    under ``inputs`` written or changed."""
    run.parent.mkdir(parents=True, exist_ok=True)
    before, beside = listing(inputs), set(os.listdir(run.parent))
    result = invoke("scan", *args, "-o", run, "-q")
    message = result.stderr.strip()
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception  # not a crash
    assert "Traceback" not in result.output
    assert message.startswith("error: ") and "\n" not in message, message
    assert message.endswith("."), message
    for phrase in phrases:
        assert phrase in message, message
    assert not os.path.lexists(run)
    # Nothing new beside RUN (no .segaudit-tmp-*) but the writer's lock file, which
    # stays by design.
    new = set(os.listdir(run.parent)) - beside
    assert all(name.startswith(".segaudit-lock-") for name in new), new
    assert listing(inputs) == before
    return message


def rows_of(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def run_arrays(run: Path, name: str) -> dict[str, np.ndarray]:
    """The run's per-pixel array ``name``, per image id."""
    opened = open_run(run)
    return {image_id: opened.read(name, n) for n, image_id in enumerate(opened.images.ids)}


def same_results(run: Path, other: Path) -> None:
    """Two runs of the same pixels: same ids, per-pixel arrays and image scores."""
    for name in ARRAYS:
        mine, theirs = run_arrays(run, name), run_arrays(other, name)
        assert list(mine) == list(theirs)
        for image_id in mine:
            assert mine[image_id].dtype == theirs[image_id].dtype, (name, image_id)
            assert np.array_equal(mine[image_id], theirs[image_id], equal_nan=True), (
                name,
                image_id,
            )
    scores = [rows_of(r / "image_scores.csv") for r in (run, other)]
    for rows in scores:
        for row in rows:
            row.pop("file")
    assert scores[0] == scores[1]
    totals = [json.loads((r / "summary.json").read_text())["totals"] for r in (run, other)]
    assert totals[0] == totals[1]


def check_against_naive(run: Path, built: Built, ids: list[str]) -> np.ndarray:
    """The run's issue masks, laid end to end, equal the naive reference over the same
    pixels (void 255 ignored); returns them."""
    k = built.num_classes
    labels = np.concatenate([built.labels[i].ravel() for i in ids]).reshape(1, 1, -1)
    probs = np.concatenate([built.probs[i].reshape(k, -1) for i in ids], axis=1)
    naive = naive_issues(labels, probs.reshape(1, k, 1, -1), ignore=255)
    assert not naive.tie_at_cut and naive.closest_to_threshold > 1e-6  # well posed
    issues = run_arrays(run, "issues")
    assert list(issues) == ids
    got = np.concatenate([issues[i].ravel() for i in ids])
    assert np.array_equal(got, naive.issues.ravel())
    assert not got[labels.ravel() == 255].any()
    return got


def check_layout_run(run: Path, built: Built, name: str, ids: list[str]) -> None:
    """What a layout's run must hold: ids, sizes, files, mapped labels, issue masks,
    photos, the layout and its class names."""
    _, _, _, num_classes, (first, last), _ = LAYOUTS[name]
    rows = rows_of(run / "images.csv")
    assert [row["id"] for row in rows] == ids
    assert [(int(row["height"]), int(row["width"])) for row in rows] == built.sizes(ids)
    for row in rows:
        image_id = row["id"]
        assert row["labels"] == str(built.masks[image_id])
        assert row["pred_probs"] == str(built.pred_dir / f"{image_id}.npy")
        assert row["photo"] == str(built.photos[image_id])
    labels = run_arrays(run, "labels")
    issues = run_arrays(run, "issues")
    for image_id in ids:
        assert np.array_equal(labels[image_id], built.labels[image_id]), image_id
        png = run / "issues" / f"{image_id}.png"  # sub-folders of the id kept
        assert png.is_file(), png
        raw = np.asarray(Image.open(png))
        assert raw.dtype == np.uint8 and set(np.unique(raw).tolist()) <= {0, 255}
        assert np.array_equal(raw == 255, issues[image_id]), image_id
    summary = json.loads((run / "summary.json").read_text())
    assert summary["dataset"]["layout"] == name
    assert summary["dataset"]["num_images"] == len(ids)
    assert summary["dataset"]["num_classes"] == num_classes
    names = summary["classes"]["names"]
    assert len(names) == num_classes and (names[0], names[-1]) == (first, last)
    if name == "voc":
        assert names == list(VOC_CLASSES)
    assert summary["parameters"]["ignore_index"] == 255
    assert summary["inputs"]["images"]["format"] == "files"
    assert summary["totals"]["issue_pixels"] == sum(int(issues[i].sum()) for i in ids)
    check_against_naive(run, built, ids)


def corrupt_idat(path: Path) -> None:
    """Scramble a PNG's pixel data behind an intact header (with a valid CRC)."""
    data = path.read_bytes()
    at = data.index(b"IDAT")
    size = struct.unpack(">I", data[at - 4 : at])[0]
    payload = bytes(byte ^ 0x5A for byte in data[at + 4 : at + 4 + size])
    crc = struct.pack(">I", zlib.crc32(b"IDAT" + payload) & 0xFFFFFFFF)
    path.write_bytes(data[: at + 4] + payload + crc + data[at + 8 + size :])


def bilinear_reference(planes: np.ndarray, height: int, width: int) -> np.ndarray:
    """PyTorch's F.interpolate(mode="bilinear", align_corners=False), pixel by pixel."""
    _, h, w = planes.shape
    p = planes.astype(np.float64)

    def taps(out: int, size: int, scale: float) -> tuple[int, int, float]:
        source = max((out + 0.5) * scale - 0.5, 0.0)
        low = min(int(np.floor(source)), size - 1)
        return low, min(low + 1, size - 1), source - low

    result = np.empty((planes.shape[0], height, width))
    for y in range(height):
        y0, y1, fy = taps(y, h, h / height)
        for x in range(width):
            x0, x1, fx = taps(x, w, w / width)
            top = (1 - fx) * p[:, y0, x0] + fx * p[:, y0, x1]
            bottom = (1 - fx) * p[:, y1, x0] + fx * p[:, y1, x1]
            result[:, y, x] = (1 - fy) * top + fy * bottom
    return result


# --- 1. public layouts, one line each ------------------------------------------------------------


@pytest.mark.parametrize("name", LAYOUTS)
def test_one_split_of_a_layout_scans_with_one_command(tmp_path, name):
    split = LAYOUTS[name][1]
    built = build(name, tmp_path)
    run = tmp_path / "out" / "run"
    before = listing(tmp_path / "data")
    result = scanned(
        built.root, "--layout", name, "--split", split, "--pred-probs", built.pred_dir, "-o", run
    )
    assert str(run) in result.stdout  # the summary names the run
    ids = built.split_ids(split)
    check_layout_run(run, built, name, ids)
    assert listing(tmp_path / "data") == before  # inputs are never written


@pytest.mark.parametrize("name", LAYOUTS)
def test_default_splits_scan_and_render_over_the_photos(tmp_path, name):
    defaults = LAYOUTS[name][2]
    built = build(name, tmp_path)
    run = tmp_path / "out" / "run"
    scanned(built.root, "--layout", name, "--pred-probs", built.pred_dir, "-o", run, "-q")
    ids = built.split_ids(*defaults)
    check_layout_run(run, built, name, ids)
    render = invoke("render", run, "--top", 2, "--zoom", ZOOM, "--pages")
    assert render.exit_code == 0, (render.output, render.exception)
    assert "wrote the review page of 2 images and 2 PNG pages" in render.stdout
    pages = sorted((run / "render").glob("rank*.png"))
    assert [p.name[:7] for p in pages] == ["rank001", "rank002"]
    assert (run / "render" / "index.html").is_file()

    # The same dataset without its photos: every page is one panel narrower.
    bare = tmp_path / "bare" / name
    shutil.copytree(built.root, bare)
    for photo in built.photos.values():
        (bare / photo.relative_to(built.root)).unlink(missing_ok=True)
    bare_run = tmp_path / "out" / "bare_run"
    scanned(bare, "--layout", name, "--pred-probs", built.pred_dir, "-o", bare_run, "-q")
    assert [row["photo"] for row in rows_of(bare_run / "images.csv")] == [""] * len(ids)
    assert "images" not in json.loads((bare_run / "summary.json").read_text())["inputs"]
    assert invoke("render", bare_run, "--top", 2, "--zoom", ZOOM, "-q", "--pages").exit_code == 0
    bare_pages = sorted((bare_run / "render").glob("rank*.png"))
    assert [p.name for p in bare_pages] == [p.name for p in pages]
    for page, bare_page in zip(pages, bare_pages, strict=True):
        with Image.open(page) as image, Image.open(bare_page) as bare_image:
            width, height = image.size
            assert height == bare_image.size[1]
            assert width >= bare_image.size[0] + 14 * ZOOM, (page.name, width, bare_image.size)


@pytest.mark.parametrize(
    ("name", "splits"),
    [
        ("cityscapes", ("val", "train", "val")),
        ("voc", ("val", "train")),
        ("camvid", ("val", "test")),
    ],
)
def test_split_may_be_repeated(tmp_path, name, splits):
    built = build(name, tmp_path)
    run = tmp_path / "out" / "run"
    chosen = [arg for split in splits for arg in ("--split", split)]
    scanned(built.root, "--layout", name, *chosen, "--pred-probs", built.pred_dir, "-o", run, "-q")
    ids = built.split_ids(*splits)
    assert [row["id"] for row in rows_of(run / "images.csv")] == ids
    check_layout_run(run, built, name, ids)


def test_voc_defaults_to_train_and_val_not_trainval(tmp_path):
    built = build("voc", tmp_path)
    run = tmp_path / "out" / "run"
    scanned(built.root, "--layout", "voc", "--pred-probs", built.pred_dir, "-o", run, "-q")
    assert [row["id"] for row in rows_of(run / "images.csv")] == [
        "train/2007_000032",
        "train/2007_000039",
        "val/2007_000033",
        "val/2007_000042",
    ]
    trainval = tmp_path / "out" / "trainval"
    scanned(built.root, "--layout", "voc", "--split", "trainval", "--pred-probs", built.pred_dir,
            "-o", trainval, "-q")  # fmt: skip
    check_layout_run(trainval, built, "voc", built.split_ids("trainval"))


def test_score_takes_the_same_layout_options(tmp_path):
    built = build("voc", tmp_path)
    out = tmp_path / "out"
    scanned(built.root, "--layout", "voc", "--split", "val", "--pred-probs", built.pred_dir,
            "-o", out / "scan", "-q")  # fmt: skip
    result = invoke("score", built.root, "--layout", "voc", "--split", "val", "--pred-probs",
                    built.pred_dir, "-o", out / "score", "-q")  # fmt: skip
    assert result.exit_code == 0, (result.output, result.exception)
    scores = {row["id"]: float(row["score"]) for row in rows_of(out / "score" / "image_scores.csv")}
    softmin = {
        row["id"]: float(row["softmin_score"]) for row in rows_of(out / "scan" / "image_scores.csv")
    }
    assert sorted(scores) == built.split_ids("val")
    assert scores == softmin


# --- 2. bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["prediction", "mask"])
def test_unmatched_images_are_named_then_skipped(tmp_path, missing):
    built = build("cityscapes", tmp_path)
    run = tmp_path / "out" / "run"
    kept = "val/frankfurt/frankfurt_000000_000294"
    if missing == "prediction":
        (built.pred_dir / "val/lindau/lindau_000000_000019.npy").unlink()
        phrase = "without a prediction: val/lindau/lindau_000000_000019;"
        extra = ["val/lindau/lindau_000000_000019"]
    else:  # seven predictions of images nobody annotated
        extra = [f"val/frankfurt/extra_{n}" for n in range(7)]
        for image_id in extra:
            save_probs(built.pred_dir, image_id, built.probs[kept])
        phrase = (
            "7 predictions without a mask: val/frankfurt/extra_0, val/frankfurt/extra_1, "
            "val/frankfurt/extra_2, val/frankfurt/extra_3, val/frankfurt/extra_4, … (7 in all)"
        )
    args = (built.root, "--layout", "cityscapes", "--split", "val", "--pred-probs", built.pred_dir)
    refused(tmp_path / "data", run, *args, phrases=(phrase, "--skip-unmatched"))
    result = scanned(*args, "-o", run, "-q", "--skip-unmatched")
    warning = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "--skip-unmatched" in warning[0], result.stderr
    assert all(image_id in warning[0] for image_id in extra[:5]), warning
    skipped = json.loads((run / "summary.json").read_text())["dataset"]["skipped"]
    assert skipped["masks_without_prediction"] == (1 if missing == "prediction" else 0)
    assert skipped["predictions_without_mask"] == (7 if missing == "mask" else 0)
    ids = built.split_ids("val") if missing == "mask" else [kept]
    assert [row["id"] for row in rows_of(run / "images.csv")] == ids


@pytest.mark.parametrize(("size", "scale"), [((13, 16), None), ((6, 8), 2), ((3, 4), 4)])
def test_predictions_of_another_size(tmp_path, size, scale):
    built = build("camvid", tmp_path)
    image_id = "val/0016E5_07959"
    pred = built.pred_dir / f"{image_id}.npy"
    if scale is None:  # larger than the mask: nothing can fix it
        np.save(pred, np.full((11, *size), 1 / 11, np.float32))
        fix = "must cover its mask pixel for pixel"
    else:
        np.save(pred, np.ascontiguousarray(built.probs[image_id][:, ::scale, ::scale]))
        fix = "--resize-probs bilinear"
    args = (built.root, "--layout", "camvid", "--split", "val", "--pred-probs", built.pred_dir)
    run = tmp_path / "out" / "run"
    message = refused(tmp_path / "data", run, *args, phrases=(str(pred), fix))
    assert f"is {size[0]}×{size[1]} but its mask is 12×16" in message
    if scale is None:  # upsampling cannot shrink it either
        assert "--resize-probs" not in message
        refused(tmp_path / "data", run, *args, "--resize-probs", "bilinear",
                phrases=(str(pred), fix))  # fmt: skip
        return
    scanned(*args, "-o", run, "-q", "--resize-probs", "bilinear")
    upsampled = bilinear_reference(np.load(pred), 12, 16)
    labels = built.labels[image_id]
    scored = labels != 255
    given = np.take_along_axis(upsampled, np.where(scored, labels, 0)[None], axis=0)[0]
    scores = run_arrays(run, "pixel_scores")[image_id]
    assert np.allclose(scores[scored], given[scored], rtol=0, atol=1e-6)
    top2 = np.sort(upsampled, axis=0)[-2:]
    clear = top2[1] - top2[0] > 1e-5
    predicted = run_arrays(run, "pred_labels")[image_id]
    assert np.array_equal(predicted[clear], upsampled.argmax(axis=0)[clear])


def test_a_class_value_outside_the_classes_names_the_mask_and_the_pixel(tmp_path):
    built = build_folder(tmp_path / "data")
    labels = built.labels["scene1/frame_002"].copy()
    labels[4, 5] = 7  # not a class (0..3) and not the ignore value 255
    save_mask(labels, built.masks["scene1/frame_002"], "png")
    refused(tmp_path / "data", tmp_path / "out" / "run", built.root, "--ignore-index", 255,
            phrases=(str(built.masks["scene1/frame_002"]), "label 7 outside 0..3",
                     "pixel (4, 5)", "--ignore-index"))  # fmt: skip


def test_a_voc_value_outside_the_classes_names_the_mask_and_the_pixel(tmp_path):
    built = build("voc", tmp_path)
    mask = built.masks["val/2007_000033"]
    values = np.array(Image.open(mask))
    values[4, 6] = 30  # not a VOC class (0..20) and not the void 255
    image = Image.fromarray(values, "P")
    image.putpalette(voc_palette())
    image.save(mask)
    refused(tmp_path / "data", tmp_path / "out" / "run", built.root, "--layout", "voc",
            "--pred-probs", built.pred_dir,
            phrases=(str(mask), "30", "(4, 6)", "--label-map"))  # fmt: skip


@pytest.mark.parametrize(
    ("damage", "phrase"),
    [
        ("corrupt", "is corrupt or truncated"),
        ("truncated", "is corrupt or truncated"),
        ("header", "is not a readable image"),
    ],
)
def test_a_corrupt_or_truncated_mask_is_one_sentence(tmp_path, damage, phrase):
    built = build("cityscapes", tmp_path)
    mask = built.masks["val/lindau/lindau_000000_000019"]
    if damage == "corrupt":
        corrupt_idat(mask)
    elif damage == "truncated":
        mask.write_bytes(mask.read_bytes()[:-40])
    else:
        mask.write_bytes(mask.read_bytes()[:24])  # the signature and part of IHDR
    refused(tmp_path / "data", tmp_path / "out" / "run", built.root, "--layout", "cityscapes",
            "--pred-probs", built.pred_dir, phrases=(f"mask {mask} {phrase}",))  # fmt: skip


def test_rgb_masks_need_a_label_map_and_work_with_one(tmp_path):
    built = build_folder(tmp_path / "data", masks="rgb")
    run = tmp_path / "out" / "run"
    refused(tmp_path / "data", run, built.root,
            phrases=(f"mask {built.masks['frame_000']} is an RGB colour-coded image",
                     "--label-map"))  # fmt: skip
    label_map = tmp_path / "colours.txt"
    label_map.write_text(label_map_text())
    scanned(built.root, "--label-map", label_map, "-o", run, "-q")
    labels = run_arrays(run, "labels")
    assert list(labels) == sorted(FOLDER_IMAGES)
    for image_id, values in labels.items():
        assert np.array_equal(values, built.labels[image_id]), image_id
    summary = json.loads((run / "summary.json").read_text())
    assert summary["parameters"]["ignore_index"] == 255
    assert summary["classes"]["names"] == ["background", "road", "car", "person"]


def test_an_empty_labels_folder_is_one_sentence(tmp_path):
    built = build_folder(tmp_path / "data")
    labels = built.root / "labels"
    for mask in built.masks.values():
        mask.unlink()  # README.txt and a hidden .backup/ folder of masks stay
    phrase = f"labels {labels} holds no .png, .tif, .tiff, .nii, .nii.gz files"
    refused(tmp_path / "data", tmp_path / "out" / "run", built.root, "--ignore-index", 255,
            phrases=(phrase,))  # fmt: skip
    shutil.rmtree(labels)
    labels.mkdir()
    refused(tmp_path / "data", tmp_path / "out" / "run", built.root, "--ignore-index", 255,
            phrases=(phrase,))  # fmt: skip


def test_two_files_for_one_id_are_refused(tmp_path):
    built = build_folder(tmp_path / "data")
    save_mask(built.labels["frame_000"], built.root / "labels" / "frame_000.tif", "tif")
    refused(tmp_path / "data", tmp_path / "out" / "run", built.root, "--ignore-index", 255,
            phrases=("several files for the image id(s) frame_000",))  # fmt: skip


@pytest.mark.parametrize("name", LAYOUTS)
def test_a_layout_without_its_folders_is_one_sentence(tmp_path, name):
    folder = LAYOUTS[name][5]
    built = build(name, tmp_path)
    if folder is None:  # camvid: the SPLITannot folders
        for annot in built.root.glob("CamVid/*annot"):
            shutil.rmtree(annot)
    else:
        shutil.rmtree(built.root / folder)
    refused(tmp_path / "data", tmp_path / "out" / "run", built.root, "--layout", name,
            "--pred-probs", built.pred_dir,
            phrases=(f"{built.root} is not a {name} dataset", "not found"))  # fmt: skip


@pytest.mark.parametrize(
    ("image_id", "problem"),
    [
        ("../x", "has a '..' path component"),
        ("../../escaped/x", "has a '..' path component"),
        ("ABSOLUTE", "is an absolute path"),
        ("a\x00b", "holds a control character"),
        ("a\x1b[2Jb", "holds a control character"),
        ("a/./b", "has a '.' path component"),
    ],
)
def test_manifest_ids_that_would_write_outside_the_run_are_refused(tmp_path, image_id, problem):
    build_folder(tmp_path / "data")
    if image_id == "ABSOLUTE":  # were it written, it would land beside the dataset
        image_id = str(tmp_path / "escaped" / "x")
    manifest = tmp_path / "data" / "manifest.csv"
    manifest.write_text(
        "id,labels,pred_probs\n"
        "frame_000,labels/frame_000.png,pred_probs/frame_000.npy\n"
        f'"{image_id}",labels/scene1/frame_001.png,pred_probs/scene1/frame_001.npy\n'
    )
    (tmp_path / "out").mkdir()
    before = listing(tmp_path)  # the dataset, the run's parent and everything around them
    message = refused(tmp_path / "data", tmp_path / "out" / "run", "--manifest", manifest,
                      "--ignore-index", 255,
                      phrases=(f"manifest {manifest}, line 3", problem))  # fmt: skip
    assert "\x00" not in message and "\x1b" not in message
    assert listing(tmp_path) == before
    assert not (tmp_path / "escaped").exists()


def test_scores_that_do_not_sum_to_one_need_normalize(tmp_path):
    built = build("camvid", tmp_path)
    rng = np.random.default_rng(5)
    normalised_dir = tmp_path / "normalised"
    for image_id, probs in built.probs.items():
        # Mask2Former-like: non-negative per-class scores that do not sum to 1
        scores = (probs * rng.uniform(0.2, 3.0, probs.shape)).astype(np.float32)
        save_probs(built.pred_dir, image_id, scores)
        save_probs(normalised_dir, image_id, scores / scores.sum(axis=0, keepdims=True))
    args = (built.root, "--layout", "camvid")
    run = tmp_path / "out" / "run"
    refused(tmp_path / "data", run, *args, "--pred-probs", built.pred_dir,
            phrases=("do not sum to 1", "--normalize"))  # fmt: skip
    scanned(*args, "--pred-probs", built.pred_dir, "--normalize", "-o", run, "-q")
    reference = tmp_path / "out" / "reference"
    scanned(*args, "--pred-probs", normalised_dir, "-o", reference, "-q")
    same_results(run, reference)
    assert json.loads((run / "summary.json").read_text())["parameters"]["normalize"] is True


def test_logits_in_per_image_files_need_logits(tmp_path):
    built = build("cityscapes", tmp_path)
    reference = tmp_path / "out" / "reference"
    scanned(built.root, "--layout", "cityscapes", "--pred-probs", built.pred_dir, "-o", reference,
            "-q")  # fmt: skip
    for image_id, probs in built.probs.items():  # logits whose softmax is probs
        save_probs(built.pred_dir, image_id, (np.log(probs) + 0.5).astype(np.float32))
    args = (built.root, "--layout", "cityscapes", "--pred-probs", built.pred_dir)
    run = tmp_path / "out" / "run"
    refused(tmp_path / "data", run, *args, phrases=("look like logits", "--logits"))
    scanned(*args, "--logits", "-o", run, "-q")
    expected = run_arrays(reference, "pixel_scores")
    for image_id, scores in run_arrays(run, "pixel_scores").items():
        assert np.allclose(scores, expected[image_id], rtol=0, atol=1e-5, equal_nan=True)
    predicted = run_arrays(reference, "pred_labels")
    for image_id, labels in run_arrays(run, "pred_labels").items():
        assert np.array_equal(labels, predicted[image_id]), image_id


def test_a_layout_with_a_stacked_prediction_file_says_it_needs_a_folder(tmp_path):
    built = build("camvid", tmp_path)
    stacked = tmp_path / "data" / "pred_probs.npy"
    np.save(stacked, np.stack([built.probs[i] for i in built.ids]))
    message = refused(tmp_path / "data", tmp_path / "out" / "run", built.root, "--layout",
                      "camvid", "--pred-probs", stacked, phrases=(str(stacked),))  # fmt: skip
    assert "does not exist" not in message
    assert "folder" in message or "PRED_DIR" in message


def test_split_without_a_layout_is_refused(tmp_path):
    built = build_folder(tmp_path / "data")
    refused(tmp_path / "data", tmp_path / "out" / "run", built.root, "--split", "val",
            "--ignore-index", 255, phrases=("--split", "--layout"))  # fmt: skip


# --- 3-5. manifests, globs and stacked stores --------------------------------------------------


def test_a_manifest_with_relative_paths_scans_from_another_directory(tmp_path, monkeypatch):
    built = build_folder(tmp_path / "data")
    lines = ["id,labels,pred_probs,image"]
    lines += [
        f"{i},labels/{i}.png,pred_probs/{i}.npy,images/{i}.jpg" for i in sorted(FOLDER_IMAGES)
    ]
    (built.root / "manifest.csv").write_text("\n".join(lines) + "\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    scanned("--manifest", "../data/manifest.csv", "--ignore-index", 255, "-o", "run", "-q")
    run = elsewhere / "run"
    rows = rows_of(run / "images.csv")
    assert [row["id"] for row in rows] == sorted(FOLDER_IMAGES)
    for row in rows:
        image_id = row["id"]
        for column, expected in (
            ("labels", built.masks[image_id]),
            ("pred_probs", built.pred_dir / f"{image_id}.npy"),
            ("photo", built.photos[image_id]),
        ):
            assert Path(row[column]).is_absolute(), row
            assert os.path.samefile(row[column], expected), row
    summary = json.loads((run / "summary.json").read_text())
    assert os.path.samefile(summary["inputs"]["labels"]["path"], built.root / "manifest.csv")
    labels = run_arrays(run, "labels")
    for image_id in FOLDER_IMAGES:
        assert np.array_equal(labels[image_id], built.labels[image_id]), image_id
    folder_run = tmp_path / "folder_run"
    scanned(built.root, "--ignore-index", 255, "-o", folder_run, "-q")
    same_results(run, folder_run)


def test_a_glob_of_masks_pairs_with_a_predictions_folder(tmp_path):
    built = build_folder(tmp_path / "data")
    run = tmp_path / "out" / "run"
    scanned("--labels", f"{built.root}/labels/**/*.png", "--pred-probs", built.pred_dir,
            "--ignore-index", 255, "-o", run, "-q")  # fmt: skip
    rows = rows_of(run / "images.csv")
    assert [row["id"] for row in rows] == sorted(FOLDER_IMAGES)  # hidden .backup/ left out
    assert [row["labels"] for row in rows] == [str(built.masks[i]) for i in sorted(FOLDER_IMAGES)]
    folder_run = tmp_path / "out" / "folder_run"
    scanned(built.root, "--ignore-index", 255, "-o", folder_run, "-q")
    same_results(run, folder_run)


def test_a_stacked_prediction_store_pairs_with_a_mask_folder_in_sorted_id_order(tmp_path):
    built = build_half_stacked(tmp_path / "stacked", "pred_probs")
    run = tmp_path / "out" / "run"
    scanned("--labels", built.root / "labels", "--pred-probs", built.root / "pred_probs.npy",
            "--ignore-index", 255, "-o", run, "-q")  # fmt: skip
    rows = rows_of(run / "images.csv")
    assert [row["id"] for row in rows] == ["a_first", "b_second", "c_third"]
    stacked = str(built.root / "pred_probs.npy")
    assert all(row["pred_probs"].startswith(stacked) for row in rows), rows
    folders = tmp_path / "folders"
    shutil.copytree(built.root / "labels", folders / "labels")
    for image_id, probs in built.probs.items():
        save_probs(folders / "pred_probs", image_id, probs)
    folder_run = tmp_path / "out" / "folder_run"
    scanned(folders, "--ignore-index", 255, "-o", folder_run, "-q")
    same_results(run, folder_run)
    labels = run_arrays(run, "labels")
    for image_id in built.ids:
        assert np.array_equal(labels[image_id], built.labels[image_id]), image_id
