"""segaudit under cron and CI: nothing lost, nothing half-written, every bad input answered.

Real processes are killed (SIGKILL, SIGINT, SIGTERM) at chosen points of a scan, two
scans race for one RUN, the disk fills up, inputs change under a running scan — and
RUN must always hold either the previous complete run or the new one, byte for byte.
Outputs must not depend on --batch-size or --workers.
"""

from __future__ import annotations

import builtins
import csv
import io as io_module
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
from helpers import HELD_SCAN, make_probs, one_line_error, tree_digest
from typer.testing import CliRunner

import segaudit.jobs.scan
from segaudit import __version__
from segaudit.cli import app
from segaudit.runs import rundir

runner = CliRunner()

# `python -c` rather than `python -m segaudit`: the package has no __main__ module.
SEGAUDIT = [sys.executable, "-c", "from segaudit.cli import main; main()"]


# A scan SIGKILLed at a point the env hook cannot reach: inside the swap.
KILLED_IN_SWAP = """
import os, signal, sys
from pathlib import Path
from segaudit.runs import durability, rundir
def die():
    os.kill(os.getpid(), signal.SIGKILL)
where = os.environ["KILL_IN"]
if where == "before-summary":
    def write_json_atomic(path, payload):
        die()
    rundir.write_json_atomic = write_json_atomic
elif where == "after-exchange":
    real = durability.exchange
    def exchange(a, b):
        assert real(a, b)
        die()
    durability.exchange = exchange
elif where == "between-renames":
    durability.exchange = lambda a, b: False
    real_rename = os.rename
    def rename(src, dst):
        real_rename(src, dst)
        if Path(dst).name.startswith(rundir.OLD_PREFIX):
            die()
    os.rename = rename
sys.argv[0] = "segaudit"
from segaudit.cli import main
main()
"""


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=True)


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(".segaudit-t"))


def leftovers_all(parent: Path) -> list[str]:
    prefixes = (rundir.TEMP_PREFIX, rundir.OLD_PREFIX)
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(prefixes))


def write_dataset(folder: Path, n: int = 5, h: int = 16, w: int = 16, seed: int = 3) -> Path:
    labels, probs = make_probs(np.random.default_rng(seed), n, 4, h, w, "float32")
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "labels.npy", labels.astype(np.uint8))
    np.save(folder / "pred_probs.npy", probs)
    return folder


