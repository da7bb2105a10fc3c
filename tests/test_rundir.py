"""The run directory is transactional: previous complete run or new complete run, never a mix.

Library-level checks of `segaudit.runs.rundir`; `test_robustness.py` kills real processes.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from helpers import tree_digest

from segaudit.errors import OutputWriteError, RunDirectoryError
from segaudit.runs import durability, rundir


def complete_run(path: Path, marker: str) -> Path:
    """A run as an earlier segaudit wrote it: a summary of segaudit's schema, no marker."""
    path.mkdir(parents=True)
    (path / "issues.zarr").mkdir()
    (path / "issues.zarr" / "zarr.json").write_text(marker)
    summary = {"segaudit_version": "0.1.0", "command": "scan", "marker": marker}
    (path / rundir.SUMMARY).write_text(json.dumps(summary))
    return path


def fill(tmp: Path, marker: str) -> None:
    (tmp / "issues.zarr").mkdir()
    (tmp / "issues.zarr" / "zarr.json").write_text(marker)
    rundir.write_json_atomic(tmp / rundir.SUMMARY, {"marker": marker})


def marker(run: Path) -> str:
    return json.loads((run / rundir.SUMMARY).read_text())["marker"]


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


@pytest.fixture(params=["exchange", "two renames"])
def swap(request, monkeypatch):
    """Run each test with renameat2 and with the fallback for kernels without it."""
    if request.param == "two renames":
        monkeypatch.setattr(durability, "exchange", lambda a, b: False)
    return request.param


def test_a_new_run_appears_complete_and_alone(tmp_path, swap):
    run = tmp_path / "run"
    with rundir.building_run(run) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".segaudit-tmp-run-")
        assert not run.exists()
        fill(tmp, "new")
    assert marker(run) == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".segaudit-lock-run", "run"]


def test_a_previous_run_is_replaced_whole(tmp_path, swap):
    run = complete_run(tmp_path / "run", "old")
    (run / "swaps.csv").write_text("x")  # an output only the old run has
    with rundir.building_run(run) as tmp:
        fill(tmp, "new")
    assert marker(run) == "new" and not (run / "swaps.csv").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".segaudit-lock-run", "run"]


@pytest.mark.parametrize(
    "failure",
    [
        ValueError("boom"),
        RunDirectoryError("bad"),
        KeyboardInterrupt(),
        OSError(errno.ENOSPC, "No space left on device"),
    ],
    ids=["bug", "user-error", "interrupt", "disk-full"],
)
def test_a_failed_run_leaves_the_previous_run_and_no_trace(tmp_path, swap, failure):
    run = complete_run(tmp_path / "run", "old")
    before = tree_digest(run)
    expected = OutputWriteError if isinstance(failure, OSError) else type(failure)
    with pytest.raises(expected) as caught, rundir.building_run(run) as tmp:
        fill(tmp, "new")
        raise failure
    assert tree_digest(run) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".segaudit-lock-run", "run"]
    if isinstance(failure, OSError):
        assert str(caught.value) == (
            f"writing {run} failed (No space left on device); "
            f"the previous contents of {run} are unchanged."
        )


def test_write_errors_name_the_file_as_it_would_be_in_the_run(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(OutputWriteError) as caught, rundir.building_run(run) as tmp:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp / "image_scores.csv"))
    assert f"writing {run / 'image_scores.csv'} failed (No space left on device)" in str(
        caught.value
    )
    assert ".segaudit-tmp" not in str(caught.value)


def test_a_run_without_summary_is_never_installed(tmp_path):
    run = complete_run(tmp_path / "run", "old")
    with pytest.raises(RunDirectoryError, match="not completed"), rundir.building_run(run) as tmp:
        (tmp / "image_scores.csv").write_text("half")
    assert marker(run) == "old"


