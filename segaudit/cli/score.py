"""`segaudit score` (image and pixel label-quality scores) and `segaudit eval`."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from segaudit.cli._common import console, err_console, fail, make_progress, user_errors
from segaudit.cli._options import (
    AbsentChunksOpt,
    BatchOpt,
    BudgetOpt,
    ChannelsOpt,
    DatasetArg,
    ImagesOpt,
    LabelMapOpt,
    LabelsOpt,
    LayoutOpt,
    ManifestOpt,
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
from segaudit.cli.scan import image_sizes, warn_absent_chunks

IgnoreOpt = Annotated[
    int | None,
    typer.Option(
        "--ignore-index",
        help="Label value of unlabelled pixels (e.g. 255): left out of every score.",
    ),
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print the summary and the worst images as JSON on stdout.")
]


class Method(str, Enum):
    softmin = "softmin"
    num_pixel_issues = "num_pixel_issues"


@user_errors
def score(
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
    method: Annotated[
        Method,
        typer.Option(
            "--method",
            help="softmin: soft minimum of the pixel scores, no Confident Learning (fast); "
            "num_pixel_issues: 1 - issue pixels / scored pixels, from a scan.",
        ),
    ] = Method.softmin,
    temperature: Annotated[
        float,
        typer.Option(
            "--temperature",
            help="Softmin temperature: lower values approach the worst pixel's score.",
        ),
    ] = 0.1,
    pixel_scores: Annotated[
        bool,
        typer.Option(
            "--pixel-scores/--no-pixel-scores",
            help="Also write pixel_scores.zarr: the probability of each pixel's given label "
            "(4 bytes a pixel that barely compress, so off unless asked).",
        ),
    ] = False,
    top: Annotated[int, typer.Option("--top", min=1, help="Worst images shown.")] = 10,
    ignore_index: IgnoreOpt = None,
    channels_last: ChannelsOpt = False,
    normalize: NormalizeOpt = False,
    resize_probs: ResizeOpt = None,
    downsample: Annotated[
        int,
        typer.Option("--downsample", min=1, help="num_pixel_issues: scan on d×d blocks."),
    ] = 1,
    label_pooling: Annotated[
        Pooling,
        typer.Option("--label-pooling", help="num_pixel_issues with --downsample: mode or mean."),
    ] = Pooling.mode,
    replace: Annotated[
        bool,
        typer.Option(
            "--replace",
            help="Discard a scan of other inputs or parameters that RUN holds (kept otherwise).",
        ),
    ] = False,
    batch_size: BatchOpt = None,
    memory_budget: BudgetOpt = "512M",
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
    allow_absent_chunks: AbsentChunksOpt = False,
    json_output: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Score every image for review (lower = more likely mislabeled), worst first.

    Writes RUN/image_scores.csv (image, id, score, rank), with --pixel-scores
    RUN/pixel_scores.zarr, and RUN/summary.json (last). softmin reads pred_probs once,
    without Confident Learning. num_pixel_issues runs a scan into RUN, or reuses the
    scan RUN already holds for the same inputs and parameters; a scan RUN holds is kept
    when it matches and never discarded without --replace (a scan at a URL RUN is
    downloaded, checked against its manifest, to be kept).

    Examples:

        segaudit score data/ -o runs/scores --top 20

        segaudit score data/ -o runs/nightly --method num_pixel_issues --ignore-index 255
    """
    from segaudit.engine.params import Params
    from segaudit.engine.softmin import check_temperature
    from segaudit.jobs.score import score as run_score
    from segaudit.jobs.score import unscored_message

    check_temperature(temperature)
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
        temperature=temperature,
        normalize=normalize,
        resize_probs=resize_probs.value if resize_probs is not None else None,
    )
    with execution_on(workers, batch_size, memory_budget, scheduler) as how:
        summary, result = run_score(
            spec,
            out,
            params,
            method=method.value,
            execution=how,
            pixel_scores=pixel_scores,
            replace=replace,
            progress=make_progress(quiet or json_output),
        )
    warn_absent_chunks(summary)
    if len(result.unscored):
        err_console.print(
            f"[bold yellow]warning:[/] {unscored_message(result.unscored)}", highlight=False
        )
    rows = _worst(result, top)
    if json_output:
        typer.echo(json.dumps({**summary, "worst_images": rows}, indent=2))
    elif not quiet:
        _print_scores(summary, rows, out)


def _worst(result: Any, top: int) -> list[dict[str, Any]]:
    rows = result.rows(top)
    for row in rows:  # JSON has no NaN: an image without scored pixels shows null
        row["score"] = None if row["score"] != row["score"] else row["score"]
    return rows


