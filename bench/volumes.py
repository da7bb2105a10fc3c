"""The volume row: 3-D volumes in nnU-Net's layout, segaudit next to cleanlab and the floor.

    .venv/bin/python bench/volumes.py                        # 20 volumes 128x256x256, 3 rounds
    .venv/bin/python bench/volumes.py --repeat 1 --volumes 4 # a smoke run

Data (``bench/data/``, git-ignored, reused while its stamp matches): ``segaudit synth
--volumes`` with ``--volumes N --shape ZxYxX --classes K --dtype float16 --seed S``. Rows,
each a subprocess under ``/usr/bin/time -v`` (wall clock, peak RSS) with its own memory
(RssAnon) sampled every 20 ms, the files it reads warm in the page cache, round-robin
over ``--repeat`` rounds, best wall time kept:

- read pass: ``bench/volume_read_pass.py`` — every label NIfTI read whole (nibabel), every
  prediction ``.npz`` loaded once, nothing else;
- ``segaudit scan DATA --layout nnunet --pred-probs DATA/predictions -o RUN --workers W``
  for W = 1 and 2;
- cleanlab: ``bench/cleanlab_scan.py volumes`` — the volumes cut into slices, labels
  (sum Z, Y, X) and pred_probs (sum Z, K, Y, X) float32 in memory, then
  ``cleanlab.segmentation.filter.find_label_issues(..., n_jobs=1)``.

A row that fails (a command not there yet, a crash) shows ``failed`` with the first line
of its error and is not run again; the others go on. Writes ``bench/results/volumes.md``
and ``volumes.json`` and prints the table.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from run import (  # bench/run.py: the shared timing helpers
    DATA,
    PY,
    RESULTS,
    ROOT,
    SEGAUDIT,
    fmt,
    last_json_line,
    loadavg,
    machine_info,
    run_timed,
    warm,
)

BENCH = Path(__file__).resolve().parent
RUNS = RESULTS / "runs"
MIB = 1024 * 1024


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--volumes", type=int, default=20, help="volumes in the set (20)")
    parser.add_argument("--shape", default="128x256x256", help="ZxYxX of every volume")
    parser.add_argument("--classes", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="rounds; best wall time kept")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per row")
    parser.add_argument("--skip-cleanlab", action="store_true")
    parser.add_argument("--keep-runs", action="store_true", help="keep bench/results/runs/")
    return parser.parse_args(argv)


def dataset(args: argparse.Namespace) -> tuple[Path, dict[str, Any]]:
    """bench/data/volumes-...: reused when its stamp matches, else made by segaudit synth."""
    shape = args.shape.lower()
    name = f"volumes-n{args.volumes}-k{args.classes}-{shape}-f16-s{args.seed}"
    path = DATA / name
    synth = [
        "synth",
        "--volumes",
        "--images",
        str(args.volumes),
        "--shape",
        shape,
        "--classes",
        str(args.classes),
        "--dtype",
        "float16",
        "--seed",
        str(args.seed),
    ]
    stamp_path = path / "bench_stamp.json"
    if stamp_path.exists():
        stamp = json.loads(stamp_path.read_text())
        sizes = stamp.get("sizes", {})
        same = stamp.get("synth") == synth and all(
            (path / f).exists() and (path / f).stat().st_size == n for f, n in sizes.items()
        )
        if same and sizes:
            print(f"data  {path.relative_to(ROOT)} reused", flush=True)
            return path, {**stamp, "reused": True}
    shutil.rmtree(path, ignore_errors=True)
    tmp = path.with_name(name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    DATA.mkdir(parents=True, exist_ok=True)
    cmd = [*SEGAUDIT, *synth[:1], str(tmp), *synth[1:], "--quiet"]
    print(f"data  generating {path.relative_to(ROOT)}: {shlex.join(cmd)}", flush=True)
    done = run_timed(cmd, timeout=24 * 3600)
    if not done["ok"]:
        raise SystemExit(f"segaudit synth --volumes failed:\n{done['stderr'][-4000:]}")
    seconds = done["wall_s"]
    tmp.rename(path)
    files = [f for f in sorted(path.rglob("*")) if f.is_file()]
    stamp = {
        "synth": synth,
        "generate_seconds": round(seconds, 2),
        "generate_peak_rss_mib": round(done.get("max_rss_kib", 0) / 1024),
        "sizes": {f.relative_to(path).as_posix(): f.stat().st_size for f in files},
    }
    stamp_path.write_text(json.dumps(stamp, indent=2) + "\n")
    print(
        f"      generated in {seconds:.1f} s, peak RSS {done.get('max_rss_kib', 0) / 1024:.0f} MiB"
    )
    return path, {**stamp, "reused": False}


def rows(data: Path, skip_cleanlab: bool) -> list[dict[str, Any]]:
    """Each row: its name, command, what it reads (warmed first) and its run folder."""
    reads = [data / "labelsTr", data / "predictions"]
    table = [
        {
            "what": "read pass (nibabel + np.load)",
            "cmd": [PY, str(BENCH / "volume_read_pass.py"), str(data)],
            "reads": reads,
        }
    ]
    for workers in (1, 2):
        run = RUNS / f"volumes-w{workers}"
        cmd = [
            *SEGAUDIT,
            "scan",
            str(data),
            "--layout",
            "nnunet",
            "--pred-probs",
            str(data / "predictions"),
            "-o",
            str(run),
            "--quiet",
            "--workers",
            str(workers),
        ]
        what = f"segaudit scan --layout nnunet --workers {workers}"
        table.append({"what": what, "cmd": cmd, "reads": [*reads, data / "imagesTr"], "run": run})
    if not skip_cleanlab:
        prefix = RUNS / "volumes-cleanlab"
        cmd = [PY, str(BENCH / "cleanlab_scan.py"), "volumes", str(data), str(prefix)]
        table.append({"what": "cleanlab find_label_issues (slices)", "cmd": cmd, "reads": reads})
    return table


def measure(row: dict[str, Any], timeout: float) -> dict[str, Any]:
    """One attempt: the row's inputs warmed, its old run removed, then timed."""
    warm(row["reads"])
    if "run" in row:
        shutil.rmtree(row["run"], ignore_errors=True)
    RUNS.mkdir(parents=True, exist_ok=True)
    result = run_timed(row["cmd"], timeout)
    helper = last_json_line(result["stdout"]) if result["ok"] else None
    result["work_s"] = helper.get("seconds") if helper else None
    result["helper"] = helper
    summary = row["run"] / "summary.json" if "run" in row else None
    if result["ok"] and summary is not None and summary.exists():
        parsed = json.loads(summary.read_text())
        result["work_s"] = parsed.get("timing", {}).get("seconds")
        result["totals"] = parsed.get("totals")
    return result


