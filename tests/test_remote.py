"""Inputs behind URLs: stacked .npy and Zarr stores on a real S3 API server (moto's server
mode), read locally and by Dask workers, equal to a scan of the same files on disk."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import zarr
from helpers import one_line_error
from typer.testing import CliRunner

from segaudit.cli import app
from segaudit.errors import RunDirectoryError
from segaudit.runs.objectstore import STAGING_PREFIX
from segaudit.sources.remote import open_npy_url

runner = CliRunner()
BUCKET = "segaudit-test"


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(autouse=True)
def s3_client_env(s3_env, monkeypatch):
    """This process reaches the S3 server through the standard variables only."""
    for name, value in s3_env.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(scope="module")
def local(tmp_path_factory) -> Path:
    """A small stacked dataset on disk, with its pred_probs also as a Zarr store."""
    out = tmp_path_factory.mktemp("remote") / "data"
    result = invoke("synth", out, "--images", 10, "--height", 40, "--width", 56,
                    "--classes", 4, "--seed", 8)  # fmt: skip
    assert result.exit_code == 0, result.output
    probs = np.load(out / "pred_probs.npy")
    stored = zarr.create_array(str(out / "pred_probs.zarr"), shape=probs.shape,
                               dtype=probs.dtype, chunks=(1, *probs.shape[1:]))  # fmt: skip
    stored[:] = probs
    return out


@pytest.fixture(scope="module")
def bucket(local, s3_env) -> str:
    """The dataset's stores uploaded to a bucket on the S3 server; its URL."""
    import s3fs

    fs = s3fs.S3FileSystem(
        key=s3_env["AWS_ACCESS_KEY_ID"],
        secret=s3_env["AWS_SECRET_ACCESS_KEY"],
        endpoint_url=s3_env["AWS_ENDPOINT_URL"],
    )
    fs.mkdir(BUCKET)
    for name in ("labels.npy", "pred_probs.npy"):
        fs.put(str(local / name), f"{BUCKET}/ds/{name}")
    fs.put(str(local / "pred_probs.zarr"), f"{BUCKET}/ds/pred_probs.zarr", recursive=True)
    return f"s3://{BUCKET}/ds"


@pytest.fixture(scope="module")
def local_folder(tmp_path_factory) -> Path:
    """A small folder dataset on disk: mask PNGs and one .npy per image, two sizes."""
    out = tmp_path_factory.mktemp("remote") / "folder"
    result = invoke("synth", out, "--layout", "folder", "--sizes", "32x48,40x40",
                    "--images", 7, "--classes", 4, "--seed", 9)  # fmt: skip
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def folder_bucket(local_folder, bucket, s3_env) -> str:
    """The folder dataset's labels/ and pred_probs/ uploaded beside the stacked one."""
    import s3fs

    fs = s3fs.S3FileSystem(key="testing", secret="testing", endpoint_url=s3_env["AWS_ENDPOINT_URL"])
    for name in ("labels", "pred_probs"):
        for path in sorted((local_folder / name).rglob("*")):
            if path.is_file():
                fs.put_file(str(path), f"{BUCKET}/folder/{path.relative_to(local_folder)}")
    return f"s3://{BUCKET}/folder"


def scores_without_files(run: Path) -> list[dict[str, str]]:
    """image_scores.csv without the column naming each image's labels file."""
    rows = list(csv.DictReader(io.StringIO((run / "image_scores.csv").read_text())))
    assert rows and "file" in rows[0]
    for row in rows:
        row.pop("file")
    return rows


def same_results(on_disk: Path, remote: Path) -> None:
    """Every array, mask and table byte for byte; the tables naming input files differ
    only in those names."""
    skip = {"summary.json", "images.csv", "image_scores.csv"}
    files = [p for p in sorted(on_disk.rglob("*")) if p.is_file() and p.name not in skip]
    assert files
    for path in files:
        assert (remote / path.relative_to(on_disk)).read_bytes() == path.read_bytes(), path
    assert scores_without_files(remote) == scores_without_files(on_disk)


