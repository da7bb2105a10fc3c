"""`segaudit synth` and :func:`segaudit.synth.generate`: the synthetic dataset generator."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import shlex
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import zarr
from PIL import Image
from typer.testing import CliRunner

import segaudit.synth.annotation_errors as annotation_errors
import segaudit.synth.image as synth_image
import segaudit.synth.output as synth_output
from segaudit.cli import app
from segaudit.synth import (
    DEFAULT_CLASS_NAMES,
    ERROR_KINDS,
    OutputNotEmptyError,
    SynthOptionError,
    generate,
)
from segaudit.synth.folder import assign_sizes, id_digits
from segaudit.synth.scene import make_scene
from segaudit.synth.world import ERRORS, SCENE, World, rng

runner = CliRunner()
SMALL = ["--images", "6", "--height", "40", "--width", "56", "--classes", "6"]
NPY_FILES = ["labels", "pred_probs", "images", "true_labels", "is_corrupted", "errors"]
SAMPLE_STACKED = Path(__file__).resolve().parent.parent / "sample_data"
SAMPLE_FOLDER = SAMPLE_STACKED / "folder"
FOLDER_KINDS = {
    "labels": ".png",
    "pred_probs": ".npy",
    "images": ".png",
    "true_labels": ".png",
    "errors": ".png",
}


def synth(*args: object):
    return runner.invoke(app, ["synth", *[str(a) for a in args]], catch_exceptions=False)


def load(out: Path, name: str, fmt: str = "npy") -> np.ndarray:
    if fmt == "npy":
        return np.load(out / f"{name}.npy", allow_pickle=False)
    return zarr.open_array(str(out / f"{name}.zarr"), mode="r")[...]


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """12 images, 40% corrupted, float16: the sample_data recipe at a smaller size."""
    out = tmp_path_factory.mktemp("synth") / "ds"
    names = "road,sidewalk,building,vegetation,sky,person,car,bicycle"
    result = synth(
        out,
        "--images",
        12,
        "--height",
        48,
        "--width",
        64,
        "--classes",
        8,
        "--seed",
        7,
        "--dtype",
        "float16",
        "--corrupt-fraction",
        0.4,
        "--class-names",
        names,
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    assert result.output == ""
    return out


def test_writes_the_dataset_layout(dataset):
    assert sorted(p.name for p in dataset.iterdir()) == sorted(
        [f"{n}.npy" for n in NPY_FILES] + ["classes.txt", "synth.json"]
    )
    assert load(dataset, "labels").shape == (12, 48, 64)
    assert load(dataset, "labels").dtype == np.uint8
    assert load(dataset, "true_labels").dtype == np.uint8
    assert load(dataset, "pred_probs").shape == (12, 8, 48, 64)
    assert load(dataset, "pred_probs").dtype == np.float16
    assert load(dataset, "images").shape == (12, 48, 64, 3)
    assert load(dataset, "images").dtype == np.uint8
    assert load(dataset, "is_corrupted").dtype == np.bool_
    names = (dataset / "classes.txt").read_text().splitlines()
    assert names == [
        "road",
        "sidewalk",
        "building",
        "vegetation",
        "sky",
        "person",
        "car",
        "bicycle",
    ]
    assert load(dataset, "labels").max() < 8


def test_probabilities_are_distributions(dataset):
    probs = load(dataset, "pred_probs").astype(np.float32)
    assert np.isfinite(probs).all() and (probs >= 0).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=2e-3)  # float16 rounding


def test_exactly_the_chosen_images_are_corrupted(dataset):
    labels, truth = load(dataset, "labels"), load(dataset, "true_labels")
    corrupted = load(dataset, "is_corrupted")
    assert corrupted.sum() == round(0.4 * 12)
    differs = (labels != truth).any(axis=(1, 2))
    np.testing.assert_array_equal(differs, corrupted)
    report = json.loads((dataset / "synth.json").read_text())
    assert report["corrupted_images"] == np.flatnonzero(corrupted).tolist()
    assert [c["image"] for c in report["corruptions"]] == report["corrupted_images"]
    assert report["noisy_pixels"] == int((labels != truth).sum())
    for entry in report["corruptions"]:
        assert entry["kinds"] and set(entry["kinds"]) <= set(ERROR_KINDS)
        assert all(event["pixels"] > 0 for event in entry["events"])


def test_model_is_mostly_but_not_always_right(dataset):
    probs = load(dataset, "pred_probs")
    truth = load(dataset, "true_labels")
    agree = (probs.argmax(axis=1) == truth).mean()
    assert 0.8 < agree < 1.0
    # confident inside regions, unsure somewhere (boundaries, small objects)
    top = probs.max(axis=1).astype(np.float32)
    inside = np.ones(truth.shape, dtype=bool)  # same class 3 pixels away in each direction
    for axis in (1, 2):
        for step in (-3, 3):
            inside &= np.roll(truth, step, axis=axis) == truth
    assert np.median(top[inside]) > 0.9
    assert (top < 0.7).mean() > 0.01


def test_given_labels_of_errors_have_low_model_probability(dataset):
    probs = load(dataset, "pred_probs").astype(np.float32)
    labels, truth = load(dataset, "labels"), load(dataset, "true_labels")
    given = np.take_along_axis(probs, labels[:, None].astype(np.intp), axis=1)[:, 0]
    wrong = labels != truth
    assert np.median(given[wrong]) < 0.3 < np.median(given[~wrong])


def test_all_error_kinds_occur(tmp_path):
    report = generate(
        tmp_path / "ds", images=16, height=48, width=64, classes=8, seed=3, corrupt_fraction=1.0
    )
    kinds = {kind for entry in report["corruptions"] for kind in entry["kinds"]}
    assert kinds == set(ERROR_KINDS)
    assert report == json.loads((tmp_path / "ds" / "synth.json").read_text())


@pytest.mark.parametrize("fmt", ["npy", "zarr"])
def test_same_seed_same_bytes_other_seed_other_data(tmp_path, fmt):
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        assert synth(tmp_path / name, *SMALL, "--seed", seed, "--format", fmt, "-q").exit_code == 0
    first = tree_bytes(tmp_path / "a")
    assert first == tree_bytes(tmp_path / "b")
    assert not np.array_equal(
        load(tmp_path / "a", "labels", fmt), load(tmp_path / "c", "labels", fmt)
    )
    assert not np.array_equal(
        load(tmp_path / "a", "pred_probs", fmt), load(tmp_path / "c", "pred_probs", fmt)
    )


def test_zarr_format_matches_npy(tmp_path):
    for fmt in ("npy", "zarr"):
        assert synth(tmp_path / fmt, *SMALL, "--seed", 5, "--format", fmt, "-q").exit_code == 0
    assert sorted(p.name for p in (tmp_path / "zarr").iterdir()) == sorted(
        [f"{n}.zarr" for n in NPY_FILES] + ["classes.txt", "synth.json"]
    )
    for name in NPY_FILES:
        np.testing.assert_array_equal(
            load(tmp_path / "npy", name), load(tmp_path / "zarr", name, "zarr")
        )
    probs = zarr.open_array(str(tmp_path / "zarr" / "pred_probs.zarr"), mode="r")
    assert probs.metadata.zarr_format == 3
    assert probs.chunks == (1, 6, 40, 56)
    assert "blosc" in json.dumps(probs.metadata.to_dict()["codecs"])


def test_corrupt_fraction_changes_only_the_noisy_labels(tmp_path):
    kwargs = dict(images=5, height=32, width=40, classes=5, seed=11)
    generate(tmp_path / "clean", corrupt_fraction=0, **kwargs)
    generate(tmp_path / "noisy", corrupt_fraction=1, **kwargs)
    for name in ("true_labels", "pred_probs", "images"):
        np.testing.assert_array_equal(
            load(tmp_path / "clean", name), load(tmp_path / "noisy", name)
        )
    clean = tmp_path / "clean"
    np.testing.assert_array_equal(load(clean, "labels"), load(clean, "true_labels"))
    assert not load(clean, "is_corrupted").any()
    assert (
        (load(tmp_path / "noisy", "labels") != load(tmp_path / "noisy", "true_labels"))
        .any(axis=(1, 2))
        .all()
    )


def test_probabilities_made_in_row_bands_match_whole_images(tmp_path, monkeypatch):
    kwargs = dict(images=2, height=24, width=32, classes=300, seed=4, fmt="zarr")
    whole = generate(tmp_path / "whole", **kwargs)
    monkeypatch.setattr(synth_image, "PROBS_BAND_BYTES", 300 * 32 * 4 * 5)  # 5 rows
    banded = generate(tmp_path / "banded", **kwargs)
    assert whole == banded
    a = load(tmp_path / "whole", "pred_probs", "zarr")
    b = load(tmp_path / "banded", "pred_probs", "zarr")
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert zarr.open_array(str(tmp_path / "banded" / "pred_probs.zarr")).chunks == (1, 300, 5, 32)
    assert load(tmp_path / "whole", "labels", "zarr").dtype == np.uint16  # K > 256
    generate(tmp_path / "npy", **{**kwargs, "fmt": "npy"})
    np.testing.assert_allclose(load(tmp_path / "npy", "pred_probs"), b, atol=1e-6)


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (5, 200)])
def test_tiny_and_thin_images(tmp_path, shape):
    h, w = shape
    report = generate(
        tmp_path / "ds", images=3, height=h, width=w, classes=2, seed=0, corrupt_fraction=1
    )
    labels, truth = load(tmp_path / "ds", "labels"), load(tmp_path / "ds", "true_labels")
    assert (labels != truth).any(axis=(1, 2)).all()
    assert len(report["corruptions"]) == 3
    np.testing.assert_allclose(load(tmp_path / "ds", "pred_probs").sum(axis=1), 1, atol=1e-5)


def test_default_class_names(tmp_path):
    generate(tmp_path / "ds", images=1, height=8, width=8, classes=21, seed=0)
    names = (tmp_path / "ds" / "classes.txt").read_text().splitlines()
    assert names[:2] == ["road", "sidewalk"] and names[18] == "bicycle"
    assert names[19:] == ["class_19", "class_20"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--images", "0"], "--images must be a positive integer"),
        (["--height", "-3"], "--height must be a positive integer"),
        (["--classes", "1"], "--classes must be an integer from 2 to 65535"),
        (["--classes", "70000"], "--classes must be an integer from 2 to 65535"),
        (["--seed", "-1"], "--seed must be a non-negative integer"),
        (["--dtype", "float64"], "--dtype must be one of float16, float32"),
        (["--format", "hdf5"], "--format must be one of npy, zarr"),
        (["--corrupt-fraction", "1.5"], "--corrupt-fraction must be a number from 0 to 1"),
        (["--class-names", "a,b"], "gives 2 names but --classes is 6"),
        (["--class-names", "a,b,c,d,e,a"], "must not repeat a name"),
        (["--class-names", "a,b,,d,e,f"], "must not contain empty names"),
    ],
)
def test_bad_arguments_exit_2_with_one_line_and_write_nothing(tmp_path, args, message):
    options = dict(zip(SMALL[::2], SMALL[1::2], strict=True))
    options.update({"--seed": "0"})
    options.update(dict(zip(args[::2], args[1::2], strict=True)))
    out = tmp_path / "ds"
    result = synth(out, *[item for pair in options.items() for item in pair])
    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output
    assert not out.exists()


def test_existing_non_empty_output_is_refused_unless_forced(tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    result = synth(out, *SMALL, "--seed", 0)
    assert result.exit_code == 2
    assert "is not empty" in result.stderr and "--force" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    with pytest.raises(OutputNotEmptyError):
        generate(out, images=1, height=8, width=8, classes=2, seed=0)

    assert synth(out, *SMALL, "--seed", 0, "--format", "zarr", "--force", "-q").exit_code == 0
    assert synth(out, *SMALL, "--seed", 0, "--force", "-q").exit_code == 0
    # the earlier zarr dataset is replaced, not left beside the new one; other files stay
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{n}.npy" for n in NPY_FILES] + ["classes.txt", "synth.json", "notes.txt"]
    )


def test_an_empty_existing_folder_is_used_and_a_file_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    assert synth(tmp_path / "empty", *SMALL, "--seed", 0, "-q").exit_code == 0
    (tmp_path / "file").write_text("x")
    result = synth(tmp_path / "file", *SMALL, "--seed", 0)
    assert result.exit_code == 2 and "is a file" in result.stderr


def test_not_enough_disk_space_is_refused_up_front(tmp_path, monkeypatch):
    monkeypatch.setattr(synth_output.shutil, "disk_usage", lambda path: _Usage(0, 0, 1000))
    result = synth(tmp_path / "ds", *SMALL, "--seed", 0)
    assert result.exit_code == 2
    assert "the dataset needs" in result.stderr and "GB free" in result.stderr
    assert not (tmp_path / "ds").exists()


class _Usage(NamedTuple):
    total: int
    used: int
    free: int


def test_cli_summary_line(tmp_path):
    result = synth(tmp_path / "ds", *SMALL, "--seed", 0)
    assert result.exit_code == 0
    assert result.output.strip() == (
        f"Wrote 6 images (40×56, 6 classes, 2 with annotation errors) to {tmp_path / 'ds'}."
    )


def test_library_rejects_bad_types():
    with pytest.raises(SynthOptionError, match="--images"):
        generate("unused", images=2.5, height=8, width=8, classes=2, seed=0)  # type: ignore[arg-type]
    with pytest.raises(SynthOptionError, match="--classes"):
        generate("unused", images=1, height=8, width=8, classes=True, seed=0)  # type: ignore[arg-type]
    assert not Path("unused").exists()


def test_progress_is_reported():
    class Recorder:
        def __init__(self) -> None:
            self.calls: list[tuple] = []

        def start(self, description: str, total: int) -> None:
            self.calls.append(("start", total))

        def advance(self, amount: int = 1) -> None:
            self.calls.append(("advance", amount))

        def finish(self) -> None:
            self.calls.append(("finish",))

    recorder = Recorder()
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        generate(
            Path(folder) / "ds", images=3, height=8, width=8, classes=3, seed=0, progress=recorder
        )
    assert recorder.calls == [("start", 3)] + [("advance", 1)] * 3 + [("finish",)]


# --- the stacked layout's bytes do not move ----------------------------------------------

# sha256 of a small float16 dataset (5 images 24x32, 7 classes, seed 13, 60% corrupted), as
# the generator wrote it before it became a package. pred_probs come from BLAS matrix
# products whose last bit depends on the CPU's kernels, so they are pinned by their argmax
# and per-image sums instead of their bytes.
PINNED_KWARGS = dict(
    images=5, height=24, width=32, classes=7, seed=13, dtype="float16", corrupt_fraction=0.6
)
PINNED_SHA256 = {
    "classes.txt": "3dc705ccc5f120b9e2b5c80ec18bdf35d839e879482ed108ad5dd7f930b710b4",
    "images.npy": "0fb818901b8bf9ec446c7b9058c64fd83cc664d4decf0fff212a86b49b6dc1b5",
    "is_corrupted.npy": "89fb505414b6e859a17ea89c179f6f161e4440c1ced4a990116e2d402ab9d28c",
    "labels.npy": "860beadc20be905716d9a3fc86f25f295f71b3d26d5962da7f8e9c62004841a8",
    "true_labels.npy": "22806cd415fc1213465176d1fd9fd36519a3d8ab36af6451a0e15601539bfa02",
}
PINNED_REPORT_SHA256 = "0fafab219cae437401c5242017303bd2667ed4eebe00715b486794f15a25f741"
PINNED_ARGMAX_SHA256 = "ce6ca99ca5210110c01f9e298f59bac3fb75d71e6a8924881d68349b2e0e2d30"
PINNED_PROBS_SUMS = [768.0010632, 768.0038739, 768.0017693, 767.9982345, 768.0017585]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_stacked_files_are_the_ones_written_before_the_split(tmp_path):
    out = tmp_path / "ds"
    generate(out, **PINNED_KWARGS)
    assert {name: sha256((out / name).read_bytes()) for name in PINNED_SHA256} == PINNED_SHA256
    report = json.loads((out / "synth.json").read_text())
    report.pop("generator")  # names the version
    assert sha256(json.dumps(report, sort_keys=True).encode()) == PINNED_REPORT_SHA256
    probs = load(out, "pred_probs")
    assert sha256(probs.argmax(axis=1).astype(np.uint8).tobytes()) == PINNED_ARGMAX_SHA256
    sums = probs.astype(np.float64).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(sums, PINNED_PROBS_SUMS, rtol=1e-8)


# --- the folder layout -------------------------------------------------------------------

FOLDER_NAMES = "road,sidewalk,building,vegetation,sky,person,car,bicycle"
FOLDER_ARGS = [
    "--images", 10, "--sizes", "48x64,40x56", "--classes", 8, "--seed", 3,
    "--dtype", "float16", "--corrupt-fraction", 0.4, "--class-names", FOLDER_NAMES,
    "--layout", "folder",
]  # fmt: skip


def png(path: Path) -> tuple[str, np.ndarray]:
    with Image.open(path) as image:
        return image.mode, np.asarray(image)


def folder_ids(out: Path) -> list[str]:
    return sorted(p.stem for p in (out / "labels").iterdir())


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """10 images in two sizes, 8 classes, float16, 40% corrupted, as a folder."""
    out = tmp_path_factory.mktemp("synth") / "folder"
    result = synth(out, *FOLDER_ARGS, "--quiet")
    assert result.exit_code == 0, result.output
    assert result.output == ""
    return out


def test_folder_layout_has_one_file_per_image_and_kind(folder):
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [*FOLDER_KINDS, "classes.txt", "is_corrupted.csv", "synth.json"]
    )
    ids = [f"img_{i:05d}" for i in range(10)]
    for kind, suffix in FOLDER_KINDS.items():
        assert sorted(p.name for p in (folder / kind).iterdir()) == [f"{i}{suffix}" for i in ids]
    assert (folder / "classes.txt").read_text().splitlines() == FOLDER_NAMES.split(",")


def test_folder_files_have_the_promised_formats(folder):
    for image_id in folder_ids(folder):
        label_mode, labels = png(folder / "labels" / f"{image_id}.png")
        truth_mode, truth = png(folder / "true_labels" / f"{image_id}.png")
        photo_mode, photo = png(folder / "images" / f"{image_id}.png")
        probs = np.load(folder / "pred_probs" / f"{image_id}.npy", allow_pickle=False)
        assert (label_mode, truth_mode, photo_mode) == ("L", "L", "RGB")
        h, w = labels.shape
        assert truth.shape == (h, w) and photo.shape == (h, w, 3)
        assert probs.shape == (8, h, w) and probs.dtype == np.float16
        assert labels.max() < 8 and truth.max() < 8
        summed = probs.astype(np.float32).sum(axis=0)
        np.testing.assert_allclose(summed, 1, atol=2e-3)  # float16 rounding
        assert (probs >= 0).all()


def test_folder_images_come_in_the_given_sizes(folder):
    sizes = {}
    for image_id in folder_ids(folder):
        with Image.open(folder / "labels" / f"{image_id}.png") as image:
            sizes[image_id] = image.size[::-1]
    assert set(sizes.values()) == {(48, 64), (40, 56)}
    report = json.loads((folder / "synth.json").read_text())
    counted = {f"{h}x{w}": list(sizes.values()).count((h, w)) for h, w in [(48, 64), (40, 56)]}
    assert report["image_sizes"] == counted == {"48x64": 5, "40x56": 5}
    assert report["parameters"]["sizes"] == [[48, 64], [40, 56]]


def test_folder_labels_differ_from_the_truth_exactly_on_corrupted_images(folder):
    report = json.loads((folder / "synth.json").read_text())
    noisy_pixels = 0
    differs = []
    for image_id in folder_ids(folder):
        labels = png(folder / "labels" / f"{image_id}.png")[1]
        truth = png(folder / "true_labels" / f"{image_id}.png")[1]
        differs.append((labels != truth).any())
        noisy_pixels += int((labels != truth).sum())
    assert np.flatnonzero(differs).tolist() == report["corrupted_images"]
    assert len(report["corrupted_images"]) == round(0.4 * 10)
    assert report["noisy_pixels"] == noisy_pixels


def test_folder_is_corrupted_csv_agrees_with_synth_json(folder):
    rows = read_csv(folder / "is_corrupted.csv")
    assert list(rows[0]) == ["id", "is_corrupted"]
    assert [row["id"] for row in rows] == folder_ids(folder)
    assert {row["is_corrupted"] for row in rows} == {"0", "1"}
    flagged = [row["id"] for row in rows if row["is_corrupted"] == "1"]
    report = json.loads((folder / "synth.json").read_text())
    assert report["corrupted_ids"] == flagged
    assert report["corrupted_ids"] == [f"img_{i:05d}" for i in report["corrupted_images"]]
    assert [c["id"] for c in report["corruptions"]] == flagged
    assert [c["image"] for c in report["corruptions"]] == report["corrupted_images"]


def test_folder_same_seed_same_bytes_other_seed_other_data(tmp_path, folder):
    assert synth(tmp_path / "again", *FOLDER_ARGS, "-q").exit_code == 0
    assert tree_bytes(tmp_path / "again") == tree_bytes(folder)
    other = [str(a) for a in FOLDER_ARGS]
    other[other.index("--seed") + 1] = "4"
    assert synth(tmp_path / "other", *other, "-q").exit_code == 0
    assert tree_bytes(tmp_path / "other") != tree_bytes(folder)


@pytest.mark.parametrize(
    ("classes", "dtype", "label_mode", "label_dtype"),
    [(3, "float32", "L", np.uint8), (300, "float16", "I;16", np.uint16)],
)
def test_folder_dtypes(tmp_path, classes, dtype, label_mode, label_dtype):
    out = tmp_path / "ds"
    report = generate(
        out, images=2, height=16, width=24, classes=classes, seed=1, dtype=dtype,
        layout="folder", corrupt_fraction=1,
    )  # fmt: skip
    mode, labels = png(out / "labels" / "img_00001.png")
    assert mode == label_mode and labels.dtype == label_dtype and labels.shape == (16, 24)
    assert png(out / "true_labels" / "img_00001.png")[0] == label_mode
    probs = np.load(out / "pred_probs" / "img_00001.npy", allow_pickle=False)
    assert probs.dtype == np.dtype(dtype) and probs.shape == (classes, 16, 24)
    assert report["files"]["labels"]["mode"] == label_mode
    assert report["files"]["pred_probs"]["dtype"] == dtype


def test_folder_with_height_and_width_has_one_size_and_the_stacked_pixels(tmp_path):
    kwargs = dict(images=4, height=24, width=40, classes=5, seed=9, corrupt_fraction=0.5)
    generate(tmp_path / "stacked", **kwargs)
    generate(tmp_path / "folder", layout="folder", **kwargs)
    folder = tmp_path / "folder"
    for i, image_id in enumerate(folder_ids(folder)):
        np.testing.assert_array_equal(
            png(folder / "labels" / f"{image_id}.png")[1], load(tmp_path / "stacked", "labels")[i]
        )
        np.testing.assert_array_equal(
            png(folder / "true_labels" / f"{image_id}.png")[1],
            load(tmp_path / "stacked", "true_labels")[i],
        )
        np.testing.assert_array_equal(
            png(folder / "images" / f"{image_id}.png")[1], load(tmp_path / "stacked", "images")[i]
        )
        np.testing.assert_array_equal(
            np.load(folder / "pred_probs" / f"{image_id}.npy"),
            load(tmp_path / "stacked", "pred_probs")[i],
        )
    report = json.loads((folder / "synth.json").read_text())
    assert report["image_sizes"] == {"24x40": 4}
    assert report["parameters"]["sizes"] == [[24, 40]]


def test_folder_probabilities_made_in_row_bands_match_whole_images(tmp_path, monkeypatch):
    kwargs = dict(images=2, sizes="24x32,20x30", classes=300, seed=4, layout="folder")
    whole = generate(tmp_path / "whole", **kwargs)
    monkeypatch.setattr(synth_image, "PROBS_BAND_BYTES", 300 * 32 * 4 * 5)  # 5 rows
    banded = generate(tmp_path / "banded", **kwargs)
    assert whole == banded
    for image_id in folder_ids(tmp_path / "whole"):
        a = np.load(tmp_path / "whole" / "pred_probs" / f"{image_id}.npy")
        b = np.load(tmp_path / "banded" / "pred_probs" / f"{image_id}.npy")
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_ids_are_zero_padded_to_the_image_count():
    assert [id_digits(n) for n in (1, 8, 99_999, 100_000, 123_456, 10**7)] == [5, 5, 5, 6, 6, 8]


def test_sizes_are_dealt_evenly_and_shuffled_by_the_seed():
    sizes = ((10, 20), (30, 40), (50, 60))
    first = assign_sizes(0, 10, sizes)
    assert first.shape == (10, 2)
    np.testing.assert_array_equal(first, assign_sizes(0, 10, sizes))
    counts = sorted(first.tolist().count(list(size)) for size in sizes)
    assert counts == [3, 3, 4]
    orders = {tuple(map(tuple, assign_sizes(seed, 10, sizes).tolist())) for seed in range(5)}
    assert len(orders) > 1
    assert (assign_sizes(0, 3, ((7, 8),)) == [7, 8]).all()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sizes", "96x0"], "--sizes must be a comma-separated list of HxW sizes"),
        (["--sizes", "96"], "--sizes must be a comma-separated list of HxW sizes"),
        (["--sizes", "96x128,"], "got '96x128,'"),
        (["--sizes", "-5x10"], "got '-5x10'"),
        (["--sizes", "axb"], "such as 96x128,80x112, got 'axb'"),
        (["--sizes", "1.5x2"], "got '1.5x2'"),
        (["--sizes", "96x128", "--height", "96"], "pass either --sizes or --height and --width"),
        (["--sizes", "8x8,9x9", "--layout", "stacked"], "several sizes needs --layout folder"),
        (["--format", "zarr"], "--format zarr applies to the stacked layout"),
        (["--layout", "tiles"], "--layout must be one of stacked, folder"),
    ],
)
def test_bad_folder_options_exit_2_with_one_line_and_write_nothing(tmp_path, args, message):
    options = {"--images": "3", "--classes": "4", "--seed": "0", "--layout": "folder"}
    options["--sizes"] = "8x8"
    options.update(dict(zip(args[::2], args[1::2], strict=True)))
    out = tmp_path / "ds"
    result = synth(out, *[item for pair in options.items() for item in pair])
    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output
    assert not out.exists()


def test_a_size_is_required(tmp_path):
    result = synth(tmp_path / "ds", "--images", 2, "--classes", 3, "--seed", 0, "--width", 8)
    assert result.exit_code == 2
    assert "give the image size with --height and --width, or with --sizes" in result.stderr
    with pytest.raises(SynthOptionError, match="--sizes must be"):
        generate(tmp_path / "ds", images=1, sizes=[(4, 0)], classes=2, seed=0, layout="folder")


def test_one_size_in_sizes_works_for_the_stacked_layout(tmp_path):
    generate(tmp_path / "a", images=2, sizes="12x20", classes=3, seed=5)
    generate(tmp_path / "b", images=2, height=12, width=20, classes=3, seed=5)
    assert tree_bytes(tmp_path / "a") == tree_bytes(tmp_path / "b")


def test_folder_cli_summary_line(tmp_path):
    result = synth(tmp_path / "ds", *FOLDER_ARGS)
    assert result.exit_code == 0
    assert result.output.strip() == (
        f"Wrote 10 images (48×64 or 40×56, 8 classes, 4 with annotation errors) "
        f"to {tmp_path / 'ds'}."
    )


def test_force_replaces_a_dataset_of_the_other_layout(tmp_path):
    out = tmp_path / "ds"
    assert synth(out, *SMALL, "--seed", 0, "-q").exit_code == 0
    assert synth(out, *SMALL, "--seed", 0, "--layout", "folder", "--force", "-q").exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [*FOLDER_KINDS, "classes.txt", "is_corrupted.csv", "synth.json"]
    )
    assert synth(out, *SMALL, "--seed", 0, "--force", "-q").exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{n}.npy" for n in NPY_FILES] + ["classes.txt", "synth.json"]
    )


def test_a_failed_folder_dataset_is_removed(tmp_path, monkeypatch):
    def fail(path: Path, pixels: np.ndarray) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("segaudit.synth.folder.write_png", fail)
    result = synth(tmp_path / "ds", *FOLDER_ARGS)
    assert result.exit_code == 2
    assert "could not write the dataset" in result.stderr and "disk full" in result.stderr
    assert not (tmp_path / "ds").exists()


def test_folder_dataset_opens_as_a_folder_dataset(folder):
    sources = pytest.importorskip("segaudit.sources")
    dataset = sources.open_dataset(sources.DatasetSpec(dataset=folder))
    assert list(dataset.ids) == folder_ids(folder)
    assert dataset.num_classes == 8
    assert list(dataset.class_names) == FOLDER_NAMES.split(",")


# --- sample_data/folder ------------------------------------------------------------------


def readme_command(readme: Path) -> list[str]:
    """The ``segaudit synth`` command in a README's sh block, as arguments."""
    block = re.search(r"```sh\n(segaudit synth .*?)\n```", readme.read_text(), re.DOTALL)
    assert block, f"{readme} shows no `segaudit synth` command"
    return shlex.split(block.group(1).replace("\\\n", " "))


