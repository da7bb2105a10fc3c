"""Options shared by the commands that read a dataset (``scan``, ``score``), defined once.

Each group turns into one library object: the dataset options into a
:class:`segaudit.sources.DatasetSpec`, the worker options into an
:class:`segaudit.engine.params.Execution`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from segaudit.cli._common import parse_size


class Pooling(str, Enum):
    mode = "mode"
    mean = "mean"


class LayoutName(str, Enum):
    cityscapes = "cityscapes"
    voc = "voc"
    ade20k = "ade20k"
    camvid = "camvid"
    nnunet = "nnunet"


class Resize(str, Enum):
    bilinear = "bilinear"


DatasetArg = Annotated[
    str | None,
    typer.Argument(
        help="Dataset folder (or its URL: s3://bucket/ds): labels and pred_probs as stacked "
        "stores (labels.npy, pred_probs.zarr, ...) or as folders of one file per image "
        "(labels/*.png, pred_probs/*.npy); optional images and classes.txt. With --layout, "
        "the folder of a public dataset.",
        metavar="DATASET",
        show_default=False,
    ),
]
def _named_run(value: str) -> str:
    """An empty -o is no place: refused rather than read as the current folder."""
    if not value.strip():
        raise typer.BadParameter("give the run's folder (or URL); it is empty.")
    return value


OutOpt = Annotated[
    str,
    typer.Option(
        "--out",
        "-o",
        help="Run directory to write (replaced atomically), or a URL (s3://bucket/runs/x): "
        "built locally, published with summary.json last.",
        metavar="RUN",
        callback=_named_run,
    ),
]
LabelsOpt = Annotated[
    str | None,
    typer.Option(
        "--labels",
        help="Labels: a stacked store (N,H,W), a folder of masks or a glob "
        "('masks/**/*.png'); overrides DATASET.",
    ),
]
ProbsOpt = Annotated[
    str | None,
    typer.Option(
        "--pred-probs",
        help="Predictions: a stacked store (N,K,H,W), a folder of one .npy/.npz per image "
        "(K,H,W) or a glob; overrides DATASET.",
    ),
]
ImagesOpt = Annotated[
    str | None,
    typer.Option(
        "--images", help="Photos: a stacked store (N,H,W,3) uint8, a folder or a glob."
    ),
]
NamesOpt = Annotated[
    Path | None, typer.Option("--class-names", help="Text file, one class name per line.")
]
ManifestOpt = Annotated[
    Path | None,
    typer.Option(
        "--manifest",
        help="CSV naming each image's files: columns id, labels, pred_probs[, image] "
        "(paths relative to the CSV).",
    ),
]
LayoutOpt = Annotated[
    LayoutName | None,
    typer.Option(
        "--layout",
        help="DATASET is laid out as this public dataset distributes it (masks, photos, "
        "class ids, void value, class names); predictions from --pred-probs PRED_DIR.",
    ),
]
SplitOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--split",
        help="With --layout: the split(s) to read, e.g. val (repeatable; default: every "
        "split present).",
        show_default=False,
    ),
]
LabelMapOpt = Annotated[
    Path | None,
    typer.Option(
        "--label-map",
        help="File mapping mask values (or RGB colours) to class ids, names or void: "
        "'VALUE, CLASS' lines.",
    ),
]
SkipUnmatchedOpt = Annotated[
    bool,
    typer.Option(
        "--skip-unmatched",
        help="Leave out masks without a prediction and predictions without a mask "
        "(counted in the summary) instead of refusing them.",
    ),
]
IgnoreOpt = Annotated[
    int | None,
    typer.Option(
        "--ignore-index", help="Label value of unlabelled pixels (e.g. 255): never issues."
    ),
]
ChannelsOpt = Annotated[
    bool, typer.Option("--channels-last", help="Predictions are (..., H, W, K).")
]
LogitsOpt = Annotated[
    bool, typer.Option("--logits", help="Predictions are logits: apply a softmax first.")
]
NormalizeOpt = Annotated[
    bool,
    typer.Option(
        "--normalize",
        help="Predictions are scores that do not sum to 1 (e.g. Mask2Former's semantic "
        "output): divide each pixel's scores by their sum.",
    ),
]
ResizeOpt = Annotated[
    Resize | None,
    typer.Option(
        "--resize-probs",
        help="Upsample predictions smaller than their mask (e.g. SegFormer's H/4) to the "
        "mask's size, as the model's own post-processing would.",
    ),
]
BatchOpt = Annotated[
    int | None,
    typer.Option("--batch-size", min=1, help="Images per batch (default: from --memory-budget)."),
]
BudgetOpt = Annotated[
    str, typer.Option("--memory-budget", help="Memory for in-flight batches, e.g. 512M, 2G.")
]
WorkersOpt = Annotated[
    int | None,
    typer.Option(
        "--workers", min=1, help="Batches processed at once on local cores (default: all)."
    ),
]
SchedulerOpt = Annotated[
    str | None,
    typer.Option(
        "--scheduler",
        help="Run the batches as Dask tasks: the scheduler's address (tcp://HOST:8786), or "
        "local:N for a local cluster of N worker processes. Needs segaudit[dask].",
        metavar="ADDRESS",
        show_default=False,
    ),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar and no table.")]
AbsentChunksOpt = Annotated[
    bool,
    typer.Option(
        "--allow-absent-chunks",
        help="Read absent Zarr chunks of pred_probs as the fill value instead of refusing "
        "them (absent chunks of labels and images are always allowed, with a warning).",
    ),
]

MinRegionOpt = Annotated[
    int,
    typer.Option(
        "--min-region-pixels",
        min=1,
        help="Leave regions smaller than this out of regions.csv (the issue mask keeps "
        "every pixel).",
    ),
]
BackgroundOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--background",
        help="A background-like class (id or name; repeatable), for region kinds "
        "(missing, spurious). Default: the layout's stuff classes, else class 0.",
        show_default=False,
    ),
]


def dataset_spec(
    dataset: str | None,
    *,
    labels: str | None = None,
    pred_probs: str | None = None,
    images: str | None = None,
    class_names: Path | None = None,
    manifest: Path | None = None,
    layout: LayoutName | None = None,
    split: list[str] | None = None,
    label_map: Path | None = None,
    skip_unmatched: bool = False,
    channels_last: bool = False,
    ignore_index: int | None = None,
    allow_absent_chunks: bool = False,
) -> Any:
    """The dataset options as a :class:`segaudit.sources.DatasetSpec`."""
    from segaudit.sources import DatasetSpec
    from segaudit.sources.remote import is_url

    return DatasetSpec(
        dataset=dataset if dataset is None or is_url(dataset) else Path(dataset),
        labels=labels,
        pred_probs=pred_probs,
        images=images,
        class_names=class_names,
        manifest=manifest,
        layout=layout.value if layout is not None else None,
        splits=tuple(split or ()),
        label_map=label_map,
        skip_unmatched=skip_unmatched,
        channels_last=channels_last,
        ignore_index=ignore_index,
        allow_absent_chunks=allow_absent_chunks,
    )


def execution(workers: int | None, batch_size: int | None, memory_budget: str) -> Any:
    """The worker options as an :class:`segaudit.engine.params.Execution`."""
    from segaudit.engine.params import Execution
    from segaudit.engine.stream import default_workers

    return Execution(
        workers=workers or default_workers(),
        batch_size=batch_size,
        memory_budget=parse_size(memory_budget),
    )


@contextmanager
def execution_on(
    workers: int | None, batch_size: int | None, memory_budget: str, scheduler: str | None
) -> Iterator[Any]:
    """:func:`execution`, on the Dask cluster at ``scheduler`` when one is given (its
    worker threads replace ``--workers``); the cluster is let go on the way out."""
    if scheduler is not None and workers is not None:
        from segaudit.errors import InvalidInputError

        raise InvalidInputError(
            "--workers sets local threads, but with --scheduler the cluster's workers run "
            "the batches; drop --workers (local:N starts N local worker processes)."
        )
    base = execution(workers, batch_size, memory_budget)
    if scheduler is None:
        yield base
        return
    import dataclasses

    from segaudit.engine.dask_executor import dask_executor

    with dask_executor(scheduler) as executor:
        yield dataclasses.replace(base, workers=executor.workers, executor=executor)
