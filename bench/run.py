"""segaudit benchmark: one run, every row measured side by side on the same files.

    python bench/run.py                 # 60×19×512×1024 float32 (2.5 GB) and a 30-image half set
    python bench/run.py --quick         # 8 and 4 images: a smoke run
    python bench/run.py --images 100 --skip-cleanlab --repeat 2
    python bench/run.py --skip-folder   # without the folder-dataset rows
    python bench/run.py --quick --only scanner   # the Scanner section alone

Folder datasets (unless --skip-folder): 200 images, half 512×1024 and half 640×960,
19 classes, labels/ID.png masks and pred_probs/ID.npy float16 (4.3 GB), and a
100-image half set; rows: decode pass (the floor), segaudit scan w=1/w=2, and the
cleanlab path (every pixel decoded into memory and laid end to end as one image).

Scanner (unless --skip-scanner): bench/scanner_loop.py makes 60 images of 512×1024 with
19 float32 probabilities a pixel in memory (synth's simulated model, batches of 4), and
runs the loop alone, feeding segaudit.Scanner (w=1, w=2), and saving a folder dataset
that `segaudit scan` then reads; produce and Scanner w=1 again on 30 images.

Generates the datasets under bench/data/ once (a JSON stamp records their parameters;
they are reused while it matches), warms the page cache, then runs every measurement
as its own subprocess under ``/usr/bin/time -v`` (wall clock and peak RSS), while
sampling the child's anonymous memory (its own memory, without mapped file pages).
Writes bench/results/latest.md and latest.json (plus timestamped copies). See
bench/README.md for how to read them. stdlib + numpy only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
DATA = BENCH / "data"
RESULTS = BENCH / "results"
RUNS = RESULTS / "runs"
PY = sys.executable
MIB = 1024 * 1024
# Measured processes cache their bytecode as any installed Python program does, even
# where the environment turns that off (PYTHONDONTWRITEBYTECODE=1, as on some CI and
# sandbox machines): otherwise every row would pay for compiling segaudit's sources.
CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
SCAN_KEYS = ("scan_w1_big", "scan_w2_big", "scan_w1_half", "scan_w2_half")
FOLDER_SCAN_KEYS = tuple(f"folder_{k}" for k in SCAN_KEYS)
FLAT_MEMORY = 1.2  # a big/half peak RSS ratio at most this counts as flat in N
FOLDER_IMAGES, FOLDER_SIZES = 200, "512x1024,640x960"  # 4.33 GB of float16 predictions
QUICK_FOLDER_IMAGES, QUICK_FOLDER_SIZES = 16, "128x256,160x240"
# The Scanner section: an in-memory "model" loop (bench/scanner_loop.py), batches of 4.
SCANNER_IMAGES, SCANNER_SIZE = 60, "512x1024"  # as the stacked big set: 2.39 GB float32
QUICK_SCANNER_IMAGES, QUICK_SCANNER_SIZE = 8, "128x256"
SCANNER_BATCH = 4
SCANNER_FAIL_KEYS = ("scanner_w1_big", "scanner_w2_big", "scanner_w1_half", "scanner_scan_big")
SECTIONS = ("stacked", "folder", "scanner")


def log(message: str) -> None:
    print(message, flush=True)


# Files an earlier row or round left are moved here and deleted only after the last
# measurement. Deleting thousands of files just before a timed row slows the files that
# row creates: on ext4 without a journal (as on these machines) every new inode skips
# over the inodes freed in the last minutes (ext4's recently_deleted), and a scan
# creates about 16 files per image.
SET_ASIDE = RESULTS / "set-aside"


def set_aside(path: Path) -> None:
    """Move ``path`` (if it exists) into SET_ASIDE, to be deleted after the measurements."""
    if not path.exists() and not path.is_symlink():
        return
    SET_ASIDE.mkdir(parents=True, exist_ok=True)
    os.rename(path, SET_ASIDE / f"{len(list(SET_ASIDE.iterdir()))}-{path.name}")


def segaudit_exe() -> list[str]:
    """The segaudit console script beside this interpreter (the venv), else on PATH."""
    here = Path(sys.executable).parent / "segaudit"
    if here.exists():
        return [str(here)]
    found = shutil.which("segaudit")
    if found:
        return [found]
    return [PY, "-c", "from segaudit.cli import main; main()"]


SEGAUDIT = segaudit_exe()


# --------------------------------------------------------------------------- datasets


@dataclass
class Dataset:
    role: str  # "big" or "half"
    n: int
    k: int
    h: int
    w: int
    seed: int

    @property
    def name(self) -> str:
        return f"synth-n{self.n}-k{self.k}-{self.h}x{self.w}-s{self.seed}"

    @property
    def path(self) -> Path:
        return DATA / self.name

    @property
    def pred_bytes(self) -> int:
        return self.n * self.k * self.h * self.w * 4

    @property
    def shape(self) -> str:
        return f"{self.n}×{self.k}×{self.h}×{self.w}"

    def parameters(self) -> dict[str, Any]:
        return {
            "images": self.n,
            "classes": self.k,
            "height": self.h,
            "width": self.w,
            "seed": self.seed,
            "dtype": "float32",
            "format": "npy",
        }

    @property
    def pixels(self) -> int:
        return self.n * self.h * self.w

    def files(self) -> list[Path]:
        return [self.path / "labels.npy", self.path / "pred_probs.npy"]

    def synth_args(self) -> list[str]:
        return [
            "--images",
            str(self.n),
            "--height",
            str(self.h),
            "--width",
            str(self.w),
            "--classes",
            str(self.k),
            "--seed",
            str(self.seed),
        ]

    def stamp_files(self) -> list[Path]:
        """The files whose sizes the stamp records (and checks)."""
        return [f for f in sorted(self.path.iterdir()) if f.suffix == ".npy"]

    def complete(self) -> bool:
        return all(f.exists() for f in self.files())


@dataclass
class FolderDataset:
    """A folder dataset: labels/ID.png masks and pred_probs/ID.npy (K,H,W) float16
    predictions, one file per image, in several sizes (dealt out in turn by
    `segaudit synth --layout folder`, so two sizes are used half each when N is even)."""

    role: str  # "big" or "half"
    n: int
    k: int
    sizes: tuple[tuple[int, int], ...]
    seed: int
    dtype: str = "float16"

    @property
    def sizes_text(self) -> str:
        return ",".join(f"{h}x{w}" for h, w in self.sizes)

    @property
    def name(self) -> str:
        short = {"float16": "f16", "float32": "f32"}.get(self.dtype, self.dtype)
        return (
            f"folder-n{self.n}-k{self.k}-{self.sizes_text.replace(',', '-')}-{short}-s{self.seed}"
        )

    @property
    def path(self) -> Path:
        return DATA / self.name

    def counts(self) -> list[int]:
        """How many images get each size (synth deals them out in turn)."""
        return [len(range(i, self.n, len(self.sizes))) for i in range(len(self.sizes))]

    @property
    def pixels(self) -> int:
        return sum(c * h * w for c, (h, w) in zip(self.counts(), self.sizes, strict=True))

    @property
    def pred_bytes(self) -> int:
        return self.pixels * self.k * np.dtype(self.dtype).itemsize

    @property
    def shape(self) -> str:
        sizes = ", ".join(f"{h}×{w}" for h, w in self.sizes)
        return f"{self.n}×{self.k}×({sizes})"

    def parameters(self) -> dict[str, Any]:
        return {
            "images": self.n,
            "classes": self.k,
            "sizes": self.sizes_text,
            "seed": self.seed,
            "dtype": self.dtype,
            "layout": "folder",
        }

    def files(self) -> list[Path]:
        return [self.path / "labels", self.path / "pred_probs"]

    def synth_args(self) -> list[str]:
        return [
            "--layout",
            "folder",
            "--sizes",
            self.sizes_text,
            "--images",
            str(self.n),
            "--classes",
            str(self.k),
            "--dtype",
            self.dtype,
            "--seed",
            str(self.seed),
        ]

    def stamp_files(self) -> list[Path]:
        return [f for d in self.files() for f in sorted(d.iterdir()) if f.is_file()]

    def complete(self) -> bool:
        try:
            return (
                len(list((self.path / "labels").glob("*.png"))) == self.n
                and len(list((self.path / "pred_probs").glob("*.npy"))) == self.n
            )
        except OSError:
            return False


AnyDataset = Dataset | FolderDataset


@dataclass
class LoopSet:
    """The images bench/scanner_loop.py's "model" makes in memory: N images of one size,
    K float32 probabilities a pixel, in batches of ``batch`` (no dataset on disk)."""

    role: str  # "big" or "half"
    n: int
    k: int
    h: int
    w: int
    seed: int
    batch: int = SCANNER_BATCH

    @property
    def shape(self) -> str:
        return f"{self.n}×{self.k}×{self.h}×{self.w}"

    @property
    def pixels(self) -> int:
        return self.n * self.h * self.w

    @property
    def pred_bytes(self) -> int:
        return self.pixels * self.k * 4

    def loop_args(self) -> list[str]:
        return [
            "--images",
            str(self.n),
            "--height",
            str(self.h),
            "--width",
            str(self.w),
            "--classes",
            str(self.k),
            "--seed",
            str(self.seed),
            "--batch",
            str(self.batch),
        ]


Shaped = Dataset | FolderDataset | LoopSet  # anything a row can be measured on


def parse_sizes(text: str) -> tuple[tuple[int, int], ...]:
    """Image sizes: "512x1024,640x960" -> ((512, 1024), (640, 960))."""
    sizes = []
    for part in text.split(","):
        h, sep, w = part.strip().lower().partition("x")
        if not sep or not h.isdigit() or not w.isdigit() or int(h) < 1 or int(w) < 1:
            raise ValueError(f"{part!r} is not HxW (e.g. 512x1024)")
        sizes.append((int(h), int(w)))
    return tuple(sizes)


def stamp_ok(ds: AnyDataset) -> bool:
    stamp_path = ds.path / "bench_stamp.json"
    try:
        stamp = json.loads(stamp_path.read_text())
    except (OSError, ValueError):
        return False
    if stamp.get("parameters") != ds.parameters():
        return False
    for name, size in stamp.get("sizes", {}).items():
        f = ds.path / name
        if not f.exists() or f.stat().st_size != size:
            return False
    return ds.complete()


def ensure_dataset(ds: AnyDataset) -> dict[str, Any]:
    """Reuse bench/data/NAME when its stamp matches; otherwise generate it with segaudit synth."""
    if stamp_ok(ds):
        stamp = json.loads((ds.path / "bench_stamp.json").read_text())
        log(f"data  {ds.role:4} {ds.path.relative_to(ROOT)} reused ({ds.pred_bytes / 1e9:.2f} GB)")
        return {**stamp, "reused": True}
    DATA.mkdir(parents=True, exist_ok=True)
    need = ds.pred_bytes * 1.1 + ds.pixels * 6
    free = shutil.disk_usage(DATA).free
    if free < need:
        raise RuntimeError(
            f"not enough disk for {ds.name}: need {need / 1e9:.1f} GB, {free / 1e9:.1f} GB free"
        )
    shutil.rmtree(ds.path, ignore_errors=True)
    tmp = ds.path.with_name(ds.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [*SEGAUDIT, "synth", str(tmp), *ds.synth_args(), "--quiet"]
    log(
        f"data  {ds.role:4} generating {ds.path.relative_to(ROOT)} "
        f"({ds.pred_bytes / 1e9:.2f} GB): {shlex.join(cmd)}"
    )
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeError(
            f"segaudit synth failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
        )
    tmp.rename(ds.path)
    sizes = {f.relative_to(ds.path).as_posix(): f.stat().st_size for f in ds.stamp_files()}
    stamp = {
        "parameters": ds.parameters(),
        "command": shlex.join(cmd),
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "generate_seconds": round(seconds, 2),
        "sizes": sizes,
    }
    (ds.path / "bench_stamp.json").write_text(json.dumps(stamp, indent=2) + "\n")
    log(
        f"      generated in {seconds:.1f} s "
        f"({ds.pred_bytes / 1e9 / seconds:.2f} GB/s of pred_probs)"
    )
    return {**stamp, "reused": False}


def warm(paths: list[Path]) -> float:
    """Read files (or every file under directories) once so they sit in the page cache,
    and write out what earlier rows left dirty in it, so that no row waits for another
    row's output to reach the disk (a run flushes its file system before publishing)."""
    os.sync()
    buf = bytearray(32 * MIB)
    view = memoryview(buf)
    t0 = time.perf_counter()
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files += [f for f in p.rglob("*") if f.is_file()]
        elif p.exists():
            files.append(p)
    for f in files:
        with open(f, "rb", buffering=0) as fh:
            while fh.readinto(view):
                pass
    return time.perf_counter() - t0


