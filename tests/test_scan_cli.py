"""`segaudit scan` end to end: files written, their contents, gates, bad input."""

from __future__ import annotations

import csv
import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest
import zarr
from helpers import make_probs, naive_issues, tree_digest
from typer.testing import CliRunner

from segaudit.api import find_label_issues
from segaudit.cli import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def write_dataset(folder: Path, labels, probs, names=None, fmt="npy") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "npy":
        np.save(folder / "labels.npy", labels)
        np.save(folder / "pred_probs.npy", probs)
    else:
        for name, array in (("labels", labels), ("pred_probs", probs)):
            z = zarr.create_array(
                store=str(folder / f"{name}.zarr"),
                shape=array.shape,
                dtype=array.dtype,
                chunks=(1, *array.shape[1:]),
                zarr_format=fmt,
            )
            z[:] = array
    if names:
        (folder / "classes.txt").write_text("\n".join(names) + "\n")
    return folder


@pytest.fixture
def dataset(tmp_path):
    labels, probs = make_probs(np.random.default_rng(3), 4, 5, 16, 24, "float32")
    names = ["road", "car", "sky", "tree", "person"]
    return write_dataset(tmp_path / "data", labels.astype(np.uint8), probs, names), labels, probs


def test_scan_writes_a_complete_run(dataset, tmp_path):
    folder, labels, probs = dataset
    run = tmp_path / "run"
    result = invoke("scan", folder, "-o", run, "--quiet")
    assert result.exit_code == 0, result.output
    assert result.output == ""
    summary = json.loads((run / "summary.json").read_text())
    expected = find_label_issues(labels, probs)
    issues = zarr.open_array(str(run / "issues.zarr"), mode="r")[:]
    assert np.array_equal(issues, expected)
    assert np.array_equal(zarr.open_array(str(run / "pred_labels.zarr"))[:], probs.argmax(1))
    scores = zarr.open_array(str(run / "pixel_scores.zarr"))[:]
    assert np.array_equal(scores, np.take_along_axis(probs, labels[:, None], 1)[:, 0])
    assert np.array_equal(zarr.open_array(str(run / "labels.zarr"))[:], labels)
    assert summary["classes"]["names"] == ["road", "car", "sky", "tree", "person"]
    assert summary["totals"]["issue_pixels"] == int(expected.sum())
    assert summary["totals"]["images_with_issues"] == int(expected.any(axis=(1, 2)).sum())
    naive = naive_issues(labels, probs)
    assert np.allclose(summary["classes"]["thresholds"], naive.thresholds, rtol=1e-12)
    assert summary["totals"]["candidates"] == naive.m
    assert summary["inputs"]["pred_probs"]["shape"] == list(probs.shape)
    rows = list(csv.DictReader((run / "image_scores.csv").read_text().splitlines()))
    assert [int(r["rank"]) for r in rows] == [1, 2, 3, 4]
    softmin = [float(r["softmin_score"]) for r in rows]
    assert softmin == sorted(softmin)
    for row in rows:
        assert int(row["issue_pixels"]) == int(expected[int(row["image"])].sum())
    assert not list(tmp_path.glob(".segaudit-tmp-*"))


