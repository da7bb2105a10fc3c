"""Shared fixtures: small fake run directories built from arrays a test controls."""

from __future__ import annotations

import csv
import json
import signal
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from segaudit.runs.chunkstore import ImageChunkedArray
from segaudit.runs.rundir import SUMMARY, array_path


def pytest_configure(config: pytest.Config) -> None:
    """The signal tests interrupt this process (and the scans it starts) with SIGINT and
    SIGHUP and expect what a terminal's user gets. A shell starts background jobs (``make
    test &``) with SIGINT ignored, ``nohup`` ignores SIGHUP, and Python and every child
    keep that: give the suite the usual handling whatever started it (segaudit itself
    rightly leaves a signal ignored that its caller chose to ignore)."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGHUP) is signal.SIG_IGN:
        signal.signal(signal.SIGHUP, signal.SIG_DFL)


def write_run(
    run: Path,
    labels: np.ndarray,
    pred_labels: np.ndarray,
    issues: np.ndarray,
    *,
    num_classes: int,
    names: list[str] | None = None,
    ignore_index: int | None = None,
    images: np.ndarray | None = None,
    ids: list[str] | None = None,
) -> Path:
    """A complete run directory as `segaudit scan` lays it out (summary.json last)."""
    run.mkdir(parents=True)
    n, h, w = labels.shape
    valid = (labels >= 0) & (labels < num_classes)
    pixel_scores = np.where(valid, 0.5, np.nan).astype(np.float32)
    arrays = {"labels": labels, "pred_labels": pred_labels, "pixel_scores": pixel_scores}
    arrays["issues"] = issues.astype(bool)
    for name, values in arrays.items():
        ImageChunkedArray(array_path(run, name), values.shape, values.dtype)[:] = values
    images_input = None
    if images is not None:
        images_path = run.parent / f"{run.name}_images.npy"
        np.save(images_path, images)
        images_input = {"path": str(images_path)}
    counts = issues.sum(axis=(1, 2))
    order = np.lexsort((np.arange(n), -counts))
    with open(run / "image_scores.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "id", "softmin_score", "issue_pixels", "issue_fraction", "rank"])
        for rank, image in enumerate(order.tolist(), start=1):
            image_id = ids[image] if ids else str(image)
            fraction = counts[image] / (h * w)
            writer.writerow([image, image_id, f"{1 - fraction:.6f}", counts[image], fraction, rank])
    summary = {
        "segaudit_version": "0.1.0",
        "command": "scan",
        "dataset": {"num_images": n, "height": h, "width": w, "num_classes": num_classes},
        "inputs": {"labels": {"path": "labels.npy"}, "pred_probs": {}, "images": images_input},
        "parameters": {"ignore_index": ignore_index, "downsample": 1},
        "classes": {"names": names or [f"class_{k}" for k in range(num_classes)]},
        "totals": {"issue_pixels": int(issues.sum())},
    }
    (run / SUMMARY).write_text(json.dumps(summary))
    return run


@pytest.fixture
def make_run(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``make_run(labels, pred_labels, issues, num_classes=K, ...)`` -> run path."""
    count = iter(range(1000))

    def make(*args: np.ndarray, name: str | None = None, **kwargs: object) -> Path:
        return write_run(tmp_path / (name or f"run{next(count)}"), *args, **kwargs)  # type: ignore[arg-type]

    return make


# -- the real parts of scale-out: an S3 API server and a Dask cluster (test_dask, test_remote)


@pytest.fixture(scope="session")
def s3_env() -> dict[str, str]:
    """A real S3 API server (moto's server mode) on a free local port, for the session;
    the environment a client needs to reach it, as a user of MinIO would set it."""
    import logging
    import socket

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    server.stop()


@pytest.fixture(scope="session")
def kill_marker(tmp_path_factory) -> Path:
    """A file whose presence makes the first Dask task to see it kill its worker process."""
    return tmp_path_factory.mktemp("faults") / "kill-a-worker"


@pytest.fixture(scope="session")
def scheduler(s3_env, kill_marker) -> str:
    """A real Dask cluster for the session: two worker processes of one thread each, which
    reach the S3 server; its scheduler's address."""
    from distributed import LocalCluster

    env = {**s3_env, "SEGAUDIT_TEST_KILL_WORKER": str(kill_marker)}
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", env=env
    ) as cluster:
        yield cluster.scheduler_address
