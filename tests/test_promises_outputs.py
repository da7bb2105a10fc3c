"""What segaudit promises about what it says and writes after reading a run.

Signals after the swap are reported as what they left; `swaps` and `render` write all or
nothing (full disk, read-only run), never from one run into another, and never replace
a folder that is not theirs; names and paths are shown as text; usage errors are one
line; the photos a run recorded are checked to be the same file.
"""

from __future__ import annotations

import csv
import errno
import functools
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import HELD_SCAN, make_probs, one_line_error, tree_digest
from PIL import Image
from typer.testing import CliRunner

import segaudit.jobs.scan
import segaudit.report.render
from segaudit.cli import app
from segaudit.errors import RunDirectoryError
from segaudit.report.array_pages import display_issues
from segaudit.report.render import read_image_scores, render_run
from segaudit.report.swaps import common_label_issues, filter_by_class, tally_issues
from segaudit.runs import rundir
from segaudit.runs.run import open_run

runner = CliRunner()
SEGAUDIT = [sys.executable, "-c", "from segaudit.cli import main; main()"]


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=True)


def write_dataset(folder: Path, n: int = 5, h: int = 16, w: int = 16, seed: int = 3) -> Path:
    labels, probs = make_probs(np.random.default_rng(seed), n, 4, h, w, "float32")
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "labels.npy", labels.astype(np.uint8))
    np.save(folder / "pred_probs.npy", probs)
    np.save(
        folder / "images.npy", np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), np.uint8)
    )
    return folder


@pytest.fixture
def scene(tmp_path):
    """A dataset and a complete run of it (made with --downsample 2) in RUN."""
    data = write_dataset(tmp_path / "data")
    run = tmp_path / "out" / "run"
    assert invoke("scan", data, "-o", run, "-q", "--downsample", "2").exit_code == 0
    return data, run


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory):
    """RUN with a swap table and render pages already written (as a reviewer leaves it).

    Shared by tests that only prove RUN stays byte for byte as it is.
    """
    tmp_path = tmp_path_factory.mktemp("reviewed")
    data = write_dataset(tmp_path / "data")
    run = tmp_path / "out" / "run"
    assert invoke("scan", data, "-o", run, "-q").exit_code == 0
    assert invoke("swaps", run, "-q", "--exclude", "0").exit_code == 0
    assert invoke("render", run, "-q", "--top", "1").exit_code == 0
    assert (run / "swaps.csv").is_file() and (run / "render" / "index.html").is_file()
    return data, run, tree_digest(run)


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*") if "tmp" in p.name)


# --- signals after the swap ----------------------------------------------------------------

# A scan that sends itself SIGNUM at MOMENT: right after the new run was swapped in
# ("after-swap", inside the signal-deferring swap), or once the command has returned
# ("after-command", outside the command's own error handling).
SIGNALLED_SCAN = """
import functools, os, signal, sys
from segaudit.runs import rundir
signal.signal(signal.SIGINT, signal.default_int_handler)
signum = int(os.environ["SIGNUM"])
def send():
    os.kill(os.getpid(), signum)
if os.environ["MOMENT"] == "after-swap":
    real_install = rundir._install
    def install(tmp, run):
        real_install(tmp, run)
        send()
    rundir._install = install
sys.argv[0] = "segaudit"
import segaudit.cli
if os.environ["MOMENT"] == "after-command":
    for command in segaudit.cli.app.registered_commands:
        if command.name == "scan":
            real_command = command.callback
            @functools.wraps(real_command)
            def signalled(*args, **kwargs):
                real_command(*args, **kwargs)
                send()
            command.callback = signalled
segaudit.cli.main()
"""


