"""`segaudit synth` and :func:`segaudit.synth.generate`: the synthetic dataset generator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

import segaudit.synth as synth_module
from segaudit.cli import app
from segaudit.synth import ERROR_KINDS, OutputNotEmptyError, SynthOptionError, generate

runner = CliRunner()
SMALL = ["--images", "6", "--height", "40", "--width", "56", "--classes", "6"]
NPY_FILES = ["labels", "pred_probs", "images", "true_labels", "is_corrupted"]


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
    monkeypatch.setattr(synth_module, "_PROBS_BAND_BYTES", 300 * 32 * 4 * 5)  # 5 rows
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
    monkeypatch.setattr(synth_module.shutil, "disk_usage", lambda path: _Usage(0, 0, 1000))
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