def assert_same_probabilities(path: Path, expected: bytes) -> None:
    """Same header and values, but for at most one float16 step: BLAS kernels differ
    between CPUs in the last bit of the float32 products the probabilities come from."""
    made = np.load(path, allow_pickle=False)
    kept = np.lib.format.read_array(io.BytesIO(expected), allow_pickle=False)
    assert made.shape == kept.shape and made.dtype == kept.dtype
    step = np.spacing(np.maximum(np.abs(made), np.abs(kept)))
    assert (np.abs(made.astype(np.float32) - kept.astype(np.float32)) <= step).all()


@pytest.mark.skipif(not SAMPLE_FOLDER.is_dir(), reason="sample_data/folder not generated")
def test_sample_folder_is_what_its_readme_command_makes(tmp_path):
    command = readme_command(SAMPLE_FOLDER / "README.md")
    assert command[:3] == ["segaudit", "synth", "sample_data/folder"]
    out = tmp_path / "folder"
    result = synth(out, *command[3:], "-q")
    assert result.exit_code == 0, result.output
    kept = tree_bytes(SAMPLE_FOLDER)
    kept.pop("README.md")
    made = tree_bytes(out)
    assert sorted(made) == sorted(kept)
    for name, data in made.items():
        if data != kept[name] and name.startswith("pred_probs/"):
            assert_same_probabilities(out / name, kept[name])
        else:
            assert data == kept[name], name
    report = json.loads(kept["synth.json"])
    assert report["image_sizes"] == {"96x128": 4, "80x112": 4}


