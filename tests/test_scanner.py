"""segaudit.Scanner: a run built from batches in memory equals ``segaudit scan`` of the files.

The loop stands in for a model: numpy arrays fed in any batch sizes, images of any size,
one at a time. The run must be byte-identical (arrays, tables, summary apart from
timing and the inputs block) to a scan of the same data written to disk, and an error
must leave the previous run intact and publish nothing.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import make_probs, run_file_bytes
from PIL import Image
from typer.testing import CliRunner

import segaudit
from segaudit.cli import app

runner = CliRunner()
SAMPLE = Path(__file__).resolve().parent.parent / "sample_data"


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def run_contents(run: Path) -> dict[str, object]:
    """Everything a run holds, apart from timing, the engine and where inputs came from."""
    summary = json.loads((run / "summary.json").read_text())
    for volatile in ("timing", "engine", "inputs", "gates"):
        summary.pop(volatile, None)
    found: dict[str, object] = {"summary": summary}
    for file in sorted(run.rglob("*")):
        if file.is_file() and file.name not in ("summary.json", ".segaudit-run"):
            if file.parts[len(run.parts)] != "photos":
                found[str(file.relative_to(run))] = run_file_bytes(run, file)
    return found


def scanned_from_disk(data: Path, run: Path, *extra: object) -> dict[str, object]:
    result = invoke("scan", data, "-o", run, "-q", *extra)
    assert result.exit_code == 0, result.output
    return run_contents(run)


def feed(run: Path, labels: np.ndarray, probs: np.ndarray, batch: int, **options) -> dict:
    names = options.pop("class_names", None)
    with segaudit.Scanner(run, num_classes=probs.shape[1], class_names=names, **options) as scan:
        for lo in range(0, len(labels), batch):
            scan.add(labels[lo : lo + batch], probs[lo : lo + batch])
    assert scan.summary is not None
    return run_contents(run)


def test_sample_data_through_a_scanner_equals_the_scan(tmp_path):
    labels = np.load(SAMPLE / "labels.npy")
    probs = np.load(SAMPLE / "pred_probs.npy")
    names = (SAMPLE / "classes.txt").read_text().split()
    expected = scanned_from_disk(SAMPLE, tmp_path / "scan")
    assert feed(tmp_path / "fed", labels, probs, 4, class_names=names) == expected


@pytest.mark.parametrize("batch", [1, 3, 1000])
def test_any_batch_size_gives_the_scans_run(tmp_path, batch):
    labels, probs = make_probs(np.random.default_rng(2), 7, 6, 24, 32)
    data = tmp_path / "data"
    data.mkdir()
    np.save(data / "labels.npy", labels.astype(np.uint8))
    np.save(data / "pred_probs.npy", probs)
    expected = scanned_from_disk(data, tmp_path / "scan")
    assert feed(tmp_path / "fed", labels.astype(np.uint8), probs, batch) == expected


def test_downsampling_and_ignore_index_as_scan_options(tmp_path):
    labels, probs = make_probs(np.random.default_rng(4), 5, 4, 16, 24)
    labels[:, :2] = 255
    data = tmp_path / "data"
    data.mkdir()
    np.save(data / "labels.npy", labels.astype(np.uint8))
    np.save(data / "pred_probs.npy", probs)
    expected = scanned_from_disk(data, tmp_path / "scan", "--downsample", 2,
                                 "--ignore-index", 255)  # fmt: skip
    got = feed(tmp_path / "fed", labels.astype(np.uint8), probs, 2, downsample=2, ignore_index=255)
    assert got == expected


def test_a_folder_of_several_sizes_fed_one_image_at_a_time(tmp_path):
    folder = SAMPLE / "folder"
    expected = scanned_from_disk(folder, tmp_path / "scan")
    ids = sorted(p.stem for p in (folder / "labels").glob("*.png"))
    names = (folder / "classes.txt").read_text().split()
    with segaudit.Scanner(tmp_path / "fed", num_classes=len(names), class_names=names) as scan:
        for image_id in ids:
            labels = np.asarray(Image.open(folder / "labels" / f"{image_id}.png"))
            probs = np.load(folder / "pred_probs" / f"{image_id}.npy")
            photo = np.asarray(Image.open(folder / "images" / f"{image_id}.png").convert("RGB"))
            scan.add(labels, probs, ids=[image_id], images=photo)
    assert run_contents(tmp_path / "fed") == expected
    assert scan.summary["totals"]["issue_pixels"] > 0
    # The run works with every later command, the photos kept in it included.
    assert invoke("swaps", tmp_path / "fed", "-q").exit_code == 0
    rendered = invoke("render", tmp_path / "fed", "--top", 1, "-q", "--pages")
    assert rendered.exit_code == 0, rendered.output
    page = next((tmp_path / "fed" / "render").glob("rank*.png"))
    assert Image.open(page).width > 4 * 112  # four panels: the photo panel is drawn
    evaluated = invoke("eval", tmp_path / "fed", "--truth", folder, "--json")
    assert evaluated.exit_code == 0, evaluated.output


def test_torch_like_tensors_and_channels_last_logits(tmp_path):
    class Tensor:  # what a framework hands over: .detach().cpu().numpy()
        def __init__(self, array):
            self.array = array

        def detach(self):
            return self

        def cpu(self):
            return self

        def numpy(self):
            return self.array

    labels, probs = make_probs(np.random.default_rng(6), 4, 5, 12, 16)
    logits = np.log(probs).transpose(0, 2, 3, 1).copy()
    with segaudit.Scanner(tmp_path / "a", num_classes=5) as scan:
        scan.add(Tensor(labels), Tensor(logits), channels_last=True, logits=True)
    with segaudit.Scanner(tmp_path / "b", num_classes=5) as scan:
        scan.add(labels, probs)
    issues_a = [p.read_bytes() for p in sorted((tmp_path / "a" / "issues").glob("*.png"))]
    issues_b = [p.read_bytes() for p in sorted((tmp_path / "b" / "issues").glob("*.png"))]
    assert issues_a == issues_b


def test_an_error_in_the_block_leaves_the_previous_run_and_publishes_nothing(tmp_path):
    labels, probs = make_probs(np.random.default_rng(8), 3, 4, 8, 8)
    run = tmp_path / "run"
    feed(run, labels, probs, 3)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    with pytest.raises(KeyError), segaudit.Scanner(run, num_classes=4) as scan:
        scan.add(labels, probs)
        raise KeyError("the data loader failed")
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    assert not list(tmp_path.glob(".segaudit-tmp-*"))


@pytest.mark.parametrize(
    ("bad", "phrase"),
    [
        ("classes", "has 3 class"),
        ("label", "has label 9 outside 0..3 at image 1, pixel (0, 0)"),
        ("rows", "do not sum to 1 at image 0, pixel (0, 0)"),
        ("shape", "neither one image"),
    ],
)
def test_a_bad_batch_is_one_value_error_naming_it_and_the_scanner_stops(tmp_path, bad, phrase):
    labels, probs = make_probs(np.random.default_rng(9), 2, 4, 8, 8)
    if bad == "classes":
        probs = probs[:, :3] / probs[:, :3].sum(axis=1, keepdims=True)
    elif bad == "label":
        labels[1, 0, 0] = 9
    elif bad == "rows":
        probs = probs * 2
    else:
        probs = probs[0, 0]
    run = tmp_path / "run"
    good_labels, good_probs = make_probs(np.random.default_rng(1), 1, 4, 8, 8)
    with pytest.raises(RuntimeError, match="nothing will be published"):  # noqa: PT012
        with segaudit.Scanner(run, num_classes=4) as scan:
            scan.add(good_labels, good_probs)
            with pytest.raises(ValueError) as error:
                scan.add(labels, probs)
            message = str(error.value)
            assert phrase in message and "batch 1" in message, message
            with pytest.raises(RuntimeError, match="stopped"):
                scan.add(good_labels, good_probs)
    assert not run.exists() and not list(tmp_path.glob(".segaudit-tmp-*"))


def test_gates_are_reported_in_the_summary(tmp_path):
    labels, probs = make_probs(np.random.default_rng(3), 3, 4, 12, 12)
    with segaudit.Scanner(tmp_path / "run", num_classes=4, max_images_with_issues=0,
                          max_issue_fraction=1.0) as scan:  # fmt: skip
        scan.add(labels, probs)
    gates = scan.summary["gates"]
    assert gates["max_images_with_issues"]["passed"] is False
    assert gates["max_issue_fraction"]["passed"] is True
    shutil.rmtree(tmp_path / "run")


def test_two_workers_scan_a_batch_as_one_does(tmp_path):
    labels, probs = make_probs(np.random.default_rng(11), 9, 5, 20, 24)
    outputs = []
    for workers in (1, 2, 2, 2):
        run = tmp_path / f"w{workers}-{len(outputs)}"
        with segaudit.Scanner(run, num_classes=5, workers=workers) as scan:
            for lo in range(0, 9, 4):
                scan.add(labels[lo : lo + 4], probs[lo : lo + 4])
        outputs.append(run_contents(run))
    assert all(output == outputs[0] for output in outputs)
