"""`segaudit swaps`, `render` and `export`: what a reviewer reads and fixes after a scan."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from segaudit.cli._common import console, fail, make_progress, user_errors

RunArgument = Annotated[
    str,
    typer.Argument(
        help="A complete run written by `segaudit scan`: a folder, or a URL (s3://...).",
        metavar="RUN",
        show_default=False,
    ),
]
TopOption = Annotated[int, typer.Option("--top", help="How many rows (swaps) or images (render).")]
ClassOption = Annotated[
    list[str] | None,
    typer.Option(
        "--class",
        help="Keep only issue pixels whose given or predicted class is K (id or name); repeatable.",
        metavar="K",
        show_default=False,
    ),
]
ExcludeOption = Annotated[
    list[str] | None,
    typer.Option(
        help="Drop issue pixels whose given or predicted class is K (id or name); repeatable.",
        metavar="K",
        show_default=False,
    ),
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar and no table.")]


def _check_top(top: int | None) -> None:
    if top is not None and top < 1:
        raise fail(f"--top must be at least 1; got {top}.")


def _open(run: str, class_: list[str] | None, exclude: list[str] | None) -> tuple[Any, list, list]:
    """The opened run and the class filters resolved to ids."""
    from segaudit.report.swaps import resolve_classes
    from segaudit.runs.run import open_run

    opened = open_run(run)
    names = opened.class_names
    return opened, resolve_classes(class_ or [], names), resolve_classes(exclude or [], names)


def _swap_table(rows: list[dict[str, Any]], title: str) -> Any:
    """The swap rows as a Rich table; class names shown as plain text (``title`` is markup)."""
    from rich.table import Table

    from segaudit.safetext import markup

    table = Table(title=title, title_justify="left")
    for column, justify in (("given", "left"), ("predicted", "left"), ("pixels", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    table.add_column("share", justify="right")
    table.add_column("images", justify="right")
    with_regions = any("regions" in row for row in rows)
    if with_regions:
        table.add_column("regions", justify="right")
    for row in rows:
        cells = [
            markup(f"{row['given_name']} ({row['given_id']})"),
            markup(f"{row['predicted_name']} ({row['predicted_id']})"),
            f"{row['pixels']:,}",
            f"{row['share']:.1%}",
            f"{row['images']:,}",
        ]
        table.add_row(*cells, *([f"{row.get('regions', 0):,}"] if with_regions else []))
    return table


@user_errors
def swaps(
    run: RunArgument,
    top: TopOption = 20,
    class_: ClassOption = None,
    exclude: ExcludeOption = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the top rows as JSON on stdout, not a table.")
    ] = False,
    quiet: QuietOption = False,
) -> None:
    """Which classes annotators swap: (given, predicted) pairs over the issue pixels.

    Writes RUN/swaps.csv (every pair, most pixels first, with its regions from
    regions.csv) and RUN/swaps.png (a heat map); into a run on an object store too.

    Examples:

        segaudit swaps runs/sample --top 10

        segaudit swaps runs/sample --class car --exclude sky --json
    """
    from segaudit.report.render import write_run_swaps
    from segaudit.safetext import markup

    _check_top(top)
    opened, classes, excluded = _open(run, class_, exclude)
    result = write_run_swaps(
        opened, classes=classes, exclude=excluded, progress=make_progress(quiet)
    )
    rows = result.rows
    if json_output:
        typer.echo(json.dumps(rows[:top], indent=2))
    elif not quiet:
        title = f"Label swaps in {run}: {result.tally.total:,} issue pixels"
        title += f" ({result.note})" if result.note else ""
        console.print(_swap_table(rows[:top], markup(title)))
        shown = f"top {top} of {len(rows)}" if len(rows) > top else f"all {len(rows)}"
        csv_file, png_file = opened.where("swaps.csv"), opened.where("swaps.png")
        wrote = f"{shown} pairs shown; wrote {csv_file} and {png_file}"
        console.print(markup(wrote), highlight=False)


@user_errors
def render(
    run: RunArgument,
    top: Annotated[
        int | None,
        typer.Option(
            "--top",
            help="Only the N images with the most issue pixels; default: every flagged image.",
            show_default=False,
        ),
    ] = None,
    class_: ClassOption = None,
    exclude: ExcludeOption = None,
    images: Annotated[
        Path | None,
        typer.Option(help="Photos (N,H,W,3) uint8 .npy or Zarr; default: the scanned dataset's."),
    ] = None,
    out: Annotated[
        str | None,
        typer.Option("--out", "-o", help="Output folder (local); default RUN/render."),
    ] = None,
    max_width: Annotated[
        int | None,
        typer.Option(help="Scale each image (and PNG page) down to at most this many pixels wide."),
    ] = None,
    zoom: Annotated[
        int, typer.Option(help="PNG pages: draw each pixel as ZOOM x ZOOM screen pixels.")
    ] = 1,
    regions: Annotated[
        int,
        typer.Option(help="PNG pages: box, caption and crop up to N worst regions; 0: none."),
    ] = 5,
    pages: Annotated[
        bool,
        typer.Option(
            "--pages", help="Also write a PNG page per image (photo, given, predicted, issues)."
        ),
    ] = False,
    quiet: QuietOption = False,
) -> None:
    """A review page, RUN/render/index.html: the flagged images and regions to decide on.

    The page opens from disk with no network: a list (one row per image, and per
    region) sortable and filterable by class, class pair, kind and decision; a detail
    view with the photo and issues in red, given and predicted labels, overlay toggles,
    zoom and pan, the class names under the cursor; keys j/k (next/previous), y (real
    error), n (false alarm), u (unsure); decisions kept in the browser and exported as
    decisions.csv for `segaudit eval --decisions` and `segaudit scan --reviewed`.

    For a run on an object store, the page is built locally and published to
    RUN/render/ (index.html last); --out DIR writes it to a local folder instead.

    Examples:

        segaudit render runs/sample

        segaudit render runs/sample --class person --top 200 --out review/

        segaudit render runs/sample --top 20 --pages --zoom 2
    """
    from segaudit.report.render import render_run
    from segaudit.safetext import markup
    from segaudit.sources.remote import is_url

    _check_top(top)
    if is_url(out):
        raise fail(
            f"--out takes a local folder, not {out}; to publish a page to an object store, "
            "render the run at its URL (the page goes to RUN/render/)."
        )
    opened, classes, excluded = _open(run, class_, exclude)
    result = render_run(
        opened,
        top=top,
        classes=classes,
        exclude=excluded,
        images=images,
        out=None if out is None else Path(out),
        max_width=max_width,
        zoom=zoom,
        regions=regions,
        progress=make_progress(quiet),
        png_pages=pages,
    )
    if not quiet:
        if not result.images:
            console.print("No image has issue pixels after the filters.", highlight=False)
        extra = f" and {len(result.pages)} PNG pages" if result.pages else ""
        where, index = result.out, result.index
        if out is None and opened.objects is not None:  # published into the run
            where, index = opened.where("render"), opened.where("render/index.html")
        wrote = f"wrote the review page of {len(result.images)} images{extra} to {where}"
        console.print(markup(f"{wrote}; open {index}"), highlight=False)


class ExportFormat(str, Enum):
    coco = "coco"
    csv = "csv"


class Kind(str, Enum):
    missing = "missing"
    wrong_class = "wrong-class"
    boundary = "boundary"
    spurious = "spurious"


@user_errors
def export(
    run: RunArgument,
    out: Annotated[
        str,
        typer.Option("--out", "-o", help="File or URL to write (e.g. issues.json, s3://b/x.json)."),
    ],
    fmt: Annotated[
        ExportFormat | None,
        typer.Option(
            "--format",
            help="coco: COCO instances JSON with RLE masks (CVAT, Label Studio, FiftyOne); "
            "csv: regions.csv rows with each image's files. Default: csv for an -o ending "
            "in .csv, else coco.",
            show_default=False,
        ),
    ] = None,
    top: Annotated[
        int | None,
        typer.Option("--top", help="Only the N worst regions (after the other filters)."),
    ] = None,
    kind: Annotated[
        list[Kind] | None,
        typer.Option("--kind", help="Only regions of this kind; repeatable.", show_default=False),
    ] = None,
    class_: Annotated[
        list[str] | None,
        typer.Option(
            "--class",
            help="Only regions whose given or predicted class is K (id or name); repeatable.",
            metavar="K",
            show_default=False,
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing file that no export wrote.")
    ] = False,
    quiet: QuietOption = False,
) -> None:
    """Export a run's regions for relabelling: COCO annotations or a CSV.

    Regions come worst first from RUN/regions.csv; each COCO annotation is the region's
    pixels (RLE), its box, the predicted class as category, and its region, score,
    kind, given_class and predicted_class as attributes.

    Examples:

        segaudit export runs/sample --format coco -o issues.json --top 200

        segaudit export runs/sample --format csv -o review.csv --kind missing --class car
    """
    from segaudit.report.export import RegionFilter, export_regions
    from segaudit.report.swaps import resolve_classes
    from segaudit.runs.run import open_run
    from segaudit.safetext import markup

    opened = open_run(run)
    chosen = RegionFilter(
        top=top,
        kinds=tuple(k.value for k in kind or ()),
        classes=tuple(resolve_classes(class_ or [], opened.class_names)),
    )
    if fmt is None:
        fmt = ExportFormat.csv if out.lower().endswith(".csv") else ExportFormat.coco
    counts = export_regions(opened, out, fmt.value, chosen, force=force)
    if not quiet:
        wrote = f"wrote {counts['regions']:,} regions of {counts['images']:,} images to {out}"
        console.print(markup(wrote), highlight=False)