@pytest.mark.parametrize("probs", ["pred_probs.npy", "pred_probs.zarr"])
@pytest.mark.parametrize("on_cluster", [False, True])
def test_a_scan_of_s3_stores_equals_the_scan_on_disk(
    probs, on_cluster, local, bucket, request, tmp_path
):
    on_disk, remote = tmp_path / "disk", tmp_path / "s3"
    options = ("--batch-size", 3, "--quiet")
    disk = invoke("scan", "--labels", local / "labels.npy", "--pred-probs", local / probs,
                  "-o", on_disk, *options)  # fmt: skip
    assert disk.exit_code == 0, disk.output
    cluster = ("--scheduler", request.getfixturevalue("scheduler")) if on_cluster else ()
    result = invoke("scan", "--labels", f"{bucket}/labels.npy", "--pred-probs",
                    f"{bucket}/{probs}", "-o", remote, *options, *cluster)  # fmt: skip
    assert result.exit_code == 0, result.output
    same_results(on_disk, remote)
    inputs = json.loads((remote / "summary.json").read_text())["inputs"]
    assert inputs["pred_probs"]["path"] == f"{bucket}/{probs}"
    assert inputs["pred_probs"]["format"] == probs.rsplit(".", 1)[1]


@pytest.mark.parametrize("on_cluster", [False, True])
def test_a_scan_of_a_folder_dataset_on_s3_equals_the_scan_on_disk(
    on_cluster, local_folder, folder_bucket, request, tmp_path
):
    on_disk, remote = tmp_path / "disk", tmp_path / "s3"
    options = ("--batch-size", 2, "--quiet")
    disk = invoke("scan", "--labels", local_folder / "labels", "--pred-probs",
                  local_folder / "pred_probs", "-o", on_disk, *options)  # fmt: skip
    assert disk.exit_code == 0, disk.output
    cluster = ("--scheduler", request.getfixturevalue("scheduler")) if on_cluster else ()
    result = invoke("scan", "--labels", f"{folder_bucket}/labels", "--pred-probs",
                    f"{folder_bucket}/pred_probs", "-o", remote, *options, *cluster)  # fmt: skip
    assert result.exit_code == 0, result.output
    same_results(on_disk, remote)
    images = (remote / "images.csv").read_text()
    assert f"{folder_bucket}/labels/" in images and f"{folder_bucket}/pred_probs/" in images
    inputs = json.loads((remote / "summary.json").read_text())["inputs"]
    assert inputs["labels"]["path"] == f"{folder_bucket}/labels"
    assert inputs["labels"]["files"] == 7


def test_score_reads_s3_stores_too(local, bucket, tmp_path):
    on_disk, remote = tmp_path / "disk", tmp_path / "s3"
    for labels, probs, out in (
        (local / "labels.npy", local / "pred_probs.npy", on_disk),
        (f"{bucket}/labels.npy", f"{bucket}/pred_probs.npy", remote),
    ):
        result = invoke("score", "--labels", labels, "--pred-probs", probs, "-o", out,
                        "--pixel-scores", "-q")  # fmt: skip
        assert result.exit_code == 0, result.output
    same_results(on_disk, remote)


def test_a_remote_npy_is_read_by_ranges_as_numpy_reads_it(local, bucket):
    array = open_npy_url(f"{bucket}/pred_probs.npy")
    expected = np.load(local / "pred_probs.npy", mmap_mode="r")
    assert array.shape == expected.shape and array.dtype == expected.dtype
    assert np.array_equal(array[3:5], expected[3:5])
    assert np.array_equal(array[9:12], expected[9:])


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("s3://no-such-bucket/ds/labels.npy", "does not exist (or its bucket does not)"),
        (f"s3://{BUCKET}/ds/missing.npy", "does not exist (or its bucket does not)"),
        ("nosuchscheme://x/labels.npy", "is not a usable URL"),
        ("gs://bucket/ds/labels.npy", "install it with pip install 'segaudit[gcs]'"),
    ],
)
def test_a_missing_store_or_bucket_is_one_sentence_and_writes_nothing(
    url, says, bucket, tmp_path
):
    if url.startswith("gs://") and importlib.util.find_spec("gcsfs") is not None:
        pytest.skip("gcsfs is installed here: the missing-backend sentence cannot show")
    run = tmp_path / "run"
    result = invoke("scan", "--labels", url, "--pred-probs", f"{bucket}/pred_probs.npy",
                    "-o", run)  # fmt: skip
    message = one_line_error(result)
    assert url in message and says in message
    assert not run.exists()


