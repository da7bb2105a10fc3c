"""The Dask executor against the local engine: one dataset, both scans, time and bytes.

    .venv/bin/python bench/dask_scan.py                    # the 2.39 GB set of bench/run.py
    .venv/bin/python bench/dask_scan.py --images 8 --repeat 1      # a smoke run
    .venv/bin/python bench/dask_scan.py --images 8 --s3            # also from an S3 server

Rows: `segaudit scan --workers 2` (the local engine), `segaudit scan --scheduler
local:2` (a LocalCluster of two single-threaded worker processes, started and stopped
inside the timed command, as a user runs it), and `--scheduler tcp://...` of such a
cluster started once by this script and warmed by one untimed scan (a standing
cluster, as in production: no process start-up in the time); with `--s3`, the same
scans reading the dataset's stores from a moto S3 server on 127.0.0.1. Each row keeps
its best wall time of `--repeat` rounds (each round runs every row once); every Dask
run is compared byte for byte (every file but summary.json) with the local run of the
same inputs. Writes `bench/results/dask-IMAGES[-s3].md` (and `.json`) and prints the
table. moto serves S3 from one Python process at about 25 MB/s: the S3 rows of the
2.39 GB set take about 15 minutes (`--repeat 1 --s3`); `--images 6 --s3` is a quick look.
moto may log a failed retry of the upload's last request; the upload itself completes.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEGAUDIT = [str(Path(sys.executable).parent / "segaudit")]


def run_files(run: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(run)): p.read_bytes()
        for p in sorted(run.rglob("*"))
        if p.is_file() and p.name not in {"summary.json"}
    }


def timed(cmd: list[str], env: dict[str, str] | None = None) -> float:
    clock = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr}")
    return time.perf_counter() - clock


def make_data(args: argparse.Namespace) -> Path:
    """bench/run.py's big set when it is there with these parameters, else a new one."""
    shape = (args.images, args.height, args.width, args.classes)
    name = "big" if shape == (60, 512, 1024, 19) else "dask-{}x{}x{}x{}".format(*shape)
    data = ROOT / "bench" / "data" / name
    if not (data / "pred_probs.npy").exists():
        data.parent.mkdir(parents=True, exist_ok=True)
        timed([*SEGAUDIT, "synth", str(data), "--images", str(args.images), "--height",
               str(args.height), "--width", str(args.width), "--classes", str(args.classes),
               "--seed", "0"])  # fmt: skip
    return data


def s3_server(data: Path) -> tuple[object, dict[str, str], str]:
    """A moto S3 server holding the dataset's two stores; its environment and URL."""
    import logging

    import fsspec
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {**os.environ, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
           "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
           "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip
    os.environ.update(env)
    fs = fsspec.filesystem("s3")
    fs.mkdir("bench")
    for name in ("labels.npy", "pred_probs.npy"):
        fs.put_file(str(data / name), f"bench/ds/{name}")
    return server, env, "s3://bench/ds"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--classes", type=int, default=19)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--s3", action="store_true", help="also read the stores from moto S3")
    args = parser.parse_args()
    data = make_data(args)
    size = (data / "pred_probs.npy").stat().st_size
    runs = ROOT / "bench" / "results" / "dask-runs"
    runs.mkdir(parents=True, exist_ok=True)
    sources = [("local disk", ["--labels", str(data / "labels.npy"),
                               "--pred-probs", str(data / "pred_probs.npy")], None)]  # fmt: skip
    server = None
    if args.s3:
        server, env, url = s3_server(data)
        sources.append(("moto S3", ["--labels", f"{url}/labels.npy",
                                    "--pred-probs", f"{url}/pred_probs.npy"], env))  # fmt: skip
    from distributed import LocalCluster

    rows = []
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=":0")  # fmt: skip
    try:
        for where, inputs, env in sources:
            local, dask, standing = (runs / f"{where.replace(' ', '-')}-{e}"
                                     for e in ("local", "dask", "standing"))  # fmt: skip
            scan = [*SEGAUDIT, "scan", *inputs, "--quiet", "-o"]
            commands = [
                [*scan, str(local), "--workers", "2"],
                [*scan, str(dask), "--scheduler", "local:2"],
                [*scan, str(standing), "--scheduler", cluster.scheduler_address],
            ]
            timed(commands[2], env)  # warms the standing cluster (imports, page cache)
            best = [float("inf")] * 3
            for _ in range(args.repeat):  # rounds of every row, so load changes hit all
                for row, cmd in enumerate(commands):
                    best[row] = min(best[row], timed(cmd, env))
            t_local, t_dask, t_standing = best
            same = run_files(local) == run_files(dask) == run_files(standing)
            rows.append((where, t_local, t_dask, t_standing, same))
    finally:
        cluster.close()
        if server is not None:
            server.stop()  # type: ignore[attr-defined]
    lines = [
        f"Dataset: {args.images}×{args.classes}×{args.height}×{args.width} float32 pred_probs "
        f"({size / 1e9:.2f} GB), best of {args.repeat}; {os.cpu_count()} cores.",
        "",
        "| inputs | local engine --workers 2 | --scheduler local:2 (ratio) | standing "
        "2-worker cluster (ratio) | runs byte-identical |",
        "|---|---:|---:|---:|---|",
    ]
    for where, t_local, t_dask, t_standing, same in rows:
        lines.append(f"| {where} | {t_local:.2f} s | {t_dask:.2f} s ({t_dask / t_local:.2f}×) "
                     f"| {t_standing:.2f} s ({t_standing / t_local:.2f}×) | "
                     f"{'yes' if same else 'NO'} |")  # fmt: skip
    text = "\n".join(lines) + "\n"
    name = f"dask-{args.images}{'-s3' if args.s3 else ''}"
    (ROOT / "bench" / "results" / f"{name}.md").write_text(text)
    (ROOT / "bench" / "results" / f"{name}.json").write_text(json.dumps(
        {"rows": rows, "images": args.images, "bytes": size}, indent=2))  # fmt: skip
    print(text)
    return 0 if all(row[-1] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