def test_scan_prints_a_readable_summary_and_json(dataset, tmp_path):
    folder, _, _ = dataset
    result = invoke("scan", folder, "-o", tmp_path / "run")
    assert result.exit_code == 0
    assert "issue pixels" in result.output and "image_scores.csv" in result.output
    result = invoke("scan", folder, "-o", tmp_path / "run2", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["command"] == "scan"


@pytest.mark.parametrize("fmt", [2, 3])
def test_scan_reads_zarr_v2_and_v3(tmp_path, fmt):
    labels, probs = make_probs(np.random.default_rng(4), 3, 4, 16, 16, "float16")
    folder = write_dataset(tmp_path / "z", labels.astype(np.int32), probs, fmt=fmt)
    run = tmp_path / "run"
    assert invoke("scan", folder, "-o", run, "-q").exit_code == 0
    issues = zarr.open_array(str(run / "issues.zarr"))[:]
    assert np.array_equal(issues, find_label_issues(labels, probs))


def test_scan_reads_a_zarr_group_dataset(tmp_path):
    labels, probs = make_probs(np.random.default_rng(4), 2, 4, 16, 16, "float32")
    group = zarr.open_group(str(tmp_path / "ds.zarr"), mode="w")
    group.create_array("labels", data=labels.astype(np.uint8))
    group.create_array("pred_probs", data=probs)
    assert invoke("scan", tmp_path / "ds.zarr", "-o", tmp_path / "run", "-q").exit_code == 0
    issues = zarr.open_array(str(tmp_path / "run" / "issues.zarr"))[:]
    assert np.array_equal(issues, find_label_issues(labels, probs))


def test_scan_reads_pred_probs_exactly_once(dataset, tmp_path, monkeypatch):
    from segaudit.sources.stores import ArraySource

    folder, _, probs = dataset
    reads: list[tuple[str, int, int]] = []
    original = ArraySource.read

    def counting_read(self, start, stop, **options):
        reads.append((self.path.name, start, stop))
        return original(self, start, stop, **options)

    monkeypatch.setattr(ArraySource, "read", counting_read)
    assert invoke("scan", folder, "-o", tmp_path / "run", "-q", "--batch-size", "3").exit_code == 0
    probs_reads = sorted((a, b) for name, a, b in reads if name == "pred_probs.npy")
    assert probs_reads == [(i, i + 1) for i in range(len(probs))]  # each image once


def test_gates_exit_one_when_exceeded(dataset, tmp_path):
    folder, labels, probs = dataset
    fraction = find_label_issues(labels, probs).mean()
    result = invoke(
        "scan", folder, "-o", tmp_path / "run", "-q", "--max-issue-fraction", f"{fraction / 2}"
    )
    assert result.exit_code == 1
    assert "gate failed" in result.output
    assert (tmp_path / "run" / "summary.json").exists()
    ok = invoke(
        "scan",
        folder,
        "-o",
        tmp_path / "run",
        "-q",
        "--max-issue-fraction",
        "0.99",
        "--max-images-with-issues",
        "4",
    )
    assert ok.exit_code == 0
    assert (
        invoke(
            "scan", folder, "-o", tmp_path / "run", "-q", "--max-images-with-issues", "0"
        ).exit_code
        == 1
    )


def test_scan_replaces_a_previous_run(dataset, tmp_path):
    folder, _, _ = dataset
    run = tmp_path / "run"
    assert invoke("scan", folder, "-o", run, "-q").exit_code == 0
    first = json.loads((run / "summary.json").read_text())
    assert invoke("scan", folder, "-o", run, "-q", "--downsample", "2").exit_code == 0
    second = json.loads((run / "summary.json").read_text())
    assert first["parameters"]["downsample"] == 1 and second["parameters"]["downsample"] == 2
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".segaudit-tmp")) == []


# --- bad input: one sentence, exit 2, nothing written, inputs and previous run untouched ---