# --- error maps --------------------------------------------------------------------------


def assert_map_matches_events(error_map: np.ndarray, noisy: np.ndarray, truth: np.ndarray, events):
    """Non-zero exactly where the labels are wrong; event e's pixels lie in its box, are at
    most its changed pixels, and are exactly them when no two events overlap."""
    assert error_map.dtype == np.uint16 and error_map.shape == noisy.shape
    np.testing.assert_array_equal(error_map > 0, noisy != truth)
    assert int(error_map.max(initial=0)) <= len(events)
    counts = np.bincount(error_map.ravel(), minlength=len(events) + 1)[1:]
    for number, (event, count) in enumerate(zip(events, counts, strict=True), start=1):
        assert event["kind"] in ERROR_KINDS and count <= event["pixels"]
        y0, x0, y1, x1 = event["box"]
        assert count == np.count_nonzero(error_map[y0:y1, x0:x1] == number)
    if sum(event["pixels"] for event in events) == int(np.count_nonzero(noisy != truth)):
        assert counts.tolist() == [event["pixels"] for event in events]  # no overlaps


def test_error_maps_match_the_events_of_synth_json(dataset):
    errors = load(dataset, "errors")
    labels, truth = load(dataset, "labels"), load(dataset, "true_labels")
    report = json.loads((dataset / "synth.json").read_text())
    events = {entry["image"]: entry["events"] for entry in report["corruptions"]}
    exact = 0
    for i in range(len(errors)):
        assert_map_matches_events(errors[i], labels[i], truth[i], events.get(i, []))
        counts = np.bincount(errors[i].ravel())[1:]
        exact += counts.tolist() == [event["pixels"] for event in events.get(i, [])]
    assert not errors[~load(dataset, "is_corrupted")].any()
    assert exact >= len(events) - 1  # most images have no overlapping events
    assert "errors" not in report["files"]  # synth.json keeps the keys it always had