@pytest.fixture
def scene(tmp_path):
    """A dataset and a previous complete run (made with other options) in RUN."""
    data = write_dataset(tmp_path / "data")
    run = tmp_path / "out" / "run"
    assert invoke("scan", data, "-o", run, "-q", "--downsample", "2").exit_code == 0
    return data, run, tree_digest(run)


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    """Poll until ``path`` exists (the held scan reached its hook); fail if it died first."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"scan exited early: {process.communicate()}")
        assert time.monotonic() < deadline, "scan never reached its hook"
        time.sleep(0.02)


def start_held_scan(data: Path, run: Path, marker: Path, hold_after: int = 2):
    env = {**os.environ, "HOLD_AFTER": str(hold_after), "MARKER": str(marker)}
    args = ["scan", str(data), "-o", str(run), "-q", "--batch-size", "1", "--workers", "1"]
    process = subprocess.Popen(
        [sys.executable, "-c", HELD_SCAN, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(marker, process)
    return process


def assert_fresh_scan_matches(data: Path, run: Path, tmp_path: Path) -> None:
    """RUN holds exactly what a clean scan of ``data`` writes (timing fields apart)."""
    reference = tmp_path / "reference"
    assert invoke("scan", data, "-o", reference, "-q").exit_code == 0
    assert outputs(run) == outputs(reference)


# --- 1. kills at any moment ---------------------------------------------------------------


@pytest.mark.parametrize("images", [1, 2, 3])
def test_sigkill_mid_scan_leaves_the_previous_run_byte_for_byte(scene, tmp_path, images):
    data, run, before = scene
    env = {**os.environ, "SEGAUDIT_TEST_KILL_AFTER_IMAGES": str(images)}
    args = ["scan", data, "-o", run, "-q", "--batch-size", "1", "--workers", "1"]
    killed = subprocess.run([*SEGAUDIT, *map(str, args)], env=env, capture_output=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert tree_digest(run) == before
    assert len(leftovers(run.parent)) == 1  # the killed scan's temporary directory

    rerun = invoke("scan", data, "-o", run, "-q")
    assert rerun.exit_code == 0, rerun.output
    assert leftovers(run.parent) == []  # its owner is dead: the rerun removed it
    assert_fresh_scan_matches(data, run, tmp_path)


@pytest.mark.parametrize("where", ["before-summary", "after-exchange", "between-renames"])
def test_sigkill_inside_the_swap_never_loses_a_complete_run(scene, tmp_path, where):
    data, run, before = scene
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_IN_SWAP, "scan", str(data), "-o", str(run), "-q"],
        env={**os.environ, "KILL_IN": where},
        capture_output=True,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    if where == "before-summary":
        assert tree_digest(run) == before
    elif where == "after-exchange":  # the new run is in place; the old one is a leftover
        assert json.loads((run / "summary.json").read_text())["parameters"]["downsample"] == 1
    else:  # RUN is missing; the previous run waits in .segaudit-old-, the new in -tmp-
        assert not run.exists() and len(leftovers_all(run.parent)) == 2
        with rundir.run_lock(run):
            rundir.clean_stale_temporaries(run.parent, run.name, locked=True)
        assert tree_digest(run) == before
    rerun = invoke("scan", data, "-o", run, "-q")
    assert rerun.exit_code == 0, rerun.output
    assert leftovers_all(run.parent) == []
    assert_fresh_scan_matches(data, run, tmp_path)


def test_ctrl_c_mid_scan_is_one_line_exit_130_and_leaves_no_trace(scene, tmp_path):
    data, run, before = scene
    process = start_held_scan(data, run, tmp_path / "held")
    assert len(leftovers(run.parent)) == 1
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert stderr.strip().startswith("interrupted") and "\n" not in stderr.strip(), stderr
    assert "Traceback" not in stderr and stdout == ""
    assert tree_digest(run) == before
    assert leftovers(run.parent) == []  # cleaned up on the way out, not left for later


def test_sigterm_mid_scan_leaves_the_previous_run_and_the_next_run_cleans_up(scene, tmp_path):
    data, run, before = scene
    process = start_held_scan(data, run, tmp_path / "held")
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode in (-signal.SIGTERM, 128 + signal.SIGTERM), stderr
    assert "Traceback" not in stderr
    assert tree_digest(run) == before
    assert invoke("scan", data, "-o", run, "-q").exit_code == 0
    assert leftovers(run.parent) == []


def test_sigterm_mid_scan_exits_143_with_one_line_and_no_trace(scene, tmp_path):
    data, run, before = scene
    process = start_held_scan(data, run, tmp_path / "held")
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert tree_digest(run) == before
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert stderr.strip() == f"terminated; previous results in {run} are unchanged"
    assert leftovers(run.parent) == []


def test_ctrl_c_message_names_the_run(scene, monkeypatch):
    data, run, _ = scene

    def interrupt(stop):
        raise KeyboardInterrupt

    monkeypatch.setattr(segaudit.jobs.scan, "_test_hook_after_batch", interrupt)
    result = invoke("scan", data, "-o", run, "-q", "--workers", "1", "--batch-size", "1")
    assert result.exit_code == 130
    assert result.stderr.strip() == f"interrupted; previous results in {run} are unchanged"


# --- 2. two writers -----------------------------------------------------------------------


def test_a_second_scan_into_a_busy_run_is_refused_at_once(scene, tmp_path):
    data, run, before = scene
    holder = start_held_scan(data, run, tmp_path / "held")  # another process, mid-scan
    try:
        second = invoke("scan", data, "-o", run, "-q")
        message = one_line_error(second)
        assert message == (
            f"error: another segaudit process is writing {run}; wait for it to finish "
            "or choose another -o path."
        )
        assert tree_digest(run) == before
        assert len(leftovers(run.parent)) == 1  # the holder's, untouched by the refused scan
    finally:
        holder.kill()
        holder.communicate()
    # The kernel dropped the lock with the process: the next scan runs and tidies up.
    third = invoke("scan", data, "-o", run, "-q")
    assert third.exit_code == 0, third.output
    assert leftovers(run.parent) == []


def test_a_scan_refused_by_a_lock_held_in_process(scene):
    data, run, before = scene
    with rundir.run_lock(run):
        message = one_line_error(invoke("scan", data, "-o", run, "-q"))
    assert "another segaudit process is writing" in message
    assert tree_digest(run) == before


# --- disk full and other write errors -----------------------------------------------------


@pytest.mark.parametrize("victim", ["zarr chunk", "image_scores.csv", "summary.json"])
def test_disk_full_is_one_line_exit_2_and_the_previous_run_survives(scene, monkeypatch, victim):
    """Writes of the chosen file go to /dev/full, so they fail as on a full disk."""
    data, run, before = scene
    real_open = builtins.open

    def chosen(path: str) -> bool:
        if rundir.TEMP_PREFIX not in path:
            return False
        if victim == "zarr chunk":
            return Path(path).name.startswith("c.")
        if victim == "summary.json":
            return Path(path).name.startswith(".summary.json.")
        return path.endswith(victim)

    def full_disk_open(file, mode="r", *args, **kwargs):
        if isinstance(file, str | os.PathLike) and "w" in mode and "+" not in mode:
            if chosen(os.fspath(file)):
                return real_open("/dev/full", mode, *args, **kwargs)
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", full_disk_open)
    monkeypatch.setattr(io_module, "open", full_disk_open)
    result = invoke("scan", data, "-o", run, "-q", "--workers", "1")
    monkeypatch.undo()
    message = one_line_error(result)
    assert "No space left on device" in message
    assert f"the previous contents of {run} are unchanged" in message
    assert tree_digest(run) == before
    assert leftovers(run.parent) == []


def test_an_output_path_under_a_file_is_one_line(scene):
    data, run, _ = scene
    (run.parent / "afile").write_text("x")
    message = one_line_error(invoke("scan", data, "-o", run.parent / "afile" / "run", "-q"))
    assert "cannot create the run directory" in message and "afile" in message


# --- inputs that change during a run ------------------------------------------------------


def _append(data: Path) -> None:
    with open(data / "pred_probs.npy", "ab") as handle:
        handle.write(b"\x00" * 16)


def _rewrite_labels(data: Path) -> None:
    labels = np.load(data / "labels.npy")
    np.save(data / "labels.npy", (labels + 1) % 4)  # same size, other content


def _touch(data: Path) -> None:
    stat = (data / "pred_probs.npy").stat()
    os.utime(data / "pred_probs.npy", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))


def _zarr_chunk(data: Path) -> None:
    zarr.open_array(str(data / "pred_probs.zarr"), mode="r+")[4] = 0.25


@pytest.mark.parametrize("change", [_append, _rewrite_labels, _touch, _zarr_chunk])
def test_inputs_changed_during_a_scan_write_nothing(scene, monkeypatch, change):
    data, run, before = scene
    if change is _zarr_chunk:
        probs = np.load(data / "pred_probs.npy")
        (data / "pred_probs.npy").unlink()
        store = zarr.create_array(
            store=str(data / "pred_probs.zarr"),
            shape=probs.shape,
            dtype=probs.dtype,
            chunks=(1, *probs.shape[1:]),
        )
        store[:] = probs
    calls = []

    def change_after_first_image(stop: int) -> None:
        if not calls:
            change(data)
        calls.append(stop)

    monkeypatch.setattr(segaudit.jobs.scan, "_test_hook_after_batch", change_after_first_image)
    result = invoke("scan", data, "-o", run, "-q", "--batch-size", "1", "--workers", "1")
    message = one_line_error(result)
    assert "changed while segaudit was reading it" in message and "nothing was written" in message
    assert tree_digest(run) == before
    assert leftovers(run.parent) == []


# --- determinism --------------------------------------------------------------------------


def outputs(run: Path) -> dict[str, object]:
    """Everything a scan writes, timing apart: CSV and chunk bytes, decoded arrays, summary."""
    summary = json.loads((run / "summary.json").read_text())
    for volatile in ("timing", "engine"):
        summary.pop(volatile)
    found: dict[str, object] = {"summary": summary}
    for file in sorted(run.rglob("*")):
        if file.is_file() and file.name != "summary.json":
            found[str(file.relative_to(run))] = file.read_bytes()
    for store in sorted(run.glob("*.zarr")):
        array = zarr.open_array(str(store), mode="r")
        found[f"{store.name}[:]"] = (array.dtype.str, array[:].tobytes())
    return found


@pytest.mark.parametrize("extra", [[], ["--ignore-index", "255", "--downsample", "2"]])
def test_outputs_are_byte_identical_for_any_batch_size_and_worker_count(tmp_path, extra):
    labels, probs = make_probs(np.random.default_rng(11), 7, 5, 16, 20, "float32")
    labels = labels.astype(np.uint8)
    labels[1, :3, :5] = 255
    labels[4, 8:, 10:] = 255
    if not extra:
        labels[labels == 255] = 0
    folder = tmp_path / "data"
    folder.mkdir()
    np.save(folder / "labels.npy", labels)
    np.save(folder / "pred_probs.npy", probs)
    seen = {}
    for batch in ("1", "3", "7"):
        for workers in ("1", "2"):
            run = tmp_path / f"run-b{batch}-w{workers}"
            args = ("--batch-size", batch, "--workers", workers, *extra)
            result = invoke("scan", folder, "-o", run, "-q", *args)
            assert result.exit_code == 0, result.output
            seen[(batch, workers)] = outputs(run)
    reference = seen[("7", "1")]
    assert int(reference["summary"]["totals"]["issue_pixels"]) > 0
    assert any(name.startswith("issues.zarr/c.") for name in reference)
    for key, found in seen.items():
        assert found.keys() == reference.keys(), key
        for name in reference:
            assert found[name] == reference[name], (key, name)
    rows = list(
        csv.DictReader((tmp_path / "run-b1-w2" / "image_scores.csv").read_text().splitlines())
    )
    assert [int(r["rank"]) for r in rows] == list(range(1, 8))


# --- outputs stay in RUN ------------------------------------------------------------------


def test_a_scan_writes_only_inside_run(scene, tmp_path):
    data, run, _ = scene
    everything_before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    assert invoke("scan", data, "-o", run, "-q").exit_code == 0
    changed = {
        p
        for p in tmp_path.rglob("*")
        if p.is_file() and everything_before.get(p) != p.stat().st_mtime_ns
    }
    lock = run.parent / ".segaudit-lock-run"
    assert all(run in p.parents for p in changed - {lock}), sorted(changed)
    assert sorted(p.name for p in run.parent.iterdir()) == [".segaudit-lock-run", "run"]


def test_a_run_that_is_a_symlink_is_refused(scene, tmp_path):
    data, run, before = scene
    link = tmp_path / "link"
    link.symlink_to(run)
    message = one_line_error(invoke("scan", data, "-o", link, "-q"))
    assert "is a symbolic link" in message
    assert tree_digest(run) == before


# --- the command line itself --------------------------------------------------------------


def test_version_help_and_completion():
    result = invoke("--version")
    assert result.exit_code == 0 and result.stdout == f"segaudit {__version__}\n"
    top = invoke("--help")
    assert top.exit_code == 0
    assert "--install-completion" in top.stdout and "--show-completion" in top.stdout
    commands = sorted(c.name or c.callback.__name__ for c in app.registered_commands)
    assert {"scan", "swaps", "render", "synth"} <= set(commands)
    for command in commands:
        page = invoke(command, "--help")
        assert page.exit_code == 0, (command, page.output)
        assert f"Usage: segaudit {command}" in " ".join(page.stdout.split()), command
    assert invoke("no-such-command").exit_code == 2
    installed = Path(sys.executable).with_name("segaudit")
    if not installed.exists():
        pytest.skip("the segaudit console script is not installed beside this Python")
    # Typer finds the shell to complete for among the command's parents: start it from
    # bash (not exec-ed by it: ``; exit``), whatever runs the suite (a background job's
    # parent may be no shell at all).
    script = subprocess.run(
        ["bash", "-c", f"{shlex.quote(str(installed))} --show-completion; exit"],
        capture_output=True,
        text=True,
    )
    assert script.returncode == 0, script.stderr
    assert "_segaudit_completion" in script.stdout and "complete " in script.stdout


def python_lines(code: str, env: dict[str, str] | None = None) -> list[str]:
    """The lines ``python -c code`` prints, once it has exited 0."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_the_command_keeps_the_garbage_collector_off_import_time_objects():
    # The import-time objects live until exit, so main() freezes them (gc.freeze): the
    # collector then skips them during the run and at exit. The exit status is kept.
    code = (
        "import gc, sys\n"
        "sys.argv = ['segaudit', '--version']\n"
        "from segaudit.cli import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as stop:\n"
        "    print(stop.code, gc.get_freeze_count())\n"
    )
    lines = python_lines(code)
    assert lines[0] == f"segaudit {__version__}"
    status, frozen = lines[1].split()
    assert status == "0" and int(frozen) > 10_000