@pytest.mark.parametrize(
    ("signum", "moment"),
    [
        (signal.SIGTERM, "after-swap"),
        (signal.SIGINT, "after-swap"),
        (signal.SIGHUP, "after-command"),
    ],
)
def test_a_signal_after_the_swap_says_the_new_run_is_in_place(scene, signum, moment):
    data, run = scene
    done = subprocess.run(
        [sys.executable, "-c", SIGNALLED_SCAN, "scan", str(data), "-o", str(run), "-q"],
        env={**os.environ, "SIGNUM": str(int(signum)), "MOMENT": moment},
        capture_output=True,
        text=True,
        timeout=120,
    )
    what = "interrupted" if signum == signal.SIGINT else "terminated"
    assert done.returncode == 128 + signum, done.stderr
    assert done.stderr.strip() == f"{what} after {run} was written; it holds the new complete run"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["parameters"]["downsample"] == 1  # the new run, complete
    assert (run / "issues.zarr").is_dir()
    assert not [p for p in run.parent.iterdir() if p.name.startswith(rundir.TEMP_PREFIX)]


# --- full disk and read-only runs ----------------------------------------------------------

# Runs each command of the JSON list in argv[1] and prints [exit status, stderr] for each:
# several commands under one kernel-imposed limit for the cost of one process.
COMMANDS = """
import json, sys
from typer.testing import CliRunner
from segaudit.cli import app
results = []
for args in json.loads(sys.argv[1]):
    result = CliRunner().invoke(app, args)
    results.append([result.exit_code, result.stderr, repr(result.exception)])
print(json.dumps(results))
"""


def run_commands(commands: list[list[str]], **how) -> list[tuple[int, str]]:
    """Exit status and stderr of each command, run in one child process set up by ``how``."""
    import matplotlib.font_manager  # noqa: F401  (its font cache exists before any limit)

    argv = [sys.executable, "-c", COMMANDS, json.dumps(commands)]
    done = subprocess.run([*how.pop("prefix", []), *argv], capture_output=True, text=True, **how)
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout.strip().splitlines()[-1])
    for status, stderr, exception in results:
        assert status in (0, 2), (status, stderr, exception)
    return [(status, stderr) for status, stderr, _ in results]


def limited_file_size(limit: int) -> None:
    """In the child: files may not grow past ``limit`` bytes (writes fail with EFBIG)."""
    hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))


def test_a_full_disk_leaves_the_run_unchanged_with_one_line(reviewed):
    """The kernel refuses writes past 4 KiB: the swap CSV fits, the pictures do not."""
    _, run, before = reviewed
    commands = [["swaps", str(run), "-q"], ["render", str(run), "-q", "--top", "3"]]
    preexec = functools.partial(limited_file_size, 4096)
    for status, stderr in run_commands(commands, preexec_fn=preexec, timeout=120):
        message = stderr.strip()
        assert status == 2, stderr
        assert message.startswith("error: writing ") and "\n" not in message, message
        assert "File too large" in message and message.endswith(" is unchanged."), message
    assert tree_digest(run) == before
    assert temporaries(run) == []


def read_only_commands(folder: Path, commands: list[list[str]]) -> list[tuple[int, str]]:
    """Run commands while ``folder`` is read-only: a read-only bind mount in a private
    mount namespace as root (root ignores permission bits), the permission bits otherwise."""
    if os.geteuid() != 0:
        modes = {path: path.stat().st_mode for path in [folder, *folder.rglob("*")]}
        for path in modes:
            path.chmod(modes[path] & 0o555)
        try:
            return run_commands(commands, timeout=120)
        finally:
            for path, mode in modes.items():
                path.chmod(mode)
    mount = ["unshare", "-m", "sh", "-c", 'mount --bind -o ro "$0" "$0" && exec "$@"', folder]
    if shutil.which("unshare") is None or subprocess.run([*mount, "true"]).returncode != 0:
        pytest.skip("running as root without a way to make a folder read-only")
    return run_commands(commands, prefix=mount, timeout=120)


def test_a_read_only_run_is_one_line_and_untouched_and_renders_elsewhere(reviewed, tmp_path):
    _, run, before = reviewed
    pages = tmp_path / "pages"
    commands = [["swaps", str(run)], ["render", str(run)], ["render", str(run), "-o", str(pages)]]
    swaps, render, elsewhere = read_only_commands(run, commands)
    for status, stderr in (swaps, render):
        message = stderr.strip()
        assert status == 2 and message.startswith("error:") and "\n" not in message, stderr
        assert f"{run} is not writable" in message
    assert elsewhere[0] == 0, elsewhere
    assert (pages / "index.html").is_file()
    assert tree_digest(run) == before


