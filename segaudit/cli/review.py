"""`segaudit swaps` and `segaudit render`: what a reviewer reads after a scan."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from segaudit.cli._common import console, fail, make_progress, user_errors

RunArgument = Annotated[
    Path,
    typer.Argument(
        help="A complete run directory written by `segaudit scan`.",
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


def _check_top(top: int) -> None:
    if top < 1:
        raise fail(f"--top must be at least 1; got {top}.")


def _open(run: Path, class_: list[str] | None, exclude: list[str] | None) -> tuple[Any, list, list]:
    """The opened run and the class filters resolved to ids."""
    from segaudit.rundir import open_run
    from segaudit.summaries import resolve_classes

    opened = open_run(run)
    names = opened.class_names
    return opened, resolve_classes(class_ or [], names), resolve_classes(exclude or [], names)


def _swap_table(rows: list[dict[str, Any]], title: str) -> Any:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column, justify in (("given", "left"), ("predicted", "left"), ("pixels", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    table.add_column("share", justify="right")
    table.add_column("images", justify="right")
    for row in rows:
        table.add_row(
            escape(f"{row['given_name']} ({row['given_id']})"),
            escape(f"{row['predicted_name']} ({row['predicted_id']})"),
            f"{row['pixels']:,}",
            f"{row['share']:.1%}",
            f"{row['images']:,}",
        )
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

    Writes RUN/swaps.csv (every pair, most pixels first) and RUN/swaps.png (a heat map).

    Examples:

        segaudit swaps runs/sample --top 10

        segaudit swaps runs/sample --class car --exclude sky --json
    """
    from rich.markup import escape

    from segaudit.render import filter_note, swap_heatmap
    from segaudit.summaries import run_swaps, write_swaps_csv

    _check_top(top)
    opened, classes, excluded = _open(run, class_, exclude)
    names = opened.class_names
    tally = run_swaps(opened, classes=classes, exclude=excluded, progress=make_progress(quiet))
    rows = tally.rows(names)
    write_swaps_csv(opened.path / "swaps.csv", rows)
    note = filter_note(names, classes, excluded)
    swap_heatmap(tally.pixels, names, opened.path / "swaps.png", note=note)
    if json_output:
        typer.echo(json.dumps(rows[:top], indent=2))
    elif not quiet:
        title = f"Label swaps in {run}: {tally.total:,} issue pixels"
        title += f" ({note})" if note else ""
        console.print(_swap_table(rows[:top], escape(title)))
        shown = f"top {top} of {len(rows)}" if len(rows) > top else f"all {len(rows)}"
        csv_path, png_path = opened.path / "swaps.csv", opened.path / "swaps.png"
        console.print(f"{shown} pairs shown; wrote {csv_path} and {png_path}", highlight=False)


@user_errors
def render(
    run: RunArgument,
    top: TopOption = 20,
    class_: ClassOption = None,
    exclude: ExcludeOption = None,
    images: Annotated[
        Path | None,
        typer.Option(help="Photos (N,H,W,3) uint8 .npy or Zarr; default: the scanned dataset's."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output folder; default RUN/render.")
    ] = None,
    max_width: Annotated[
        int | None,
        typer.Option(help="Scale each page down to at most this many pixels wide."),
    ] = None,
    zoom: Annotated[
        int, typer.Option(help="Draw each pixel as ZOOM x ZOOM screen pixels (small images).")
    ] = 1,
    quiet: QuietOption = False,
) -> None:
    """PNG pages for the images with the most issue pixels, a legend and an index.html.

    Panels: the photo with issues in red (when photos exist), given labels (ignored
    pixels grey), predicted labels, and the issues alone in red on white.

    Examples:

        segaudit render runs/sample --top 20

        segaudit render runs/sample --class person --zoom 2 --out review/
    """
    from segaudit.render import render_run

    _check_top(top)
    opened, classes, excluded = _open(run, class_, exclude)
    result = render_run(
        opened,
        top=top,
        classes=classes,
        exclude=excluded,
        images=images,
        out=out,
        max_width=max_width,
        zoom=zoom,
        progress=make_progress(quiet),
    )
    if not quiet:
        if not result.pages:
            console.print("No image has issue pixels after the filters.", highlight=False)
        console.print(
            f"wrote {len(result.pages)} pages to {result.out}; open {result.index}", highlight=False
        )
