"""The main job: scan a dataset into a run directory.

Opens the dataset (:func:`segaudit.sources.open_dataset`), runs Confident Learning over
it (:func:`segaudit.engine.learning.confident_learning`) into the run being built
(:class:`segaudit.runs.sink.RunSink`), then writes the tables and ``summary.json``
(last; the directory is swapped into place only when complete).
"""

from __future__ import annotations

import dataclasses
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segaudit import __version__
from segaudit.engine.learning import CLResult, confident_learning
from segaudit.engine.params import Execution, Extent, Params
from segaudit.engine.regions import DEFAULT_MIN_PIXELS
from segaudit.errors import InvalidInputError
from segaudit.libc import release_free_memory
from segaudit.progress import NullProgress, Progress
from segaudit.report.decisions import Reviewed
from segaudit.report.regions import (
    REGIONS_TABLE,
    RegionTable,
    build_region_table,
    image_region_scores,
    region_summary,
    write_regions_table,
)
from segaudit.report.swaps import resolve_classes
from segaudit.report.tables import write_scan_scores
from segaudit.runs import rundir
from segaudit.runs.images import IMAGES_TABLE, ImageTable, write_images_table
from segaudit.runs.sink import RunSink
from segaudit.sources import Dataset, DatasetSpec, open_dataset
from segaudit.sources.dataset import shown_images
from segaudit.sources.remote import is_url


def params_for(dataset: Dataset, params: Params) -> Params:
    """``params`` with the dataset's ignore value when the user gave none: a layout or a
    label map stores void pixels as one (255 by default)."""
    if params.ignore_index is None and dataset.ignore_index is not None:
        return dataclasses.replace(params, ignore_index=dataset.ignore_index)
    return params


def volumes_of(dataset: Any) -> list[Any] | None:
    """Each image's volume header when the dataset has volumes (None: only 2-D images,
    or a pass fed by a model)."""
    return dataset.volumes if getattr(dataset, "has_volumes", False) else None


def image_table(dataset: Dataset) -> ImageTable:
    """The run's ``images.csv``: ids, sizes and the files each image came from."""
    files = []
    for index in range(dataset.num_images):
        found = dataset.files_of(index)
        files.append({"labels": found["labels"], "pred_probs": found["pred_probs"],
                      "photo": found.get("image", "")})  # fmt: skip
    if volumes_of(dataset) is None:
        return ImageTable(list(dataset.ids), dataset.sizes, files)
    spacings = np.array([v.spacing if v else (1.0, 1.0, 1.0) for v in dataset.volumes])
    return ImageTable(list(dataset.ids), dataset.sizes, files, dataset.depths, spacings)


def describe_dataset(dataset: Dataset, extent: Extent) -> dict[str, Any]:
    """The dataset block of ``summary.json``: counts, and sizes (one, or their range)."""
    block: dict[str, Any] = {
        "num_images": extent.num_images,
        "num_classes": extent.num_classes,
        "pred_probs_dtype": str(extent.dtype),
        "layout": dataset.layout,
    }
    sizes = extent.sizes
    if volumes_of(dataset) is not None:
        shapes = [list(v.shape) for v in dataset.volumes if v is not None]
        block["volumes"] = {
            "count": len(shapes),
            "voxels": int(sum(np.prod(shape) for shape in shapes)),
            "shapes": [list(s) for s in sorted({tuple(shape) for shape in shapes})][:20],
            "modality": dataset.modality,
        }
    if extent.uniform:
        block["height"], block["width"] = (int(n) for n in sizes[0])
    else:
        distinct = np.unique(sizes, axis=0)
        block["sizes"] = {
            "distinct": len(distinct),
            "smallest": [int(n) for n in sizes[np.argmin(extent.pixel_counts)]],
            "largest": [int(n) for n in sizes[np.argmax(extent.pixel_counts)]],
        }
    if any(value for key, value in dataset.skipped.items() if key != "examples"):
        block["skipped"] = dataset.skipped
    return block


def unscored_block(scored: np.ndarray, ids: list[str]) -> dict[str, Any] | None:
    """The images without a scored pixel (every label void), for summary.json: their
    count and first few ids; None when every image has one."""
    unscored = np.flatnonzero(np.asarray(scored) == 0)
    if not len(unscored):
        return None
    return {"count": int(len(unscored)), "examples": [ids[i] for i in unscored[:5].tolist()]}


