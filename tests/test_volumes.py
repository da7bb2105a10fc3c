"""3-D volumes: NIfTI masks with nnU-Net probabilities, scanned a slab at a time.

Every scan here is checked against cleanlab itself: Confident Learning does not care how
many spatial axes a pixel has, so a dataset of volumes must flag exactly what cleanlab's
``find_label_issues`` flags on all voxels laid end to end as one image, and each
volume's softmin must equal cleanlab's for that volume. Slabs are made small so every
volume is read in several (with a short last one), and the run's per-slab chunks are
read back by Zarr itself.
"""

from __future__ import annotations

import csv
import gzip
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from segaudit.cli import app
from segaudit.engine import params as engine_params
from segaudit.sources import volumes

nib = pytest.importorskip("nibabel")
cleanlab_filter = pytest.importorskip("cleanlab.segmentation.filter")
cleanlab_rank = pytest.importorskip("cleanlab.segmentation.rank")

runner = CliRunner()
SHAPES = ((7, 10, 12), (5, 8, 9), (9, 6, 11))  # (Z, Y, X): three shapes, odd sizes
AFFINE = np.array(
    [[0.0, -0.7, 0.1, 12.0], [0.8, 0.0, 0.0, -30.5], [0.0, 0.05, 2.5, 7.25], [0, 0, 0, 1]]
)  # rotated, anisotropic, shifted: not the identity


def build_nnunet(
    root: Path, *, classes: int = 4, dtype: str = "float32", ignore: bool = False, seed: int = 0
) -> dict[str, object]:
    """An nnU-Net raw dataset (dataset.json, labelsTr, imagesTr) and its predictions
    (CASE.npz, key ``probabilities``, (K, z, y, x)); returns the voxels end to end."""
    rng = np.random.default_rng(seed)
    labels_dir, images_dir, preds = root / "labelsTr", root / "imagesTr", root / "preds"
    for folder in (labels_dir, images_dir, preds):
        folder.mkdir(parents=True)
    names = {"background": 0, **{f"organ{k}": k for k in range(1, classes)}}
    if ignore:
        names["ignore"] = classes
    info = {"channel_names": {"0": "CT"}, "labels": names, "numTraining": len(SHAPES),
            "file_ending": ".nii.gz"}  # fmt: skip
    (root / "dataset.json").write_text(json.dumps(info))
    flat_labels, flat_probs = [], []
    for case, shape in enumerate(SHAPES):
        truth = rng.integers(0, classes, shape)
        given = truth.copy()
        flip = rng.random(shape) < 0.08
        given[flip] = (given[flip] + 1) % classes
        if ignore:
            given[rng.random(shape) < 0.1] = classes
        onehot = np.moveaxis(np.eye(classes)[truth], -1, 0)
        logits = rng.normal(0, 1, (classes, *shape)) + 2.5 * onehot
        probs = np.exp(logits)
        probs /= probs.sum(0, keepdims=True)
        probs = probs.astype(dtype)
        name = f"case_{case:03d}"
        nib.save(nib.Nifti1Image(given.astype(np.uint8).T, AFFINE), labels_dir / f"{name}.nii.gz")
        scan = (truth * 40 - 100).astype(np.int16)
        nib.save(nib.Nifti1Image(scan.T, AFFINE), images_dir / f"{name}_0000.nii.gz")
        np.savez_compressed(preds / f"{name}.npz", probabilities=probs)
        flat_labels.append(given.reshape(-1))
        flat_probs.append(probs.reshape(classes, -1))
    return {
        "labels": np.concatenate(flat_labels),
        "probs": np.concatenate(flat_probs, axis=1),
        "ignore": classes if ignore else None,
    }


@pytest.fixture
def small_slabs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Slabs of two or three slices, so every volume is read in several: predictions
    mapped from a temporary file (small ``.npz`` are otherwise held whole, one slab)."""
    monkeypatch.setattr(engine_params, "SLAB_BYTES", 2 * 10 * 12 * 4 * 4)
    monkeypatch.setattr(volumes, "NPZ_IN_MEMORY", 0)


def scan(root: Path, run: Path, *extra: str) -> object:
    return runner.invoke(
        app, ["scan", str(root), "--layout", "nnunet", "--pred-probs", str(root / "preds"),
              "-o", str(run), *extra],
    )  # fmt: skip


def issue_voxels(run: Path) -> np.ndarray:
    """The run's issue volumes, (z, y, x) order, laid end to end."""
    parts = []
    for case in range(len(SHAPES)):
        image = nib.load(run / "issues" / f"case_{case:03d}.nii.gz")
        parts.append(np.asarray(image.dataobj).T.reshape(-1))
    return np.concatenate(parts).astype(bool)


