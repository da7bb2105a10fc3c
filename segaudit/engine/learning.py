"""Confident Learning, steps 1–5: one streaming pass, then the cut over compact arrays.

:func:`confident_learning` reads every image's predictions once
(:func:`segaudit.engine.stream.stream`), then computes the thresholds, the issue count
m, the exact cut at the m lowest scores and the issue masks
(:mod:`segaudit.engine.cut`), all over what the sink kept: a few bytes a pixel.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from segaudit.engine.cut import (
    ScoreReader,
    count_issues,
    find_cut,
    thresholds,
    write_issues,
)
from segaudit.engine.params import Execution, Params
from segaudit.engine.pixels import sum_tolerance
from segaudit.engine.regions import RegionFinder, region_map_dtype
from segaudit.engine.sinks import Sink
from segaudit.engine.stream import ImageSource, PassStats, stream
from segaudit.libc import release_free_memory
from segaudit.progress import NullProgress, Progress


@dataclass
class CLResult:
    """Everything Confident Learning produced, before it is written to tables."""

    stats: PassStats
    class_thresholds: np.ndarray
    num_candidates: int
    issues_per_image: np.ndarray
    issues_given: np.ndarray
    issues_predicted: np.ndarray
    stages: dict[str, float]
    regions: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)


def import_in_background(module: str) -> None:
    """Start importing ``module`` on a daemon thread: the streaming pass runs in C
    kernels called without the GIL, so the import costs no wall time there; a later
    ``import`` of it waits for this one (Python's per-module import lock)."""
    import importlib
    import threading

    threading.Thread(target=importlib.import_module, args=(module,), daemon=True).start()


def confident_learning(
    dataset: ImageSource,
    params: Params,
    sink: Sink,
    execution: Execution | None = None,
    progress: Progress | None = None,
    on_batch: Any = None,
    min_region_pixels: int | None = None,
) -> CLResult:
    """Confident Learning steps 1–5 into ``sink`` (which gains an ``issues`` array, and
    with ``min_region_pixels`` a ``regions`` array: see :func:`flag_issues`)."""
    execution = execution or Execution()
    progress = progress or NullProgress()
    clock = time.perf_counter()
    if min_region_pixels is not None:
        import_in_background("scipy.sparse.csgraph")  # 0.4 s of imports, hidden behind the pass
    stats = stream(dataset, params, sink, execution, progress=progress, on_batch=on_batch)
    sink.pass_written()
    release_free_memory()
    read = round(time.perf_counter() - clock, 3)
    result = flag_issues(
        stats, params, sink, execution, progress, min_region_pixels, volume_geometry(dataset)
    )
    result.stages = {"read_pred_probs": read, **result.stages}
    return result


def volume_geometry(dataset: Any) -> tuple[Any, ...] | None:
    """Each image's (shape (Z, Y, X), spacing in mm) when it is a volume, else None; None
    for a dataset without volumes. Regions of volumes are found in 3-D."""
    if not getattr(dataset, "has_volumes", False):
        return None
    return tuple((v.shape, v.spacing) if v is not None else None for v in dataset.volumes)


def flag_issues(
    stats: PassStats,
    params: Params,
    sink: Sink,
    execution: Execution | None = None,
    progress: Progress | None = None,
    min_region_pixels: int | None = None,
    volumes: tuple[Any, ...] | None = None,
) -> CLResult:
    """Steps 2–5 over what a streaming pass kept (``stats`` and the ``sink``): thresholds,
    the issue count m, the exact cut at the m lowest scores, and each image's issues;
    with ``min_region_pixels``, also each image's issue regions (and a ``regions``
    array)."""
    execution = execution or Execution()
    progress = progress or NullProgress()
    clock = time.perf_counter()
    class_thresholds = thresholds(stats.class_sum, stats.class_count)
    executor = execution.runner()
    m = count_issues(sink, class_thresholds, executor)
    extent = stats.extent
    scores_name = "pixel_scores" if params.downsample == 1 else "cl_scores"
    # Every pixel's top probability is at least (1 - tol) / K (its row sums to 1 within
    # tol), so pixels scoring below that are all mispredicted: all in the records.
    below_any_max = (1 - sum_tolerance(extent.num_classes, extent.dtype)) / extent.num_classes
    if not params.rows_sum_to_one:
        below_any_max = 0.0  # no bound under a pixel's top score: refine from stored scores

    stored = ScoreReader(sink, "stored", scores_name)
    mispredicted = ScoreReader(sink, "mispredicted", scores_name)
    cut = find_cut(stats, m, stored, mispredicted, below_any_max, executor)
    stages = {"select": time.perf_counter() - clock}
    clock = time.perf_counter()
    sink.create("issues", extent.sizes, bool)
    finder = None
    if min_region_pixels is not None:
        map_dtype = region_map_dtype(extent.sizes, min_region_pixels)
        sink.create("regions", extent.sizes, map_dtype)
        finder = RegionFinder(params.ignore_index, min_region_pixels, map_dtype, volumes)
    progress.start("flagging issues", extent.num_images)
    counts = write_issues(
        stats, cut, sink, params.ignore_index, progress, executor, finder, below_any_max
    )
    progress.finish()
    stages["write_issues"] = time.perf_counter() - clock
    if finder is not None:
        stages["regions_cpu"] = counts.region_seconds
    return CLResult(
        stats,
        class_thresholds,
        m,
        counts.per_image,
        counts.given,
        counts.predicted,
        {k: round(v, 3) for k, v in stages.items()},
        counts.regions,
    )