def build_summary(
    result: CLResult,
    dataset: Dataset,
    params: Params,
    class_names: list[str],
    timing: dict[str, float],
    execution: Execution,
) -> dict[str, Any]:
    """Everything a later command or a reader needs to know about the run."""
    extent = result.stats.extent
    total_pixels = extent.total_pixels
    scored = int(result.stats.scored.sum())
    issue_pixels = int(result.issues_per_image.sum())
    described = describe_dataset(dataset, extent)
    unscored = unscored_block(result.stats.scored, list(dataset.ids))
    if unscored is not None:
        described["unscored"] = unscored
    return {
        "segaudit_version": __version__,
        "command": "scan",
        "dataset": described,
        "inputs": dataset.inputs(),
        "parameters": {
            **dataclasses.asdict(params),
            "method": "confident_learning_self_confidence",
        },
        "classes": {
            "names": class_names,
            "thresholds": [float(t) for t in result.class_thresholds],
            "labelled_pixels": [int(c) for c in result.stats.class_count],
            "issue_pixels_given": [int(c) for c in result.issues_given],
            "issue_pixels_predicted": [int(c) for c in result.issues_predicted],
        },
        "totals": {
            "pixels": total_pixels,
            "scored_pixels": scored,
            "ignored_pixels": total_pixels - scored,
            "candidates": result.num_candidates,
            "issue_pixels": issue_pixels,
            "issue_fraction": issue_pixels / scored if scored else 0.0,
            "images_with_issues": int(np.count_nonzero(result.issues_per_image)),
        },
        "engine": {
            "executor": execution.runner().name,
            "workers": execution.workers,
            "batch_size": execution.batch_size,
            "batches": len(result.stats.batches),
        },
        "timing": {**timing, "python": platform.python_version()},
    }


@dataclass(frozen=True)
class RegionOptions:
    """How issue pixels are grouped into regions: the smallest region kept, and which
    classes are background-like, as ids or names (None: the layout's, else the first
    class)."""

    min_pixels: int = DEFAULT_MIN_PIXELS
    background: tuple[int | str, ...] | None = None

    def __post_init__(self) -> None:
        if self.min_pixels < 1:
            raise InvalidInputError(
                f"--min-region-pixels must be at least 1, got {self.min_pixels}."
            )

    def background_of(self, dataset: Any, names: Sequence[str]) -> tuple[int, ...]:
        """The background-like class ids: as given (names resolved against ``names``),
        else the dataset's (a layout's stuff classes), else the first class."""
        if self.background is None:
            return tuple(getattr(dataset, "background", None) or (0,))
        return tuple(resolve_classes(self.background, names))


def write_scan_tables(
    tmp: Path,
    result: CLResult,
    table: ImageTable,
    names: list[str],
    background: tuple[int, ...],
    reviewed: Reviewed | None = None,
) -> RegionTable:
    """``images.csv``, ``image_scores.csv`` and ``regions.csv`` of a scan; ``reviewed``
    leaves out the regions a reviewer confirmed as false alarms."""
    num_images = table.num_images
    regions = build_region_table(result.regions, num_images, background)
    if reviewed is not None:
        regions = reviewed.apply(regions, table.ids)
    write_images_table(tmp / IMAGES_TABLE, table)
    write_scan_scores(
        tmp / "image_scores.csv",
        result.stats.softmin,
        result.issues_per_image,
        result.stats.scored,
        table.ids,
        [files["labels"] for files in table.files],
        image_region_scores(regions, num_images),
    )
    write_regions_table(tmp / REGIONS_TABLE, regions, table.ids, names)
    return regions


def scan_dataset(
    dataset: Dataset,
    out: str | os.PathLike[str],
    params: Params | None = None,
    *,
    execution: Execution | None = None,
    class_names: list[str] | None = None,
    progress: Progress | None = None,
    regions: RegionOptions | None = None,
    reviewed: Reviewed | None = None,
    parts: Any = None,
) -> dict[str, Any]:
    """Scan an opened dataset into the run directory ``out``; return its summary. With
    ``parts`` (:class:`segaudit.runs.parts.RemoteParts`), Dask workers upload what they
    write to the run being built for a URL, not to ``out``."""
    started = time.perf_counter()
    params = params_for(dataset, params or Params())
    execution = execution or Execution()
    progress = progress or NullProgress()
    regions = regions or RegionOptions()
    names = class_names or dataset.names()
    background = regions.background_of(dataset, names)
    with rundir.building_run(out, inputs=dataset.input_paths()) as tmp:
        sink = RunSink(tmp, dataset.ids, volumes_of(dataset), parts=parts)
        result = confident_learning(
            dataset,
            params,
            sink,
            execution,
            progress,
            on_batch=_test_hook_after_batch,
            min_region_pixels=regions.min_pixels,
        )
        sink.finish()
        sink.discard_scratch()
        release_free_memory()
        dataset.check_unchanged()
        clock = time.perf_counter()
        region_table = write_scan_tables(
            tmp, result, image_table(dataset), names, background, reviewed
        )
        result.stages["tables"] = round(time.perf_counter() - clock, 3)
        timing = {"seconds": round(time.perf_counter() - started, 3), **result.stages}
        summary = build_summary(result, dataset, params, names, timing, execution)
        summary["regions"] = region_summary(region_table, regions.min_pixels, background)
        if reviewed is not None:
            summary["reviewed"] = reviewed.summary
        rundir.write_json_atomic(tmp / rundir.SUMMARY, summary)
    return summary


