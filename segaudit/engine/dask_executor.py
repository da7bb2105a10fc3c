"""The Dask executor: the same per-batch tasks on a ``dask.distributed`` cluster.

Dask does placement, retries and worker loss; segaudit submits one task per run of
consecutive batches (a few runs a worker: each task costs a scheduler round trip) and
folds the results in batch order, as on local threads, so a run on a cluster is
byte-identical to a local one. The task itself (dataset, parameters, a detached sink)
goes to the cluster once, as a task of its own that Dask can recompute if the worker
holding it dies; each task reads its images, writes its per-pixel arrays straight to
the run store and returns only small reductions plus where it wrote.

Imported only when ``--scheduler`` is given: Dask costs a second of start-up.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from segaudit.engine.stream import default_workers
from segaudit.errors import SchedulerError, reason

T = TypeVar("T")
R = TypeVar("R")

LOCAL_PREFIX = "local:"


class DaskExecutor:
    """Runs tasks on the cluster ``client`` is connected to (see the module doc)."""

    name = "dask"

    def __init__(self, client: Any) -> None:
        self.client = client
        self.workers = max(1, sum(client.nthreads().values()))

    def map_in_order(self, task: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
        detach = getattr(task, "detached", None)
        remote = detach() if detach is not None else task
        shared = self.client.submit(_same, remote, pure=False)
        groups = consecutive_groups(list(items), self.workers)
        futures = self.client.map(_run, [shared] * len(groups), groups, pure=False)
        try:
            for future in futures:
                results, written = future.result()
                if detach is not None:
                    task.adopt(written)  # type: ignore[attr-defined]
                yield from results
        finally:
            self.client.cancel([*futures, shared])


TASKS_PER_WORKER = 3
"""Dask tasks per worker and step, at least: consecutive items are grouped into a task up
to that many (each task costs the scheduler a round trip; a few per worker still balance
the load). On the 2.39 GB bench set with 2 workers, 3 beat 2 and 4 (bench/dask_scan.py)."""


def consecutive_groups(items: list[T], workers: int) -> list[list[T]]:
    """``items`` in order, cut into runs of consecutive ones, at least
    ``TASKS_PER_WORKER`` runs a worker when there are enough items."""
    size = max(1, len(items) // (max(1, workers) * TASKS_PER_WORKER))
    return [items[i : i + size] for i in range(0, len(items), size)]


def _same(task: Any) -> Any:
    return task


def _run(task: Any, items: list[Any]) -> tuple[list[Any], Any]:
    """One group of items on a worker, in order, over a fresh detached sink: their
    results and what they wrote."""
    detach = getattr(task, "detached", None)
    here = detach() if detach is not None else task
    try:
        results = [here(item) for item in items]
        _test_hook_kill_worker()
        return results, (here.written() if detach is not None else None)
    finally:
        release = getattr(here, "release", None)
        if release is not None:
            release()


def _test_hook_kill_worker() -> None:
    """Fault injection for tests: when SEGAUDIT_TEST_KILL_WORKER names a file that exists,
    the first task to remove it SIGKILLs its worker process (after writing its outputs,
    before returning them): Dask must run the task again elsewhere."""
    marker = os.environ.get("SEGAUDIT_TEST_KILL_WORKER")
    if not marker:
        return
    try:
        os.remove(marker)
    except FileNotFoundError:
        return
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


MAX_LOCAL_PER_CORE = 4
"""local:N beyond this many processes a core is refused (a typo, not a cluster)."""


def check_address(address: str) -> None:
    """``tcp://HOST:PORT`` (any protocol Dask speaks) or ``local:N``; else one sentence."""
    if address.startswith(LOCAL_PREFIX):
        count = address[len(LOCAL_PREFIX) :]
        if not count.isdigit() or int(count) < 1:
            raise SchedulerError(
                f"--scheduler {address}: local:N needs a positive number of worker processes, "
                "e.g. local:2."
            )
        cores = default_workers()  # the cores this process may run on
        if int(count) > MAX_LOCAL_PER_CORE * cores:
            raise SchedulerError(
                f"--scheduler {address}: {int(count):,} worker processes on a machine with "
                f"{cores} cores; give at most local:{MAX_LOCAL_PER_CORE * cores} (one "
                "process a core is what runs fastest)."
            )
    elif "://" not in address or not address.split("://", 1)[1].strip("/"):
        raise SchedulerError(
            f"--scheduler {address} is not a scheduler address; give tcp://HOST:8786, or "
            "local:N to start N local worker processes."
        )


# What a task imports: a forked worker inherits them instead of importing them again.
TASK_MODULES = (
    "segaudit.engine.stream", "segaudit.engine.cut", "segaudit.engine.softmin",
    "segaudit.engine.regions", "segaudit.engine.volume_regions", "segaudit.runs.sink",
    "segaudit.sources", "numcodecs", "scipy.sparse.csgraph",
)  # fmt: skip


def local_cluster(workers: int) -> Any:
    """A LocalCluster of ``workers`` single-threaded processes. Where the platform can
    fork (Linux), the workers are forked from this process after it has imported what
    the tasks run: they start in a tenth of a second instead of each starting an
    interpreter and importing Dask, numpy and segaudit (about a second on two cores).
    Dask's ``fork`` start method is made for this: the cluster is made before segaudit
    starts any thread of its own, so the only other threads are Dask's (its event loop).
    The method holds for the cluster's creation only: a worker lost later is restarted
    the default way (spawn). A start method set in Dask's configuration other than the
    default is kept."""
    import importlib
    import multiprocessing
    import sys

    import dask
    from distributed import LocalCluster

    method = dask.config.get("distributed.worker.multiprocessing-method")
    if (
        method == "spawn"  # Dask's default: nobody chose another
        and sys.platform == "linux"
        and "fork" in multiprocessing.get_all_start_methods()
    ):
        for name in TASK_MODULES:
            importlib.import_module(name)
        method = "fork"
    with dask.config.set({"distributed.worker.multiprocessing-method": method}):
        return LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",  # any free port: clusters on one machine never clash
        )


@contextmanager
def dask_executor(address: str) -> Iterator[DaskExecutor]:
    """A :class:`DaskExecutor` on the scheduler at ``address``, or on a LocalCluster of N
    single-threaded worker processes for ``local:N``; closed on the way out."""
    check_address(address)
    try:
        from distributed import Client
    except ImportError:
        raise SchedulerError(
            "--scheduler needs Dask's distributed scheduler; install it with "
            "pip install 'segaudit[dask]'."
        ) from None
    if address.startswith(LOCAL_PREFIX):
        with local_cluster(int(address[len(LOCAL_PREFIX) :])) as cluster, Client(cluster) as client:
            yield DaskExecutor(client)
        return
    try:  # waits up to Dask's distributed.comm.timeouts.connect (30 s by default)
        client = Client(address)
    except ValueError as error:  # Dask's parsing of the address
        raise SchedulerError(
            f"--scheduler {address} is not a scheduler address ({reason(error)}); give "
            "tcp://HOST:8786, or local:N to start N local worker processes."
        ) from None
    except (OSError, TimeoutError) as error:
        raise SchedulerError(
            f"cannot reach the Dask scheduler at {address} ({reason(error)}); check the "
            "address and that the scheduler is running."
        ) from None
    with client:
        yield DaskExecutor(client)