def test_json_is_written_atomically_and_failures_leave_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "summary.json"
    rundir.write_json_atomic(path, {"a": 1})

    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OSError):
        rundir.write_json_atomic(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


# --- stale leftovers ----------------------------------------------------------------------


def test_stale_leftovers_are_removed_by_exact_name_only(tmp_path):
    dead, alive = dead_pid(), os.getpid()
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep.txt").write_text("keep")
    names = {
        "dead": f".segaudit-tmp-run-{dead}-0123abcd",
        "dead_old": f".segaudit-old-run-{dead}-0123abcd",
        "alive": f".segaudit-tmp-run-{alive}-0123abcd",  # e.g. a reused pid
        "other_run": f".segaudit-tmp-run-2-{dead}-0123abcd",
        "glob_chars": f".segaudit-tmp-r[un]-{dead}-0123abcd",
        "not_ours": f".segaudit-tmp-run-{dead}-xyz",
    }
    for name in names.values():
        (tmp_path / name).mkdir()
        (tmp_path / name / "f").write_text("x")
    link = tmp_path / f".segaudit-tmp-run-{dead}-0000aaaa"
    link.symlink_to(precious)

    rundir.clean_stale_temporaries(tmp_path, "run")  # without the lock: dead owners only
    present = {key for key, name in names.items() if (tmp_path / name).exists()}
    assert present == {"alive", "other_run", "glob_chars", "not_ours"}

    with rundir.run_lock(tmp_path / "run"):  # with it: every leftover of this run is stale
        rundir.clean_stale_temporaries(tmp_path, "run", locked=True)
    present = {key for key, name in names.items() if (tmp_path / name).exists()}
    assert present == {"other_run", "glob_chars", "not_ours"}
    assert link.is_symlink() and (precious / "keep.txt").read_text() == "keep"


def test_the_next_run_cleans_up_after_a_killed_one(tmp_path):
    run = complete_run(tmp_path / "run", "old")
    stale = tmp_path / f".segaudit-tmp-run-{dead_pid()}-0123abcd"
    stale.mkdir()
    (stale / rundir.SUMMARY).write_text("{}")
    with rundir.building_run(run) as tmp:
        assert not stale.exists()
        fill(tmp, "new")
    assert marker(run) == "new"


def test_a_run_killed_between_the_two_renames_is_restored(tmp_path):
    """The fallback swap renames RUN away, then the new run in; a kill in between leaves
    RUN missing and the previous run in .segaudit-old-: the next writer moves it back."""
    old = complete_run(tmp_path / f".segaudit-old-run-{dead_pid()}-0123abcd", "old")
    before = tree_digest(old)
    half = tmp_path / f".segaudit-tmp-run-{dead_pid()}-4567abcd"
    half.mkdir()
    run = tmp_path / "run"
    with pytest.raises(ValueError), rundir.building_run(run):
        assert marker(run) == "old"
        raise ValueError("the new scan fails")
    assert tree_digest(run) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".segaudit-lock-run", "run"]


# --- the lock -----------------------------------------------------------------------------


def test_a_second_writer_is_refused_at_once(tmp_path):
    run = complete_run(tmp_path / "run", "old")
    with rundir.run_lock(run):
        assert (tmp_path / ".segaudit-lock-run").is_file()
        with pytest.raises(RunDirectoryError) as caught, rundir.building_run(run):
            raise AssertionError("must not start")
        assert str(caught.value) == (
            f"another segaudit process is writing {run}; wait for it to finish "
            "or choose another -o path."
        )
    assert marker(run) == "old"
    with rundir.building_run(run) as tmp:  # released: the next writer goes ahead
        fill(tmp, "new")
    assert marker(run) == "new"


def test_unusable_output_locations_are_one_sentence(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputWriteError, match="cannot create the run directory"):
        with rundir.building_run(tmp_path / "afile" / "run"):
            pass
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(RunDirectoryError, match="is a symbolic link"):
        with rundir.building_run(tmp_path / "link"):
            pass
    assert (tmp_path / "afile").read_text() == "x" and not (tmp_path / "elsewhere").exists()


# --- staying inside RUN -------------------------------------------------------------------


def test_replacing_a_run_never_follows_its_symlinks(tmp_path, swap):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep.txt").write_text("keep")
    run = complete_run(tmp_path / "run", "old")
    (run / "_scratch").mkdir()  # a folder whose contents are not checked
    (run / "_scratch" / "link").symlink_to(precious)
    with rundir.building_run(run) as tmp:
        fill(tmp, "new")
    assert marker(run) == "new" and (precious / "keep.txt").read_text() == "keep"


FOREIGN_INSIDE = ["render/notes.txt", "issues/val/notes.txt", "labels.zarr/0/notes",
                  "photos/a.jpg", "render/link"]  # fmt: skip