def scan(
    spec: DatasetSpec,
    out: str | os.PathLike[str],
    params: Params | None = None,
    *,
    execution: Execution | None = None,
    class_names: list[str] | None = None,
    progress: Progress | None = None,
    regions: RegionOptions | None = None,
    reviewed: Reviewed | None = None,
) -> dict[str, Any]:
    """Open the dataset ``spec`` describes and scan it into ``out`` (a folder, or a URL:
    :mod:`segaudit.runs.objectstore`); return the summary."""
    if is_url(out):
        from segaudit.runs.objectstore import remote_run

        with remote_run(str(out)) as staging:  # Dask workers upload their files themselves
            return scan_dataset(
                open_dataset(spec), staging.local, params, execution=execution,
                class_names=class_names, progress=progress, regions=regions, reviewed=reviewed,
                parts=staging.parts if on_dask(execution) else None,
            )  # fmt: skip
    return scan_dataset(
        open_dataset(spec),
        out,
        params,
        execution=execution,
        class_names=class_names,
        progress=progress,
        regions=regions,
        reviewed=reviewed,
    )


def on_dask(execution: Execution | None) -> bool:
    """Whether the batches run on a Dask cluster (whose workers may share no disk)."""
    return execution is not None and getattr(execution.executor, "name", "") == "dask"


def gate_results(
    summary: dict[str, Any], max_fraction: float | None, max_images: int | None
) -> dict[str, dict[str, Any]]:
    """Each gate asked for: its limit, the run's value, and whether the run passed it."""
    totals = summary["totals"]
    gates: dict[str, dict[str, Any]] = {}
    if max_fraction is not None:
        value = totals["issue_fraction"]
        gates["max_issue_fraction"] = {
            "limit": max_fraction, "value": value, "passed": value <= max_fraction
        }  # fmt: skip
    if max_images is not None:
        value = totals["images_with_issues"]
        gates["max_images_with_issues"] = {
            "limit": max_images, "value": value, "passed": value <= max_images
        }  # fmt: skip
    return gates


def absent_chunk_warnings(summary: dict[str, Any]) -> list[str]:
    """One sentence per input of a run with absent Zarr chunks, for the command to print."""
    warnings = []
    for name, block in (summary.get("inputs") or {}).items():
        absent = (block or {}).get("absent_chunk_images") or {}
        count = int(absent.get("count") or 0)
        if count:
            warnings.append(
                f"{block.get('path', name)} has absent Zarr chunks in {count} image(s) "
                f"({shown_images(list(absent.get('images') or []))}), read as its fill value "
                f"({_FILL_MEANING.get(name, 'a constant')}); write them if those images should "
                "hold data."
            )
    return warnings


_FILL_MEANING = {
    "labels": "usually class 0 everywhere",
    "images": "usually black",
    "pred_probs": "one constant probability everywhere",
}


def skipped_warning(summary: dict[str, Any]) -> str | None:
    """A sentence on images left out by ``--skip-unmatched`` (None when none were)."""
    skipped = (summary.get("dataset") or {}).get("skipped") or {}
    masks = int(skipped.get("masks_without_prediction") or 0)
    preds = int(skipped.get("predictions_without_mask") or 0)
    if not masks and not preds:
        return None
    examples = ", ".join(str(e) for e in (skipped.get("examples") or [])[:5])
    return (
        f"left out {masks} mask(s) without a prediction and {preds} prediction(s) without "
        f"a mask (--skip-unmatched): {examples}."
    )


def unscored_warning(summary: dict[str, Any]) -> str | None:
    """A sentence on images without a scored pixel (None when there are none)."""
    unscored = (summary.get("dataset") or {}).get("unscored") or {}
    count = int(unscored.get("count") or 0)
    if not count:
        return None
    examples = ", ".join(str(e) for e in (unscored.get("examples") or [])[:5])
    more = ", ..." if count > 5 else ""
    return (
        f"{count} image(s) have no scored pixel (every label is the ignore value): "
        f"{examples}{more}; they have no issues, their score is NaN and they rank last."
    )


def _test_hook_after_batch(stop: int) -> None:
    """Fault injection for tests: SEGAUDIT_TEST_KILL_AFTER_IMAGES=i SIGKILLs after i images."""
    limit = os.environ.get("SEGAUDIT_TEST_KILL_AFTER_IMAGES")
    if limit is not None and stop >= int(limit):
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