@pytest.mark.parametrize(("given", "expected"), [(None, "4"), ("30", "30")])
def test_the_command_lets_idle_blas_threads_sleep(given, expected):
    # OpenBLAS's threads spin for work when numpy loads; the command sets their idle
    # timeout to its least before numpy is imported, unless the user set one.
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    if given is not None:
        env["OPENBLAS_THREAD_TIMEOUT"] = given
    code = (
        "import os, sys\n"
        "sys.argv = ['segaudit', '--version']\n"
        "from segaudit.cli import main\n"
        "assert 'numpy' not in sys.modules\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    print(os.environ.get('OPENBLAS_THREAD_TIMEOUT'))\n"
    )
    assert python_lines(code, env)[-1] == expected


def test_memory_freed_by_a_stage_is_given_back_to_the_system():
    # Between a scan's stages, release_free_memory() returns what glibc kept of the
    # freed heap: here 200 MB of 100 kB buffers, all freed but the last (so the heap's
    # top cannot shrink by itself).
    code = (
        "import numpy as np\n"
        "from segaudit.libc import release_free_memory\n"
        "def anon():\n"
        "    for line in open('/proc/self/status'):\n"
        "        if line.startswith('RssAnon'):\n"
        "            return int(line.split()[1]) // 1024\n"
        "buffers = [np.ones(100_000 // 8) for _ in range(2000)]\n"
        "last = buffers[-1]\n"
        "del buffers\n"
        "before = anon()\n"
        "release_free_memory()\n"
        "print(before, anon())\n"
    )
    before, after = (int(n) for n in python_lines(code)[-1].split())
    assert before - after > 150, (before, after)