def test_folder_error_maps_are_16_bit_pngs_matching_the_events(folder):
    report = json.loads((folder / "synth.json").read_text())
    events = {entry["id"]: entry["events"] for entry in report["corruptions"]}
    for image_id in folder_ids(folder):
        mode, error_map = png(folder / "errors" / f"{image_id}.png")
        assert mode == "I;16"
        labels = png(folder / "labels" / f"{image_id}.png")[1]
        truth = png(folder / "true_labels" / f"{image_id}.png")[1]
        assert_map_matches_events(error_map, labels, truth, events.get(image_id, []))
        assert error_map.any() == (image_id in events)


def test_folder_error_maps_equal_the_stacked_ones(tmp_path):
    kwargs = dict(images=5, height=24, width=40, classes=5, seed=9, corrupt_fraction=0.6)
    generate(tmp_path / "stacked", **kwargs)
    generate(tmp_path / "zarr", fmt="zarr", **kwargs)
    generate(tmp_path / "folder", layout="folder", **kwargs)
    stacked = load(tmp_path / "stacked", "errors")
    np.testing.assert_array_equal(stacked, load(tmp_path / "zarr", "errors", "zarr"))
    for i, image_id in enumerate(folder_ids(tmp_path / "folder")):
        np.testing.assert_array_equal(
            png(tmp_path / "folder" / "errors" / f"{image_id}.png")[1], stacked[i]
        )
    assert stacked.any()