def tree_bytes(path: Path) -> int:
    """Bytes of the files under ``path`` (0 when it does not exist)."""
    if not path.exists():
        return 0
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


# --------------------------------------------------------------------------- timing


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def _rss_anon_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _tree_anon_kib(root: int) -> int:
    total, stack = 0, _children(root)  # the children of /usr/bin/time, not time itself
    while stack:
        pid = stack.pop()
        total += _rss_anon_kib(pid)
        stack += _children(pid)
    return total


def _parse_elapsed(text: str) -> float:
    parts = [float(x) for x in text.strip().split(":")]
    seconds = 0.0
    for part in parts:
        seconds = seconds * 60 + part
    return seconds


def parse_time_v(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    patterns = {
        "wall_s": (r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", _parse_elapsed),
        "max_rss_kib": (r"Maximum resident set size \(kbytes\): (\d+)", int),
        "user_s": (r"User time \(seconds\): ([\d.]+)", float),
        "sys_s": (r"System time \(seconds\): ([\d.]+)", float),
        "cpu_percent": (r"Percent of CPU this job got: (\d+)%", int),
        "exit_status": (r"Exit status: (\d+)", int),
        "major_faults": (r"Major \(requiring I/O\) page faults: (\d+)", int),
    }
    for key, (pattern, conv) in patterns.items():
        m = re.search(pattern, text)
        if m:
            out[key] = conv(m.group(1))
    m = re.search(r"Command terminated by signal (\d+)", text)
    if m:
        out["signal"] = int(m.group(1))
    return out


def run_timed(cmd: list[str], timeout: float) -> dict[str, Any]:
    """Run cmd under /usr/bin/time -v; sample the child's RssAnon every 20 ms."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    time_file, out_file, err_file = (RESULTS / f".run.{x}" for x in ("time", "out", "err"))
    full = ["/usr/bin/time", "-v", "-o", str(time_file), *cmd]
    peak_anon = 0
    timed_out = False
    with open(out_file, "w") as out, open(err_file, "w") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            full,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=CHILD_ENV,
        )
        while True:
            try:
                proc.wait(timeout=0.02)
                break
            except subprocess.TimeoutExpired:
                pass
            peak_anon = max(peak_anon, _tree_anon_kib(proc.pid))
            if time.perf_counter() - t0 > timeout:
                timed_out = True
                os.killpg(proc.pid, signal.SIGKILL)  # our own session: /usr/bin/time and its child
                proc.wait()
                break
    result: dict[str, Any] = parse_time_v(time_file.read_text() if time_file.exists() else "")
    result["returncode"] = proc.returncode
    result["peak_anon_kib"] = peak_anon
    result["stdout"] = out_file.read_text(errors="replace")
    result["stderr"] = err_file.read_text(errors="replace")
    result["timed_out"] = timed_out
    result["ok"] = proc.returncode == 0 and not timed_out and "wall_s" in result
    for f in (time_file, out_file, err_file):
        f.unlink(missing_ok=True)
    return result


def last_json_line(text: str) -> dict[str, Any] | None:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


# --------------------------------------------------------------------------- measurements


@dataclass
class Row:
    key: str
    what: str
    shape: str
    gb: float | None
    command: str
    status: str = "n/a"  # ok, failed, n/a, skipped
    wall_s: float | None = None
    work_s: float | None = None
    cpu_percent: int | None = None
    max_rss_mib: float | None = None
    peak_anon_mib: float | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    section: str = "stacked"  # "stacked" (one .npy per kind), "folder" (a file an image), "scanner"
    bytes_written: int | None = None  # what the row left on disk (rows that record it)


@dataclass
class Job:
    """One row's command and how to read its result; run once per round."""

    row: Row
    cmd: list[str]
    warm_paths: list[Path]
    run_dir: Path | None = None
    work_from: str = "none"  # "summary" (run_dir/summary.json), "stdout" (JSON line), "none"
    needs: str | None = None  # key of a row whose run this one reads
    clean: list[Path] = field(default_factory=list)  # deleted before every attempt (untimed)
    written: Path | None = None  # the bytes of the files under it are recorded after a run
    best: dict[str, Any] | None = None
    failed: bool = False
    unmet: bool = False  # the row it needs failed: shown as n/a


class Bench:
    """Rows are planned first, then measured round-robin: every round runs each row
    once, in plan order, and each row keeps its best round. Rows compared with each
    other are thus measured minutes apart at most, under the same machine load."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rows: dict[str, Row] = {}
        self.order: list[str] = []
        self.jobs: list[Job] = []

    def add(self, row: Row) -> Row:
        self.rows[row.key] = row
        self.order.append(row.key)
        return row

    def skip(
        self,
        key: str,
        what: str,
        ds: Shaped | None,
        status: str,
        note: str,
        gb: bool = True,
        section: str = "stacked",
    ) -> None:
        self.add(
            Row(
                key,
                what,
                ds.shape if ds else "",
                ds.pred_bytes / 1e9 if ds and gb else None,
                "",
                status=status,
                note=note,
                section=section,
            )
        )

    def plan(
        self,
        key: str,
        what: str,
        ds: Shaped,
        cmd: list[str],
        *,
        warm_paths: list[Path],
        run_dir: Path | None = None,
        work_from: str = "none",
        reads_probs: bool = True,
        needs: str | None = None,
        section: str = "stacked",
        clean: list[Path] | None = None,
        written: Path | None = None,
    ) -> None:
        row = self.add(
            Row(
                key,
                what,
                ds.shape,
                ds.pred_bytes / 1e9 if reads_probs else None,
                shlex.join(cmd),
                section=section,
            )
        )
        self.jobs.append(
            Job(row, cmd, warm_paths, run_dir, work_from, needs, list(clean or []), written)
        )

    def measure_all(self) -> None:
        rounds = self.args.repeat
        for number in range(1, rounds + 1):
            for index, job in enumerate(self.jobs, 1):
                if job.failed:
                    continue
                needed = self.rows[job.needs] if job.needs else None
                if needed is not None and any(not a["ok"] for a in needed.attempts):
                    job.failed = job.unmet = True
                    job.row.status, job.row.note = "n/a", f"{job.needs} failed"
                    continue
                label = f"{job.row.what} ({job.row.shape})"
                log(f"[round {number}/{rounds}, {index:2}/{len(self.jobs)}] {label} ...")
                self._attempt(job)
        for job in self.jobs:
            if not job.unmet:
                self._finish(job)

    def _attempt(self, job: Job) -> None:
        if job.run_dir is not None and job.work_from == "summary":
            set_aside(job.run_dir)
        for path in job.clean:
            set_aside(path)
        warm_s = warm(job.warm_paths)
        res = run_timed(job.cmd, self.args.timeout)
        res["warm_s"] = round(warm_s, 3)
        if res["ok"]:
            self._read_work(job, res)
        if res["ok"] and job.written is not None:
            res["bytes_written"] = tree_bytes(job.written)
        stdout, stderr = res.pop("stdout"), res.pop("stderr")
        job.row.attempts.append(res)
        if not res["ok"]:
            job.failed = True
            why = "timed out" if res["timed_out"] else f"exit {res['returncode']}"
            log(f"      FAILED ({why}): {shlex.join(job.cmd)}")
            for line in (stderr.strip() or stdout.strip() or "(no output)").splitlines()[-25:]:
                log(f"      | {line}")
            res["stderr_tail"] = stderr[-4000:]
            return
        work = f", work {res['work_s']:.2f} s" if res.get("work_s") is not None else ""
        rss = res.get("max_rss_kib", 0) / 1024
        log(f"      {res['wall_s']:.2f} s wall{work}, peak RSS {rss:.0f} MiB")
        if job.best is None or res["wall_s"] < job.best["wall_s"]:
            job.best = res

    @staticmethod
    def _read_work(job: Job, res: dict[str, Any]) -> None:
        """Where the row reports its own work: the run's summary.json or a JSON line."""
        if job.work_from == "summary" and job.run_dir is not None:
            try:
                summary = json.loads((job.run_dir / "summary.json").read_text())
                res["timing"] = summary.get("timing", {})
                res["engine"] = summary.get("engine", {})
                res["totals"] = summary.get("totals", {})
                res["work_s"] = res["timing"].get("seconds")
            except (OSError, ValueError) as e:
                res["ok"] = False
                res["stderr"] += f"\n(bench) no readable summary.json in {job.run_dir}: {e}"
        elif job.work_from == "stdout":
            parsed = last_json_line(res["stdout"])
            if parsed is None:
                res["ok"] = False
                res["stderr"] += "\n(bench) no JSON line on stdout"
            else:
                res["helper"] = parsed
                res["work_s"] = parsed.get("seconds")
            summary_path = job.run_dir / "summary.json" if job.run_dir is not None else None
            if summary_path is not None and summary_path.exists():  # a Scanner's run
                try:
                    summary = json.loads(summary_path.read_text())
                    res["timing"] = summary.get("timing", {})
                    res["totals"] = summary.get("totals", {})
                except (OSError, ValueError):
                    pass

    @staticmethod
    def _finish(job: Job) -> None:
        row, best = job.row, job.best
        if job.failed or best is None:
            row.status = "failed"
            return
        row.status = "ok"
        row.wall_s = best["wall_s"]
        row.work_s = best.get("work_s")
        row.cpu_percent = best.get("cpu_percent")
        row.max_rss_mib = best.get("max_rss_kib", 0) / 1024
        row.peak_anon_mib = best["peak_anon_kib"] / 1024
        row.bytes_written = best.get("bytes_written")
        for extra in ("timing", "engine", "totals", "helper"):
            if extra in best:
                row.details[extra] = best[extra]


def plan_folder_rows(bench: Bench, ds: FolderDataset, cl: bool) -> None:
    """The folder-dataset rows of one set: decode pass, scan w=1 and w=2, and on the big
    set the cleanlab path (every pixel decoded into memory, laid end to end)."""
    role, f = ds.role, "folder"
    inputs = ds.files()
    bench.plan(
        f"folder_decode_{role}",
        "decode pass (PNG masks + np.load .npy, one thread)",
        ds,
        helper("decode_pass.py", ds.path),
        warm_paths=inputs,
        work_from="stdout",
        section=f,
    )
    if role == "big":
        bench.plan(
            "folder_decode_mmap_big",
            "decode pass, mmap and touch every byte (a stricter floor: no copy)",
            ds,
            helper("decode_pass.py", ds.path, "--mmap-touch"),
            warm_paths=inputs,
            work_from="stdout",
            section=f,
        )
    if role == "big":
        bench.plan(
            "folder_pass_w2_big",
            "segaudit's pass alone, 2 workers (decode + kernel, nothing kept or written)",
            ds,
            helper("pass_only.py", ds.path, 2),
            warm_paths=inputs,
            work_from="stdout",
            section=f,
        )
    for w in (1, 2):
        run = RUNS / f"folder-scan-{role}-w{w}"
        bench.plan(
            f"folder_scan_w{w}_{role}",
            f"segaudit scan --workers {w}",
            ds,
            [*SEGAUDIT, "scan", str(ds.path), "-o", str(run), "--quiet", "--workers", str(w)],
            warm_paths=[*inputs, ds.path / "images"],
            run_dir=run,
            work_from="summary",
            section=f,
        )
    if role != "big":
        return
    what = "cleanlab find_label_issues n_jobs=1, pixels end to end (decode + call)"
    if cl:
        bench.plan(
            f"folder_cl_flat_{role}",
            what,
            ds,
            helper("cleanlab_scan.py", "flat", ds.path, RUNS / f"folder-cleanlab-{role}"),
            warm_paths=inputs,
            work_from="stdout",
            section=f,
        )
    else:
        bench.skip(f"folder_cl_flat_{role}", what, ds, "skipped", "", section=f)


def plan_scanner_rows(bench: Bench, big: LoopSet, half: LoopSet) -> None:
    """The Scanner rows: the in-memory model loop alone (produce), feeding a Scanner
    (w=1, w=2), saving a folder dataset (files) and `segaudit scan` of those files; on
    the half set produce and Scanner w=1 again (is the Scanner's memory flat in N?)."""
    s = "scanner"
    out = RUNS / "scanner-files-big"
    # The written dataset (float32 predictions, PNG masks) and four runs of a few bytes a pixel.
    need = big.pred_bytes * 1.05 + big.pixels * 30
    RUNS.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(RUNS).free
    for ds in (big, half):
        role = ds.role
        bench.plan(
            f"scanner_produce_{role}",
            "model loop alone (produce)",
            ds,
            helper("scanner_loop.py", "produce", *ds.loop_args()),
            warm_paths=[],
            work_from="stdout",
            section=s,
        )
        for w in (1, 2) if role == "big" else (1,):
            run = RUNS / f"scanner-{role}-w{w}"
            bench.plan(
                f"scanner_w{w}_{role}",
                f"model loop → segaudit.Scanner workers={w}",
                ds,
                helper("scanner_loop.py", "scanner", run, *ds.loop_args(), "--workers", str(w)),
                warm_paths=[],
                run_dir=run,
                work_from="stdout",
                section=s,
                clean=[run],
                written=run,
            )
        if role != "big":
            continue
        files_what = "model loop → files (labels/ID.png, pred_probs/ID.npy float32, synced)"
        scan_what = "segaudit scan --workers 1 (of the files just written)"
        if free < need:
            note = f"not enough disk: {need / 1e9:.1f} GB needed, {free / 1e9:.1f} GB free"
            bench.skip("scanner_files_big", files_what, ds, "skipped", note, section=s)
            bench.skip("scanner_scan_big", scan_what, ds, "skipped", note, section=s)
            continue
        bench.plan(
            "scanner_files_big",
            files_what,
            ds,
            helper("scanner_loop.py", "files", out, *ds.loop_args()),
            warm_paths=[],
            work_from="stdout",
            section=s,
            clean=[out],
            written=out,
        )
        scan_run = RUNS / "scanner-scan-big"
        bench.plan(
            "scanner_scan_big",
            scan_what,
            ds,
            [*SEGAUDIT, "scan", str(out), "-o", str(scan_run), "--quiet", "--workers", "1"],
            warm_paths=[out / "labels", out / "pred_probs"],
            run_dir=scan_run,
            work_from="summary",
            needs="scanner_files_big",
            section=s,
            written=scan_run,
        )


def compare_runs(scanner_run: Path, scan_run: Path) -> dict[str, Any]:
    """Untimed: the Scanner's run against the scan of the same images from files. Every
    file is compared byte for byte; summary.json, images.csv and image_scores.csv may
    differ only where they describe the inputs (file paths) and timing."""
    try:
        a = {f.relative_to(scanner_run).as_posix() for f in scanner_run.rglob("*") if f.is_file()}
        b = {f.relative_to(scan_run).as_posix() for f in scan_run.rglob("*") if f.is_file()}
        same = sorted(
            n for n in a & b if (scanner_run / n).read_bytes() == (scan_run / n).read_bytes()
        )
        totals = [
            json.loads((r / "summary.json").read_text()).get("totals")
            for r in (scanner_run, scan_run)
        ]
    except (OSError, ValueError) as e:
        return {"error": str(e)}
    return {
        "totals_equal": totals[0] == totals[1],
        "issue_pixels": (totals[0] or {}).get("issue_pixels"),
        "files_identical": len(same),
        "files_differing": sorted((a & b) - set(same)),
        "only_in_scanner_run": sorted(a - b),
        "only_in_scan_run": sorted(b - a),
    }


def helper(name: str, *args: str | Path) -> list[str]:
    return [PY, str(BENCH / name), *map(str, args)]


def run_check(cmd: list[str]) -> dict[str, Any]:
    """An untimed parity check (a helper printing one JSON line)."""
    proc = subprocess.run(cmd, capture_output=True, text=True)
    parsed = last_json_line(proc.stdout) if proc.returncode == 0 else None
    if parsed is None:
        log(f"      check FAILED: {shlex.join(cmd)}")
        for line in (proc.stderr.strip() or "(no output)").splitlines()[-15:]:
            log(f"      | {line}")
        return {"error": proc.stderr[-2000:] or "no output"}
    return parsed


def score_support() -> tuple[bool, str]:
    """Whether `segaudit score` exists, and its --help text (to see which options it takes)."""
    env = {**os.environ, "COLUMNS": "400"}  # Rich wraps and truncates option names otherwise
    proc = subprocess.run([*SEGAUDIT, "score", "--help"], capture_output=True, text=True, env=env)
    return proc.returncode == 0, proc.stdout


def score_cmd(ds: Dataset, run: Path, workers: int, score_help: str, *extra: str) -> list[str]:
    cmd = [*SEGAUDIT, "score", str(ds.path), "-o", str(run), "--method", "softmin", "--quiet"]
    cmd += list(extra)
    if "--workers" in score_help:
        cmd += ["--workers", str(workers)]
    return cmd


# --------------------------------------------------------------------------- report


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt(x: float | None, digits: int = 2, suffix: str = "") -> str:
    return "n/a" if x is None else f"{x:.{digits}f}{suffix}"


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
    }
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["mem_total_gib"] = round(int(line.split()[1]) / MIB, 1)
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    version = subprocess.run([*SEGAUDIT, "--version"], capture_output=True, text=True)
    info["segaudit"] = version.stdout.strip() or "unknown"
    git = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True
    )
    info["git"] = git.stdout.strip() or "unknown"
    return info