def test_the_command_builds_only_the_command_it_runs():
    # Typer converts every registered command on each run; main() hands it a copy of
    # the app holding only the command named, which must behave exactly like the whole.
    from segaudit.cli import _app_for

    assert [c.name for c in _app_for(["scan", "data", "-o", "run"]).registered_commands] == ["scan"]
    assert _app_for(["--help"]) is app and _app_for([]) is app and _app_for(["nope"]) is app
    assert len(app.registered_commands) > 1
    whole_app = [sys.executable, "-c", "from segaudit.cli import app; app()"]
    for args in (["scan", "--help"], ["score", "--no-such-option"], ["--help"]):
        slim = subprocess.run([*SEGAUDIT, *args], capture_output=True, text=True)
        whole = subprocess.run([*whole_app, *args], capture_output=True, text=True)
        assert (slim.returncode, slim.stdout, slim.stderr) == (
            whole.returncode,
            whole.stdout,
            whole.stderr,
        ), args
        assert "Usage: " in slim.stdout + slim.stderr


def test_out_of_memory_names_only_the_commands_own_options(scene, tmp_path, monkeypatch):
    """render has no --memory-budget: its advice is its --zoom."""
    data, run, _ = scene

    def no_memory(*args, **kwargs):
        raise MemoryError

    import segaudit.report.render

    monkeypatch.setattr(segaudit.report.render, "render_run", no_memory)
    message = one_line_error(invoke("render", run, "-q"))
    assert message == "error: out of memory; lower --zoom."
    monkeypatch.setattr(segaudit.jobs.scan, "scan", no_memory)
    message = one_line_error(invoke("scan", data, "-o", tmp_path / "other", "-q"))
    assert "lower --memory-budget" in message and "--zoom" not in message