_SCAN_NOTES = {
    ("kept", "softmin"): "; kept the scan RUN held",
    ("kept", "num_pixel_issues"): "; reused the scan RUN held",
    ("computed", "num_pixel_issues"): "; ran a scan",
}


def _print_scores(summary: dict[str, Any], rows: list[dict[str, Any]], out: str) -> None:
    """Header line, the worst images as a table, and where the full list is."""
    from rich.table import Table

    from segaudit.safetext import markup

    data, block = summary["dataset"], summary["scores"]
    how = block["method"]
    if how == "softmin":
        how += f" (temperature {block['temperature']:g})"
    scan = _SCAN_NOTES.get((block["scan"], block["method"]), "")
    console.print(
        f"[bold]segaudit score[/] {data['num_images']} images {image_sizes(data)}, "
        f"{data['num_classes']} classes, {how} → [bold]{markup(out)}[/]; "
        f"{summary['timing']['seconds']:.2f} s{scan}"
    )
    table = Table(
        title=f"worst {len(rows)} images (lower score = review first)", title_justify="left"
    )
    columns = ["rank", "image", "id", "score"]
    if rows and "issue_pixels" in rows[0]:
        columns += ["issue_pixels", "scored_pixels"]
    for column in columns:
        table.add_column(column.replace("_", " "), justify="left" if column == "id" else "right")
    for row in rows:
        table.add_row(*(_cell(row[column]) for column in columns))
    console.print(table)
    console.print(
        f"  all images, worst first: {markup(f'{out}/image_scores.csv')}", highlight=False
    )


def _cell(value: Any) -> str:
    from segaudit.safetext import markup

    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.6f}"
    if isinstance(value, int):
        return f"{value:,}"
    return markup(value)


class ScoreColumn(str, Enum):
    """The image_scores.csv columns `segaudit eval` can rank images by."""

    softmin_score = "softmin_score"
    region_score = "region_score"
    issue_fraction = "issue_fraction"