def corrupt(kind: str, folder: Path, labels, probs) -> tuple[list[str], str]:
    """Make ``folder`` bad in one way; return extra CLI args and a phrase the message must hold."""
    if kind == "shape":
        np.save(folder / "labels.npy", labels[:, :8].astype(np.uint8))
        return [], "must match"
    if kind == "label_range":
        bad = labels.astype(np.uint8).copy()
        bad[1, 2, 3] = 9
        np.save(folder / "labels.npy", bad)
        return [], "outside 0..4"
    if kind == "nan":
        bad = probs.copy()
        bad[2, 1, 0, 0] = np.nan
        np.save(folder / "pred_probs.npy", bad)
        return [], "NaN"
    if kind == "negative":
        bad = probs.copy()
        bad[0, 0, 1, 1] = -0.25
        bad[0, 1, 1, 1] += 0.25
        np.save(folder / "pred_probs.npy", bad)
        return [], "negative"
    if kind == "logits":
        np.save(folder / "pred_probs.npy", (np.log(probs) + 2).astype(np.float32))
        return [], "--logits"
    if kind == "truncated":
        data = (folder / "pred_probs.npy").read_bytes()
        (folder / "pred_probs.npy").write_bytes(data[: len(data) // 2])
        return [], "truncated"
    if kind == "corrupt_zarr":
        (folder / "pred_probs.npy").unlink()
        z = zarr.create_array(
            store=str(folder / "pred_probs.zarr"),
            shape=probs.shape,
            dtype=probs.dtype,
            chunks=(1, *probs.shape[1:]),
        )
        z[:] = probs
        chunk = sorted((folder / "pred_probs.zarr" / "c").rglob("*"))[-1]
        chunk.write_bytes(b"\x00garbage" * 7)
        return [], "corrupt"
    if kind == "missing":
        (folder / "pred_probs.npy").unlink()
        return [], "pred_probs"
    if kind == "downsample":
        return ["--downsample", "5"], "divisible"
    if kind == "object_dtype":
        np.save(folder / "labels.npy", labels.astype(object), allow_pickle=True)
        return [], "object"
    raise AssertionError(kind)


BAD = [
    "shape",
    "label_range",
    "nan",
    "negative",
    "logits",
    "truncated",
    "corrupt_zarr",
    "missing",
    "downsample",
    "object_dtype",
]


@pytest.mark.parametrize("kind", BAD)
def test_bad_input_is_one_sentence_and_exit_two(dataset, tmp_path, kind):
    folder, labels, probs = dataset
    run = tmp_path / "run"
    assert invoke("scan", folder, "-o", run, "-q").exit_code == 0
    run_before = tree_digest(run)
    extra, phrase = corrupt(kind, folder, labels, probs)
    inputs_before = tree_digest(folder)
    result = invoke("scan", folder, "-o", run, "-q", *extra)
    assert result.exit_code == 2, result.output
    message = result.stderr.strip()
    assert "Traceback" not in result.output
    assert message.startswith("error:")
    assert len(message.splitlines()) == 1 or len(" ".join(message.split())) < 400
    assert phrase in message
    assert "pred_probs" in message or "labels" in message or "data" in message
    assert tree_digest(folder) == inputs_before
    assert tree_digest(run) == run_before
    assert not list(tmp_path.glob(".segaudit-tmp-*"))


def test_existing_output_that_is_not_a_run_is_refused(dataset, tmp_path):
    folder, _, _ = dataset
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    result = invoke("scan", folder, "-o", precious, "-q")
    assert result.exit_code == 2
    assert "not a segaudit run" in result.stderr
    assert (precious / "notes.txt").read_text() == "keep me"
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert invoke("scan", folder, "-o", afile, "-q").exit_code == 2
    assert afile.read_text() == "x"


def test_missing_dataset_folder(tmp_path):
    result = invoke("scan", tmp_path / "nope", "-o", tmp_path / "run", "-q")
    assert result.exit_code == 2
    assert "does not exist" in result.stderr
    assert not (tmp_path / "run").exists()


def test_wrong_number_of_class_names(dataset, tmp_path):
    folder, _, _ = dataset
    (folder / "classes.txt").write_text("a\nb\n")
    result = invoke("scan", folder, "-o", tmp_path / "run", "-q")
    assert result.exit_code == 2
    assert "2 class names" in result.stderr


def test_the_arrays_are_flushed_while_the_issues_are_worked_out(dataset, tmp_path, monkeypatch):
    # Once the pass has written the per-pixel arrays, a thread flushes their chunk files
    # while selection and the issue mask are computed; scratch files, deleted unwritten,
    # are never flushed; the sync before publishing waits for that thread first.
    from segaudit.runs import durability

    folder, _, _ = dataset
    flushed: list[tuple[str, str]] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        flushed.append((threading.current_thread().name, os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    monkeypatch.setattr(durability.os, "fsync", spy)
    finished: list[str] = []
    real_finish = durability.finish_early_flush

    def finish(path: Path) -> None:
        real_finish(path)
        finished.append(str(path))

    monkeypatch.setattr(durability, "finish_early_flush", finish)
    run = tmp_path / "run"
    assert invoke("scan", folder, "-o", run, "-q").exit_code == 0
    early = [path for thread, path in flushed if thread == "segaudit-flush"]
    chunks = [p for p in early if Path(p).parent.suffix == ".zarr"]
    assert {Path(p).parent.name for p in chunks} == {
        "labels.zarr",
        "pred_labels.zarr",
        "pixel_scores.zarr",
    }
    assert len(chunks) == 3 * (4 + 1)  # four images' chunks and zarr.json, per array
    assert not [p for p in early if "_scratch" in p]
    assert finished and finished[0].startswith(str(tmp_path / ".segaudit-tmp-run"))
    assert (run / "summary.json").is_file()
