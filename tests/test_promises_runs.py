"""What `scan` and `score` promise about RUN and their inputs, tried as an attacker would.

A folder is replaced only when it proves it is a run and holds nothing else; no input
may live inside the run being replaced; absent Zarr chunks are never silent; a signal
at any moment of building a run leaves no temporary folder; a full disk is one
sentence; a kept scan is reused only for the very same inputs; data text in CSV and on
the terminal stays plain text; every option asked for is honoured.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr
from helpers import make_probs, one_line_error, tree_digest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import segaudit.jobs.scan
from segaudit import safetext
from segaudit.cli import app
from segaudit.cli._common import raise_terminated
from segaudit.report.tables import score_rows, write_scan_scores, write_score_table
from segaudit.runs import rundir
from segaudit.runs.sink import ScratchImages

runner = CliRunner()
NAMES = ["road", "car", "sky", "tree"]


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=True)


def leftovers(parent: Path) -> list[str]:
    prefixes = (rundir.TEMP_PREFIX, rundir.OLD_PREFIX)
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(prefixes))


def write_dataset(folder: Path, n: int = 4, h: int = 16, w: int = 16, seed: int = 5) -> Path:
    labels, probs = make_probs(np.random.default_rng(seed), n, len(NAMES), h, w, "float32")
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "labels.npy", labels.astype(np.uint8))
    np.save(folder / "pred_probs.npy", probs)
    (folder / "classes.txt").write_text("\n".join(NAMES) + "\n")
    return folder


@pytest.fixture
def data(tmp_path):
    return write_dataset(tmp_path / "data")


def summary_of(run: Path) -> dict:
    return json.loads((run / rundir.SUMMARY).read_text())


COMMANDS = [("scan",), ("score",), ("score", "--method", "num_pixel_issues")]
COMMAND_IDS = ["scan", "score", "score-num_pixel_issues"]


# --- -o never replaces a folder that is not a run -----------------------------------------


@pytest.mark.parametrize("command", COMMANDS, ids=COMMAND_IDS)
@pytest.mark.parametrize(
    "summary",
    ["{}", "not json", '{"command": "scan"}', '{"segaudit_version": "0.1", "command": "train"}'],
    ids=["empty", "garbage", "no-version", "other-command"],
)
def test_a_folder_with_a_summary_not_of_segaudit_is_never_replaced(
    data, tmp_path, command, summary
):
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "summary.json").write_text(summary)
    (folder / "thesis.tex").write_text("three years of work")
    before = tree_digest(folder)
    message = one_line_error(invoke(*command, data, "-o", folder, "-q"))
    assert "is not a segaudit run" in message and "choose another -o path" in message
    assert tree_digest(folder) == before
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("command", COMMANDS, ids=COMMAND_IDS)
def test_a_run_holding_a_file_no_run_writes_is_never_replaced(data, tmp_path, command):
    run = tmp_path / "run"
    assert invoke("scan", data, "-o", run, "-q").exit_code == 0
    (run / "my notes.txt").write_text("keep me")
    before = tree_digest(run)
    message = one_line_error(invoke(*command, data, "-o", run, "-q"))
    assert "my notes.txt" in message and "which no run writes" in message
    assert tree_digest(run) == before and (run / "my notes.txt").read_text() == "keep me"


def test_every_run_carries_the_marker_and_what_later_commands_add_stays_replaceable(data, tmp_path):
    run = tmp_path / "run"
    assert invoke("scan", data, "-o", run, "-q").exit_code == 0
    assert (run / rundir.MARKER).is_file()
    assert invoke("swaps", run, "-q").exit_code == 0
    assert invoke("render", run, "--top", "1", "-q").exit_code == 0
    assert {"swaps.csv", "swaps.png", "render"} <= {p.name for p in run.iterdir()}
    # what a killed writer of an entry leaves beside it is the run's own too
    (run / ".swaps.csv.0123456789ab.tmp.csv").write_text("half")
    (run / ".render.segaudit-tmp-0123abcd").mkdir()
    assert rundir.foreign_entries(run) == [] and rundir.is_segaudit_run(run)
    assert invoke("score", data, "-o", run, "-q").exit_code == 0
    assert (run / rundir.MARKER).is_file() and rundir.is_segaudit_run(run)


def test_runs_of_the_previous_version_without_the_marker_are_still_replaced(data, tmp_path):
    run = tmp_path / "run"
    assert invoke("scan", data, "-o", run, "-q").exit_code == 0
    (run / rundir.MARKER).unlink()
    assert rundir.is_segaudit_run(run)  # a segaudit summary.json and known entries only
    assert invoke("scan", data, "-o", run, "-q", "--downsample", "2").exit_code == 0
    assert summary_of(run)["parameters"]["downsample"] == 2


def test_a_run_proves_itself_by_kind_as_well_as_by_name(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / rundir.MARKER).write_text("x")
    assert rundir.is_segaudit_run(run)
    (run / "render").symlink_to(tmp_path)  # a run never writes a link
    assert not rundir.is_segaudit_run(run)
    (run / "render").unlink()
    (run / "summary.json").mkdir()  # nor a folder by that name
    assert rundir.foreign_entries(run) == ["summary.json"]
    assert not rundir.is_segaudit_run(tmp_path / "missing")
    assert {entry.name for entry in rundir.RUN_ENTRIES} >= {
        "summary.json",
        "image_scores.csv",
        "issues.zarr",
        "swaps.csv",
        "render",
        rundir.MARKER,
    }


# --- no input inside the run being replaced -----------------------------------------------


@pytest.mark.parametrize("command", COMMANDS, ids=COMMAND_IDS)
def test_a_class_names_file_inside_the_run_is_refused(data, tmp_path, command):
    run = tmp_path / "run"
    assert invoke("scan", data, "-o", run, "-q").exit_code == 0
    (run / "render").mkdir()
    names = run / "render" / "classes.txt"
    names.write_text("\n".join(NAMES) + "\n")
    before = tree_digest(run)
    message = one_line_error(invoke(*command, data, "-o", run, "-q", "--class-names", names))
    assert "classes.txt is inside the run directory" in message
    assert tree_digest(run) == before and names.is_file()


def test_images_inside_the_run_are_refused(data, tmp_path):
    run = tmp_path / "run"
    assert invoke("scan", data, "-o", run, "-q").exit_code == 0
    (run / "render").mkdir()
    images = run / "render" / "images.npy"
    np.save(images, np.zeros((4, 16, 16, 3), np.uint8))
    message = one_line_error(invoke("scan", data, "-o", run, "-q", "--images", images))
    assert "images.npy is inside the run directory" in message and images.is_file()


# --- absent Zarr chunks are never silent --------------------------------------------------


def zarr_store(path: Path, array: np.ndarray, fmt: int, fill_value=None) -> Path:
    store = zarr.create_array(
        store=str(path),
        shape=array.shape,
        dtype=array.dtype,
        chunks=(1, *array.shape[1:]),
        zarr_format=fmt,
        fill_value=fill_value,
    )
    store[:] = array
    return path


def drop_chunk(store: Path, image: int, ndim: int) -> None:
    """Delete the chunk of one image: ``I.0.0`` (v2) or ``c/I/0/0`` (v3) for 3-D arrays."""
    rest = ["0"] * (ndim - 1)
    v2, v3 = store / ".".join([str(image), *rest]), store.joinpath("c", str(image), *rest)
    (v2 if v2.is_file() else v3).unlink()


@pytest.mark.parametrize("command", COMMANDS, ids=COMMAND_IDS)
def test_absent_label_chunks_are_named_on_stderr_and_in_the_summary(tmp_path, command):
    labels, probs = make_probs(np.random.default_rng(2), 5, 4, 8, 8)
    folder = tmp_path / "data"
    folder.mkdir()
    zarr_store(folder / "labels.zarr", labels.astype(np.uint8), 3)
    np.save(folder / "pred_probs.npy", probs)
    drop_chunk(folder / "labels.zarr", 3, 3)
    run = tmp_path / "run"
    result = invoke(*command, folder, "-o", run, "-q")
    assert result.exit_code == 0, result.output
    warning = result.stderr.strip()
    assert warning.startswith("warning:") and "labels.zarr" in warning, warning
    assert "absent Zarr chunks in 1 image(s) (3)" in warning
    recorded = summary_of(run)["inputs"]["labels"]["absent_chunk_images"]
    assert recorded == {"count": 1, "images": [3]}
    assert summary_of(run)["inputs"]["pred_probs"]["absent_chunk_images"]["count"] == 0


@pytest.mark.parametrize("command", COMMANDS, ids=COMMAND_IDS)
def test_absent_pred_probs_chunks_are_refused_unless_allowed(tmp_path, command):
    labels, probs = make_probs(np.random.default_rng(3), 5, 4, 8, 8)
    folder = tmp_path / "data"
    folder.mkdir()
    np.save(folder / "labels.npy", labels.astype(np.uint8))
    # A fill value of 1/K makes an absent image a valid, constant probability row.
    zarr_store(folder / "pred_probs.zarr", probs, 2, fill_value=0.25)
    drop_chunk(folder / "pred_probs.zarr", 1, 4)
    drop_chunk(folder / "pred_probs.zarr", 4, 4)
    run = tmp_path / "run"
    message = one_line_error(invoke(*command, folder, "-o", run, "-q"))
    assert "pred_probs.zarr has absent Zarr chunks in 2 image(s) (1, 4)" in message
    assert "--allow-absent-chunks" in message
    assert not run.exists() and leftovers(tmp_path) == []

    allowed = invoke(*command, folder, "-o", run, "-q", "--allow-absent-chunks")
    assert allowed.exit_code == 0, allowed.output
    assert "pred_probs.zarr has absent Zarr chunks in 2 image(s) (1, 4)" in allowed.stderr
    recorded = summary_of(run)["inputs"]["pred_probs"]["absent_chunk_images"]
    assert recorded == {"count": 2, "images": [1, 4]}


def test_an_all_background_image_written_by_zarr_is_read_with_a_warning(tmp_path):
    # Zarr 3 does not write a chunk equal to the fill value: absence alone is not damage.
    labels, probs = make_probs(np.random.default_rng(4), 3, 4, 8, 8)
    labels = labels.astype(np.uint8)
    labels[1] = 0
    folder = tmp_path / "data"
    folder.mkdir()
    zarr_store(folder / "labels.zarr", labels, 3)
    np.save(folder / "pred_probs.npy", probs)
    result = invoke("scan", folder, "-o", tmp_path / "run", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["inputs"]["labels"]["absent_chunk_images"]["images"] == [1]
    assert "(1)" in result.stderr


# --- signals while a run is built ---------------------------------------------------------


@pytest.fixture(params=["SIGINT", "SIGTERM", "SIGHUP"])
def stop_signal(request):
    """Each signal a job is stopped by, raised as the command line raises it."""
    signum = getattr(signal, request.param)
    previous = signal.getsignal(signum)
    if signum != signal.SIGINT:
        signal.signal(signum, raise_terminated)
    yield signum
    signal.signal(signum, previous)


def test_a_signal_while_the_temporary_run_is_created_leaves_nothing(
    tmp_path, monkeypatch, stop_signal
):
    real_mkdir = os.mkdir

    def mkdir_then_signal(path, *args, **kwargs):
        real_mkdir(path, *args, **kwargs)
        if Path(path).name.startswith(rundir.TEMP_PREFIX):
            signal.raise_signal(stop_signal)  # right after the folder appears

    handler = signal.getsignal(stop_signal)
    monkeypatch.setattr(os, "mkdir", mkdir_then_signal)
    with pytest.raises(KeyboardInterrupt), rundir.building_run(tmp_path / "run") as tmp:
        raise AssertionError(f"the work must not start: {tmp}")
    monkeypatch.undo()
    assert leftovers(tmp_path) == [] and not (tmp_path / "run").exists()
    assert signal.getsignal(stop_signal) is handler


def test_a_second_signal_during_the_clean_up_cannot_cut_it_short(
    tmp_path, monkeypatch, stop_signal
):
    real_rmtree = rundir.shutil.rmtree
    removals = []

    def rmtree_interrupted(path, *args, **kwargs):
        if Path(path).name.startswith(rundir.TEMP_PREFIX):
            removals.append(path)
            signal.raise_signal(stop_signal)  # the impatient second signal
        real_rmtree(path, *args, **kwargs)

    handler = signal.getsignal(stop_signal)
    monkeypatch.setattr(rundir.shutil, "rmtree", rmtree_interrupted)
    with pytest.raises(KeyboardInterrupt), rundir.building_run(tmp_path / "run") as tmp:
        (tmp / "half.bin").write_bytes(b"x" * 100)
        signal.raise_signal(stop_signal)  # the first signal, mid-work
    monkeypatch.undo()
    assert len(removals) == 1
    assert leftovers(tmp_path) == [] and not (tmp_path / "run").exists()
    assert signal.getsignal(stop_signal) is handler


def test_a_signal_right_after_the_swap_finds_the_new_run_complete(tmp_path, monkeypatch):
    run = tmp_path / "run"
    real_install = rundir._install

    def install_then_signal(tmp, target):
        real_install(tmp, target)
        signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(rundir, "_install", install_then_signal)
    with pytest.raises(KeyboardInterrupt), rundir.building_run(run) as tmp:
        rundir.write_json_atomic(tmp / rundir.SUMMARY, {"segaudit_version": "x", "command": "scan"})
    monkeypatch.undo()
    assert rundir.was_published(run) and rundir.is_segaudit_run(run)
    assert leftovers(tmp_path) == []


def test_was_published_speaks_of_the_latest_build_only(tmp_path):
    run = tmp_path / "run"
    with rundir.building_run(run) as tmp:
        rundir.write_json_atomic(tmp / rundir.SUMMARY, {"segaudit_version": "x", "command": "scan"})
    assert rundir.was_published(run)
    with pytest.raises(KeyboardInterrupt), rundir.building_run(run):
        raise KeyboardInterrupt  # the next build of the same run is interrupted
    assert not rundir.was_published(run)


# --- a full disk is one sentence ----------------------------------------------------------

# A downsampled scan whose file-size limit (RLIMIT_FSIZE) drops, once HOLD_AFTER images are
# written, to what the scratch scores file already holds: write() then fails with EFBIG,
# as it fails with ENOSPC on a full disk, where a memory-mapped write dies by SIGBUS.
LIMITED_SCAN = """
import os, resource, sys
from pathlib import Path
import segaudit.jobs.scan
def limit(stop):
    if stop == int(os.environ["HOLD_AFTER"]):
        parent = Path(os.environ["RUN"]).parent
        scratch = max(parent.glob(".segaudit-tmp-*/_scratch/cl_scores.*"), key=os.path.getsize)
        size = os.path.getsize(scratch)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, resource.RLIM_INFINITY))
