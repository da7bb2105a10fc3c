"""`segaudit synth --volumes` and :func:`segaudit.synth.generate_volumes`: nnU-Net's layout."""

from __future__ import annotations

import builtins
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from segaudit.cli import app
from segaudit.errors import InvalidInputError
from segaudit.synth import VOLUME_ERROR_KINDS, generate_volumes
from segaudit.synth.options import SynthOptionError
from segaudit.synth.volume_files import SPACING_XYZ, volume_affine, write_nifti
from segaudit.synth.volume_options import parse_shapes
from segaudit.synth.volumes import slab_slices

nib = pytest.importorskip("nibabel")

runner = CliRunner()
SHAPES = "12x24x28,10x20x24"  # every axis different: a transposed array cannot pass
SMALL = ["--volumes", "--images", "4", "--classes", "5", "--seed", "3"]
FOLDERS = ("imagesTr", "labelsTr", "predictions", "true_labels")


def synth(*args: object):
    return runner.invoke(app, ["synth", *[str(a) for a in args]], catch_exceptions=False)


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def nifti(path: Path) -> np.ndarray:
    """A NIfTI file's array in (z, y, x), as nnU-Net reads it."""
    return np.asarray(nib.load(path).dataobj).T


def probabilities(path: Path) -> np.ndarray:
    with np.load(path) as archive:
        return archive["probabilities"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("volumes") / "ds"
    args = [*SMALL, "--shape", SHAPES, "--dtype", "float16", "--corrupt-fraction", 0.5]
    result = synth(out, *args, "--quiet")
    assert result.exit_code == 0, result.output
    assert result.output == ""
    return out


@pytest.fixture(scope="module")
def report(dataset) -> dict:
    return json.loads((dataset / "errors.json").read_text())


def cases(dataset: Path) -> list[str]:
    return sorted(p.name.removesuffix(".nii.gz") for p in (dataset / "labelsTr").iterdir())


def test_writes_nnunet_raw_layout(dataset, report):
    assert sorted(p.name for p in dataset.iterdir()) == sorted(
        [*FOLDERS, "dataset.json", "errors.json", "is_corrupted.csv"]
    )
    names = ["case_000", "case_001", "case_002", "case_003"]
    assert cases(dataset) == names
    assert sorted(p.name for p in (dataset / "imagesTr").iterdir()) == [
        f"{n}_0000.nii.gz" for n in names
    ]
    truth = sorted(p.name for p in (dataset / "true_labels").iterdir())
    assert truth == [f"{n}.nii.gz" for n in names]
    assert sorted(p.name for p in (dataset / "predictions").iterdir()) == [
        f"{n}.npz" for n in names
    ]
    shapes = {tuple(c["shape"]) for c in report["cases"]}
    assert shapes == {(12, 24, 28), (10, 20, 24)}  # both shapes dealt out
    for entry in report["cases"]:
        case, shape = entry["case"], tuple(entry["shape"])
        label = nib.load(dataset / "labelsTr" / f"{case}.nii.gz")
        assert label.shape == shape[::-1]  # NIfTI arrays are (x, y, z)
        assert label.get_data_dtype() == np.uint8
        assert nifti(dataset / "true_labels" / f"{case}.nii.gz").dtype == np.uint8
        image = nifti(dataset / "imagesTr" / f"{case}_0000.nii.gz")
        assert image.shape == shape and image.dtype == np.int16
        probs = probabilities(dataset / "predictions" / f"{case}.npz")
        assert probs.shape == (5, *shape) and probs.dtype == np.float16


def test_dataset_json(dataset):
    assert json.loads((dataset / "dataset.json").read_text()) == {
        "channel_names": {"0": "CT"},
        "labels": {"background": 0, "liver": 1, "spleen": 2, "kidney_right": 3, "kidney_left": 4},
        "numTraining": 4,
        "file_ending": ".nii.gz",
        "name": "segaudit synth volumes, seed 3",
    }


def test_nifti_round_trip_is_the_transpose_with_a_tilted_affine(tmp_path):
    vol = np.random.default_rng(0).integers(0, 5, size=(3, 4, 5), dtype=np.uint8)
    write_nifti(tmp_path / "v.nii.gz", vol, volume_affine())
    image = nib.load(tmp_path / "v.nii.gz")
    np.testing.assert_array_equal(np.asarray(image.dataobj), vol.T)
    assert image.get_data_dtype() == np.uint8
    np.testing.assert_allclose(image.affine, volume_affine(), atol=1e-5)
    assert not np.allclose(image.affine[:3, :3], np.diag(np.diag(image.affine[:3, :3])))
    assert np.any(image.affine[:3, 3] != 0)
    np.testing.assert_allclose(image.header.get_zooms(), SPACING_XYZ, rtol=1e-6)
    assert image.header.get_xyzt_units()[0] == "mm"
    assert image.header["qform_code"] == image.header["sform_code"] == 1
    np.testing.assert_allclose(image.get_qform(), image.get_sform(), atol=1e-5)


def test_files_share_the_geometry_and_probabilities_match_the_axes(dataset, report):
    for case in cases(dataset):
        for path in (
            f"labelsTr/{case}.nii.gz",
            f"true_labels/{case}.nii.gz",
            f"imagesTr/{case}_0000.nii.gz",
        ):
            np.testing.assert_allclose(nib.load(dataset / path).affine, report["affine"], atol=1e-5)
        truth = nifti(dataset / "true_labels" / f"{case}.nii.gz")
        probs = probabilities(dataset / "predictions" / f"{case}.npz")
        assert (probs.argmax(axis=0) == truth).mean() > 0.9  # same (z, y, x) axes


def test_probabilities_are_distributions(dataset):
    for case in cases(dataset):
        probs = probabilities(dataset / "predictions" / f"{case}.npz").astype(np.float32)
        assert np.isfinite(probs).all() and (probs >= 0).all()
        np.testing.assert_allclose(probs.sum(axis=0), 1, atol=2e-3)  # float16 rounding


def test_ct_image_is_hounsfield_like(dataset):
    image = nifti(dataset / "imagesTr" / "case_000_0000.nii.gz")
    truth = nifti(dataset / "true_labels" / "case_000.nii.gz")
    assert image.min() < -900  # air around the body
    assert image.max() > 400  # bone
    organs = [np.median(image[truth == k]) for k in range(1, 5) if (truth == k).any()]
    assert len(set(np.round(organs, -1))) == len(organs)  # organs are told apart


def test_injected_errors_are_where_the_labels_differ(dataset, report):
    assert len(report["corrupted_cases"]) == 2
    total = 0
    for case in cases(dataset):
        labels = nifti(dataset / "labelsTr" / f"{case}.nii.gz")
        truth = nifti(dataset / "true_labels" / f"{case}.nii.gz")
        events = [e for e in report["errors"] if e["case"] == case]
        differs = labels != truth
        assert differs.any() == (case in report["corrupted_cases"])
        assert sum(e["voxels"] for e in events) == np.count_nonzero(differs)
        total += np.count_nonzero(differs)
        covered = np.zeros_like(differs)
        for event in events:
            assert event["kind"] in VOLUME_ERROR_KINDS and event["voxels"] > 0
            z0, y0, x0, z1, y1, x1 = event["bbox"]
            covered[z0:z1, y0:y1, x0:x1] = True
        assert not (differs & ~covered).any()
    assert report["noisy_voxels"] == total


def test_each_kind_of_error_does_what_it_says(tmp_path):
    out = tmp_path / "all"
    report = generate_volumes(out, volumes=6, classes=6, seed=5, corrupt_fraction=1.0)
    assert {e["kind"] for e in report["errors"]} == set(VOLUME_ERROR_KINDS)
    for event in report["errors"]:
        labels = nifti(out / "labelsTr" / f"{event['case']}.nii.gz")
        truth = nifti(out / "true_labels" / f"{event['case']}.nii.gz")
        organ = truth == event["label"]
        if event["kind"] == "slices_missing":
            z0, z1 = event["slices"]
            assert (labels[z0:z1][organ[z0:z1]] == 0).all()
            assert event["bbox"][0] >= z0 and event["bbox"][3] <= z1
        elif event["kind"] == "class_swapped":
            assert (labels[organ] == event["new_label"]).all()
            assert event["voxels"] == np.count_nonzero(organ)
        else:
            assert event["voxels_off"] == 2
            grown = (labels == event["label"]) & ~organ
            assert grown.any()
            if event["mode"] == "dilated":  # grown by 2 voxels in-plane, into the background
                assert (truth[grown] == 0).all()
                assert (labels[organ] == event["label"]).all()


def test_same_seed_same_bytes_other_seed_other_data(tmp_path):
    args = [*SMALL, "--shape", "8x16x12", "--void-fraction", 0.2, "-q"]
    assert synth(tmp_path / "a", *args).exit_code == 0
    assert synth(tmp_path / "b", *args).exit_code == 0
    assert tree_bytes(tmp_path / "a") == tree_bytes(tmp_path / "b")
    with zipfile.ZipFile(tmp_path / "a" / "predictions" / "case_000.npz") as archive:
        (member,) = archive.infolist()
        assert member.filename == "probabilities.npy" and member.date_time[0] == 1980
    other = [*args[:6], "4", *args[7:]]  # --seed 4
    assert synth(tmp_path / "c", *other).exit_code == 0
    assert tree_bytes(tmp_path / "c") != tree_bytes(tmp_path / "a")


def test_void_slices_carry_the_ignore_label(tmp_path):
    out = tmp_path / "void"
    generate_volumes(out, volumes=2, classes=4, seed=1, shapes="20x16x16", void_fraction=0.25)
    labels_json = json.loads((out / "dataset.json").read_text())["labels"]
    assert labels_json["ignore"] == 4 == max(labels_json.values())
    for case in ("case_000", "case_001"):
        labels = nifti(out / "labelsTr" / f"{case}.nii.gz")
        truth = nifti(out / "true_labels" / f"{case}.nii.gz")
        void = (labels == 4).all(axis=(1, 2))
        assert void.sum() == 5  # round(0.25 * 20) whole slices
        assert not (labels[~void] == 4).any()
        np.testing.assert_array_equal(truth == 4, labels == 4)
        assert probabilities(out / "predictions" / f"{case}.npz").shape[0] == 4


def test_slabs_do_not_change_the_data(tmp_path, monkeypatch):
    import segaudit.synth.volumes as volumes

    generate_volumes(tmp_path / "a", volumes=2, classes=4, seed=2, shapes="9x16x20")
    monkeypatch.setattr(volumes, "SLAB_BYTES", 4 * 4 * 16 * 20 * 2)  # 2 slices a step
    assert slab_slices(4, (9, 16, 20)) == 2
    generate_volumes(tmp_path / "b", volumes=2, classes=4, seed=2, shapes="9x16x20")
    for case in ("case_000", "case_001"):
        for folder in ("labelsTr", "true_labels"):
            path = f"{folder}/{case}.nii.gz"
            np.testing.assert_array_equal(
                nifti(tmp_path / "a" / path), nifti(tmp_path / "b" / path)
            )


def test_shapes_parse_and_are_dealt_out():
    assert parse_shapes("32x64x64, 8X16×24") == [(32, 64, 64), (8, 16, 24)]
    assert parse_shapes(["4x4x4", "5x5x5,6x6x6"]) == [(4, 4, 4), (5, 5, 5), (6, 6, 6)]
    assert parse_shapes([(4, 5, 6)]) == [(4, 5, 6)]
    with pytest.raises(SynthOptionError, match="--shape must be"):
        parse_shapes("4x4")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--shape", "32x64"], "--shape must be ZxYxX sizes"),
        (["--shape", "0x8x8"], "--shape must be ZxYxX sizes"),
        (["--shape", "8x8x8,big"], "got 'big'"),
        (["--layout", "stacked"], "--layout does not apply to --volumes"),
        (["--layout", "folder"], "--layout does not apply to --volumes"),
        (["--format", "zarr"], "--format does not apply to --volumes"),
        (["--height", "8", "--width", "8"], "--height does not apply to --volumes"),
        (["--sizes", "8x8"], "--sizes does not apply to --volumes"),
        (["--difficulty", "hard"], "--difficulty does not apply to --volumes"),
        (["--classes", "300"], "--classes must be an integer from 2 to 255 with --volumes"),
        (["--images", "0"], "--images must be a positive integer"),
        (["--void-fraction", "0.9"], "--void-fraction must be a number from 0 to 0.5"),
        (["--dtype", "float64"], "--dtype must be one of float16, float32"),
        (["--class-names", "a,b,c,d,e"], "must start with background"),
        (["--class-names", "background,b,c,d,ignore"], "use ignore"),
    ],
)
def test_bad_volume_options_exit_2_with_one_line_and_write_nothing(tmp_path, args, message):
    out = tmp_path / "ds"
    result = synth(out, *SMALL, *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output
    assert not out.exists()


@pytest.mark.parametrize("flag", [["--shape", "8x8x8"], ["--void-fraction", "0.1"]])
def test_volume_options_need_volumes(tmp_path, flag):
    out = tmp_path / "ds"
    base = ["--images", "2", "--classes", "3", "--seed", "0", "--height", "8", "--width", "8"]
    result = synth(out, *base, *flag)
    assert result.exit_code == 2
    assert f"{flag[0]} applies to --volumes" in result.stderr
    assert not out.exists()


def test_missing_nibabel_says_how_to_install(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_nibabel(name, *args, **kwargs):
        if name == "nibabel" or name.startswith("nibabel."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_nibabel)
    with pytest.raises(InvalidInputError, match=r"pip install 'segaudit\[medical\]'"):
        generate_volumes(tmp_path / "x", volumes=1, classes=2, seed=0)
    result = synth(tmp_path / "ds", *SMALL)
    assert result.exit_code == 2 and "needs nibabel" in result.stderr
    assert not (tmp_path / "ds").exists() and not (tmp_path / "x").exists()


def test_non_empty_output_is_refused_unless_forced(tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    result = synth(out, *SMALL, "--shape", "6x8x8")
    assert result.exit_code == 2 and "is not empty" in result.stderr
    assert synth(out, *SMALL, "--shape", "6x8x8", "--force", "-q").exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [*FOLDERS, "dataset.json", "errors.json", "is_corrupted.csv", "notes.txt"]
    )