@pytest.mark.parametrize("inside", FOREIGN_INSIDE)
def test_a_file_no_run_writes_inside_a_runs_folder_stops_the_replacement(tmp_path, inside):
    precious = tmp_path / "precious"
    precious.mkdir()
    run = complete_run(tmp_path / "run", "old")
    target = run / inside
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.name == "link":
        target.symlink_to(precious)
    else:
        target.write_text("the user's")
    with pytest.raises(RunDirectoryError, match=f"holds {inside}, which no run writes"):
        with rundir.building_run(run) as tmp:
            fill(tmp, "new")
    assert marker(run) == "old" and os.path.lexists(target) and precious.is_dir()


def test_what_runs_write_inside_their_folders_is_theirs(tmp_path):
    run = complete_run(tmp_path / "run", "old")
    for inside in ["render/.segaudit-render", "render/index.html", "render/p00017.jpg",
                   "render/rank001_image00003_val_x.png", "issues/val/city/x.png",
                   "issues/case_1.nii.gz", "labels.zarr/zarr.json", "labels.zarr/c.3.0.0",
                   "pixel_scores.zarr/12/zarr.json", "pixel_scores.zarr/12/c.0.0",
                   "photos/a/b.png"]:  # fmt: skip
        (run / inside).parent.mkdir(parents=True, exist_ok=True)
        (run / inside).write_text("")
    with rundir.building_run(run) as tmp:
        fill(tmp, "new")
    assert marker(run) == "new"


def test_inputs_inside_the_run_or_a_run_inside_an_input_are_refused(tmp_path):
    run = complete_run(tmp_path / "run", "old")
    (run / "labels.zarr").mkdir()
    with pytest.raises(RunDirectoryError, match="inside the run directory"):
        with rundir.building_run(run, inputs=[run / "labels.zarr"]):
            pass
    store = tmp_path / "pred_probs.zarr"
    store.mkdir()
    with pytest.raises(RunDirectoryError, match="inputs are never written"):
        with rundir.building_run(store / "run", inputs=[store]):
            pass
    assert marker(run) == "old" and list(store.iterdir()) == []
    with rundir.building_run(tmp_path / "run2", inputs=[store, run / "labels.zarr"]) as tmp:
        fill(tmp, "new")


def test_long_run_names_keep_temporaries_under_the_name_limit(tmp_path):
    name = "r" * 250
    seen = []
    for _ in range(2):
        with rundir.building_run(tmp_path / name) as tmp:
            seen.append(tmp.name)
            fill(tmp, "new")
    assert all(len(os.fsencode(n)) <= 255 for n in seen)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != name) == [
        f".segaudit-lock-{rundir._tag(name)}"
    ]


# --- signals during the swap --------------------------------------------------------------


def test_a_signal_during_the_swap_waits_until_the_swap_is_done(tmp_path, swap, monkeypatch):
    run = complete_run(tmp_path / "run", "old")
    real_rename = os.rename

    def rename_then_signal(src, dst):
        signal.raise_signal(signal.SIGINT)  # Ctrl-C in the middle of the swap
        real_rename(src, dst)

    real_exchange = durability.exchange
    if swap == "exchange":

        def exchange(a, b):
            signal.raise_signal(signal.SIGINT)
            return real_exchange(a, b)

        monkeypatch.setattr(durability, "exchange", exchange)
    else:
        monkeypatch.setattr(os, "rename", rename_then_signal)
    with pytest.raises(KeyboardInterrupt), rundir.building_run(run) as tmp:
        fill(tmp, "new")
    monkeypatch.undo()
    assert marker(run) == "new"  # the swap completed before the interrupt was delivered
    assert sorted(p.name for p in tmp_path.iterdir()) == [".segaudit-lock-run", "run"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.parametrize(("files", "expect_syncfs"), [(3, False), (40, True)])
def test_small_runs_fsync_their_own_files_and_large_ones_sync_the_file_system(
    tmp_path, monkeypatch, files, expect_syncfs
):
    # A score run (a table and a summary) must not wait for other programs' unwritten
    # data; a scan run's hundreds of chunks are flushed with one syncfs.
    for i in range(files):
        (tmp_path / f"f{i}").write_bytes(b"x")
    synced_fs, fsynced = [], []
    monkeypatch.setattr(durability.LIBC, "syncfs", lambda fd: synced_fs.append(fd) or 0)
    real_fsync = os.fsync
    monkeypatch.setattr(durability.os, "fsync", lambda fd: fsynced.append(fd) or real_fsync(fd))
    durability.sync_tree(tmp_path)
    assert bool(synced_fs) == expect_syncfs
    assert len(fsynced) == (0 if expect_syncfs else files + 1)  # files and their folder