def test_error_maps_are_deterministic_and_follow_the_seed(tmp_path):
    kwargs = dict(images=6, height=32, width=40, classes=6, corrupt_fraction=1.0)
    generate(tmp_path / "a", seed=21, **kwargs)
    generate(tmp_path / "b", seed=21, **kwargs)
    generate(tmp_path / "c", seed=22, **kwargs)
    a = (tmp_path / "a" / "errors.npy").read_bytes()
    assert a == (tmp_path / "b" / "errors.npy").read_bytes()
    assert a != (tmp_path / "c" / "errors.npy").read_bytes()


def recording(monkeypatch) -> list[tuple[np.ndarray, np.ndarray, dict | None]]:
    """Wrap every error injector to record the labels before and after each call."""
    calls: list[tuple[np.ndarray, np.ndarray, dict | None]] = []

    def wrap(inject):
        def recorded(rng, noisy, *args):
            before = noisy.copy()
            event = inject(rng, noisy, *args)
            calls.append((before, noisy.copy(), event))
            return event

        return recorded

    for kind, inject in list(annotation_errors._OBJECT_ERRORS.items()):
        monkeypatch.setitem(annotation_errors._OBJECT_ERRORS, kind, wrap(inject))
    monkeypatch.setattr(annotation_errors, "_add_spurious", wrap(annotation_errors._add_spurious))
    return calls