def cleanlab_mask(built: dict[str, object]) -> np.ndarray:
    labels, probs = built["labels"], built["probs"]
    assert isinstance(labels, np.ndarray) and isinstance(probs, np.ndarray)
    kwargs = {} if built["ignore"] is None else {"batch_size": 10**7}
    if built["ignore"] is not None:  # cleanlab has no ignore value: score only the rest
        keep = labels != built["ignore"]
        mask = np.zeros(labels.shape, bool)
        mask[keep] = cleanlab_filter.find_label_issues(
            labels[keep][None, None], probs[:, keep][None, :, None], n_jobs=1, verbose=False,
            **kwargs,
        )[0, 0]  # fmt: skip
        return mask
    return cleanlab_filter.find_label_issues(
        labels[None, None], probs[None, :, None], n_jobs=1, verbose=False
    )[0, 0]


def cleanlab_softmin(built: dict[str, object]) -> list[float]:
    labels, probs = built["labels"], built["probs"]
    assert isinstance(labels, np.ndarray) and isinstance(probs, np.ndarray)
    scores, start = [], 0
    for shape in SHAPES:
        stop = start + int(np.prod(shape))
        lab, pro = labels[start:stop], probs[:, start:stop]
        if built["ignore"] is not None:
            keep = lab != built["ignore"]
            lab, pro = lab[keep], pro[:, keep]
        found, _ = cleanlab_rank.get_label_quality_scores(
            lab[None, None], pro[None, :, None], verbose=False
        )
        scores.append(float(found[0]))
        start = stop
    return scores