# -- runs on the object store: built aside, published with summary.json last ----------


@pytest.fixture
def s3fs_client(s3_env):
    import s3fs

    fs = s3fs.S3FileSystem(key="testing", secret="testing", endpoint_url=s3_env["AWS_ENDPOINT_URL"])
    fs.invalidate_cache()
    return fs


def listing(fs, prefix: str) -> dict[str, int]:
    fs.invalidate_cache()
    found = fs.find(prefix, detail=True)
    return {name[len(prefix) + 1 :]: int(info["size"]) for name, info in found.items()}


def assert_published_as_on_disk(fs, url: str, on_disk: Path, differ: tuple[str, ...] = ()):
    """The run at ``url`` holds the files of the run ``on_disk`` (summary.json apart), each
    with the same bytes except those named in ``differ``."""
    prefix = url.removeprefix("s3://")
    held = set(listing(fs, prefix)) - {"summary.json"}
    expected = {str(p.relative_to(on_disk)) for p in on_disk.rglob("*") if p.is_file()}
    assert held == expected - {"summary.json"}
    for name in held - set(differ):
        assert fs.cat_file(f"{prefix}/{name}") == (on_disk / name).read_bytes(), name


def hidden_prefixes(fs, parent: str) -> list[str]:
    fs.invalidate_cache()
    return [p for p in fs.ls(parent, detail=False) if p.rsplit("/", 1)[-1].startswith(".")]


@pytest.mark.parametrize("on_cluster", [False, True])
def test_a_run_published_to_s3_equals_the_local_run_and_lists_its_objects(
    on_cluster, local, bucket, s3fs_client, request, tmp_path
):
    url = f"s3://{BUCKET}/runs/nightly-{int(on_cluster)}"
    on_disk = tmp_path / "disk"
    assert invoke("scan", local, "-o", on_disk, "--batch-size", 3, "-q").exit_code == 0
    cluster = ("--scheduler", request.getfixturevalue("scheduler")) if on_cluster else ()
    result = invoke("scan", local, "-o", url, "--batch-size", 3, "-q", *cluster)
    assert result.exit_code == 0, result.output
    prefix = url.removeprefix("s3://")
    held = listing(s3fs_client, prefix)
    summary = json.loads(s3fs_client.cat_file(f"{prefix}/summary.json"))
    assert summary["manifest"]["objects"] == {k: v for k, v in held.items() if k != "summary.json"}
    for path in on_disk.rglob("*"):
        if path.is_file() and path.name != "summary.json":
            relative = str(path.relative_to(on_disk))
            assert s3fs_client.cat_file(f"{prefix}/{relative}") == path.read_bytes(), relative
    assert set(held) - {"summary.json"} == {
        str(p.relative_to(on_disk)) for p in on_disk.rglob("*") if p.is_file()
    } - {"summary.json"}
    assert hidden_prefixes(s3fs_client, f"{BUCKET}/runs") == []