def test_error_map_gives_overlaps_to_the_later_event(monkeypatch):
    """Against a replay: each pixel belongs to the last recorded event that changed it."""
    calls = recording(monkeypatch)
    world = World.build(5, list(DEFAULT_CLASS_NAMES[:8]))
    overlaps = 0
    for i in range(40):
        scene = make_scene(rng(5, SCENE, i), 40, 48, world)
        calls.clear()
        noisy, events, error_map = annotation_errors.corrupt_with_map(
            rng(5, ERRORS, i), scene, world
        )
        expected = np.zeros(noisy.shape, np.uint16)
        numbered = [(b, a) for b, a, event in calls if event is not None and event["pixels"] > 0]
        changed_by = np.zeros(noisy.shape, np.int64)
        for number, (before, after) in enumerate(numbered, start=1):
            expected[after != before] = number
            changed_by += after != before
        expected[noisy == scene.truth] = 0
        np.testing.assert_array_equal(error_map, expected)
        assert len(numbered) == len(events)
        overlaps += int((changed_by > 1).any())
        again, same_events = annotation_errors.corrupt(rng(5, ERRORS, i), scene, world)
        np.testing.assert_array_equal(again, noisy)
        assert same_events == events
    assert overlaps > 0  # the replay did exercise overlapping events