def derived(rows: dict[str, Row]) -> list[dict[str, Any]]:
    """The ratios of the sections that ran (see the README)."""
    present = {row.section for row in rows.values()}
    out = [e for e in dataset_ratios(rows) if e["section"] in present]
    if "scanner" in present:
        out += scanner_ratios(rows)
    return out


def dataset_ratios(rows: dict[str, Row]) -> list[dict[str, Any]]:
    """The ratios the README explains: value (from wall or peak RSS) and a second view of it."""

    def g(key: str, attr: str) -> float | None:
        row = rows.get(key)
        return getattr(row, attr) if row is not None and row.status == "ok" else None

    out: list[dict[str, Any]] = []

    def speed(name: str, num: str, den: str, how: str, section: str = "stacked") -> dict[str, Any]:
        entry = {
            "name": name,
            "value": ratio(g(num, "wall_s"), g(den, "wall_s")),
            "second": ratio(g(num, "work_s"), g(den, "work_s")),
            "second_kind": "work",
            "how": how,
            "section": section,
        }
        out.append(entry)
        return entry

    def memory(name: str, key: str, how: str, section: str = "stacked") -> dict[str, Any]:
        entry = {
            "name": name,
            "value": ratio(g(f"{key}_big", "max_rss_mib"), g(f"{key}_half", "max_rss_mib")),
            "second": ratio(g(f"{key}_big", "peak_anon_mib"), g(f"{key}_half", "peak_anon_mib")),
            "second_kind": "anon",
            "how": how,
            "section": section,
        }
        out.append(entry)
        return entry

    def verdict(ok: bool | None) -> str:
        return "n/a" if ok is None else "met" if ok else "NOT met"

    def speed_target(entry: dict[str, Any], limit: float, at_most: bool) -> None:
        """Judge a time ratio against its target, on wall and on work time."""

        def ok(v: float | None) -> bool | None:
            return None if v is None else (v <= limit if at_most else v >= limit)

        sign = "≤" if at_most else "≥"
        entry["target"] = {"op": sign, "limit": limit, "wall_met": ok(entry["value"])}
        entry["target"]["work_met"] = ok(entry["second"])
        entry["how"] += (
            f"; target {sign} {limit:g}×: wall {verdict(ok(entry['value']))}, "
            f"work {verdict(ok(entry['second']))}"
        )

    def memory_target(entry: dict[str, Any], key: str, flat: float, limit_mib: float) -> None:
        """Flat in N (big/half ≤ flat) and under limit_mib peak RSS on the big set."""
        peak = g(f"{key}_big", "max_rss_mib")
        is_flat = None if entry["value"] is None else entry["value"] <= flat
        small = None if peak is None else peak < limit_mib
        entry["target"] = {"flat": flat, "flat_met": is_flat, "limit_mib": limit_mib}
        entry["target"]["limit_met"] = small
        peak_text = "n/a" if peak is None else f"{peak:.0f} MiB"
        entry["how"] += (
            f"; target flat (≤ {flat:g}×): {verdict(is_flat)}; "
            f"big peak RSS < {limit_mib / 1024:g} GiB ({peak_text}): {verdict(small)}"
        )

    speed(
        "scan w=1 speed-up vs cleanlab", "cl_filter_big", "scan_w1_big", "cleanlab / scan, big set"
    )
    speed(
        "scan w=2 speed-up vs cleanlab", "cl_filter_big", "scan_w2_big", "cleanlab / scan, big set"
    )
    speed("scan w=1 / read pass", "scan_w1_big", "read_big", "1.0 = as fast as one plain read")
    speed("scan w=2 / read pass", "scan_w2_big", "read_big", "1.0 = as fast as one plain read")
    speed("scan w=1 → w=2 speed-up", "scan_w1_big", "scan_w2_big", "two cores vs one")
    memory("scan w=1 peak RSS big/half", "scan_w1", "N doubles; 1.0 = flat memory")
    memory("scan w=2 peak RSS big/half", "scan_w2", "N doubles; 1.0 = flat memory")
    memory("cleanlab peak RSS big/half", "cl_filter", "for contrast")
    memory("segaudit.segmentation peak RSS big/half", "compat_filter", "N doubles; 1.0 = flat")
    speed(
        "segaudit.segmentation speed-up vs cleanlab",
        "cl_filter_big",
        "compat_filter_big",
        "cleanlab / the drop-in layer, same call, big set",
    )
    memory("score w=2 peak RSS big/half", "score_w2", "N doubles; 1.0 = flat memory")
    speed(
        "score w=1 speed-up vs cleanlab softmin", "cl_score_big", "score_w1_big", "cleanlab / score"
    )
    speed(
        "score w=2 speed-up vs cleanlab softmin", "cl_score_big", "score_w2_big", "cleanlab / score"
    )
    speed(
        "score w=1 --pixel-scores speed-up vs cleanlab softmin",
        "cl_score_big",
        "score_px_big",
        "cleanlab / score also writing pixel_scores.zarr",
    )
    speed("score w=1 / read pass", "score_w1_big", "read_big", "1.0 = as fast as one plain read")
    speed("score w=2 / read pass", "score_w2_big", "read_big", "1.0 = as fast as one plain read")
    swaps = memory("swaps peak RSS big/half", "swaps", "")
    value = swaps["value"]
    swaps["how"] = "target ≤ 1.2×: " + (
        "n/a" if value is None else "met" if value <= 1.2 else "NOT met"
    )

    region_step(out, rows.get("scan_w1_big"))

    # Folder datasets (PNG masks + one float16 .npy per image, two sizes).
    if not any(key.startswith("folder_") for key in rows):
        return out
    f = "folder"
    floor = "1.0 = as fast as decoding every mask and loading every prediction once"
    speed_target(
        speed("folder scan w=2 / decode pass", "folder_scan_w2_big", "folder_decode_big", floor, f),
        1.5,
        at_most=True,
    )
    speed("folder scan w=1 / decode pass", "folder_scan_w1_big", "folder_decode_big", floor, f)
    speed(
        "folder pass alone w=2 / decode pass",
        "folder_pass_w2_big",
        "folder_decode_big",
        "what the streaming pass adds to decoding, before any output is kept or written",
        f,
    )
    speed(
        "folder scan w=2 / pass alone w=2",
        "folder_scan_w2_big",
        "folder_pass_w2_big",
        "what the run's outputs add: per-pixel arrays, cut, issue masks, regions, tables",
        f,
    )
    speed(
        "folder scan w=2 / mmap-touch pass",
        "folder_scan_w2_big",
        "folder_decode_mmap_big",
        "for contrast: against decoding the masks and touching every prediction byte in place",
        f,
    )
    speed_target(
        speed(
            "folder scan w=2 speed-up vs cleanlab (pixels end to end)",
            "folder_cl_flat_big",
            "folder_scan_w2_big",
            "cleanlab path (decode + find_label_issues) / scan, big folder set",
            f,
        ),
        10.0,
        at_most=False,
    )
    speed(
        "folder scan w=1 speed-up vs cleanlab (pixels end to end)",
        "folder_cl_flat_big",
        "folder_scan_w1_big",
        "cleanlab path (decode + find_label_issues) / scan, big folder set",
        f,
    )
    speed(
        "folder scan w=1 → w=2 speed-up",
        "folder_scan_w1_big",
        "folder_scan_w2_big",
        "two cores vs one",
        f,
    )
    for w in (2, 1):
        key = f"folder_scan_w{w}"
        entry = memory(f"folder scan w={w} peak RSS big/half", key, "N doubles; 1.0 = flat", f)
        memory_target(entry, key, FLAT_MEMORY, 1024.0)
    memory(
        "folder decode pass peak RSS big/half", "folder_decode", "for contrast (mapped pages)", f
    )
    return out