@pytest.mark.parametrize(
    ("dtype", "ignore"), [("float32", False), ("float32", True), ("float16", False)]
)
def test_volumes_scan_exactly_as_cleanlab_on_all_voxels(
    tmp_path: Path, small_slabs: None, dtype: str, ignore: bool
) -> None:
    built = build_nnunet(tmp_path / "ds", dtype=dtype, ignore=ignore)
    result = scan(tmp_path / "ds", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert np.array_equal(issue_voxels(tmp_path / "run"), cleanlab_mask(built))
    with open(tmp_path / "run" / "image_scores.csv", newline="") as handle:
        ours = {row["id"]: float(row["softmin_score"]) for row in csv.DictReader(handle)}
    for case, expected in enumerate(cleanlab_softmin(built)):
        assert ours[f"case_{case:03d}"] == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_slab_size_never_changes_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    build_nnunet(tmp_path / "ds", seed=3)
    assert scan(tmp_path / "ds", tmp_path / "whole").exit_code == 0  # held whole: one slab
    monkeypatch.setattr(volumes, "NPZ_IN_MEMORY", 0)
    monkeypatch.setattr(engine_params, "SLAB_BYTES", 1)  # one slice a slab
    assert scan(tmp_path / "ds", tmp_path / "sliced").exit_code == 0
    assert np.array_equal(issue_voxels(tmp_path / "whole"), issue_voxels(tmp_path / "sliced"))
    assert (tmp_path / "whole" / "regions.csv").read_text() == (
        tmp_path / "sliced" / "regions.csv"
    ).read_text()
    tables = []
    for run in ("whole", "sliced"):  # the softmin's sums are added in another order
        with open(tmp_path / run / "image_scores.csv", newline="") as handle:
            tables.append(list(csv.DictReader(handle)))
    for whole, sliced in zip(*tables, strict=True):
        assert float(whole.pop("softmin_score")) == pytest.approx(
            float(sliced.pop("softmin_score")), rel=1e-14
        )
        assert whole == sliced


def test_issue_volumes_keep_the_labels_geometry(tmp_path: Path, small_slabs: None) -> None:
    build_nnunet(tmp_path / "ds")
    assert scan(tmp_path / "ds", tmp_path / "run").exit_code == 0
    for case in range(len(SHAPES)):
        name = f"case_{case:03d}"
        labels = nib.load(tmp_path / "ds" / "labelsTr" / f"{name}.nii.gz")
        issues = nib.load(tmp_path / "run" / "issues" / f"{name}.nii.gz")
        assert np.allclose(issues.affine, AFFINE) and np.allclose(issues.affine, labels.affine)
        assert issues.shape == labels.shape
        assert issues.header.get_zooms() == labels.header.get_zooms()
        data = np.asarray(issues.dataobj)
        assert data.dtype == np.uint8 and set(np.unique(data)) <= {0, 1}


def test_run_arrays_are_volume_sheets_zarr_reads(tmp_path: Path, small_slabs: None) -> None:
    import zarr

    build_nnunet(tmp_path / "ds")
    assert scan(tmp_path / "ds", tmp_path / "run").exit_code == 0
    group = zarr.open_group(tmp_path / "run" / "labels.zarr", mode="r")
    with open(tmp_path / "run" / "images.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for case, shape in enumerate(SHAPES):
        sheet = group[str(case)][...]
        mask = np.asarray(nib.load(tmp_path / "ds" / "labelsTr" / f"case_{case:03d}.nii.gz")
                          .dataobj).T  # fmt: skip
        assert sheet.shape == (shape[0] * shape[1], shape[2])
        assert group[str(case)].chunks[0] < sheet.shape[0]  # written slab by slab
        assert np.array_equal(sheet.reshape(shape), mask)
        row = rows[case]
        assert (int(row["depth"]), int(row["height"]), int(row["width"])) == shape
        assert float(row["spacing_z"]) == pytest.approx(2.5, rel=1e-3)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["dataset"]["volumes"]["count"] == 3
    assert summary["dataset"]["volumes"]["modality"] == "CT"


def test_small_compressed_predictions_are_held_whole_as_one_slab(tmp_path: Path) -> None:
    built = build_nnunet(tmp_path / "ds", ignore=True, seed=9)
    assert scan(tmp_path / "ds", tmp_path / "run").exit_code == 0
    assert np.array_equal(issue_voxels(tmp_path / "run"), cleanlab_mask(built))


def test_slab_reader_reads_the_voxels_in_nibabels_order_transposed(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    volume = rng.integers(0, 300, (6, 5, 4)).astype(">i2")  # big-endian on disk too
    for suffix in (".nii", ".nii.gz"):
        path = tmp_path / f"v{suffix}"
        nib.save(nib.Nifti1Image(volume.T, AFFINE), path)
        header = volumes.nifti_header(path)
        assert header.shape == (6, 5, 4)
        assert header.spacing == pytest.approx((2.5, 0.7, 0.8), rel=1e-2)
        reader = volumes.SlabReader(header)
        got = np.concatenate([reader.read(0, 4), reader.read(4, 6)])
        reader.close()
        assert np.array_equal(got, volume)


# --- bad input: one sentence, exit 2, nothing written ------------------------------------


def refused(tmp_path: Path, *phrases: str, extra: tuple[str, ...] = ()) -> None:
    result = scan(tmp_path / "ds", tmp_path / "run", *extra)
    assert result.exit_code == 2, result.output
    message = result.output.strip()
    assert message.startswith("error:") and message.count("\n") <= 2, message
    for phrase in phrases:
        assert phrase in " ".join(message.split()), message
    assert not (tmp_path / "run").exists()
    assert not any(p.name.startswith(".run") for p in tmp_path.iterdir())


def test_probabilities_in_nibabels_axis_order_are_refused_with_the_transpose(
    tmp_path: Path,
) -> None:
    build_nnunet(tmp_path / "ds")
    path = tmp_path / "ds" / "preds" / "case_001.npz"
    probs = np.load(path)["probabilities"]
    np.savez_compressed(path, probabilities=probs.transpose(0, 3, 2, 1))
    before = path.read_bytes()
    refused(tmp_path, "nibabel's (x, y, z) order", "probs.transpose(0, 3, 2, 1)")
    assert path.read_bytes() == before


def test_probabilities_of_another_shape_are_refused(tmp_path: Path) -> None:
    build_nnunet(tmp_path / "ds")
    path = tmp_path / "ds" / "preds" / "case_000.npz"
    probs = np.load(path)["probabilities"]
    np.savez_compressed(path, probabilities=probs[:, :-1])
    refused(tmp_path, "case_000.npz have shape (4, 6, 10, 12)", "(K, 7, 10, 12)")


@pytest.mark.parametrize(
    ("value", "phrase"),
    [(1.5, "holds the non-integer value 1.5"), (1e10, "holds the value 10000000000.0")],
)
def test_a_float_mask_holding_no_class_id_is_refused(
    tmp_path: Path, value: float, phrase: str
) -> None:
    """A fraction, or a whole number beyond any class id (not cast into one)."""
    build_nnunet(tmp_path / "ds")
    path = tmp_path / "ds" / "labelsTr" / "case_002.nii.gz"
    values = np.asarray(nib.load(path).dataobj).astype(np.float32)
    values[3, 2, 1] = value
    nib.save(nib.Nifti1Image(values, AFFINE), path)
    refused(tmp_path, f"case_002.nii.gz {phrase}", "(x, y, z) = (3, 2, 1)")


def _edit_gzip(path: Path, edit) -> None:
    raw = bytearray(gzip.decompress(path.read_bytes()))
    edit(raw)
    path.write_bytes(gzip.compress(bytes(raw), mtime=0))


@pytest.mark.parametrize(("slope", "inter"), [(2.0, 0.0), (1.0, 1.0)])
def test_a_mask_whose_header_scales_its_values_is_refused(
    tmp_path: Path, slope: float, inter: float
) -> None:
    """nibabel moves scl_slope/scl_inter off the header as it loads: read where it puts them."""
    build_nnunet(tmp_path / "ds")
    path = tmp_path / "ds" / "labelsTr" / "case_001.nii.gz"
    _edit_gzip(path, lambda raw: struct.pack_into("<ff", raw, 112, slope, inter))
    assert np.asarray(nib.load(path).dataobj).max() > 3  # what nnU-Net would read
    refused(tmp_path, "case_001.nii.gz scales its values", f"scl_slope {slope}")


def test_a_scan_scaled_by_its_header_is_read_in_its_units(tmp_path: Path) -> None:
    stored = np.arange(2 * 3 * 4, dtype=np.int16).reshape(4, 3, 2) + 1000
    image = nib.Nifti1Image(stored, AFFINE)
    image.header.set_slope_inter(1.0, -1024.0)
    nib.save(image, tmp_path / "ct.nii.gz")
    header = volumes.nifti_header(tmp_path / "ct.nii.gz", "image")
    hounsfield = nib.load(tmp_path / "ct.nii.gz").get_fdata()
    assert np.array_equal(volumes.read_scan(header), hounsfield.T.astype(np.float32))


def test_a_mask_corrupt_deep_in_its_deflate_stream_is_refused(tmp_path: Path) -> None:
    build_nnunet(tmp_path / "ds")
    path = tmp_path / "ds" / "labelsTr" / "case_000.nii.gz"
    noise = np.random.default_rng(3).integers(0, 4, (64, 64, 40)).astype(np.uint8)
    nib.save(nib.Nifti1Image(noise, AFFINE), path)
    probs = np.full((4, 40, 64, 64), 0.25, np.float32)
    np.savez_compressed(tmp_path / "ds" / "preds" / "case_000.npz", probabilities=probs)
    data = bytearray(path.read_bytes())
    for at in range(len(data) // 2, len(data) - 16):  # a flip that breaks the stream itself
        data[at] ^= 0xFF
        try:
            gzip.decompress(bytes(data))
        except zlib.error:
            break
        except (OSError, EOFError):
            pass
        data[at] ^= 0xFF
    else:
        pytest.fail("no byte flip broke the deflate stream")
    path.write_bytes(bytes(data))
    refused(tmp_path, "case_000.nii.gz is corrupt")


def test_a_mask_whose_gzip_checksum_fails_is_refused(tmp_path: Path) -> None:
    """The voxels inflate, but not to what was written: only the stream's CRC says so."""
    build_nnunet(tmp_path / "ds")
    path = tmp_path / "ds" / "labelsTr" / "case_001.nii.gz"
    labels = np.random.default_rng(4).integers(0, 4, (64, 64, 40)).astype(np.uint8)
    nib.save(nib.Nifti1Image(labels, AFFINE), path)  # more than nibabel reads for a header
    probs = np.full((4, 40, 64, 64), 0.25, np.float32)
    np.savez_compressed(tmp_path / "ds" / "preds" / "case_001.npz", probabilities=probs)
    data = bytearray(path.read_bytes())
    data[-8] ^= 0xFF  # the trailer's CRC-32
    path.write_bytes(bytes(data))
    refused(tmp_path, "case_001.nii.gz is corrupt (CRC check failed")


def test_a_mask_that_is_a_pipe_is_refused_as_one(tmp_path: Path) -> None:
    import os

    build_nnunet(tmp_path / "ds")
    path = tmp_path / "ds" / "labelsTr" / "case_000.nii.gz"
    path.unlink()
    os.mkfifo(path)
    refused(tmp_path, "case_000.nii.gz is not a regular file")


@pytest.mark.parametrize(
    ("labels", "phrase"),
    [
        (None, 'has no "labels" mapping'),
        ({"background": 0, "liver": 2}, "must be 0..K-1 without gaps"),
        ({"background": 0, "liver": [1, 2]}, "region-based labels"),
        ({"background": 0, "a": 1, "b": 2}, "names 3 classes but the predictions have 4"),
    ],
)
def test_a_dataset_json_without_usable_labels_is_refused(
    tmp_path: Path, labels: object, phrase: str
) -> None:
    build_nnunet(tmp_path / "ds")
    info = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    if labels is None:
        del info["labels"]
    else:
        info["labels"] = labels
    (tmp_path / "ds" / "dataset.json").write_text(json.dumps(info))
    refused(tmp_path, phrase)


def test_a_decathlon_or_v1_dataset_json_reads_as_v2s(tmp_path: Path) -> None:
    """nnU-Net v1 and the Medical Segmentation Decathlon list labels value -> name."""
    build_nnunet(tmp_path / "ds")
    assert scan(tmp_path / "ds", tmp_path / "v2").exit_code == 0
    path = tmp_path / "ds" / "dataset.json"
    info = json.loads(path.read_text())
    info["labels"] = {str(value): name for name, value in info["labels"].items()}
    info["modality"] = info.pop("channel_names")
    del info["file_ending"]
    path.write_text(json.dumps(info))
    assert scan(tmp_path / "ds", tmp_path / "v1").exit_code == 0
    for table in ("image_scores.csv", "regions.csv"):
        assert (tmp_path / "v1" / table).read_text() == (tmp_path / "v2" / table).read_text()
    summary = json.loads((tmp_path / "v1" / "summary.json").read_text())
    assert summary["classes"]["names"] == ["background", "organ1", "organ2", "organ3"]


def test_a_missing_dataset_json_is_refused(tmp_path: Path) -> None:
    build_nnunet(tmp_path / "ds")
    (tmp_path / "ds" / "dataset.json").unlink()
    refused(tmp_path, "is not an nnU-Net raw dataset: dataset.json not found")


def test_downsampling_volumes_is_refused(tmp_path: Path) -> None:
    build_nnunet(tmp_path / "ds")
    refused(tmp_path, "--downsample works on 2-D images", extra=("--downsample", "2"))


def test_score_reads_volumes_by_slabs_and_matches_cleanlab(
    tmp_path: Path, small_slabs: None
) -> None:
    built = build_nnunet(tmp_path / "ds", ignore=True, seed=5)
    import zarr

    result = runner.invoke(
        app, ["score", str(tmp_path / "ds"), "--layout", "nnunet", "--pred-probs",
              str(tmp_path / "ds" / "preds"), "-o", str(tmp_path / "run"), "--pixel-scores"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    with open(tmp_path / "run" / "image_scores.csv", newline="") as handle:
        rows = {row["id"]: row for row in csv.DictReader(handle)}
    expected = cleanlab_softmin(built)
    for case, score in enumerate(expected):
        assert float(rows[f"case_{case:03d}"]["score"]) == pytest.approx(score, rel=1e-12)
    scores = zarr.open_group(tmp_path / "run" / "pixel_scores.zarr", mode="r")
    labels, probs = built["labels"], built["probs"]
    assert isinstance(labels, np.ndarray) and isinstance(probs, np.ndarray)
    start = 0
    for case, shape in enumerate(SHAPES):  # p[given label] per voxel, NaN where ignored
        stop = start + int(np.prod(shape))
        given = labels[start:stop]
        own = np.full(given.shape, np.nan)
        kept = given != built["ignore"]
        own[kept] = probs[given[kept], np.arange(start, stop)[kept]]
        assert scores[str(case)].chunks[0] < shape[0] * shape[1]  # written slab by slab
        assert np.array_equal(scores[str(case)][...].ravel(), own, equal_nan=True)
        start = stop


def test_regions_of_volumes_are_26_connected_in_3d(tmp_path: Path, small_slabs: None) -> None:
    import zarr
    from scipy import ndimage

    build_nnunet(tmp_path / "ds", seed=7)
    assert scan(tmp_path / "ds", tmp_path / "run", "--min-region-pixels", "2").exit_code == 0
    with open(tmp_path / "run" / "regions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and "z0" in rows[0] and "volume_mm3" in rows[0]
    given = zarr.open_group(tmp_path / "run" / "labels.zarr", mode="r")
    predicted = zarr.open_group(tmp_path / "run" / "pred_labels.zarr", mode="r")
    maps = zarr.open_group(tmp_path / "run" / "regions.zarr", mode="r")
    first = nib.load(tmp_path / "ds" / "labelsTr" / "case_000.nii.gz")
    voxel = float(np.prod(first.header.get_zooms()))  # the header's spacing, as viewers show
    for case, shape in enumerate(SHAPES):
        issues = np.asarray(
            nib.load(tmp_path / "run" / "issues" / f"case_{case:03d}.nii.gz").dataobj
        ).T.astype(bool)
        pairs = given[str(case)][...].reshape(shape) * 100
        pairs = pairs + predicted[str(case)][...].reshape(shape)
        expected = 0
        for pair in np.unique(pairs[issues]):
            found, count = ndimage.label(issues & (pairs == pair), np.ones((3, 3, 3)))
            expected += int((np.bincount(found.ravel())[1:] >= 2).sum())
        mine = [row for row in rows if row["id"] == f"case_{case:03d}"]
        assert len(mine) == expected
        region_map = maps[str(case)][...].reshape(shape)
        for row in mine:
            voxels = region_map == int(row["region"])
            z, y, x = np.nonzero(voxels)
            assert voxels.sum() == int(row["pixels"])
            assert (z.min(), z.max(), y.min(), x.max()) == (
                int(row["z0"]),
                int(row["z1"]),
                int(row["y0"]),
                int(row["x1"]),
            )
            assert float(row["volume_mm3"]) == pytest.approx(int(row["pixels"]) * voxel, rel=1e-5)


# --- pictures and evaluation ----------------------------------------------------------------


@pytest.fixture
def synth_run(tmp_path: Path) -> tuple[Path, Path]:
    """A small synthetic nnU-Net dataset (CT scans, injected errors) and its scan."""
    data, run = tmp_path / "vs", tmp_path / "vs-run"
    made = runner.invoke(
        app, ["synth", str(data), "--volumes", "--images", "3", "--classes", "5", "--seed", "2",
              "--shape", "16x40x48", "--corrupt-fraction", "0.7"],
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    result = runner.invoke(
        app, ["scan", str(data), "--layout", "nnunet", "--pred-probs", str(data / "predictions"),
              "-o", str(run), "--min-region-pixels", "5"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return data, run


def test_render_draws_each_volume_as_its_worst_slices_and_views(
    synth_run: tuple[Path, Path], tmp_path: Path
) -> None:
    from PIL import Image

    from segaudit.report.panels import Sources
    from segaudit.report.render import RunArray
    from segaudit.report.volume_pictures import resize_view, worst_slices
    from segaudit.report.volume_views import VolumeViews
    from segaudit.runs.run import open_run

    _, run_path = synth_run
    result = runner.invoke(app, ["render", str(run_path), "--pages", "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    pages = sorted((tmp_path / "out").glob("rank*.png"))
    assert pages and (tmp_path / "out" / "index.html").is_file()
    picture = np.asarray(Image.open(pages[0]).convert("RGB"))
    assert ((picture == (255, 0, 0)).all(axis=2)).any()  # issue voxels in pure red

    run = open_run(run_path)
    sources = Sources(RunArray(run, "issues"), RunArray(run, "labels"),
                      RunArray(run, "pred_labels"), None, run.num_classes)  # fmt: skip
    views = VolumeViews(run, sources, None)
    for index in range(run.num_images):
        shape = run.images.volume_shape(index)
        issues = run.read("issues", index).reshape(shape)
        layout = views.layout(index)
        shown = views.sources_view().issues[index]
        assert shown.shape == layout.size
        first = layout.tiles[0]
        assert (first.view, first.at) == ("axial", worst_slices(issues, 4)[0])
        tile = shown[first.top : first.top + first.height, first.left : first.left + first.width]
        expected = resize_view(issues[first.at], (first.height, first.width), "mask")
        assert np.array_equal(tile, expected)
        coronal = next(t for t in layout.tiles if t.view == "coronal")
        assert coronal.height > shape[0]  # slices 2.5 mm thick, pixels 0.8 mm: stretched
        labels = views.sources_view().labels[index]
        gap = labels[first.top, first.left + first.width]  # between two views: no class
        assert gap >= run.num_classes


def test_a_one_slice_volume_renders_its_scan_through_the_ct_window(tmp_path: Path) -> None:
    """A one-slice case is scanned as a 2-D image; its photo is still its NIfTI scan."""
    from PIL import Image

    data = tmp_path / "ds"
    synth = ["synth", str(data), "--volumes", "--images", "3", "--classes", "4",
             "--shape", "1x24x24,5x24x24", "--seed", "0", "--quiet"]  # fmt: skip
    made = runner.invoke(app, synth)
    assert made.exit_code == 0, made.output
    run = tmp_path / "run"
    scan_args = ["scan", str(data), "--layout", "nnunet", "--pred-probs",
                 str(data / "predictions"), "-o", str(run), "--quiet"]  # fmt: skip
    scanned = runner.invoke(app, scan_args)
    assert scanned.exit_code == 0, scanned.output
    for extra in ([], ["--pages", "-o", str(tmp_path / "pages")]):
        result = runner.invoke(app, ["render", str(run), "--quiet", *extra])
        assert result.exit_code == 0, result.output
    case = next((tmp_path / "pages").glob("rank*_case_000.png"))
    assert case.is_file()
    from segaudit.report.photos import FilePhotos
    from segaudit.report.volume_pictures import CT_LEVEL, CT_WIDTH

    scan_path = data / "imagesTr" / "case_000_0000.nii.gz"
    photo = FilePhotos([scan_path], np.array([[24, 24]]), "CT")[0]
    hounsfield = nib.load(scan_path).get_fdata()[:, :, 0].T
    low = CT_LEVEL - CT_WIDTH / 2
    expected = np.clip((hounsfield - low) / CT_WIDTH * 255, 0, 255)
    assert photo.shape == (24, 24, 3) and (photo[..., 0] == photo[..., 1]).all()
    assert np.abs(photo[..., 0].astype(float) - expected).max() <= 1.0
    assert np.asarray(Image.open(case)).size


def test_eval_measures_volumes_against_their_true_labels(synth_run: tuple[Path, Path]) -> None:
    data, run_path = synth_run
    result = runner.invoke(app, ["eval", str(run_path), "--truth", str(data), "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.output[result.output.index("{") :])
    assert any("is a volume dataset" in note for note in found["notes"])
    assert found["region"] is None  # regions are matched to 2-D error maps only
    assert found["pixel"]["flagged"] > 0
    assert 0 < found["pixel"]["precision"] <= 1 and 0 < found["pixel"]["recall"] <= 1


@pytest.mark.parametrize("change", ["depth", "value"])
def test_eval_refuses_true_labels_that_are_not_the_runs(
    synth_run: tuple[Path, Path], tmp_path: Path, change: str
) -> None:
    import shutil

    data, run_path = synth_run
    truth = tmp_path / "truth"
    shutil.copytree(data, truth)
    path = next((truth / "true_labels").glob("*.nii.gz"))
    image = nib.load(path)
    values = np.asarray(image.dataobj).copy()  # (x, y, z): 48×40×16
    if change == "depth":
        values = values[:, :, :12]
        expected = "are 12×40×48 but the run's are 16×40×48"
    else:
        values[1, 2, 3] = 9
        expected = "hold the value 9, outside 0..4"
    nib.save(nib.Nifti1Image(values, image.affine, image.header), path)
    result = runner.invoke(app, ["eval", str(run_path), "--truth", str(truth)])
    assert result.exit_code == 2 and expected in " ".join(result.output.split()), result.output


def test_a_label_dataset_json_does_not_name_is_refused_at_its_voxel(tmp_path: Path) -> None:
    build_nnunet(tmp_path / "ds")
    path = tmp_path / "ds" / "labelsTr" / "case_001.nii.gz"
    values = np.asarray(nib.load(path).dataobj).copy()  # (x, y, z)
    values[:] = np.minimum(values, 3)
    values[6, 4, 3] = 9
    nib.save(nib.Nifti1Image(values, AFFINE), path)
    refused(tmp_path, "case_001.nii.gz has label 9 outside 0..3 at voxel (x, y, z) = (6, 4, 3)")


def test_npy_predictions_of_volumes_are_mapped_and_sliced(
    tmp_path: Path, small_slabs: None
) -> None:
    built = build_nnunet(tmp_path / "ds", seed=11)
    for path in sorted((tmp_path / "ds" / "preds").glob("*.npz")):
        np.save(path.with_suffix(".npy"), np.load(path)["probabilities"])
        path.unlink()
    assert scan(tmp_path / "ds", tmp_path / "run").exit_code == 0
    assert np.array_equal(issue_voxels(tmp_path / "run"), cleanlab_mask(built))


def test_single_slice_niftis_with_squeezed_predictions_scan_as_images(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    (tmp_path / "ds" / "labels").mkdir(parents=True)
    (tmp_path / "ds" / "pred_probs").mkdir()
    labels, probs = [], []
    for case in range(2):
        given = rng.integers(0, 3, (1, 20, 30)).astype(np.uint8)
        found = rng.random((3, 20, 30)).astype(np.float32)  # (K, Y, X): the slice axis dropped
        found /= found.sum(0, keepdims=True)
        nib.save(nib.Nifti1Image(given.T, AFFINE), tmp_path / "ds" / "labels" / f"c{case}.nii.gz")
        np.save(tmp_path / "ds" / "pred_probs" / f"c{case}.npy", found)
        labels.append(given.reshape(-1))
        probs.append(found.reshape(3, -1))
    result = runner.invoke(app, ["scan", str(tmp_path / "ds"), "-o", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    mask = cleanlab_filter.find_label_issues(
        np.concatenate(labels)[None, None], np.concatenate(probs, 1)[None, :, None],
        n_jobs=1, verbose=False,
    )[0, 0]  # fmt: skip
    ours = [np.asarray(nib.load(tmp_path / "run" / "issues" / f"c{c}.nii.gz").dataobj).T
            for c in range(2)]  # fmt: skip
    assert np.array_equal(np.concatenate([o.reshape(-1) for o in ours]).astype(bool), mask)


def test_export_of_volume_regions_is_csv_with_their_columns_and_coco_is_refused(
    synth_run: tuple[Path, Path], tmp_path: Path
) -> None:
    _, run = synth_run
    out = tmp_path / "regions.csv"
    result = runner.invoke(app, ["export", str(run), "--format", "csv", "-o", str(out)])
    assert result.exit_code == 0, result.output
    with open(out, newline="") as handle:
        exported = list(csv.DictReader(handle))
    with open(run / "regions.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert exported and len(exported) == len(table)
    for got, row in zip(exported, table, strict=True):
        assert {k: got[k] for k in row} == row  # every column under its own name
    again = runner.invoke(app, ["export", str(run), "--format", "csv", "-o", str(out)])
    assert again.exit_code == 0, again.output  # an earlier export is recognised and replaced
    coco = tmp_path / "regions.json"
    refused = runner.invoke(app, ["export", str(run), "--format", "coco", "-o", str(coco)])
    assert refused.exit_code == 2
    assert "COCO annotations are 2-D" in " ".join(refused.output.split())
    assert not coco.exists()


def test_score_names_the_voxel_of_a_label_outside_the_classes(
    tmp_path: Path, small_slabs: None
) -> None:
    build_nnunet(tmp_path / "ds")
    path = tmp_path / "ds" / "labelsTr" / "case_000.nii.gz"
    values = np.asarray(nib.load(path).dataobj).copy()  # (x, y, z)
    values[:] = np.minimum(values, 3)
    values[5, 7, 4] = 9  # slice 4: in the second or third slab
    nib.save(nib.Nifti1Image(values, AFFINE), path)
    result = runner.invoke(
        app, ["score", str(tmp_path / "ds"), "--layout", "nnunet", "--pred-probs",
              str(tmp_path / "ds" / "preds"), "-o", str(tmp_path / "run")],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "case_000.nii.gz has label 9 outside 0..3 at voxel (x, y, z) = (5, 7, 4)" in " ".join(
        result.output.split()
    )
    assert not (tmp_path / "run").exists()


def test_score_names_the_voxel_of_scores_that_do_not_sum_to_one(
    tmp_path: Path, small_slabs: None
) -> None:
    build_nnunet(tmp_path / "ds")
    path = tmp_path / "ds" / "preds" / "case_001.npz"
    np.savez_compressed(path, probabilities=np.load(path)["probabilities"] * 2)
    result = runner.invoke(
        app, ["score", str(tmp_path / "ds"), "--layout", "nnunet", "--pred-probs",
              str(tmp_path / "ds" / "preds"), "-o", str(tmp_path / "run")],
    )  # fmt: skip
    message = " ".join(result.output.split())
    assert result.exit_code == 2, message
    assert "case_001.npz has probabilities that do not sum to 1 at voxel (x, y, z) = (0, 0, 0)" in (
        message
    )
    assert "--normalize" in message and not (tmp_path / "run").exists()


def test_predictions_held_in_memory_are_still_sliced_when_a_volume_is_many_slabs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import zarr

    built = build_nnunet(tmp_path / "ds", seed=13)
    monkeypatch.setattr(engine_params, "SLAB_BYTES", 1)  # one slice a slab: 5 to 9 a volume
    assert scan(tmp_path / "ds", tmp_path / "run").exit_code == 0
    assert np.array_equal(issue_voxels(tmp_path / "run"), cleanlab_mask(built))
    group = zarr.open_group(tmp_path / "run" / "labels.zarr", mode="r")
    for case, shape in enumerate(SHAPES):
        assert group[str(case)].chunks[0] == shape[1]  # one slice a chunk