def test_a_failed_run_leaves_the_published_one_and_a_crashed_one_is_cleaned(
    local, bucket, s3fs_client, tmp_path
):
    url, prefix = f"s3://{BUCKET}/runs/kept", f"{BUCKET}/runs/kept"
    assert invoke("scan", local, "-o", url, "-q").exit_code == 0
    before = listing(s3fs_client, prefix)
    published = s3fs_client.cat_file(f"{prefix}/summary.json")
    bad = tmp_path / "bad"
    bad.mkdir()
    labels = np.load(local / "labels.npy")
    labels[2, 5, 5] = 9  # outside the 4 classes: refused during the pass
    np.save(bad / "labels.npy", labels)
    (bad / "pred_probs.npy").write_bytes((local / "pred_probs.npy").read_bytes())
    one_line_error(invoke("scan", bad, "-o", url))
    assert listing(s3fs_client, prefix) == before
    assert s3fs_client.cat_file(f"{prefix}/summary.json") == published
    assert hidden_prefixes(s3fs_client, f"{BUCKET}/runs") == []

    # A publication killed after it retired the old summary: leftovers, no summary.json.
    s3fs_client.pipe(f"{BUCKET}/runs/.segaudit-tmp-kept-0123abcd/images.csv", b"partial")
    s3fs_client.rm_file(f"{prefix}/summary.json")
    for reader in (["swaps", url], ["render", url], ["export", url, "-o", tmp_path / "x.json"],
                   ["eval", url, "--truth", local]):  # fmt: skip
        refused = one_line_error(invoke(*reader))
        assert f"{url} is not a complete segaudit run (no summary.json)" in refused, reader
    assert invoke("score", local, "-o", url, "-q").exit_code == 0  # no complete scan there
    assert invoke("scan", local, "-o", url, "-q").exit_code == 0
    other = one_line_error(invoke("score", local, "-o", url, "-q", "--ignore-index", 3))
    assert f"{url} holds a scan of other parameters" in other and "--replace" in other
    assert invoke("score", local, "-o", url, "-q", "--replace", "--ignore-index", 3).exit_code == 0
    held = listing(s3fs_client, prefix)
    assert set(held) == {".segaudit-run", "images.csv", "image_scores.csv", "summary.json"}
    assert hidden_prefixes(s3fs_client, f"{BUCKET}/runs") == []
    scores_only = one_line_error(invoke("swaps", url))  # read, as the same run on disk is
    assert f"{url}/labels.zarr is missing from the run" in scores_only


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("s3://no-such-bucket/runs/x", "the bucket no-such-bucket does not exist"),
        (f"s3://{BUCKET}", "is a whole bucket; give the run a prefix of its own"),
        (f"s3://{BUCKET}/ds", "holds objects that are not a segaudit run's"),
    ],
)
def test_an_unusable_run_url_is_refused_before_anything_is_written(
    url, says, local, bucket, s3fs_client
):
    before = listing(s3fs_client, BUCKET)
    assert says in one_line_error(invoke("scan", local, "-o", url))
    assert listing(s3fs_client, BUCKET) == before


def test_globs_and_npz_archives_behind_urls_are_refused(folder_bucket, s3fs_client, tmp_path):
    buffer = io.BytesIO()
    np.savez(buffer, probabilities=np.full((3, 4, 4), 1 / 3, np.float32))
    s3fs_client.pipe(f"{BUCKET}/npz/pred_probs/a.npz", buffer.getvalue())
    labels = f"{folder_bucket}/labels"
    cases = [
        (f"{folder_bucket}/pred_probs/*.npy", "globs are not read behind URLs"),
        (f"s3://{BUCKET}/npz/pred_probs", ".npz archives behind URLs are not read"),
    ]
    for probs, says in cases:
        result = invoke("scan", "--labels", labels, "--pred-probs", probs, "-o", tmp_path / "r")
        assert says in one_line_error(result)
        assert not (tmp_path / "r").exists()


def test_an_s3_store_rewritten_during_the_scan_is_refused_and_nothing_is_published(
    local, bucket, s3fs_client, monkeypatch, tmp_path
):
    import segaudit.jobs.scan

    s3fs_client.put_file(str(local / "labels.npy"), f"{BUCKET}/changing/labels.npy")
    labels = np.load(local / "labels.npy")
    labels[9, 0, 0] = (labels[9, 0, 0] + 1) % 4  # still a valid class: only the store changed
    edited = io.BytesIO()
    np.save(edited, labels)

    def rewrite_after_first_batch(stop: int) -> None:
        if stop <= 3:  # the labels are rewritten after the first batch
            s3fs_client.pipe(f"{BUCKET}/changing/labels.npy", edited.getvalue())

    monkeypatch.setattr(segaudit.jobs.scan, "_test_hook_after_batch", rewrite_after_first_batch)
    run = f"s3://{BUCKET}/runs/changing"
    result = invoke("scan", "--labels", f"s3://{BUCKET}/changing/labels.npy", "--pred-probs",
                    f"{bucket}/pred_probs.npy", "-o", run, "--batch-size", 3)  # fmt: skip
    assert "changed while segaudit was reading it" in one_line_error(result)
    assert not s3fs_client.exists(f"{BUCKET}/runs/changing")


