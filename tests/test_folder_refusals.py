"""Folder datasets: inputs that must be refused in one sentence, exit 2, nothing written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from segaudit.cli import app

runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def listing(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``root`` with its size and modification time."""
    return {
        str(path.relative_to(root)): (path.lstat().st_size, path.lstat().st_mtime_ns)
        for path in sorted(root.rglob("*"))
    }


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("base") / "data"
    done = invoke("synth", root, "--layout", "folder", "--images", "4", "--classes", "5",
                  "--sizes", "32x48,40x40", "--seed", "0", "--quiet")  # fmt: skip
    assert done.exit_code == 0, done.output
    return root


@pytest.fixture
def data(base: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "data"
    subprocess.run(["cp", "-r", str(base), str(copy)], check=True)
    return copy


def refused(data: Path, *args: object, match: str) -> str:
    """Run scan, check it is refused in one line with exit 2 and the inputs unchanged."""
    before = listing(data)
    done = invoke("scan", *args, "--quiet")
    assert done.exit_code == 2, done.output
    message = done.output.strip()
    assert "Traceback" not in message and len(message.splitlines()) == 1, message
    assert match in message, message
    assert listing(data) == before
    return message


@pytest.mark.parametrize(
    ("where", "args"),
    [
        ("labels/run", []),
        ("pred_probs/sub/run", []),
        ("labels/run", ["--labels", "{data}/labels/*.png", "--pred-probs", "{data}/pred_probs"]),
    ],
)
def test_a_run_inside_a_listed_folder_is_refused(data, where, args):
    """A run there would add its files to the input's (issues/ID.png among the masks)."""
    args = [a.format(data=data) for a in args] or [data]
    refused(data, *args, "-o", data / where, match="is inside the input")
    assert not (data / where).exists()


def test_a_run_beside_the_listed_folders_is_fine(data):
    assert invoke("scan", data, "-o", data / "run", "--quiet").exit_code == 0


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("*, 0\n", "lists no mask value"),
        ("*, void\n", "lists no mask value"),
        ("99999999999999999999, 1\n", "99999999999999999999"),
        ("6, 99999999999999999999\n", "99999999999999999999"),
        ("5, \u00b2\n", "\u00b2"),
    ],
)
def test_label_maps_that_cannot_be_read_are_refused(data, tmp_path, text, match):
    label_map = tmp_path / "map.txt"
    label_map.write_text(text, encoding="utf-8")
    refused(data, data, "-o", tmp_path / "run", "--label-map", label_map, match=match)
    assert not (tmp_path / "run").exists()


def test_a_label_map_that_is_a_pipe_is_refused_at_once(data, tmp_path):
    pipe = tmp_path / "map"
    os.mkfifo(pipe)
    done = subprocess.run(
        [sys.executable, "-m", "segaudit", "scan", str(data), "-o", str(tmp_path / "run"),
         "--label-map", str(pipe), "--quiet"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "not a regular" in done.stderr, done.stderr
    assert not (tmp_path / "run").exists()


def test_a_prediction_with_two_spatial_axes_too_many_is_refused(data, tmp_path):
    path = data / "pred_probs" / "img_00000.npy"
    probs = np.load(path)
    np.save(path, np.stack([probs, probs], 1))  # (K, 2, H, W)
    refused(data, data, "-o", tmp_path / "run", match="img_00000")
    assert not (tmp_path / "run").exists()


def test_an_empty_prediction_resized_is_refused(data, tmp_path):
    path = data / "pred_probs" / "img_00000.npy"
    np.save(path, np.load(path)[:, :0, :0])
    refused(data, data, "-o", tmp_path / "run", "--resize-probs", "bilinear",
            match="img_00000")  # fmt: skip


@pytest.mark.parametrize("option", ["--labels", "--images"])
def test_a_layout_refuses_the_options_it_would_not_read(data, tmp_path, option):
    refused(data, data, "--layout", "camvid", "--pred-probs", data / "pred_probs",
            option, data / "labels", "-o", tmp_path / "run", match=option)  # fmt: skip


def test_a_manifest_refuses_the_inputs_it_names_itself(data, tmp_path):
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(
        "id,labels,pred_probs\n"
        f"a,{data}/labels/img_00000.png,{data}/pred_probs/img_00000.npy\n"
    )
    refused(data, "--manifest", manifest, "--labels", data / "labels", "-o", tmp_path / "run",
            match="--labels would not be read")  # fmt: skip


@pytest.mark.parametrize(
    "option", [["--class-names", "names.txt"], ["--label-map", "map.txt"], ["--channels-last"]]
)
def test_nnunet_refuses_what_its_dataset_json_says(tmp_path, option):
    pytest.importorskip("nibabel")
    data = tmp_path / "nn"
    made = invoke("synth", data, "--volumes", "--images", "2", "--classes", "3",
                  "--shape", "4x8x8", "--seed", "0", "--quiet")  # fmt: skip
    assert made.exit_code == 0, made.output
    (tmp_path / "names.txt").write_text("a\nb\nc\n")
    (tmp_path / "map.txt").write_text("0, 0\n1, 1\n2, 2\n")
    args = [tmp_path / a if a.endswith(".txt") else a for a in option]
    refused(data, data, "--layout", "nnunet", "--pred-probs", data / "predictions", *args,
            "-o", tmp_path / "run", match=f"{option[0]} would not be read")  # fmt: skip


def test_a_file_name_that_is_not_utf8_is_refused(data, tmp_path):
    """Its id could not be written to images.csv or the review page."""
    for folder, suffix in (("labels", ".png"), ("pred_probs", ".npy"), ("images", ".png")):
        where = os.fsencode(data / folder)
        source = os.path.join(where, b"img_00000" + suffix.encode())
        if os.path.exists(source):
            os.rename(source, os.path.join(where, b"bad\xff" + suffix.encode()))
    refused(data, data, "-o", tmp_path / "run", match="is not UTF-8 text")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda p: p.__setitem__((0, 0, 0), -0.5), "--normalize divides scores by their sum"),
        (lambda p: p.__setitem__((slice(None), 0, 0), 0.0), "has scores that sum to 0"),
    ],
)
def test_normalize_says_what_it_cannot_do(data, tmp_path, edit, match):
    path = data / "pred_probs" / "img_00002.npy"
    probs = np.load(path)
    edit(probs)
    np.save(path, probs)
    message = refused(data, data, "-o", tmp_path / "run", "--normalize", match=match)
    assert "pass --normalize" not in message


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_big_endian_predictions_are_named_as_such(data, tmp_path, suffix):
    path = data / "pred_probs" / "img_00000.npy"
    probs = np.load(path)
    path.unlink()
    swapped = probs.astype(probs.dtype.newbyteorder(">"))
    if suffix == ".npy":
        np.save(path, swapped)
    else:
        np.savez(path.with_suffix(".npz"), swapped)
    refused(data, data, "-o", tmp_path / "run", match="big-endian")


