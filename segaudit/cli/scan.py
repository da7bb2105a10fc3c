"""`segaudit scan`: the main job."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from segaudit.cli._common import console, err_console, make_progress, user_errors
from segaudit.cli._options import (
    AbsentChunksOpt,
    BackgroundOpt,
    BatchOpt,
    BudgetOpt,
    ChannelsOpt,
    DatasetArg,
    IgnoreOpt,
    ImagesOpt,
    LabelMapOpt,
    LabelsOpt,
    LayoutOpt,
    LogitsOpt,
    ManifestOpt,
    MinRegionOpt,
    NamesOpt,
    NormalizeOpt,
    OutOpt,
    Pooling,
    ProbsOpt,
    QuietOpt,
    ResizeOpt,
    SchedulerOpt,
    SkipUnmatchedOpt,
    SplitOpt,
    WorkersOpt,
    dataset_spec,
    execution_on,
)

DEFAULT_MIN_REGION_PIXELS = 10  # segaudit.engine.regions.DEFAULT_MIN_PIXELS (kept light)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout.")]


@user_errors
def scan(
    out: OutOpt,
    dataset: DatasetArg = None,
    labels: LabelsOpt = None,
    pred_probs: ProbsOpt = None,
    images: ImagesOpt = None,
    class_names: NamesOpt = None,
    manifest: ManifestOpt = None,
    layout: LayoutOpt = None,
    split: SplitOpt = None,
    label_map: LabelMapOpt = None,
    skip_unmatched: SkipUnmatchedOpt = False,
    downsample: Annotated[
        int,
        typer.Option(
            "--downsample", min=1, help="Run Confident Learning on d×d blocks (faster, coarser)."
        ),
    ] = 1,
    label_pooling: Annotated[
        Pooling,
        typer.Option(
            "--label-pooling",
            help="How labels are pooled when downsampling: "
            "majority vote (mode) or the reference's rounded mean (mean).",
        ),
    ] = Pooling.mode,
    ignore_index: IgnoreOpt = None,
    channels_last: ChannelsOpt = False,
    logits: LogitsOpt = False,
    normalize: NormalizeOpt = False,
    resize_probs: ResizeOpt = None,
    temperature: Annotated[
        float, typer.Option("--temperature", help="Softmin temperature of the image scores.")
    ] = 0.1,
    batch_size: BatchOpt = None,
    memory_budget: BudgetOpt = "512M",
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
    max_issue_fraction: Annotated[
        float | None,
        typer.Option(
            "--max-issue-fraction",
            help="Gate: exit 1 when the fraction of scored pixels flagged exceeds this.",
        ),
    ] = None,
    max_images_with_issues: Annotated[
        int | None,
        typer.Option(
            "--max-images-with-issues",
            min=0,
            help="Gate: exit 1 when more images than this have at least one issue pixel.",
        ),
    ] = None,
    min_region_pixels: MinRegionOpt = DEFAULT_MIN_REGION_PIXELS,
    background: BackgroundOpt = None,
    allow_absent_chunks: AbsentChunksOpt = False,
    reviewed: Annotated[
        Path | None,
        typer.Option(
            "--reviewed",
            help="decisions.csv from the review page: a region matching a confirmed false "
            "alarm (same image id and class pair, overlapping box) is not flagged again.",
            show_default=False,
        ),
    ] = None,
    json_output: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Flag mislabeled pixels with Confident Learning and rank images for review.

    Reads pred_probs once, streaming, and writes RUN/: issues.zarr and issues/ID.png,
    pred_labels.zarr, pixel_scores.zarr, labels.zarr, images.csv, image_scores.csv,
    regions.csv and regions.zarr (issue pixels grouped into regions), and summary.json
    (last).

    Examples:

        segaudit scan sample_data -o runs/sample

        segaudit scan ~/data/cityscapes --layout cityscapes --split val --pred-probs preds/ -o run

        segaudit scan data/ -o runs/nightly --ignore-index 255 --max-issue-fraction 0.02 --quiet

        segaudit scan data/ -o runs/next --reviewed decisions.csv

        segaudit scan data/ -o runs/big --scheduler tcp://scheduler:8786
    """
    from segaudit.engine.params import Params
    from segaudit.engine.softmin import check_temperature
    from segaudit.errors import InvalidInputError
    from segaudit.jobs.scan import RegionOptions
    from segaudit.jobs.scan import scan as run_scan
    from segaudit.report.decisions import Reviewed

    check_temperature(temperature)
    decisions = Reviewed(reviewed) if reviewed is not None else None
    spec = dataset_spec(
        dataset,
        labels=labels,
        pred_probs=pred_probs,
        images=images,
        class_names=class_names,
        manifest=manifest,
        layout=layout,
        split=split,
        label_map=label_map,
        skip_unmatched=skip_unmatched,
        channels_last=channels_last,
        ignore_index=ignore_index,
        allow_absent_chunks=allow_absent_chunks,
    )
    params = Params(
        ignore_index=ignore_index,
        downsample=downsample,
        label_pooling=label_pooling.value,
        channels_last=channels_last,
        logits=logits,
        temperature=temperature,
        normalize=normalize,
        resize_probs=resize_probs.value if resize_probs is not None else None,
    )
    if max_issue_fraction is not None and not 0 <= max_issue_fraction <= 1:
        raise InvalidInputError(
            f"--max-issue-fraction must be between 0 and 1, got {max_issue_fraction}."
        )
    with execution_on(workers, batch_size, memory_budget, scheduler) as how:
        summary = run_scan(
            spec,
            out,
            params,
            execution=how,
            progress=make_progress(quiet or json_output),
            regions=RegionOptions(min_region_pixels, tuple(background) if background else None),
            reviewed=decisions,
        )
    warn_absent_chunks(summary)
    if json_output:
        typer.echo(json.dumps(summary, indent=2))
    elif not quiet:
        print_summary(summary, out)
    gate_failures = check_gates(summary, max_issue_fraction, max_images_with_issues)
    for failure in gate_failures:
        err_console.print(f"[bold red]gate failed:[/] {failure}", highlight=False)
    if gate_failures:
        raise typer.Exit(code=1)