def region_step(out: list[dict[str, Any]], scan: Row | None) -> None:
    """The region step's share of a w=1 scan: its time (summary.json ``regions_cpu``,
    inside ``write_issues``) over the scan's own, against the target < 10% more."""
    timing = scan.details.get("timing", {}) if scan is not None and scan.status == "ok" else {}
    regions, total = timing.get("regions_cpu"), timing.get("seconds")
    share = ratio(regions, None if total is None or regions is None else total - regions)
    met = None if share is None else share < 0.10
    out.append({
        "name": "scan w=1: region step / rest of the scan",
        "value": share,
        "second": None,
        "second_kind": "work",
        "how": f"regions_cpu {fmt(regions, 3)} s of {fmt(total, 3)} s (summary.json timing); "
        f"target < 0.10: {'n/a' if met is None else 'met' if met else 'NOT met'}",
        "section": "stacked",
    })  # fmt: skip


def scanner_ratios(rows: dict[str, Row]) -> list[dict[str, Any]]:
    """The Scanner section's ratios: its cost on top of the model loop against a scan,
    the bytes it writes against storing the predictions, and its memory in N."""

    def g(key: str, attr: str) -> Any:
        row = rows.get(key)
        return getattr(row, attr) if row is not None and row.status == "ok" else None

    def h(key: str, name: str) -> Any:
        row = rows.get(key)
        if row is None or row.status != "ok":
            return None
        return row.details.get("helper", {}).get(name)

    def minus(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else a - b

    def plus(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else a + b

    def x(v: float | None, digits: int = 2) -> str:
        return "n/a" if v is None else f"{v:.{digits}f}×"

    def sec(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.2f} s"

    def mb(v: float | None) -> str:
        return "n/a" if v is None else f"{v / 1e6:.1f} MB"

    def verdict(ok: bool | None) -> str:
        return "n/a" if ok is None else "met" if ok else "NOT met"

    def at_most(v: float | None, limit: float) -> bool | None:
        return None if v is None else v <= limit

    out: list[dict[str, Any]] = []

    def add(name: str, value: Any, second: Any, kind: str, text: str, how: str, **extra: Any):
        entry = {"name": name, "value": value, "second": second, "second_kind": kind}
        entry.update(text=text, how=how, section="scanner", **extra)
        out.append(entry)
        return entry

    # Time: what the Scanner adds to the loop, against scanning the same images from files.
    scan_wall, scan_work = g("scanner_scan_big", "wall_s"), g("scanner_scan_big", "work_s")
    produce_wall = g("scanner_produce_big", "wall_s")
    for w in (1, 2):
        key = f"scanner_w{w}_big"
        overhead = minus(g(key, "wall_s"), produce_wall)
        inside = h(key, "scanner_seconds")
        value, second = ratio(overhead, scan_wall), ratio(inside, scan_work)
        how = (
            f"(Scanner w={w} wall − produce wall) / scan wall = "
            f"{sec(overhead)} / {sec(scan_wall)}; "
            f"in-process: seconds inside the Scanner's calls / scan work = "
            f"{sec(inside)} / {sec(scan_work)}"
        )
        target = None
        if w == 1:
            target = {"op": "≤", "limit": 1.0, "wall_met": at_most(value, 1.0)}
            target["in_process_met"] = at_most(second, 1.0)
            how += (
                f"; target overhead ≤ scan time: wall {verdict(target['wall_met'])}, "
                f"in-process {verdict(target['in_process_met'])}"
            )
        else:
            how += " (for contrast: the scan row runs with --workers 1)"
        add(
            f"Scanner w={w} overhead / scan time",
            value,
            second,
            "in-process",
            f"{x(value)} (in-process: {x(second)})",
            how,
            overhead_s=overhead,
            scanner_seconds=inside,
            target=target,
        )

    # End to end: storing the predictions and scanning them, against the Scanner.
    files_wall, files_work = g("scanner_files_big", "wall_s"), g("scanner_files_big", "work_s")
    both_wall, both_work = plus(files_wall, scan_wall), plus(files_work, scan_work)
    for w in (1, 2):
        key = f"scanner_w{w}_big"
        wall, work = g(key, "wall_s"), g(key, "work_s")
        value, second = ratio(both_wall, wall), ratio(both_work, work)
        add(
            f"end to end: (files + scan) / Scanner w={w}",
            value,
            second,
            "work",
            f"{x(value)} (work: {x(second)})",
            f"model loop saving files, then `segaudit scan` ({sec(both_wall)} wall: files "
            f"{sec(files_wall)} + scan {sec(scan_wall)}) against the loop feeding the Scanner "
            f"({sec(wall)}); the loop alone takes {sec(produce_wall)}",
            files_plus_scan_s=both_wall,
        )

    # Storage: what each way leaves on disk.
    run_bytes = g("scanner_w1_big", "bytes_written")
    files_bytes = g("scanner_files_big", "bytes_written")
    scan_bytes = g("scanner_scan_big", "bytes_written")
    pred_bytes = h("scanner_files_big", "pred_probs_bytes")
    shape = h("scanner_w1_big", "shape") or h("scanner_files_big", "shape")
    k = shape[1] if shape else None
    pixels = shape[0] * shape[2] * shape[3] if shape else None
    stored = plus(files_bytes, scan_bytes)
    value = ratio(run_bytes, stored)
    add(
        "bytes written: Scanner run / (files + scan run)",
        value,
        None,
        "",
        "n/a" if value is None else f"{value:.4f} (1/{1 / value:.0f})" if value else "0",
        f"Scanner w=1 run {mb(run_bytes)} against files {mb(files_bytes)} "
        f"+ scan run {mb(scan_bytes)} = {mb(stored)}",
        scanner_run_bytes=run_bytes,
        files_bytes=files_bytes,
        scan_run_bytes=scan_bytes,
    )
    value = ratio(run_bytes, pred_bytes)
    limit = None if k is None else 1 / k
    met = None if value is None or limit is None else value <= limit
    per_pixel = ratio(run_bytes, pixels)
    add(
        "Scanner run bytes / files' pred_probs bytes",
        value,
        None,
        "",
        "n/a" if value is None else f"{value:.4f} (1/{1 / value:.0f})" if value else "0",
        f"{mb(run_bytes)} against {mb(pred_bytes)} of float32 predictions "
        f"({'n/a' if per_pixel is None else f'{per_pixel:.2f}'} B/pixel against "
        f"{'n/a' if k is None else 4 * k} B/pixel); target ≤ 1/K"
        f"{'' if limit is None else f' = {limit:.4f}'}: {verdict(met)}",
        bytes_per_pixel=per_pixel,
        target={"op": "≤", "limit": limit, "met": met},
    )

    # Memory: flat in N?
    for key, how in (
        ("scanner_w1", "N doubles; 1.0 = flat"),
        ("scanner_produce", "for contrast: the model loop alone"),
    ):
        value = ratio(g(f"{key}_big", "max_rss_mib"), g(f"{key}_half", "max_rss_mib"))
        second = ratio(g(f"{key}_big", "peak_anon_mib"), g(f"{key}_half", "peak_anon_mib"))
        target = None
        if key == "scanner_w1":
            target = {"flat": FLAT_MEMORY, "flat_met": at_most(value, FLAT_MEMORY)}
            how += f"; target flat (≤ {FLAT_MEMORY:g}×): {verdict(target['flat_met'])}"
        name = "Scanner w=1" if key == "scanner_w1" else "model loop alone"
        add(
            f"{name} peak RSS big/half",
            value,
            second,
            "anon",
            f"{x(value)} (anon: {x(second)})",
            how,
            target=target,
        )
    added = minus(g("scanner_w1_big", "max_rss_mib"), g("scanner_produce_big", "max_rss_mib"))
    added_anon = minus(
        g("scanner_w1_big", "peak_anon_mib"), g("scanner_produce_big", "peak_anon_mib")
    )
    add(
        "Scanner w=1 memory on top of the loop",
        added,
        added_anon,
        "anon",
        "n/a" if added is None else f"{added:+.0f} MiB (anon: {fmt(added_anon, 0)} MiB)",
        "peak RSS of the loop feeding the Scanner − peak RSS of the loop alone, big set",
    )
    return out


def ratio_text(entry: dict[str, Any]) -> str:
    if "text" in entry:
        return entry["text"]

    def x(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.2f}×"

    return f"{x(entry['value'])} ({entry['second_kind']}: {x(entry['second'])})"


def table_intro(folder: dict[str, Any]) -> str:
    big, half = folder["big"], folder["half"]
    return (
        f"Big set: {big['images']} images ({big['sizes']}), {big['gb']:.2f} GB of predictions; "
        f"half set: {half['images']} images, {half['gb']:.2f} GB. "
        "`decode pass` = `bench/decode_pass.py` (the floor); the cleanlab row decodes every "
        "mask and prediction into memory and lays all pixels end to end as one 1×P image "
        "(work = decoding + the call)."
    )


def scanner_intro(note: dict[str, Any]) -> str:
    big, half = note["big"], note["half"]
    return (
        f"`bench/scanner_loop.py`: {big['images']} images of {big['size']} ({note['classes']} "
        f"classes, {big['gb']:.2f} GB of float32 probabilities made in memory, in batches of "
        f"{note['batch']}); half set {half['images']} images. `work s` = the loop's own "
        "timer (to the published run or the synced files); `written MB` = the files the row "
        "left on disk (a Scanner's run, the saved dataset, the scan's run)."
    )


def scanner_time_table(lines: list[str], rows: dict[str, Row], order: list[str]) -> None:
    """Where the Scanner rows' time goes: the model, the Scanner's calls, its stages."""
    keys = [k for k in order if k.startswith("scanner_w") and rows[k].status == "ok"]
    if not keys:
        return
    stages = sorted(
        {
            name
            for k in keys
            for name, value in rows[k].details.get("timing", {}).items()
            if isinstance(value, (int, float)) and name != "seconds"
        }
    )
    head = ["process wall", "loop", "model", "inside Scanner", *stages]
    lines += ["", "Where the Scanner rows' time goes (the loop's timer; the run's summary.json "]
    lines[-1] += "`timing`: `add_batches` = inside `add()`, then the stages of the cut):"
    lines += ["", "| row | " + " | ".join(head) + " |", "|---|" + "---:|" * len(head)]
    for k in keys:
        r, helper_out = rows[k], rows[k].details.get("helper", {})
        timing = r.details.get("timing", {})
        cells = [r.wall_s, helper_out.get("seconds"), helper_out.get("model_seconds")]
        cells += [helper_out.get("scanner_seconds"), *(timing.get(s) for s in stages)]
        numbers = [fmt(c) if isinstance(c, (int, float)) else "n/a" for c in cells]
        lines.append(f"| {r.what} ({r.shape}) | " + " | ".join(numbers) + " |")


def render_markdown(report: dict[str, Any], rows: dict[str, Row], order: list[str]) -> str:
    m = report["machine"]
    lines = [
        "# segaudit benchmark",
        "",
        f"- when: {report['started']} (took {report['total_seconds']:.0f} s)",
        f"- command: `{report['command']}`",
        f"- machine: nproc {m['nproc']} ({m.get('cpu', '?')}), "
        f"{m.get('mem_total_gib', '?')} GiB RAM, "
        f"Python {m['python']}, numpy {m['numpy']}, {m['segaudit']} (git {m['git']}), "
        f"cleanlab {report.get('cleanlab_version', 'n/a')}",
        f"- load average at start / end: {report['loadavg_start']} / {report['loadavg_end']}",
        f"- rounds: {report['repeat']} (every row once per round, round-robin; best wall kept)",
        "",
    ]

    def table(section: str) -> None:
        written = section == "scanner"  # that section also shows what each row wrote
        lines.extend(
            [
                "| what | N×K×H×W | GB | wall s | work s | CPU % | peak RSS MiB | peak anon MiB |"
                + (" written MB |" if written else ""),
                "|---|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if written else ""),
            ]
        )
        for key in order:
            r = rows[key]
            if r.section != section:
                continue
            gb = fmt(r.gb) if r.gb is not None else "—"
            if r.status == "ok":
                cells = [
                    fmt(r.wall_s),
                    fmt(r.work_s),
                    str(r.cpu_percent) if r.cpu_percent is not None else "n/a",
                    fmt(r.max_rss_mib, 0),
                    fmt(r.peak_anon_mib, 0),
                ]
            else:
                cells = [r.status] + ["—"] * 4
            if written:
                on_disk = r.bytes_written
                cells.append("—" if on_disk is None else fmt(on_disk / 1e6, 1))
            what = r.what + (f" ({r.note})" if r.note else "")
            lines.append(f"| {what} | {r.shape} | {gb} | " + " | ".join(cells) + " |")

    def ratio_table(section: str) -> None:
        lines.extend(["| ratio | value | meaning |", "|---|---:|---|"])
        lines.extend(
            f"| {e['name']} | {ratio_text(e)} | {e['how']} |"
            for e in report["ratios"]
            if e.get("section", "stacked") == section
        )

    sections = report.get("sections", list(SECTIONS))
    stacked_ran = "stacked" in sections
    lines.append(
        "## Stacked datasets (labels.npy + pred_probs.npy float32, one size)"
        + ("" if stacked_ran else ": skipped (--only)")
    )
    if stacked_ran:
        lines.append("")
        table("stacked")
    lines.append("")
    folder_note = report.get("folder")
    lines.append(
        "## Folder datasets (labels/ID.png + pred_probs/ID.npy float16, two sizes)"
        + ("" if folder_note else ": skipped (--skip-folder)")
    )
    if folder_note:
        lines += ["", table_intro(folder_note), ""]
        table("folder")
    lines.append("")
    scanner_note = report.get("scanner")
    lines.append(
        "## Scanner (an in-memory model loop: alone, feeding segaudit.Scanner, saving files)"
        + ("" if scanner_note else ": skipped (--skip-scanner)")
    )
    if scanner_note:
        lines += ["", scanner_intro(scanner_note), ""]
        table("scanner")
    lines += ["", "## Ratios (from this run)"]
    if stacked_ran:
        lines += ["", "### Stacked", ""]
        ratio_table("stacked")
    if folder_note:
        lines += ["", "### Folder", ""]
        ratio_table("folder")
    if scanner_note:
        lines += ["", "### Scanner", ""]
        ratio_table("scanner")
        scanner_time_table(lines, rows, order)
        check = report.get("scanner_check")
        lines += ["", "Scanner run (w=1) against the scan of the files just written: "]
        lines[-1] += f"`{json.dumps(check)}`" if check else "not checked (a row failed)"
    lines += ["", "## Parity with cleanlab", ""]
    checks = report.get("checks", {})
    if not checks:
        lines.append("- not checked (cleanlab skipped or failed, or no section compares)")
    for name, result in checks.items():
        lines.append(f"- {name}: `{json.dumps(result)}`")
    stages = report.get("scan_stages", {})
    if stages:
        lines += ["", "## Where segaudit scan's time goes (summary.json timing)", ""]
        first = ["process wall", "seconds", "startup + exit"]
        keys = first + sorted({k for t in stages.values() for k in t} - set(first))
        lines.append("| run | " + " | ".join(keys) + " |")
        lines.append("|---|" + "---:|" * len(keys))
        for run, timing in stages.items():
            lines.append(f"| {run} | " + " | ".join(fmt(timing.get(k)) for k in keys) + " |")
    lines += [
        "",
        "`wall s`: the process, from `/usr/bin/time -v` (interpreter start and imports included). "
        "`work s`: the work alone (segaudit: summary.json timing.seconds; "
        "helpers: the timed call). "
        "`peak RSS`: `/usr/bin/time -v` maximum resident set size, which counts mapped file pages "
        "(page cache) the process touched. `peak anon`: the process's own memory (RssAnon sampled "
        "every 20 ms).",
        "",
        "## Commands",
        "",
    ]
    lines += [
        f"- {rows[k].what} ({rows[k].shape}): `{rows[k].command}`" for k in order if rows[k].command
    ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--images", type=int, default=None, help="N of the big set (default 60; 8 with --quick)"
    )
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--classes", type=int, default=19)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a small smoke run (8 and 4 images)")
    parser.add_argument(
        "--skip-cleanlab", action="store_true", help="no cleanlab rows, no parity checks"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="rounds; each runs every row once, and each row keeps its best wall",
    )
    parser.add_argument(
        "--timeout", type=float, default=3600, help="seconds before a row is killed"
    )
    parser.add_argument(
        "--keep-runs", action="store_true", help="keep bench/results/runs/ afterwards"
    )
    parser.add_argument(
        "--skip-folder",
        action="store_true",
        help="no folder-dataset rows (PNG masks + per-image float16 .npy)",
    )
    parser.add_argument(
        "--folder-images",
        type=int,
        default=None,
        help=f"N of the big folder set (default {FOLDER_IMAGES}; "
        f"{QUICK_FOLDER_IMAGES} with --quick)",
    )
    parser.add_argument(
        "--folder-sizes",
        default=None,
        help=f"image sizes of the folder sets, dealt out in turn (default {FOLDER_SIZES}; "
        f"{QUICK_FOLDER_SIZES} with --quick)",
    )
    parser.add_argument(
        "--skip-scanner",
        action="store_true",
        help="no Scanner rows (an in-memory model loop feeding segaudit.Scanner)",
    )
    parser.add_argument(
        "--scanner-images",
        type=int,
        default=None,
        help=f"N of the Scanner section's big set (default {SCANNER_IMAGES}; "
        f"{QUICK_SCANNER_IMAGES} with --quick; the half set has N/2)",
    )
    parser.add_argument(
        "--scanner-size",
        default=None,
        help=f"HxW of the Scanner section's images (default {SCANNER_SIZE}; "
        f"{QUICK_SCANNER_SIZE} with --quick)",
    )
    parser.add_argument(
        "--only",
        default=None,
        metavar="SECTION[,SECTION]",
        help=f"run only these sections, of {', '.join(SECTIONS)} (e.g. --only scanner)",
    )
    args = parser.parse_args(argv)
    sections = set(SECTIONS)
    if args.only is not None:
        sections = {part.strip() for part in args.only.split(",") if part.strip()}
        unknown = sections - set(SECTIONS)
        if unknown or not sections:
            parser.error(f"--only takes sections among {', '.join(SECTIONS)}")
    if args.skip_folder:
        sections.discard("folder")
    if args.skip_scanner:
        sections.discard("scanner")
    n = args.images or (8 if args.quick else 60)
    if n < 2:
        parser.error("--images must be at least 2 (the half set needs one image)")
    folder_n = args.folder_images or (QUICK_FOLDER_IMAGES if args.quick else FOLDER_IMAGES)
    if folder_n < 2:
        parser.error("--folder-images must be at least 2 (the half set needs one image)")
    try:
        folder_sizes = parse_sizes(
            args.folder_sizes or (QUICK_FOLDER_SIZES if args.quick else FOLDER_SIZES)
        )
    except ValueError as e:
        parser.error(f"--folder-sizes: {e}")
    scanner_n = args.scanner_images or (QUICK_SCANNER_IMAGES if args.quick else SCANNER_IMAGES)
    if scanner_n < 2:
        parser.error("--scanner-images must be at least 2 (the half set needs one image)")
    try:
        scanner_sizes = parse_sizes(
            args.scanner_size or (QUICK_SCANNER_SIZE if args.quick else SCANNER_SIZE)
        )
    except ValueError as e:
        parser.error(f"--scanner-size: {e}")
    if len(scanner_sizes) != 1:
        parser.error("--scanner-size takes one HxW")
    args.repeat = max(1, args.repeat)

    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    t_start = time.perf_counter()
    load_start = loadavg()
    command = shlex.join([sys.executable, *sys.argv])
    big = Dataset("big", n, args.classes, args.height, args.width, args.seed)
    half = Dataset("half", n // 2, args.classes, args.height, args.width, args.seed)
    stacked_sets = (big, half) if "stacked" in sections else ()
    folder = "folder" in sections
    scanner = "scanner" in sections
    (sh, sw), sk = scanner_sizes[0], args.classes
    loop_sets = (
        LoopSet("big", scanner_n, sk, sh, sw, args.seed),
        LoopSet("half", scanner_n // 2, sk, sh, sw, args.seed),
    )
    folder_sets: tuple[FolderDataset, ...] = ()
    if folder:
        folder_sets = (
            FolderDataset("big", folder_n, args.classes, folder_sizes, args.seed),
            FolderDataset("half", folder_n // 2, args.classes, folder_sizes, args.seed),
        )

    data_info: dict[str, Any] = {}
    try:
        for ds in stacked_sets:
            data_info[ds.role] = ensure_dataset(ds)
        for fds in folder_sets:
            data_info[f"folder_{fds.role}"] = ensure_dataset(fds)
    except (RuntimeError, OSError) as e:
        log(f"error: could not prepare the benchmark data: {e}")
        return 2

    set_aside(RUNS)  # a previous bench's runs: deleted after this one's measurements
    RUNS.mkdir(parents=True)
    has_score, score_help = score_support()
    cl = not args.skip_cleanlab
    bench = Bench(args)
    # Compile segaudit's bytecode once, before any row is timed (see CHILD_ENV).
    warm = "import segaudit.cli, segaudit.jobs.scan, segaudit.jobs.score, segaudit.report.swaps"
    warm += ", segaudit.jobs.scanner, segaudit.synth.model"
    subprocess.run([PY, "-c", warm], env=CHILD_ENV, check=False)
    if folder or scanner:  # also the modules only a folder dataset needs (file sources, PNG codecs)
        small = RUNS / "warm-folder"
        synth = [*SEGAUDIT, "synth", str(small / "data"), "--layout", "folder"]
        synth += ["--sizes", "8x16,16x8", "--images", "2", "--classes", "3", "--seed", "0"]
        subprocess.run([*synth, "--quiet"], env=CHILD_ENV, capture_output=True, check=False)
        scan = [*SEGAUDIT, "scan", str(small / "data"), "-o", str(small / "run"), "--quiet"]
        subprocess.run(scan, env=CHILD_ENV, capture_output=True, check=False)
        shutil.rmtree(small, ignore_errors=True)

    for ds in stacked_sets:
        role = ds.role
        runs = {w: RUNS / f"scan-{role}-w{w}" for w in (1, 2)}
        bench.plan(
            f"read_{role}",
            "read pass (mmap, max over K)",
            ds,
            helper("read_pass.py", ds.path / "pred_probs.npy"),
            warm_paths=ds.files(),
            work_from="stdout",
        )
        for w in (1, 2):
            bench.plan(
                f"scan_w{w}_{role}",
                f"segaudit scan --workers {w}",
                ds,
                [
                    *SEGAUDIT,
                    "scan",
                    str(ds.path),
                    "-o",
                    str(runs[w]),
                    "--quiet",
                    "--workers",
                    str(w),
                ],
                warm_paths=ds.files(),
                run_dir=runs[w],
                work_from="summary",
            )
        if cl:
            bench.plan(
                f"cl_filter_{role}",
                "cleanlab find_label_issues n_jobs=1",
                ds,
                helper("cleanlab_scan.py", "filter", ds.path, RUNS / f"cleanlab-{role}"),
                warm_paths=ds.files(),
                work_from="stdout",
            )
        else:
            bench.skip(
                f"cl_filter_{role}", "cleanlab find_label_issues n_jobs=1", ds, "skipped", ""
            )
        bench.plan(
            f"compat_filter_{role}",
            "segaudit.segmentation find_label_issues n_jobs=1 (cleanlab's call)",
            ds,
            helper("compat_scan.py", "filter", ds.path, RUNS / f"compat-{role}"),
            warm_paths=ds.files(),
            work_from="stdout",
        )
        if role == "big":
            score_runs = {w: RUNS / f"score-{role}-w{w}" for w in (1, 2)}
            if has_score:
                for w in (1, 2):
                    bench.plan(
                        f"score_w{w}_{role}",
                        f"segaudit score softmin --workers {w}",
                        ds,
                        score_cmd(ds, score_runs[w], w, score_help),
                        warm_paths=ds.files(),
                        run_dir=score_runs[w],
                        work_from="summary",
                    )
                if "--no-pixel-scores" in score_help:
                    bench.plan(
                        f"score_px_{role}",
                        "segaudit score softmin --workers 1 --pixel-scores",
                        ds,
                        score_cmd(ds, RUNS / f"score-{role}-px", 1, score_help, "--pixel-scores"),
                        warm_paths=ds.files(),
                        run_dir=RUNS / f"score-{role}-px",
                        work_from="summary",
                    )
            else:
                for w in (1, 2):
                    bench.skip(
                        f"score_w{w}_{role}",
                        f"segaudit score softmin --workers {w}",
                        ds,
                        "n/a",
                        "no `segaudit score` command yet",
                    )
            if cl:
                bench.plan(
                    f"cl_score_{role}",
                    "cleanlab get_label_quality_scores softmin",
                    ds,
                    helper("cleanlab_scan.py", "score", ds.path, RUNS / f"cleanlab-{role}"),
                    warm_paths=ds.files(),
                    work_from="stdout",
                )
            else:
                bench.skip(
                    f"cl_score_{role}",
                    "cleanlab get_label_quality_scores softmin",
                    ds,
                    "skipped",
                    "",
                )
        elif has_score:  # the half set: is score's memory flat when N doubles?
            half_run = RUNS / f"score-{role}-w2"
            bench.plan(
                f"score_w2_{role}",
                "segaudit score softmin --workers 2",
                ds,
                score_cmd(ds, half_run, 2, score_help),
                warm_paths=ds.files(),
                run_dir=half_run,
                work_from="summary",
            )
        bench.plan(
            f"swaps_{role}",
            "segaudit swaps (scan w=1 run)",
            ds,
            [*SEGAUDIT, "swaps", str(runs[1]), "--quiet"],
            warm_paths=[runs[1]],
            reads_probs=False,
            needs=f"scan_w1_{role}",
        )
    for fds in folder_sets:
        plan_folder_rows(bench, fds, cl)
    if scanner:
        plan_scanner_rows(bench, *loop_sets)
    bench.measure_all()

    # Parity checks (untimed).
    checks: dict[str, Any] = {}
    if cl:
        log("checks: segaudit vs cleanlab ...")
        for ds in stacked_sets:
            role = ds.role
            scan_run = RUNS / f"scan-{role}-w1"
            prefix = RUNS / f"cleanlab-{role}"
            if (
                bench.rows[f"scan_w1_{role}"].status == "ok"
                and bench.rows[f"cl_filter_{role}"].status == "ok"
            ):
                checks[f"issues mask, {role} ({ds.shape})"] = run_check(
                    helper("compare.py", "mask", scan_run, f"{prefix}-mask.npy", ds.path)
                )
            if role == "big" and bench.rows["cl_score_big"].status == "ok":
                if bench.rows["scan_w1_big"].status == "ok":
                    checks["scan image softmin scores vs cleanlab, big"] = run_check(
                        helper("compare.py", "scores", scan_run, f"{prefix}-image.npy")
                    )
                score_row = bench.rows.get("score_px_big")
                if score_row is not None and score_row.status == "ok":
                    checks["score image + pixel scores vs cleanlab, big"] = run_check(
                        helper(
                            "compare.py",
                            "scores",
                            RUNS / "score-big-px",
                            f"{prefix}-image.npy",
                            f"{prefix}-pixel.npy",
                        )
                    )
        for fds in folder_sets:
            prefix = RUNS / f"folder-cleanlab-{fds.role}"
            cl_row = bench.rows.get(f"folder_cl_flat_{fds.role}")
            scan_row = bench.rows[f"folder_scan_w1_{fds.role}"]
            if cl_row is not None and cl_row.status == "ok" and scan_row.status == "ok":
                checks[f"issues mask, folder {fds.role} ({fds.shape}), end to end"] = run_check(
                    helper(
                        "compare.py",
                        "flatmask",
                        RUNS / f"folder-scan-{fds.role}-w1",
                        f"{prefix}-flat-mask.npy",
                        f"{prefix}-flat-ids.json",
                        fds.path,
                    )
                )
        for name, result in checks.items():
            log(f"      {name}: {json.dumps(result)}")
    scanner_check = None
    if scanner and all(
        bench.rows[k].status == "ok" for k in ("scanner_w1_big", "scanner_scan_big")
    ):
        scanner_check = compare_runs(RUNS / "scanner-big-w1", RUNS / "scanner-scan-big")
        log(f"checks: Scanner run vs scan of the written files: {json.dumps(scanner_check)}")

    if not args.keep_runs:
        shutil.rmtree(RUNS, ignore_errors=True)
    shutil.rmtree(SET_ASIDE, ignore_errors=True)

    rows = bench.rows
    cleanlab_version = None
    for key in ("cl_filter_big", "cl_score_big", "cl_filter_half", "folder_cl_flat_big"):
        helper_out = rows[key].details.get("helper") if key in rows else None
        if helper_out:
            cleanlab_version = helper_out.get("cleanlab_version")
            break
    scan_keys = (SCAN_KEYS if stacked_sets else ()) + (FOLDER_SCAN_KEYS if folder else ())
    stage_keys = scan_keys + (("scanner_scan_big",) if "scanner_scan_big" in rows else ())
    scan_stages = {
        f"{rows[k].what} ({rows[k].section + ' ' if rows[k].section != 'stacked' else ''}"
        f"{k.rsplit('_', 1)[1]})": {
            **{
                s: v
                for s, v in rows[k].details.get("timing", {}).items()
                if isinstance(v, (int, float))
            },
            "process wall": rows[k].wall_s,
            "startup + exit": (
                rows[k].wall_s - rows[k].work_s if rows[k].work_s is not None else None
            ),
        }
        for k in stage_keys
        if rows[k].status == "ok"
    }
    report: dict[str, Any] = {
        "started": started,
        "command": command,
        "machine": machine_info(),
        "cleanlab_version": cleanlab_version,
        "repeat": args.repeat,
        "loadavg_start": load_start,
        "loadavg_end": loadavg(),
        "sections": [name for name in SECTIONS if name in sections],
        "data": {
            **{
                ds.role: {"path": str(ds.path), "shape": ds.shape, **data_info[ds.role]}
                for ds in stacked_sets
            },
            **{
                f"folder_{ds.role}": {
                    "path": str(ds.path),
                    "shape": ds.shape,
                    "pred_probs_bytes": ds.pred_bytes,
                    **{k: v for k, v in data_info[f"folder_{ds.role}"].items() if k != "sizes"},
                    "files": len(data_info[f"folder_{ds.role}"].get("sizes", {})),
                    "file_bytes": sum(data_info[f"folder_{ds.role}"].get("sizes", {}).values()),
                }
                for ds in folder_sets
            },
        },
        "folder": {
            ds.role: {"images": ds.n, "sizes": ds.sizes_text, "gb": ds.pred_bytes / 1e9}
            for ds in folder_sets
        }
        or None,
        "scanner": {
            "classes": sk,
            "batch": SCANNER_BATCH,
            **{
                ds.role: {"images": ds.n, "size": f"{ds.h}x{ds.w}", "gb": ds.pred_bytes / 1e9}
                for ds in loop_sets
            },
        }
        if scanner
        else None,
        "rows": [asdict(rows[k]) for k in bench.order],
        "checks": checks,
        "scanner_check": scanner_check,
        "scan_stages": scan_stages,
    }
    report["ratios"] = derived(rows)
    report["total_seconds"] = time.perf_counter() - t_start
    md = render_markdown(report, rows, bench.order)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for name in ("latest", stamp):
        (RESULTS / f"{name}.md").write_text(md)
        (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    log("")
    log(md)
    log(f"written: {RESULTS.relative_to(ROOT)}/latest.md, latest.json (and {stamp}.*)")
    failed_scans = [k for k in scan_keys if rows[k].status != "ok"]
    failed_scans += [k for k in SCANNER_FAIL_KEYS if k in rows and rows[k].status == "failed"]
    if failed_scans:
        log(f"error: segaudit scan or Scanner failed: {', '.join(sorted(set(failed_scans)))}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