@user_errors
def evaluate(
    run: Annotated[
        str,
        typer.Argument(
            help="A run written by `segaudit score` or `segaudit scan`.",
            metavar="RUN",
            show_default=False,
        ),
    ],
    truth: Annotated[
        Path | None,
        typer.Option(
            "--truth",
            help="Dataset folder with is_corrupted.{npy,zarr} and true_labels.{npy,zarr} "
            "(as `segaudit synth` writes).",
            show_default=False,
        ),
    ] = None,
    decisions: Annotated[
        Path | None,
        typer.Option(
            "--decisions",
            help="decisions.csv exported by the review page (`segaudit render`): precision "
            "of the reviewed flags by score band.",
            show_default=False,
        ),
    ] = None,
    score_column: Annotated[
        ScoreColumn | None,
        typer.Option(
            "--score-column",
            help="Image score to rank images by: softmin_score or region_score (lower = "
            "more suspicious), issue_fraction (higher = more suspicious). Default: the "
            "run's own score (softmin_score for a scan). --json reports every one the run has.",
            show_default=False,
        ),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """How well a run's scores find known annotation errors.

    Image level: average precision and AUROC of the image scores (lower score = more
    likely corrupted) against is_corrupted. Pixel level, when RUN has issues.zarr:
    precision, recall and F1 of the issue mask against labels != true_labels. Region
    level, when RUN has regions.csv and the dataset has error maps: precision, recall and
    average precision of the found regions against the injected errors (a match is a
    pixel IoU of at least 0.3), overall and per kind.

    With --decisions (a review page's export): the precision of the flags the reviewer
    saw, real errors / (real errors + false alarms), per score band, for regions and
    for images.

    Examples:

        segaudit eval runs/sample --truth sample_data

        segaudit eval runs/sample --decisions decisions.csv

        segaudit eval runs/scores --truth data/synthetic --json

        segaudit eval runs/sample --truth sample_data --score-column region_score
    """
    from segaudit.report.evaluate import evaluate_run
    from segaudit.safetext import markup

    if truth is None and decisions is None:
        raise fail("pass --truth DATASET, --decisions FILE, or both.")
    reviewed = _reviewed_precision(run, decisions) if decisions is not None else None
    metrics: dict[str, Any] = {}
    if truth is not None:
        metrics = evaluate_run(
            run,
            truth,
            score_column=None if score_column is None else score_column.value,
            progress=make_progress(quiet or json_output),
        )
    if reviewed is not None:
        metrics["decisions"] = reviewed
    for note in metrics.get("notes", []):
        err_console.print(f"[bold yellow]warning:[/] {markup(note)}", highlight=False)
    if json_output:
        typer.echo(json.dumps(metrics, indent=2))
    elif not quiet:
        if truth is not None:
            _print_metrics(metrics, run)
            _print_region_metrics(metrics.get("region"))
        if reviewed is not None:
            _print_reviewed(reviewed)


def _reviewed_precision(run: Path, path: Path) -> dict[str, Any]:
    """``--decisions``: the file read and checked first, then matched to the run."""
    from segaudit.report.decisions import evaluate_decisions, read_decisions
    from segaudit.runs.run import open_run

    decided = read_decisions(path)
    return evaluate_decisions(open_run(run), decided, path)


def _counts_table(title: str, first: str, numbers: tuple[str, ...]) -> Any:
    """An edgeless table titled ``title``: a row-name column, then right-aligned numbers."""
    from rich.table import Table

    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    table.add_column(first)
    for name in numbers:
        table.add_column(name, justify="right")
    return table


def _print_reviewed(reviewed: dict[str, Any]) -> None:
    """Precision of the reviewed flags per score band, regions then images."""
    from segaudit.safetext import markup

    for level in ("region", "image"):
        block = reviewed.get(level)
        if block is None:
            continue
        what = "regions" if level == "region" else f"images ({reviewed['image_score_column']})"
        table = _counts_table(
            f"reviewed {markup(what)}: precision = real errors / (real + false alarms)",
            "score band",
            ("reviewed", "real error", "false alarm", "unsure", "precision"),
        )
        for row in [*block["bands"], {**block["all"], "band": "all"}]:
            table.add_row(
                row["band"],
                f"{row['reviewed']:,}",
                f"{row['real_error']:,}",
                f"{row['false_alarm']:,}",
                f"{row['unsure']:,}",
                _metric(row["precision"]),
            )
        console.print(table)


def _print_metrics(metrics: dict[str, Any], run: str) -> None:
    """The image- and pixel-level metrics as one table."""
    from rich.table import Table

    from segaudit.safetext import markup

    image = metrics["image"]
    table = Table(title=f"segaudit eval {markup(run)}", title_justify="left")
    table.add_column("level")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row(
        "image",
        "scores",
        f"{image['score_column']} ({image['images']} images, {image['positives']} corrupted)",
    )
    table.add_row("image", "average precision", _metric(image["average_precision"]))
    table.add_row("image", "AUROC", _metric(image["auroc"]))
    for column, other in metrics.get("image_by_column", {}).items():
        if column != image["score_column"]:
            table.add_row("image", f"AP of {column}", _metric(other["average_precision"]))
    pixel = metrics.get("pixel")
    if pixel is not None:
        table.add_row("pixel", "precision", _metric(pixel["precision"]))
        table.add_row("pixel", "recall", _metric(pixel["recall"]))
        table.add_row("pixel", "F1", _metric(pixel["f1"]))
        table.add_row(
            "pixel", "true errors / flagged", f"{pixel['true_errors']:,} / {pixel['flagged']:,}"
        )
    console.print(table)
    if pixel is None:
        console.print(
            "  no issues.zarr in the run: pixel-level metrics need a scan.", highlight=False
        )


def _print_region_metrics(region: dict[str, Any] | None) -> None:
    """The region metrics per kind, then overall: regions found and matching, injected
    errors and how many were found, precision, recall and AP."""
    from segaudit.safetext import markup

    if region is None:
        return
    pairs = [f"{row['kind']} = {row['injected_kind']}" for row in region["per_kind"]]
    table = _counts_table(
        f"regions (a match: pixel IoU >= {region['iou_threshold']})",
        "kind",
        ("regions", "matching", "precision", "errors", "found", "recall", "AP"),
    )
    for row in [*region["per_kind"], {**region, "kind": "all"}]:
        table.add_row(
            markup(row["kind"] or row["injected_kind"]),
            f"{row['found_regions']:,}",
            f"{row['matched_regions']:,}",
            _metric(row["precision"]),
            f"{row['injected_errors']:,}",
            f"{row['found_errors']:,}",
            _metric(row["recall"]),
            _metric(row["average_precision"]),
        )
    console.print(table)
    console.print(f"  errors of each kind: {markup(', '.join(pairs))}", highlight=False)


def _metric(value: float | None) -> str:
    """A metric with four decimals, or n/a when undefined."""
    return "n/a" if value is None else f"{value:.4f}"
