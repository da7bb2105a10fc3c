"""Where per-batch work runs: local threads, or Dask tasks, behind one small interface.

An :class:`Executor` runs a task over items and hands the results back in item order,
so every reduction folds them in the same order whatever ran them: the output never
depends on the executor. :class:`ThreadExecutor` runs tasks on local threads (the C
kernels release the GIL); :class:`segaudit.engine.dask_executor.DaskExecutor` runs them
as Dask tasks on a cluster.

A task that writes to a sink (:class:`SinkTask`) can run in another process: there it
works on a :meth:`detached` copy of the sink, which writes straight to the same store
and returns what it wrote (a few numbers per image: sizes, where records lie), which
the client's sink then :meth:`adopts <SinkTask.adopt>`.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Executor(Protocol):
    """Runs ``task(item)`` for every item, results in item order."""

    workers: int  # tasks that run at once: batches are planned to keep them all busy
    name: str  # for summary.json: "threads", "dask"

    def map_in_order(self, task: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
        """``task`` over ``items``; results yielded in the order of ``items``."""
        ...


class ThreadExecutor:
    """Tasks on local threads, at most ``workers`` in flight (memory stays bounded)."""

    name = "threads"

    def __init__(self, workers: int = 1) -> None:
        self.workers = max(1, int(workers))

    def map_in_order(self, task: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            pending: deque[Future[R]] = deque()
            try:
                for item in items:
                    pending.append(pool.submit(task, item))
                    if len(pending) >= self.workers:
                        yield pending.popleft().result()
                while pending:
                    yield pending.popleft().result()
            finally:
                for future in pending:
                    future.cancel()


def run_in_order(
    items: Sequence[T],
    task: Callable[[T], R],
    fold: Callable[[R], None],
    executor: Executor,
) -> None:
    """``task`` over ``items`` on ``executor``; ``fold`` each result in item order (on an
    error, tasks not started yet are cancelled before it propagates)."""
    with closing(executor.map_in_order(task, items)) as results:  # type: ignore[type-var]
        for result in results:
            fold(result)


@dataclasses.dataclass
class SinkTask:
    """A task writing to ``sink``: runnable in another process on a detached copy of it.

    Subclasses are dataclasses whose fields are all picklable by reference (datasets
    reopen their stores by path), so a task costs the cluster a few kilobytes.
    """

    sink: Any  # None: the task writes nothing

    def detached(self) -> SinkTask:
        """This task over a fresh copy of the sink writing to the same store."""
        if self.sink is None:
            return self
        return dataclasses.replace(self, sink=self.sink.detached())

    def written(self) -> Any:
        """What a detached copy wrote, for :meth:`adopt` on the client."""
        return None if self.sink is None else self.sink.written()

    def adopt(self, written: Any) -> None:
        if self.sink is not None:
            self.sink.adopt(written)

    def release(self) -> None:
        """Let go of what a detached copy holds in its process (a worker's own folder)."""
        release = getattr(self.sink, "release", None)
        if release is not None:
            release()