def warn_absent_chunks(summary: dict[str, Any]) -> None:
    """A warning on stderr (even with --quiet) for each input read with absent Zarr
    chunks, images left out by --skip-unmatched, and images without a scored pixel."""
    from segaudit.jobs.scan import absent_chunk_warnings, skipped_warning, unscored_warning
    from segaudit.safetext import markup

    more = [skipped_warning(summary), unscored_warning(summary)]
    warnings = absent_chunk_warnings(summary) + [w for w in more if w]
    for warning in warnings:
        err_console.print(f"[bold yellow]warning:[/] {markup(warning)}", highlight=False)


def check_gates(
    summary: dict[str, Any], max_fraction: float | None, max_images: int | None
) -> list[str]:
    """The gate conditions that failed, as sentences."""
    totals = summary["totals"]
    failures = []
    if max_fraction is not None and totals["issue_fraction"] > max_fraction:
        failures.append(
            f"issue fraction {totals['issue_fraction']:.6f} exceeds "
            f"--max-issue-fraction {max_fraction}"
        )
    if max_images is not None and totals["images_with_issues"] > max_images:
        failures.append(
            f"{totals['images_with_issues']} images have issues, more than "
            f"--max-images-with-issues {max_images}"
        )
    return failures


def image_sizes(data: dict[str, Any]) -> str:
    """``× 512×1024``, or the range of sizes of a dataset whose images differ; a dataset
    of volumes: ``(volumes) of 2 shapes: 32×64×64 … 40×64×64`` (z×y×x)."""
    volumes = data.get("volumes")
    if volumes:
        shapes = ["×".join(str(n) for n in shape) for shape in volumes.get("shapes") or []]
        if len(shapes) == 1:
            return f"(volumes) × {shapes[0]}"
        return f"(volumes) of {len(shapes)} shapes: {shapes[0]} … {shapes[-1]}"
    if "height" in data:
        return f"× {data['height']}×{data['width']}"
    sizes = data.get("sizes") or {}
    small, large = sizes.get("smallest", ["?", "?"]), sizes.get("largest", ["?", "?"])
    return f"of {sizes.get('distinct', '?')} sizes ({small[0]}×{small[1]} to {large[0]}×{large[1]})"


def print_summary(summary: dict[str, Any], out: str) -> None:
    """A readable account of a scan: totals, the classes involved, the worst images."""
    from rich.table import Table

    from segaudit.safetext import markup

    totals, classes = summary["totals"], summary["classes"]
    data = summary["dataset"]
    console.print(
        f"[bold]segaudit scan[/] {data['num_images']} images {image_sizes(data)}, "
        f"{data['num_classes']} classes → [bold]{markup(out)}[/]"
    )
    console.print(
        f"  issue pixels: [bold]{totals['issue_pixels']:,}[/] of "
        f"{totals['scored_pixels']:,} scored "
        f"({100 * totals['issue_fraction']:.3f}%), in {totals['images_with_issues']} of "
        f"{data['num_images']} images; {summary['timing']['seconds']:.2f} s"
    )
    table = Table(title="classes with issues", title_justify="left")
    for column in ("class", "threshold", "labelled pixels", "issues (given)", "issues (predicted)"):
        table.add_column(column, justify="left" if column == "class" else "right")
    rows = sorted(range(data["num_classes"]), key=lambda k: -classes["issue_pixels_given"][k])
    for k in rows[:10]:
        if classes["issue_pixels_given"][k] or classes["issue_pixels_predicted"][k]:
            table.add_row(
                f"{k} {markup(classes['names'][k])}",
                f"{classes['thresholds'][k]:.4f}",
                f"{classes['labelled_pixels'][k]:,}",
                f"{classes['issue_pixels_given'][k]:,}",
                f"{classes['issue_pixels_predicted'][k]:,}",
            )
    if table.row_count:
        console.print(table)
    reviewed = summary.get("reviewed")
    if reviewed:
        console.print(
            f"  reviewed: {reviewed['suppressed_regions']:,} regions not flagged again "
            f"(confirmed false alarms in {markup(reviewed['file'])})",
            highlight=False,
        )
    console.print(f"  worst images first: {markup(f'{out}/image_scores.csv')}")