segaudit.jobs.scan._test_hook_after_batch = limit
sys.argv[0] = "segaudit"
from segaudit.cli import main
main()
"""


def test_a_file_size_limit_reached_by_the_scratch_scores_is_one_sentence(tmp_path):
    data = write_dataset(tmp_path / "data", n=12, h=64, w=64)
    run = tmp_path / "out" / "run"
    assert invoke("scan", data, "-o", run, "-q").exit_code == 0
    before = tree_digest(run)
    args = ["scan", str(data), "-o", str(run), "-q", "--downsample", "2"]
    args += ["--batch-size", "1", "--workers", "1"]
    done = subprocess.run(
        [sys.executable, "-c", LIMITED_SCAN, *args],
        env={**os.environ, "HOLD_AFTER": "10", "RUN": str(run)},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2, done.stderr
    message = done.stderr.strip()
    assert message.startswith("error:") and "\n" not in message, message
    assert "File too large" in message and "cl_scores" in message
    assert f"the previous contents of {run} are unchanged" in message
    assert tree_digest(run) == before and leftovers(run.parent) == []


def test_a_full_disk_under_the_scratch_scores_is_one_sentence(data, tmp_path, monkeypatch):
    run = tmp_path / "run"
    assert invoke("scan", data, "-o", run, "-q").exit_code == 0
    before = tree_digest(run)
    real_pwrite = os.pwrite

    def full_disk(fd, payload, offset):
        if "_scratch" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_pwrite(fd, payload, offset)

    monkeypatch.setattr(os, "pwrite", full_disk)
    message = one_line_error(invoke("scan", data, "-o", run, "-q", "--downsample", "2"))
    monkeypatch.undo()
    assert "No space left on device" in message and "_scratch" in message
    assert tree_digest(run) == before and leftovers(tmp_path) == []


def test_scratch_arrays_read_back_what_was_written_by_image(tmp_path):
    sizes = np.array([[3, 2], [4, 5], [1, 1], [3, 2]])
    array = ScratchImages(tmp_path / "s.raw", np.float32)
    values = [
        np.arange(h * w, dtype=np.float32).reshape(h, w) + i
        for i, (h, w) in enumerate(sizes)
    ]
    for index in (3, 0, 2, 1):
        array.write_image(index, values[index])
    assert all(np.array_equal(array.read_image(i), values[i]) for i in range(4))
    array.close()


# --- a kept scan is reused only for the very same inputs ----------------------------------


def test_a_kept_scan_is_not_reused_after_the_class_names_changed(data, tmp_path):
    run = tmp_path / "run"
    assert invoke("scan", data, "-o", run, "-q").exit_code == 0
    (data / "classes.txt").write_text("road\ncar\nsky\nbush\n")
    message = one_line_error(invoke("score", data, "-o", run, "--method", "num_pixel_issues"))
    assert "holds a scan of other inputs (class_names" in message and "--replace" in message
    assert summary_of(run)["classes"]["names"] == NAMES
    replaced = invoke("score", data, "-o", run, "-q", "--method", "num_pixel_issues", "--replace")
    assert replaced.exit_code == 0, replaced.output
    assert summary_of(run)["classes"]["names"] == ["road", "car", "sky", "bush"]
    assert summary_of(run)["scores"]["scan"] == "computed"


def test_a_kept_scan_is_not_reused_with_other_class_names_given(data, tmp_path):
    run = tmp_path / "run"
    assert invoke("scan", data, "-o", run, "-q").exit_code == 0
    other = tmp_path / "names.txt"
    other.write_text("road\ncar\nsky\nbush\n")
    message = one_line_error(
        invoke("score", data, "-o", run, "--method", "num_pixel_issues", "--class-names", other)
    )
    assert "holds a scan of other inputs (class_names was" in message


def test_a_kept_scan_is_not_reused_after_the_images_changed(data, tmp_path):
    np.save(data / "images.npy", np.zeros((4, 16, 16, 3), np.uint8))
    run = tmp_path / "run"
    assert invoke("scan", data, "-o", run, "-q").exit_code == 0
    np.save(data / "images.npy", np.full((4, 16, 16, 3), 9, np.uint8))
    message = one_line_error(invoke("score", data, "-o", run, "--method", "num_pixel_issues"))
    assert "holds a scan of other inputs (images" in message


def test_a_rewritten_input_with_its_mtime_restored_is_not_reused(tmp_path):
    # Large enough that the fingerprint's hash of the first and last MiB misses the middle.
    data = write_dataset(tmp_path / "data", n=48, h=64, w=64)
    run = tmp_path / "run"
    assert invoke("scan", data, "-o", run, "-q").exit_code == 0
    probs_path = data / "pred_probs.npy"
    stat = probs_path.stat()
    probs = np.load(probs_path, mmap_mode="r+")
    probs[24] = probs[25]  # same size, other content, mid-file
    probs.flush()
    del probs
    os.utime(probs_path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # as cp -p leaves it
    message = one_line_error(invoke("score", data, "-o", run, "--method", "num_pixel_issues"))
    assert "pred_probs.npy changed since" in message


def test_a_class_names_file_changed_during_a_scan_writes_nothing(data, tmp_path, monkeypatch):
    run = tmp_path / "run"
    assert invoke("scan", data, "-o", run, "-q").exit_code == 0
    before = tree_digest(run)

    def rename_a_class(stop: int) -> None:
        (data / "classes.txt").write_text("road\ncar\nsky\nbush\n")

    monkeypatch.setattr(segaudit.jobs.scan, "_test_hook_after_batch", rename_a_class)
    message = one_line_error(
        invoke("scan", data, "-o", run, "-q", "--batch-size", "1", "--workers", "1")
    )
    assert "classes.txt changed while segaudit was reading it" in message
    assert tree_digest(run) == before and leftovers(tmp_path) == []


# --- data text in CSV files stays text ------------------------------------------------------

HOSTILE_IDS = ['=HYPERLINK("http://x")', "+1", "-2", "@SUM(A1)", "\tx", "plain", "'=q", "'x"]


@settings(deadline=None)  # timing is not what is tested; a loaded machine is slow
@given(st.text(max_size=8))
def test_a_csv_cell_reads_back_as_written(text):
    """The guard round-trips every string, one that starts with the guard included."""
    cell = safetext.csv_cell(text)
    assert not cell.startswith(safetext.FORMULA_PREFIXES)
    assert safetext.from_csv_cell(cell) == text


def read_ids(path: Path) -> list[str]:
    with open(path, newline="") as handle:
        return [row["id"] for row in csv.DictReader(handle)]


def test_image_ids_in_a_scans_csv_cannot_be_formulas(tmp_path):
    n = len(HOSTILE_IDS)
    scores = np.linspace(0.1, 0.9, n)  # image order is rank order
    path = tmp_path / "image_scores.csv"
    files = [f"labels/{i}.png" for i in range(n)]
    write_scan_scores(
        path, scores, np.zeros(n, np.int64), np.ones(n, np.int64), HOSTILE_IDS, files,
        np.ones(n),
    )  # fmt: skip
    cells = read_ids(path)
    assert all(not cell.startswith(safetext.FORMULA_PREFIXES) for cell in cells)
    assert [safetext.from_csv_cell(cell) for cell in cells] == HOSTILE_IDS


def test_image_ids_in_a_scores_csv_cannot_be_formulas(tmp_path):
    n = len(HOSTILE_IDS)
    path = tmp_path / "image_scores.csv"
    rows = score_rows(np.linspace(0.1, 0.9, n), HOSTILE_IDS)
    write_score_table(path, rows, [f"labels/{i}.png" for i in range(n)])
    cells = read_ids(path)
    assert all(not cell.startswith(safetext.FORMULA_PREFIXES) for cell in cells)
    assert [safetext.from_csv_cell(cell) for cell in cells] == HOSTILE_IDS


# --- a run records where its inputs are, from anywhere -------------------------------------


@pytest.mark.parametrize("command", COMMANDS, ids=COMMAND_IDS)
def test_a_run_records_its_inputs_by_absolute_path(data, tmp_path, monkeypatch, command):
    np.save(data / "images.npy", np.zeros((4, 16, 16, 3), np.uint8))
    (tmp_path / "current").symlink_to(data)  # a link the user keeps pointing at the latest
    monkeypatch.chdir(tmp_path)
    assert invoke(*command, "current", "-o", "run", "-q").exit_code == 0
    inputs = summary_of(tmp_path / "run")["inputs"]
    expected = {
        "labels": "labels.npy",
        "pred_probs": "pred_probs.npy",
        "images": "images.npy",
        "class_names": "classes.txt",
    }
    for name, file in expected.items():
        assert inputs[name]["path"] == str(tmp_path / "current" / file), name  # link kept
        assert "mtime_ns" in inputs[name] and "bytes" in inputs[name]


# --- options asked for are honoured ---------------------------------------------------------

FIRST = {
    "scan": ("scan",),
    "npi": ("score", "--method", "num_pixel_issues"),
    "npi+pixels": ("score", "--method", "num_pixel_issues", "--pixel-scores"),
    "softmin": ("score",),
}
THEN = {
    "softmin+pixels": ("score", "--pixel-scores"),
    "npi+pixels": ("score", "--method", "num_pixel_issues", "--pixel-scores"),
}


@pytest.mark.parametrize("then", THEN, ids=list(THEN))
@pytest.mark.parametrize("first", FIRST, ids=list(FIRST))
def test_pixel_scores_are_written_whenever_asked_for(data, tmp_path, first, then):
    run = tmp_path / "run"
    assert invoke(*FIRST[first], data, "-o", run, "-q").exit_code == 0
    result = invoke(*THEN[then], data, "-o", run, "-q")
    assert result.exit_code == 0, result.output
    summary = summary_of(run)
    assert summary["scores"]["pixel_scores"] is True
    labels, probs = np.load(data / "labels.npy"), np.load(data / "pred_probs.npy")
    expected = np.take_along_axis(probs, labels[:, None].astype(np.intp), 1)[:, 0]
    stored = zarr.open_array(str(run / "pixel_scores.zarr"), mode="r")[:]
    assert np.array_equal(stored, expected)


# --- names and paths are printed as plain text -----------------------------------------------


def test_markup_in_class_names_and_paths_is_printed_as_text(tmp_path):
    labels, probs = make_probs(np.random.default_rng(8), 3, 4, 16, 16)
    folder = tmp_path / "data"
    folder.mkdir()
    np.save(folder / "labels.npy", labels.astype(np.uint8))
    np.save(folder / "pred_probs.npy", probs)
    names = ["[/x]", "[bold]loud", "[red]", "a\x1b[31mb"]
    (folder / "classes.txt").write_text("\n".join(names) + "\n")
    run = tmp_path / "run[/x]"
    scanned = runner.invoke(app, ["scan", str(folder), "-o", str(run)], terminal_width=200)
    assert scanned.exit_code == 0, scanned.output
    assert f"→ {run}" in scanned.stdout and "[/x]" in scanned.stdout
    assert "[bold]loud" in scanned.stdout and "\x1b" not in scanned.stdout
    scored = runner.invoke(app, ["score", str(folder), "-o", str(run)], terminal_width=200)
    assert scored.exit_code == 0, scored.output
    assert f"→ {run};" in scored.stdout and f"{run / 'image_scores.csv'}" in scored.stdout
    np.save(folder / "is_corrupted.npy", np.array([True, False, True]))
    np.save(folder / "true_labels.npy", labels.astype(np.uint8))
    evaluated = runner.invoke(app, ["eval", str(run), "--truth", str(folder)], terminal_width=200)
    assert evaluated.exit_code == 0, evaluated.output
    assert f"segaudit eval {run}" in evaluated.stdout
