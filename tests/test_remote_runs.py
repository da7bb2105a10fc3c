"""Reading runs on an object store: `swaps`, `render`, `eval` and `export` of an
``s3://`` run (a real S3 API server, moto's) give what they give for the same run on
disk, and a run prefix that is not a complete run is refused in one sentence."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from helpers import one_line_error
from typer.testing import CliRunner

from segaudit.cli import app
from segaudit.report.decisions import run_fingerprint
from segaudit.report.regions import read_regions_table
from segaudit.runs.remote_read import READ_PREFIX

runner = CliRunner()
BUCKET = "segaudit-runs-test"
NAME = "nightly"  # the run's name on disk and on S3: exports name it


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(autouse=True)
def s3_client_env(s3_env, monkeypatch):
    """This process reaches the S3 server through the standard variables only."""
    for name, value in s3_env.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(scope="module")
def s3(s3_env):
    import s3fs

    fs = s3fs.S3FileSystem(key="testing", secret="testing", endpoint_url=s3_env["AWS_ENDPOINT_URL"])
    fs.mkdir(BUCKET)
    return fs


@pytest.fixture(scope="module")
def runs(tmp_path_factory, s3, s3_env) -> tuple[Path, str, Path]:
    """One dataset scanned into a local folder and into an S3 prefix of the same name:
    (local run, run URL, dataset)."""
    os.environ.update(s3_env)
    base = tmp_path_factory.mktemp("remote-runs")
    data = base / "data"
    result = invoke("synth", data, "--images", 8, "--height", 40, "--width", 48,
                    "--classes", 4, "--seed", 5)  # fmt: skip
    assert result.exit_code == 0, result.output
    local, url = base / "disk" / NAME, f"s3://{BUCKET}/runs/{NAME}"
    for out in (local, url):
        result = invoke("scan", data, "-o", out, "-q")
        assert result.exit_code == 0, result.output
    return local, url, data


def objects(fs, prefix: str) -> dict[str, int]:
    fs.invalidate_cache()
    found = fs.find(prefix, detail=True)
    return {name[len(prefix) + 1 :]: int(info["size"]) for name, info in found.items()}


def copy_run(fs, url: str, name: str) -> str:
    """A copy of the run at ``url`` under another prefix; its URL."""
    source = url.removeprefix("s3://")
    target = f"{BUCKET}/broken/{name}"
    names = list(objects(fs, source))
    fs.copy([f"{source}/{n}" for n in names], [f"{target}/{n}" for n in names])
    return f"s3://{target}"


def test_swaps_of_an_s3_run_equal_those_of_the_run_on_disk(runs, s3):
    local, url, _ = runs
    on_disk = invoke("swaps", local, "--json", "--class", "1")
    remote = invoke("swaps", url, "--json", "--class", "1")
    assert remote.exit_code == 0, remote.output
    assert json.loads(remote.stdout) == json.loads(on_disk.stdout)
    for name in ("swaps.csv", "swaps.png"):  # published into the run
        assert s3.cat_file(f"{url}/{name}") == (local / name).read_bytes(), name
    said = invoke("swaps", url, "--top", 2)
    assert f"wrote {url}/swaps.csv and {url}/swaps.png" in " ".join(said.stdout.split())
    assert invoke("eval", url, "--truth", runs[2], "--json").exit_code == 0  # still complete


def test_render_of_an_s3_run_is_published_into_it_as_the_page_on_disk(runs, s3, tmp_path):
    local, url, _ = runs
    assert invoke("render", local, "--top", 3, "--pages", "-q").exit_code == 0
    result = invoke("render", url, "--top", 3, "--pages")
    assert result.exit_code == 0, result.output
    assert f"open {url}/render/index.html" in " ".join(result.stdout.split())
    assert f"run: {url}".encode() in s3.cat_file(f"{url}/render/data.js")
    page = local / "render"
    files = sorted(str(p.relative_to(page)) for p in page.rglob("*") if p.is_file())
    assert sorted(objects(s3, f"{url.removeprefix('s3://')}/render")) == files
    for name in files:  # the page names its run: as given
        held = s3.cat_file(f"{url}/render/{name}")
        assert held == (page / name).read_bytes().replace(str(local).encode(), url.encode()), name
    elsewhere = tmp_path / "review"
    assert invoke("render", url, "--top", 3, "-o", elsewhere, "-q").exit_code == 0
    refused = one_line_error(invoke("render", url, "-o", f"s3://{BUCKET}/pages"))
    assert "--out takes a local folder" in refused and not Path("s3:").exists()
    assert (elsewhere / "index.html").read_bytes() == s3.cat_file(f"{url}/render/index.html")
    again = invoke("render", url, "--top", 1, "-q")  # replaces the published page
    assert again.exit_code == 0, again.output
    assert len(objects(s3, f"{url.removeprefix('s3://')}/render")) < len(files)
    assert [p for p in s3.ls(f"{BUCKET}/runs") if p.rsplit("/", 1)[-1].startswith(".")] == []


def test_eval_and_export_of_an_s3_run_equal_those_of_the_run_on_disk(runs, tmp_path):
    local, url, data = runs
    on_disk = json.loads(invoke("eval", local, "--truth", data, "--json").stdout)
    remote = json.loads(invoke("eval", url, "--truth", data, "--json").stdout)
    assert remote.pop("run") == url and on_disk.pop("run") == str(local)
    assert remote == on_disk
    decisions = tmp_path / "decisions.csv"  # the review page's export, for either run
    decisions.write_text(
        "id,region,decision,run\n"
        f"{read_regions_table(local)[0]['id']},,real_error,{run_fingerprint(local)}\n"
    )
    reviewed = [json.loads(invoke("eval", run, "--decisions", decisions, "--json").stdout)
                for run in (local, url)]  # fmt: skip
    assert reviewed[1]["decisions"].pop("run") == url
    assert reviewed[0]["decisions"].pop("run") == str(local)
    assert reviewed[1] == reviewed[0] and reviewed[0]["decisions"]["reviewed"] == 1
    for fmt, suffix in (("coco", "json"), ("csv", "csv")):
        wrote = [tmp_path / f"{where}.{suffix}" for where in ("disk", "s3")]
        for run, out in zip((local, url), wrote, strict=True):
            result = invoke("export", run, "--format", fmt, "-o", out, "--top", 5)
            assert result.exit_code == 0, result.output
        assert wrote[1].read_bytes() == wrote[0].read_bytes(), fmt


def test_an_export_to_a_url_is_uploaded_and_replaces_only_an_export(runs, s3, tmp_path):
    local, url, _ = runs
    target = f"s3://{BUCKET}/exports/issues.json"
    for run in (url, local):  # the second replaces the first: an earlier export
        result = invoke("export", run, "-o", target, "--top", 4)
        assert result.exit_code == 0, result.output
        assert f"to {target}" in result.stdout
    assert invoke("export", local, "-o", tmp_path / "x.json", "--top", 4).exit_code == 0
    assert s3.cat_file(target) == (tmp_path / "x.json").read_bytes()
    s3.pipe_file(f"{BUCKET}/exports/notes.json", b'{"mine": 1}')
    refused = one_line_error(invoke("export", url, "-o", f"s3://{BUCKET}/exports/notes.json"))
    assert f"s3://{BUCKET}/exports/notes.json exists and is not a segaudit export" in refused
    assert s3.cat_file(f"{BUCKET}/exports/notes.json") == b'{"mine": 1}'
    forced = invoke("export", url, "-o", f"s3://{BUCKET}/exports/notes.json", "--force")
    assert forced.exit_code == 0, forced.output
    assert json.loads(s3.cat_file(f"{BUCKET}/exports/notes.json"))["annotations"]


def test_score_into_an_s3_run_keeps_its_scan_as_in_a_folder(runs, s3, tmp_path):
    _, _, data = runs
    local, url = tmp_path / NAME, f"s3://{BUCKET}/scored/{NAME}"
    for out in (local, url):
        assert invoke("scan", data, "-o", out, "-q").exit_code == 0
        result = invoke("score", data, "-o", out, "--method", "num_pixel_issues", "--json")
        assert result.exit_code == 0, result.output
        assert invoke("swaps", out, "-q").exit_code == 0  # the scan's arrays are still there
    summary = json.loads(s3.cat_file(f"{url}/summary.json"))
    assert summary["scores"]["scan"] == "kept" and summary["command"] == "score"
    for name in ("image_scores.csv", "swaps.csv", "issues.zarr/c.0.0.0", "regions.csv"):
        assert s3.cat_file(f"{url}/{name}") == (local / name).read_bytes(), name
    s3.rm_file(f"{BUCKET}/scored/{NAME}/issues.zarr/c.1.0.0")  # a damaged scan
    before = objects(s3, f"{BUCKET}/scored/{NAME}")
    said = one_line_error(invoke("score", data, "-o", url, "-q"))
    assert f"{url} does not match its manifest (issues.zarr/c.1.0.0 missing)" in said
    assert objects(s3, f"{BUCKET}/scored/{NAME}") == before
    assert invoke("score", data, "-o", url, "-q", "--replace").exit_code == 0


def test_photos_kept_in_an_s3_run_are_fetched_for_its_pages(runs, s3, tmp_path):
    """A run a Scanner fed with photos keeps them (photos/ID.png): its page at a URL
    draws them as the page on disk does."""
    import numpy as np

    import segaudit
    from segaudit.runs.objectstore import publish

    rng = np.random.default_rng(3)
    local, url = tmp_path / NAME, f"s3://{BUCKET}/fed/{NAME}"
    with segaudit.Scanner(local, num_classes=3) as scan:
        for _ in range(4):
            labels = rng.integers(0, 3, (24, 32), dtype=np.uint8)
            probs = rng.dirichlet(np.ones(3), (24, 32)).transpose(2, 0, 1).astype(np.float32)
            photo = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
            scan.add(labels, probs, images=photo)
    publish(local, url)
    assert "photos/0.png" in objects(s3, url.removeprefix("s3://"))
    for run in (local, url):
        assert invoke("render", run, "--pages", "-q").exit_code == 0
    page = local / "render"
    for path in sorted(p for p in page.rglob("*") if p.is_file()):
        held = s3.cat_file(f"{url}/render/{path.relative_to(page)}")
        assert held == path.read_bytes().replace(str(local).encode(), url.encode()), path


def test_swaps_of_a_run_replaced_while_read_write_nothing(runs, s3):
    from segaudit.errors import RunDirectoryError
    from segaudit.report.render import write_run_swaps
    from segaudit.runs.run import open_run

    _, _, data = runs
    url = f"s3://{BUCKET}/replaced/{NAME}"
    assert invoke("scan", data, "-o", url, "-q").exit_code == 0
    run = open_run(url)
    assert invoke("scan", data, "-o", url, "-q", "--ignore-index", 3).exit_code == 0
    with pytest.raises(RunDirectoryError, match="was replaced by another segaudit process"):
        write_run_swaps(run)
    assert not s3.exists(f"{url}/swaps.csv") and not s3.exists(f"{url}/swaps.png")


def test_a_command_fetches_only_what_it_reads_and_removes_its_copy(runs):
    from segaudit.report.render import write_run_swaps
    from segaudit.runs.run import open_run

    run = open_run(runs[1])
    copy = run.path.parent
    assert copy.name.startswith(f"{READ_PREFIX}{os.getpid()}-")
    assert sorted(p.name for p in run.path.iterdir() if p.is_dir()) == []
    write_run_swaps(run)
    fetched = sorted(p.name for p in run.path.iterdir() if p.is_dir())
    assert fetched == ["issues.zarr", "labels.zarr", "pred_labels.zarr"]
    del run
    gc.collect()
    assert not copy.exists()


def test_the_copy_a_killed_reader_left_is_removed_by_the_next_read(runs, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stale = tmp_path / f"{READ_PREFIX}{gone.pid}-abc123"
    (stale / NAME).mkdir(parents=True)
    other = tmp_path / "someone-elses"
    other.mkdir()
    assert invoke("swaps", runs[1], "-q").exit_code == 0
    gc.collect()
    assert sorted(p.name for p in tmp_path.iterdir()) == [other.name]


def _refusals(url: str, data: Path, tmp_path: Path) -> list[list[object]]:
    return [
        ["swaps", url],
        ["render", url],
        ["render", url, "-o", tmp_path / "page"],
        ["eval", url, "--truth", data],
        ["export", url, "-o", tmp_path / "issues.json"],
    ]


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        ("summary", "is not a complete segaudit run (no summary.json)"),
        ("missing", "does not match its manifest (issues.zarr/c.3.0.0 missing)"),
        ("truncated", "does not match its manifest (labels.zarr/c.0.0.0 has 7 bytes, not"),
    ],
)
def test_an_incomplete_s3_run_is_refused_and_nothing_is_written(
    damage, says, runs, s3, tmp_path, monkeypatch
):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    url = copy_run(s3, runs[1], damage)
    prefix = url.removeprefix("s3://")
    if damage == "summary":
        s3.rm_file(f"{prefix}/summary.json")
    elif damage == "missing":
        s3.rm_file(f"{prefix}/issues.zarr/c.3.0.0")
    else:
        s3.pipe_file(f"{prefix}/labels.zarr/c.0.0.0", b"partial")
    before = objects(s3, prefix)
    out = tmp_path / "out"
    out.mkdir()
    for args in _refusals(url, runs[2], out):
        said = one_line_error(invoke(*args))
        assert says in said and url in said, (args, said)
        assert objects(s3, prefix) == before, args
        assert list(out.iterdir()) == [] and list((tmp_path / "tmp").iterdir()) == [], args


def test_a_run_at_a_file_url_is_published_read_and_written_into(runs, tmp_path):
    """Any fsspec URL: file:// publishes, reads and takes swaps and pages as s3:// does."""
    local, _, data = runs
    folder = tmp_path / "store" / NAME
    url = f"file://{folder}"
    assert invoke("scan", data, "-o", url, "-q").exit_code == 0
    assert invoke("swaps", url, "-q").exit_code == 0
    assert invoke("swaps", local, "-q").exit_code == 0
    for name in ("swaps.csv", "swaps.png"):
        assert (folder / name).read_bytes() == (local / name).read_bytes(), name
    assert invoke("render", url, "--top", 2, "-q").exit_code == 0
    assert (folder / "render" / "index.html").is_file()
    assert sorted(p.name for p in folder.parent.iterdir()) == [NAME]  # no hidden prefix left


@pytest.mark.parametrize("command", ["swaps", "render", "eval", "export", "score"])
def test_a_complete_s3_run_without_credentials_is_one_sentence(command, runs, s3, monkeypatch):
    """No credentials anywhere: reading the complete run is refused in one sentence that
    says so (not that the run is missing), exit 2, nothing written."""
    import s3fs

    local, url, data = runs
    out = local.parent / f"no-credentials-{command}"
    out.mkdir()
    before = objects(s3, url.removeprefix("s3://"))
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(out / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(out / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    s3fs.S3FileSystem.clear_instance_cache()
    args = {
        "eval": ["eval", url, "--truth", data],
        "export": ["export", url, "-o", out / "issues.json"],
        "score": ["score", data, "-o", url],
    }.get(command, [command, url])
    result = runner.invoke(app, [str(a) for a in args])
    s3fs.S3FileSystem.clear_instance_cache()
    said = one_line_error(result)
    assert "cannot be" in said and "credentials" in said and "not a complete" not in said
    assert list(out.iterdir()) == []
    assert objects(s3, url.removeprefix("s3://")) == before
