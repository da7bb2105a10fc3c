"""`--scheduler`: the same scan and score as Dask tasks on a real cluster of worker processes.

One LocalCluster (two worker processes, one thread each: conftest's ``scheduler``) serves
the session; every run on it is compared file by file with a run of the local engine on
the same data.
"""

from __future__ import annotations

import json
from pathlib import Path

import dask
import pytest
from helpers import one_line_error
from typer.testing import CliRunner

from segaudit.cli import app

runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("dask")


@pytest.fixture(scope="module")
def stacked(workdir) -> Path:
    out = workdir / "stacked"
    result = invoke("synth", out, "--images", 12, "--height", 48, "--width", 64,
                    "--classes", 5, "--seed", 4)  # fmt: skip
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def folder(workdir) -> Path:
    out = workdir / "folder"
    result = invoke("synth", out, "--layout", "folder", "--sizes", "48x64,32x48",
                    "--images", 9, "--classes", 4, "--seed", 5)  # fmt: skip
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def volumes(workdir) -> Path:
    pytest.importorskip("nibabel")
    out = workdir / "volumes"
    result = invoke("synth", out, "--volumes", "--shape", "12x24x32,10x20x24", "--images", 4,
                    "--classes", 4, "--seed", 6)  # fmt: skip
    assert result.exit_code == 0, result.output
    return out


def run_files(run: Path) -> dict[str, bytes]:
    """Every file of a run but summary.json (which holds timings), by relative name."""
    return {
        str(path.relative_to(run)): path.read_bytes()
        for path in sorted(run.rglob("*"))
        if path.is_file() and path.name != "summary.json"
    }


def same_runs(local: Path, dask: Path) -> None:
    """Byte for byte the same files, and the same summary but for timings and workers."""
    assert run_files(dask) == run_files(local)
    one, other = (json.loads((run / "summary.json").read_text()) for run in (local, dask))
    for summary in (one, other):
        summary.pop("timing")
        summary.pop("engine")
    assert one == other


def run_both_ways(command: str, dataset: Path, options: tuple, scheduler: str, tmp_path: Path):
    """``command`` run locally and on the cluster; the runs must be the same. Returns the
    cluster's run."""
    local, dask = tmp_path / "local", tmp_path / "dask"
    common = (dataset, *options, "--batch-size", 2, "--quiet")
    assert invoke(command, *common, "-o", local).exit_code == 0
    result = invoke(command, *common, "-o", dask, "--scheduler", scheduler)
    assert result.exit_code == 0, result.output
    same_runs(local, dask)
    return dask


@pytest.mark.parametrize(
    ("data", "options"),
    [
        ("stacked", ()),
        ("stacked", ("--downsample", "2", "--label-pooling", "mean")),
        ("folder", ()),
        ("folder", ("--downsample", "2")),
        ("volumes", ("--layout", "nnunet", "--pred-probs", "PREDICTIONS")),
    ],
)
def test_scan_on_a_cluster_equals_the_local_scan(data, options, request, scheduler, tmp_path):
    dataset = request.getfixturevalue(data)
    options = tuple(dataset / "predictions" if o == "PREDICTIONS" else o for o in options)
    dask = run_both_ways("scan", dataset, options, scheduler, tmp_path)
    assert (dask / "issues.zarr" / "zarr.json").exists()
    assert not (dask / "_scratch").exists()


@pytest.mark.parametrize(
    ("data", "options"),
    [
        ("stacked", ("--pixel-scores",)),
        ("folder", ("--pixel-scores",)),
        ("folder", ("--method", "num_pixel_issues")),
    ],
)
def test_score_on_a_cluster_equals_the_local_score(data, options, request, scheduler, tmp_path):
    dask = run_both_ways("score", request.getfixturevalue(data), options, scheduler, tmp_path)
    assert len((dask / "image_scores.csv").read_text().splitlines()) > 9


def test_a_worker_killed_mid_scan_still_gives_the_local_run(
    stacked, scheduler, kill_marker, tmp_path
):
    local, dask = tmp_path / "local", tmp_path / "dask"
    common = (stacked, "--batch-size", 1, "--quiet")
    assert invoke("scan", *common, "-o", local).exit_code == 0
    kill_marker.write_text("")
    result = invoke("scan", *common, "-o", dask, "--scheduler", scheduler)
    assert result.exit_code == 0, result.output
    assert not kill_marker.exists()  # a task removed it, then killed its worker process
    same_runs(local, dask)


def test_scheduler_local_n_starts_and_stops_a_cluster_of_its_own(folder, tmp_path):
    local, dask = tmp_path / "local", tmp_path / "dask"
    assert invoke("scan", folder, "-o", local, "-q").exit_code == 0
    result = invoke("scan", folder, "-o", dask, "-q", "--scheduler", "local:1", "--json")
    assert result.exit_code == 0, result.output
    engine = json.loads(result.stdout)["engine"]
    assert engine["executor"] == "dask" and engine["workers"] == 1  # the cluster's one thread
    same_runs(local, dask)


def test_bad_input_found_by_a_worker_is_one_sentence_and_writes_nothing(
    stacked, scheduler, tmp_path
):
    import numpy as np

    bad = tmp_path / "bad"
    bad.mkdir()
    labels = np.load(stacked / "labels.npy")
    labels[7, 3, 4] = 40  # outside the 5 classes, in a batch a worker scans
    np.save(bad / "labels.npy", labels)
    (bad / "pred_probs.npy").write_bytes((stacked / "pred_probs.npy").read_bytes())
    run = tmp_path / "run"
    result = invoke("scan", bad, "-o", run, "--batch-size", 2, "--scheduler", scheduler)
    message = one_line_error(result)
    assert "labels.npy" in message and "image 7" in message and "(3, 4)" in message
    assert not run.exists()


def test_an_unreachable_scheduler_is_one_sentence_and_writes_nothing(stacked, tmp_path):
    run = tmp_path / "run"
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        result = invoke("scan", stacked, "-o", run, "--scheduler", "tcp://127.0.0.1:9")
    message = one_line_error(result)
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in message
    assert not run.exists()


def test_workers_with_a_scheduler_is_refused_not_dropped(stacked, tmp_path):
    result = invoke("score", stacked, "-o", tmp_path / "run", "--workers", 2,
                    "--scheduler", "local:2")  # fmt: skip
    assert "drop --workers" in one_line_error(result)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "address", ["local:0", "local:two", "scheduler:8786", "tcp://", "tcp://:x", "local:100000"]
)
def test_a_malformed_scheduler_address_is_refused(address, stacked, tmp_path):
    result = invoke("scan", stacked, "-o", tmp_path / "run", "--scheduler", address)
    assert f"--scheduler {address}" in one_line_error(result)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("count", "workers"), [(0, 2), (1, 2), (7, 2), (20, 2), (100, 3), (5, 8)])
def test_batches_go_to_the_cluster_in_runs_of_consecutive_ones(count, workers):
    from segaudit.engine.dask_executor import TASKS_PER_WORKER, consecutive_groups

    items = list(range(count))
    groups = consecutive_groups(items, workers)
    assert [item for group in groups for item in group] == items  # all, in order
    assert all(groups)
    assert len(groups) >= min(count, workers * TASKS_PER_WORKER)
    assert max(map(len, groups), default=0) <= max(1, count // (workers * TASKS_PER_WORKER))