def first_error(result: dict[str, Any]) -> str:
    """What went wrong, in one short line; ``n/a: ...`` for a usage error (exit 2 with
    ``Usage:``), such as an option this segaudit does not have yet."""
    if result.get("timed_out"):
        return "timed out"
    lines = [line.strip() for line in result.get("stderr", "").splitlines() if line.strip()]
    last = lines[-1] if lines else f"exit {result.get('returncode')}"
    if result.get("returncode") == 2 and " Usage:" in last:
        return "n/a: " + last.split(" Usage:")[0].removeprefix("error: ")[:140]
    return last[:160]


def render(report: dict[str, Any]) -> str:
    m, data = report["machine"], report["data"]
    lines = [
        "# segaudit benchmark: volumes (nnU-Net layout)",
        "",
        f"- when: {report['started']} (took {report['total_seconds']:.0f} s)",
        f"- command: `{report['command']}`",
        f"- machine: nproc {m['nproc']} ({m.get('cpu', '?')}), {m.get('mem_total_gib', '?')} GiB "
        f"RAM, Python {m['python']}, numpy {m['numpy']}, {m['segaudit']} (git {m['git']})",
        f"- load average at start / end: {report['loadavg_start']} / {report['loadavg_end']}",
        f"- data: {report['shape']}, float16 predictions: {data['npz_gb']:.2f} GB of .npz on "
        f"disk, {data['memory_gb']:.2f} GB as float16 arrays; "
        + f"generated in {data['generate_seconds']:.1f} s, peak RSS "
        f"{data['generate_peak_rss_mib']} MiB" + (" (reused)" if data["reused"] else ""),
        f"- rounds: {report['repeat']} (every row once per round, round-robin; best wall kept)",
        "",
        "| what | wall s | work s | CPU % | peak RSS MiB | peak anon MiB | notes |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for row in report["rows"]:
        best = row.get("best")
        if best is None:
            status = "n/a" if row["error"].startswith("n/a: ") else "failed"
            error = row["error"].removeprefix("n/a: ").replace("|", "\\|")
            lines.append(f"| {row['what']} | {status} | — | — | — | — | {error} |")
            continue
        helper = best.get("helper") or {}
        note = ""
        if "issue_voxels" in helper:
            note = (
                f"decode {fmt(helper.get('decode_s'))} s + call {fmt(helper.get('call_s'))} s; "
                f"{helper['issue_voxels']:,} issue voxels"
            )
        elif "gb_per_s" in helper:
            note = f"{fmt(helper['gb_per_s'])} GB/s of float16 probabilities"
        elif best.get("totals"):
            note = json.dumps(best["totals"])[:120]
        lines.append(
            f"| {row['what']} | {fmt(best['wall_s'])} | {fmt(best.get('work_s'))} | "
            f"{best.get('cpu_percent', 'n/a')} | {fmt(best.get('max_rss_kib', 0) / 1024, 0)} | "
            f"{fmt(best['peak_anon_kib'] / 1024, 0)} | {note} |"
        )
    lines += [
        "",
        "`wall s`: the process, from `/usr/bin/time -v`. `work s`: the work alone (segaudit: "
        "summary.json timing.seconds; helpers: the timed loop or call). `peak RSS`: maximum "
        "resident set size; `peak anon`: the process's own memory (RssAnon every 20 ms).",
        "",
        "## Commands",
        "",
    ]
    for row in report["rows"]:
        command = shlex.join(row["cmd"]).replace(f"{ROOT}/", "")
        lines.append(f"- {row['what']}: `{command}`")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started, t0, load_start = time.strftime("%Y-%m-%dT%H:%M:%S%z"), time.perf_counter(), loadavg()
    data, stamp = dataset(args)
    npz = sum(n for f, n in stamp["sizes"].items() if f.startswith("predictions/"))
    z, y, x = (int(n) for n in args.shape.lower().split("x"))
    table = rows(data, args.skip_cleanlab)
    for row in table:
        row["attempts"], row["best"], row["error"] = [], None, ""
    for round_number in range(1, args.repeat + 1):
        for row in table:
            if row["error"]:
                continue  # failed once: not run again
            result = measure(row, args.timeout)
            row["attempts"].append({k: v for k, v in result.items() if k not in ("stdout",)})
            shown = (
                f"{result['wall_s']:.2f} s" if result["ok"] else f"failed: {first_error(result)}"
            )
            print(f"round {round_number}  {row['what']}: {shown}", flush=True)
            if not result["ok"]:
                row["error"], row["best"] = first_error(result), None
            elif row["best"] is None or result["wall_s"] < row["best"]["wall_s"]:
                row["best"] = result
    if not args.keep_runs:
        for path in RUNS.glob("volumes-*"):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    report = {
        "started": started,
        "command": shlex.join(
            [Path(sys.executable).name, "bench/volumes.py", *(argv or sys.argv[1:])]
        ),
        "machine": machine_info(),
        "loadavg_start": load_start,
        "loadavg_end": loadavg(),
        "repeat": args.repeat,
        "shape": f"{args.volumes}×{args.classes}×{z}×{y}×{x} (N×K×Z×Y×X)",
        "data": {
            "path": str(data.relative_to(ROOT)),
            "npz_gb": npz / 1e9,
            "memory_gb": args.volumes * args.classes * z * y * x * 2 / 1e9,
            "reused": stamp["reused"],
            "generate_seconds": stamp.get("generate_seconds"),
            "generate_peak_rss_mib": stamp.get("generate_peak_rss_mib"),
        },
        "rows": [{k: v for k, v in row.items() if k != "reads"} for row in table],
        "total_seconds": time.perf_counter() - t0,
    }
    markdown = render(report)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "volumes.md").write_text(markdown)
    (RESULTS / "volumes.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