@pytest.mark.parametrize("kind", ["stacked", "folder"])
def test_a_dataset_url_is_read_by_the_folder_conventions(
    kind, local, local_folder, bucket, folder_bucket, s3fs_client, tmp_path
):
    on_disk, remote = tmp_path / "disk", tmp_path / "s3"
    folder, url = (local, bucket) if kind == "stacked" else (local_folder, folder_bucket)
    s3fs_client.put_file(str(folder / "classes.txt"), f"{url.removeprefix('s3://')}/classes.txt")
    assert invoke("scan", folder, "-o", on_disk, "-q").exit_code == 0
    result = invoke("scan", url, "-o", remote, "-q")
    assert result.exit_code == 0, result.output
    same_results(on_disk, remote)  # regions.csv names the classes: classes.txt was read
    inputs = json.loads((remote / "summary.json").read_text())["inputs"]
    assert inputs["class_names"]["path"] == f"{url}/classes.txt"
    missing = one_line_error(invoke("scan", f"{url}-nowhere", "-o", tmp_path / "x"))
    assert f"dataset folder {url}-nowhere does not exist" in missing


def test_a_killed_clients_staging_folder_is_removed_by_the_next_run(
    local, bucket, tmp_path, monkeypatch
):
    """Staging folders are named by process id: the next run to a URL removes those of
    processes that are gone, and nothing else."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stale = tmp_path / f"{STAGING_PREFIX}{gone.pid}-abc123"
    (stale / "run").mkdir(parents=True)
    (stale / "run" / "labels.zarr").write_bytes(b"x")
    alive = tmp_path / f"{STAGING_PREFIX}{os.getpid()}-def456"
    alive.mkdir()
    other = tmp_path / f"{STAGING_PREFIX}notapid-1"
    other.mkdir()
    result = invoke("scan", local, "-o", f"s3://{BUCKET}/runs/after-a-kill", "-q")
    assert result.exit_code == 0, result.output
    assert not stale.exists()
    assert alive.is_dir() and other.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, other.name])


@pytest.mark.parametrize("command", ["swaps", "render", "eval", "export", "scan", "scan-input"])
def test_a_run_url_without_credentials_is_one_sentence(command, local, monkeypatch, tmp_path):
    """No credentials anywhere: the readers of runs, and scan -o URL, say so in one
    sentence (not that the bucket is missing), exit 2, nothing written."""
    import s3fs

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    s3fs.S3FileSystem.clear_instance_cache()
    extra = {"eval": ["--truth", tmp_path], "export": ["-o", tmp_path / "out.json"]}
    url = f"s3://{BUCKET}/runs/any"
    args = {"scan": ["scan", local, "-o", url], "scan-input": ["scan", url, "-o", tmp_path / "r"]}
    args = args.get(command, [command, url])
    args += extra.get(command, [])
    result = runner.invoke(app, [str(a) for a in args])
    s3fs.S3FileSystem.clear_instance_cache()
    assert result.exit_code == 2, result.output
    said = one_line_error(result)
    assert "cannot be" in said and "credentials" in said and "does not exist" not in said
    assert list(tmp_path.iterdir()) == []


def test_a_task_on_a_worker_uploads_its_files_and_the_client_fetches_what_it_reads(
    bucket, s3fs_client, tmp_path
):
    """A run for a URL, built by workers that share no disk with the client: a shipped
    task's sink writes into a folder of its worker's own, uploads it to the run's hidden
    prefix when the task ends, and the client reads those files from there."""
    from segaudit.runs.parts import PART_PREFIX, RemoteParts
    from segaudit.runs.sink import RunSink

    prefix = f"{BUCKET}/parts/.segaudit-tmp-run-0001"
    client_run = tmp_path / "client" / "run"
    client_run.mkdir(parents=True)
    sink = RunSink(client_run, ["a", "b", "c"], parts=RemoteParts(f"s3://{prefix}"))
    sizes = np.array([[4, 6], [5, 3], [4, 6]])
    sink.create("labels", sizes, np.uint8)
    sink.create("issues", sizes, bool)
    worker = sink.detached().detached()  # shipped by the client, detached on the worker
    assert worker.run.name.startswith(PART_PREFIX) and client_run not in worker.run.parents
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 4, tuple(size)).astype(np.uint8) for size in sizes]
    for index, image in enumerate(images):
        worker.write("labels", index, image)
        worker.write("issues", index, image == 3)
    records = {"index": np.arange(5, dtype=np.int64), "s": np.linspace(0, 1, 5)}
    worker.add_records(0, records)
    written = worker.written()
    assert not worker.run.exists()  # uploaded, then removed from the worker's disk
    held = listing(s3fs_client, prefix)
    assert {"issues/a.png", "issues/b.png", "labels.zarr/1/zarr.json"} <= set(held)
    assert any(name.startswith("_scratch/records-") for name in held)
    on_client = {str(p.relative_to(client_run)) for p in client_run.rglob("*") if p.is_file()}
    assert on_client == {"labels.zarr/zarr.json", "issues.zarr/zarr.json"}  # its metadata only
    sink.adopt(written)
    for index, image in enumerate(images):
        assert np.array_equal(sink.read("labels", index), image)
    got = sink.records(0, ("index", "s"))
    assert np.array_equal(got["index"], records["index"]) and np.allclose(got["s"], records["s"])
    sink.discard_scratch()
    assert not any(name.startswith("_scratch/") for name in listing(s3fs_client, prefix))
    # A later task reading another's files fetches them, and uploads only its own.
    again = sink.detached().detached()
    assert np.array_equal(again.read("labels", 1), images[1])
    folder = again.run
    assert (folder / "labels.zarr" / "1" / "zarr.json").is_file()
    again.write("issues", 1, images[1] == 2)
    uploaded = again.parts.upload(folder, again.fetched)
    assert uploaded == ["issues.zarr/1/c.0.0", "issues.zarr/1/zarr.json", "issues/b.png"]
    assert not folder.exists()
    # A task that fails leaves no folder behind on its worker.
    failed = sink.detached().detached()
    failed.write("labels", 0, images[0])
    failed.release()
    assert not failed.run.exists()
    # A file no task uploaded is one sentence, not a traceback.
    with pytest.raises(RunDirectoryError, match="is missing"):
        sink.parts.fetch(tmp_path / "elsewhere", "labels.zarr/9")


def test_a_worker_killed_while_building_a_run_for_s3_still_gives_the_local_run(
    local, bucket, s3fs_client, scheduler, kill_marker, tmp_path
):
    url = f"s3://{BUCKET}/runs/killed"
    on_disk = tmp_path / "disk"
    assert invoke("scan", local, "-o", on_disk, "--batch-size", 2, "-q").exit_code == 0
    kill_marker.write_text("")
    result = invoke("scan", local, "-o", url, "--batch-size", 2, "-q", "--scheduler", scheduler)
    assert result.exit_code == 0, result.output
    assert not kill_marker.exists()  # a task removed it, then killed its worker process
    prefix = url.removeprefix("s3://")
    for path in on_disk.rglob("*"):
        if path.is_file() and path.name != "summary.json":
            relative = str(path.relative_to(on_disk))
            assert s3fs_client.cat_file(f"{prefix}/{relative}") == path.read_bytes(), relative
    assert hidden_prefixes(s3fs_client, f"{BUCKET}/runs") == []


@pytest.mark.parametrize(
    "options", [("--pixel-scores",), ("--method", "num_pixel_issues")], ids=["softmin", "cl"]
)
def test_a_score_published_to_s3_from_a_cluster_equals_the_local_score(
    options, local, bucket, s3fs_client, scheduler, tmp_path
):
    url = f"s3://{BUCKET}/runs/score-{options[-1].strip('-')}"
    on_disk = tmp_path / "disk"
    common = ("--batch-size", 3, "-q", *options)
    assert invoke("score", local, "-o", on_disk, *common).exit_code == 0
    result = invoke("score", local, "-o", url, *common, "--scheduler", scheduler)
    assert result.exit_code == 0, result.output
    assert_published_as_on_disk(s3fs_client, url, on_disk)
    assert hidden_prefixes(s3fs_client, f"{BUCKET}/runs") == []


def test_pixel_scores_of_images_of_two_sizes_published_from_a_cluster_equal_the_local_ones(
    local_folder, folder_bucket, s3fs_client, scheduler, tmp_path
):
    url = f"s3://{BUCKET}/runs/score-folder"
    on_disk = tmp_path / "disk"
    common = ("--batch-size", 2, "-q", "--pixel-scores")
    assert invoke("score", local_folder, "-o", on_disk, *common).exit_code == 0
    result = invoke("score", local_folder, "-o", url, *common, "--scheduler", scheduler)
    assert result.exit_code == 0, result.output
    # image_scores.csv and images.csv name the input files
    assert_published_as_on_disk(s3fs_client, url, on_disk, ("image_scores.csv", "images.csv"))