@pytest.mark.skipif(not (SAMPLE_STACKED / "errors.npy").is_file(), reason="not generated")
def test_sample_data_is_what_its_readme_command_makes(tmp_path):
    command = readme_command(SAMPLE_STACKED / "README.md")
    assert command[:3] == ["segaudit", "synth", "sample_data"]
    out = tmp_path / "sample"
    result = synth(out, *command[3:], "-q")
    assert result.exit_code == 0, result.output
    for path in sorted(out.iterdir()):
        kept = (SAMPLE_STACKED / path.name).read_bytes()
        if path.name == "pred_probs.npy" and path.read_bytes() != kept:
            assert_same_probabilities(path, kept)
        else:
            assert path.read_bytes() == kept, path.name


def _accuracy(folder: Path) -> float:
    probs = np.load(folder / "pred_probs.npy")
    truth = np.load(folder / "true_labels.npy")
    return float((probs.argmax(axis=1) == truth).mean())


def test_the_hard_difficulty_has_a_surer_model_and_small_errors(tmp_path):
    made = {}
    for difficulty in ("standard", "hard"):
        out = tmp_path / difficulty
        args = ["synth", str(out), "--images", "10", "--height", "128", "--width", "256",
                "--classes", "19", "--seed", "5", "--corrupt-fraction", "0.5", "-q",
                "--difficulty", difficulty]  # fmt: skip
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        made[difficulty] = json.loads((out / "synth.json").read_text())
    assert "difficulty" not in made["standard"]["parameters"]  # earlier files unchanged
    assert made["hard"]["parameters"]["difficulty"] == "hard"
    assert _accuracy(tmp_path / "hard") > max(0.95, _accuracy(tmp_path / "standard"))
    events = {d: [e for c in made[d]["corruptions"] for e in c["events"]] for d in made}
    assert all(e["radius"] <= 2 for e in events["hard"] if e["kind"] == "boundary_shifted")
    pixels = {d: np.mean([e["pixels"] for e in events[d]]) for d in made}
    assert pixels["hard"] < pixels["standard"]
    labels, truth = np.load(tmp_path / "hard" / "labels.npy"), np.load(
        tmp_path / "hard" / "true_labels.npy"
    )
    assert 0 < (labels != truth).mean() < 0.01


def test_an_unknown_difficulty_is_refused_before_anything_is_written(tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["synth", str(out), "--images", "2", "--height", "32",
                                 "--width", "32", "--classes", "3", "--seed", "0",
                                 "--difficulty", "brutal"])  # fmt: skip
    assert result.exit_code == 2
    assert "--difficulty" in result.output and "brutal" in result.output
    assert not out.exists()