def test_a_manifest_row_without_its_mask_names_the_line(data, tmp_path):
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(f"id,labels,pred_probs\na,,{data}/pred_probs/img_00000.npy\n")
    refused(data, "--manifest", manifest, "-o", tmp_path / "run",
            match="line 2 has no labels file")  # fmt: skip


def test_an_empty_npz_is_named_empty(data, tmp_path):
    (data / "pred_probs" / "img_00000.npy").unlink()
    np.savez(data / "pred_probs" / "img_00000.npz")
    refused(data, data, "-o", tmp_path / "run", match="hold no array")


def test_a_batch_axis_of_one_is_named(data, tmp_path):
    path = data / "pred_probs" / "img_00000.npy"
    np.save(path, np.load(path)[None])
    refused(data, data, "-o", tmp_path / "run", match="a leading axis of one")


def test_one_mask_file_as_the_labels_is_refused(data, tmp_path):
    refused(data, "--labels", data / "labels" / "img_00000.png", "--pred-probs",
            data / "pred_probs", "-o", tmp_path / "run", match="is one image's file")  # fmt: skip


def test_a_dataset_with_both_stacked_and_per_image_labels_asks_which(data, tmp_path):
    np.save(data / "labels.npy", np.zeros((4, 32, 48), np.uint8))
    refused(data, data, "-o", tmp_path / "run", match="holds both labels.npy and a labels/ folder")


def test_an_empty_or_linked_run_path_is_refused(data, tmp_path):
    refused(data, data, "-o", "", match="it is empty")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    refused(data, data, "-o", tmp_path / "link", match="is a symbolic link")
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_a_manifest_listing_an_id_twice_says_so(data, tmp_path):
    manifest = tmp_path / "manifest.csv"
    row = f"a,{data}/labels/img_00000.png,{data}/pred_probs/img_00000.npy\n"
    manifest.write_text("id,labels,pred_probs\n" + row + row)
    refused(data, "--manifest", manifest, "-o", tmp_path / "run",
            match="lists the image id(s) a on several rows")  # fmt: skip


def test_a_manifest_naming_a_missing_photo_is_refused_by_scan(data, tmp_path):
    """Not only later, by render: the run would record a photo that is not there."""
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(
        "id,labels,pred_probs,image\n"
        f"a,{data}/labels/img_00000.png,{data}/pred_probs/img_00000.npy,{data}/images/nope.png\n"
    )
    refused(data, "--manifest", manifest, "-o", tmp_path / "run",
            match="line 2 names the photo")  # fmt: skip


def _mask_as(path: Path, kind: str) -> None:
    """Rewrite the mask at ``path`` (same pixels) as a JPEG, a two-page TIFF or a two-frame
    animated PNG, keeping its name."""
    from PIL import Image

    mask = Image.open(path)
    mask.load()
    if kind == "jpeg":
        mask.save(path, format="JPEG", quality=100)
    else:
        fmt = "TIFF" if kind == "tiff" else "PNG"
        mask.save(path, format=fmt, save_all=True, append_images=[mask.copy()])


@pytest.mark.parametrize(
    ("kind", "match"),
    [
        ("jpeg", "holds JPEG data, whose lossy compression changes class ids"),
        ("tiff", "holds 2 images (pages); a mask is one image"),
        ("apng", "holds 2 images (frames); a mask is one image"),
    ],
)
def test_masks_that_are_lossy_or_hold_several_images_are_refused(data, tmp_path, kind, match):
    # Only the first page would be read, or JPEG's artefacts would read as class ids.
    mask = sorted((data / "labels").iterdir())[1]
    if kind == "tiff":
        mask = mask.rename(mask.with_suffix(".tif"))
    _mask_as(mask, kind)
    message = refused(data, data, "-o", tmp_path / "run", match=match)
    assert mask.name in message
    assert not (tmp_path / "run").exists()