# --- readers racing a writer ---------------------------------------------------------------



def start_held_scan(data: Path, run: Path, marker: Path) -> subprocess.Popen:
    """A scan into ``run`` that holds its lock, stopped mid-run until killed."""
    env = {**os.environ, "HOLD_AFTER": "2", "MARKER": str(marker)}
    args = ["scan", str(data), "-o", str(run), "-q", "--batch-size", "1", "--workers", "1"]
    process = subprocess.Popen(
        [sys.executable, "-c", HELD_SCAN, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not marker.exists():
        if process.poll() is not None:
            raise AssertionError(f"scan exited early: {process.communicate()}")
        assert time.monotonic() < deadline, "scan never reached its hook"
        time.sleep(0.02)
    return process


def test_swaps_and_render_wait_for_no_scan_and_write_nothing_meanwhile(scene, tmp_path):
    data, run = scene
    before = tree_digest(run)
    scan = start_held_scan(data, run, tmp_path / "held")
    try:
        for args in (["swaps", run], ["render", run], ["render", run, "--out", run / "mine"]):
            message = one_line_error(invoke(*args, "-q"))
            assert message == (
                f"error: another segaudit process is writing {run}; run "
                f"`segaudit {args[0]}` again once it has finished."
            )
        assert tree_digest(run) == before
        elsewhere = invoke("render", run, "-q", "--out", tmp_path / "pages")
        assert elsewhere.exit_code == 0, elsewhere.output  # reads the previous run whole
    finally:
        scan.kill()
        scan.communicate()


def test_a_scan_during_swaps_is_refused_and_the_table_is_the_runs(scene, monkeypatch):
    data, run = scene
    reference = run.parent / "reference"
    shutil.copytree(run, reference)
    assert invoke("swaps", reference, "-q").exit_code == 0
    scans = []
    real_run_swaps = segaudit.report.render.run_swaps

    def scan_meanwhile(*args, **kwargs):
        scans.append(invoke("scan", data, "-o", run, "-q"))
        return real_run_swaps(*args, **kwargs)

    monkeypatch.setattr(segaudit.report.render, "run_swaps", scan_meanwhile)
    assert invoke("swaps", run, "-q").exit_code == 0
    assert "another segaudit process is writing" in one_line_error(scans[0])
    assert (run / "swaps.csv").read_bytes() == (reference / "swaps.csv").read_bytes()
    assert json.loads((run / "summary.json").read_text())["parameters"]["downsample"] == 2


class ReplaceRunOnce:
    """A progress bar whose first step replaces the run being read by a new scan."""

    def __init__(self, data: Path, run: Path) -> None:
        self.data, self.run, self.done = data, run, False

    def start(self, description: str, total: int) -> None:
        pass

    def advance(self, amount: int = 1) -> None:
        if not self.done:
            self.done = True
            assert invoke("scan", self.data, "-o", self.run, "-q").exit_code == 0

    def finish(self) -> None:
        pass


def test_render_elsewhere_refuses_pages_of_a_run_replaced_while_it_read(scene, tmp_path):
    data, run = scene
    opened = open_run(run)
    with pytest.raises(RunDirectoryError, match="was replaced by another segaudit process"):
        render_run(opened, out=tmp_path / "pages", progress=ReplaceRunOnce(data, run))
    assert not (tmp_path / "pages").exists()
    assert not [p for p in tmp_path.iterdir() if "segaudit-tmp" in p.name]


# --- names and paths are text --------------------------------------------------------------

HOSTILE = ["[/x]", "$\\undefinedmacro$", "=HYPERLINK(1)", "a\x1b[2Jb"]


def test_hostile_class_names_are_shown_and_written_as_text(make_run, tmp_path):
    labels = np.array([[[0, 1], [2, 3]]] * 2, np.uint8)
    pred = (labels + 1) % 4
    run = make_run(labels, pred, np.ones_like(labels, bool), num_classes=4, names=HOSTILE)
    swaps = invoke("swaps", run, "--top", "20")
    assert swaps.exit_code == 0, swaps.output
    assert "[/x] (0)" in swaps.stdout and "$\\undefinedmacro$ (1)" in swaps.stdout
    assert "a\\x1b[2Jb (3)" in swaps.stdout and "\x1b" not in swaps.stdout
    with open(run / "swaps.csv", newline="") as handle:
        cells = {row["given_name"] for row in csv.DictReader(handle)}
    assert cells == {"[/x]", "$\\undefinedmacro$", "'=HYPERLINK(1)", "a\x1b[2Jb"}
    out = tmp_path / "pages[/x]"
    rendered = invoke("render", run, "--out", out)
    assert rendered.exit_code == 0, rendered.output
    assert f"wrote the review page of 2 images to {out}" in rendered.stdout
    data = (out / "data.js").read_text(encoding="ascii")  # names as JSON text, nothing else
    assert json.loads(data.split(" = ", 1)[1].rstrip(";\n"))["classes"]["names"] == HOSTILE


def test_a_missing_path_with_brackets_is_named_exactly(tmp_path):
    message = one_line_error(invoke("scan", tmp_path / "no[bold]such", "-o", tmp_path / "run"))
    assert f"{tmp_path / 'no[bold]such'}" in message


def test_image_ids_are_read_back_from_their_csv_cells(make_run):
    labels = np.zeros((2, 2, 2), np.uint8)
    run = make_run(labels, labels + 1, np.ones_like(labels, bool), num_classes=2)
    with open(run / "image_scores.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "id", "softmin_score", "issue_pixels", "issue_fraction", "rank"])
        writer.writerow([0, "'=cmd|' /C calc'!A0", 0.5, 4, 1.0, 1])
        writer.writerow([1, "'plain", 0.6, 4, 1.0, 2])
    scores = read_image_scores(run)
    assert scores[0][0] == "=cmd|' /C calc'!A0" and scores[1][0] == "'plain"


# --- inputs that are not files, photos that are not the scanned ones -----------------------


def test_images_that_are_a_pipe_are_refused_at_once(scene, tmp_path):
    _, run = scene
    fifo = tmp_path / "fifo.npy"
    os.mkfifo(fifo)

    def waited(signum, frame):
        raise AssertionError("render waited on the pipe")

    previous = signal.signal(signal.SIGALRM, waited)
    signal.alarm(30)  # a guard only: the refusal comes before any read
    try:
        message = one_line_error(invoke("render", run, "-q", "--images", fifo))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert "is not a regular file" in message and str(fifo) in message
    assert not (run / "render").exists()


def test_render_from_another_directory_checks_the_photos_are_the_scanned_ones(
    tmp_path, monkeypatch
):
    write_dataset(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    assert invoke("scan", "data", "-o", "run", "-q").exit_code == 0  # relative paths
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    run = tmp_path / "run"
    result = invoke("render", run, "-q", "--top", "1", "--pages")
    assert result.exit_code == 0, result.output
    page = next((run / "render").glob("rank*.png"))
    with Image.open(page) as png:
        assert png.width > 4 * 16  # four panels: the photo is there
    photos = np.load(tmp_path / "data" / "images.npy")
    np.save(tmp_path / "data" / "images.npy", 255 - photos)  # same shape, other photos
    before = tree_digest(run)
    message = one_line_error(invoke("render", run, "-q"))
    assert "are not the photos this run was scanned with" in message
    assert "pass --images PATH" in message and tree_digest(run) == before
    forced = invoke("render", run, "-q", "--images", tmp_path / "data" / "images.npy")
    assert forced.exit_code == 0, forced.output


# --- render's own folder -------------------------------------------------------------------


def test_a_render_folder_holding_a_users_file_is_never_replaced(scene, tmp_path):
    _, run = scene
    out = tmp_path / "pages"
    assert invoke("render", run, "-q", "--out", out).exit_code == 0
    (out / "thesis.tex").write_text("three years of work")
    message = one_line_error(invoke("render", run, "-q", "--out", out))
    assert "is not a segaudit render" in message and "thesis.tex" in message
    assert (out / "thesis.tex").read_text() == "three years of work"
    (out / "thesis.tex").unlink()
    (out / "drafts").mkdir()
    assert "drafts" in one_line_error(invoke("render", run, "-q", "--out", out))


def test_a_killed_renders_leftovers_are_removed_by_the_next(scene, tmp_path):
    _, run = scene
    out = tmp_path / "pages"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True
    )
    pid = int(dead.stdout)
    stale = tmp_path / f".pages.segaudit-tmp-{pid:08x}0123abcd"
    stale.mkdir()
    (stale / "rank001_image00000.png").write_bytes(b"half")
    assert invoke("render", run, "-q", "--out", out).exit_code == 0
    assert not stale.exists() and (out / "index.html").is_file()


# --- usage errors are one line -------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "start", "hint"),
    [
        (["scan", "--frobnicate"], "No such option: --frobnicate", "segaudit scan --help"),
        (["scan", "data"], "Missing option '--out' / '-o'", "segaudit scan --help"),
        (["swaps", "run", "--top", "x"], "Invalid value for '--top'", "segaudit swaps --help"),
        (["frobnicate"], "No such command 'frobnicate'", "segaudit --help"),
    ],
)
def test_usage_errors_are_one_line_with_the_usage_and_exit_2(args, start, hint):
    message = one_line_error(invoke(*args))
    assert message.startswith(f"error: {start}"), message
    assert "Usage: segaudit" in message and message.endswith(f"see '{hint}'.")


def test_help_and_no_arguments_are_unchanged():
    assert invoke("scan", "--help").exit_code == 0
    bare = invoke()
    assert bare.exit_code == 2 and "Usage: segaudit" in bare.output


# --- the library API names its bad arguments -----------------------------------------------

GOOD = {
    "issues": np.zeros((2, 3, 4), bool),
    "labels": np.zeros((2, 3, 4), np.int64),
    "pred_probs": np.full((2, 2, 3, 4), 0.5, np.float32),
}


def _common(issues, labels, pred_probs):
    return common_label_issues(issues, labels, pred_probs)


def _filter(issues, labels, pred_probs):
    return filter_by_class(1, issues, labels, pred_probs)


def _display(issues, labels, pred_probs):
    return display_issues(issues, labels=labels, pred_probs=pred_probs)


def _tally(issues, labels, pred_probs):
    return tally_issues(issues, labels, None if pred_probs is None else labels, 2)


BAD = {"None": None, "str": "labels.npy", "list": [[[0, 1]]]}
# (function, argument it must name, bad values): None is fine where an argument is optional.
API_CASES = [
    (function, argument, bad)
    for function, arguments in (
        (_common, ("issues", "labels", "pred_probs")),
        (_filter, ("issues", "labels", "pred_probs")),
        (_display, ("issues", "labels", "pred_probs")),
        (_tally, ("issues", "labels")),
    )
    for argument in arguments
    for bad in BAD
    if not (bad == "None" and function in (_display, _tally) and argument != "issues")
]


@pytest.mark.parametrize(("function", "argument", "bad"), API_CASES)
def test_api_arguments_that_are_not_arrays_are_named(function, argument, bad):
    with pytest.raises((TypeError, ValueError), match=argument):
        function(**{**GOOD, argument: BAD[bad]})


def test_api_arrays_of_the_wrong_shape_are_named():
    with pytest.raises(ValueError, match=r"labels must have shape \(N, H, W\) = \(2, 3, 4\)"):
        common_label_issues(GOOD["issues"], np.zeros((2, 3, 5), int), GOOD["pred_probs"])
    with pytest.raises(ValueError, match="issues must have shape"):
        display_issues(np.zeros((3, 4), bool))
    with pytest.raises(TypeError, match="exclude must hold class ids"):
        tally_issues(GOOD["issues"], GOOD["labels"], GOOD["labels"], 2, exclude=["car"])


def test_write_failures_name_the_cause():
    from segaudit.report.swaps import write_failure

    full = write_failure("run/swaps.csv", OSError(errno.ENOSPC, "No space left on device"), "run")
    assert str(full) == (
        "writing run/swaps.csv failed (No space left on device): free some space and run it "
        "again; run is unchanged."
    )
