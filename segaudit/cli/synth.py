"""`segaudit synth`: write a synthetic dataset with known annotation errors."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from segaudit.cli._common import console, make_progress, user_errors


@user_errors
def synth(
    out: Annotated[
        Path,
        typer.Argument(
            help="Folder to write the dataset into (created; must be empty).", show_default=False
        ),
    ],
    images: Annotated[
        int, typer.Option("--images", help="Number of images N.", show_default=False)
    ],
    classes: Annotated[
        int, typer.Option("--classes", help="Number of classes K (2 to 65535).", show_default=False)
    ],
    seed: Annotated[
        int,
        typer.Option(
            "--seed",
            help="Random seed: same seed and options, byte-identical files.",
            show_default=False,
        ),
    ],
    height: Annotated[
        int | None,
        typer.Option(
            "--height", help="Image height H in pixels (or use --sizes).", show_default=False
        ),
    ] = None,
    width: Annotated[
        int | None,
        typer.Option(
            "--width", help="Image width W in pixels (or use --sizes).", show_default=False
        ),
    ] = None,
    sizes: Annotated[
        str | None,
        typer.Option(
            "--sizes",
            metavar="HxW,...",
            help="Image sizes, dealt out to the images by the seed, e.g. 96x128,80x112 "
            "(instead of --height and --width; several sizes need --layout folder).",
            show_default=False,
        ),
    ] = None,
    dtype: Annotated[
        str, typer.Option("--dtype", metavar="float16|float32", help="dtype of pred_probs.")
    ] = "float32",
    fmt: Annotated[
        str,
        typer.Option("--format", metavar="npy|zarr", help="Store format of the stacked layout."),
    ] = "npy",
    layout: Annotated[
        str,
        typer.Option(
            "--layout",
            metavar="stacked|folder",
            help="stacked: one array per kind (labels.npy, ...); folder: one file per image "
            "(labels/ID.png, pred_probs/ID.npy, images/ID.png, ...).",
        ),
    ] = "stacked",
    corrupt_fraction: Annotated[
        float,
        typer.Option("--corrupt-fraction", help="Fraction of images given annotation errors."),
    ] = 0.3,
    difficulty: Annotated[
        str,
        typer.Option(
            "--difficulty",
            metavar="standard|hard",
            help="hard: a model about 98% accurate that makes more confident mistakes, and "
            "1-3 small errors per corrupted image (outlines 1-2 px off included).",
        ),
    ] = "standard",
    class_names: Annotated[
        str | None,
        typer.Option(
            "--class-names",
            help="Comma-separated class names, one per class "
            "(default: street-scene names, then class_19, class_20, ...).",
            show_default=False,
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Write into a non-empty OUT, replacing an earlier dataset there."
        ),
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar, no summary.")
    ] = False,
) -> None:
    """Generate a synthetic dataset with injected annotation errors (for demos, tests, benchmarks).

    OUT gets labels (noisy), pred_probs, images, true_labels, is_corrupted, synth.json.

    --layout folder writes one file per image: labels/ID.png, pred_probs/ID.npy, images/ID.png.

    Examples:

        segaudit synth data/synthetic --images 60 --height 512 --width 1024 --classes 19 --seed 0

        segaudit synth data/small --images 8 --height 96 --width 128 --classes 8 --seed 1 \\
            --format zarr

        segaudit synth data/folder --images 8 --sizes 96x128,80x112 --classes 8 --seed 0 \\
            --layout folder
    """
    from segaudit.synth import generate

    names = None if class_names is None else class_names.split(",")
    report = generate(
        out,
        images=images,
        height=height,
        width=width,
        classes=classes,
        seed=seed,
        dtype=dtype,
        fmt=fmt,
        layout=layout,
        sizes=sizes,
        corrupt_fraction=corrupt_fraction,
        class_names=names,
        difficulty=difficulty,
        force=force,
        progress=make_progress(quiet),
    )
    if not quiet:
        console.print(_summary(report, out), highlight=False, markup=False)


def _summary(report: dict[str, Any], out: Path) -> str:
    """One line: how many images of which sizes and classes, how many corrupted, where."""
    parameters = report["parameters"]
    sizes = parameters.get("sizes") or [[parameters["height"], parameters["width"]]]
    shown = " or ".join(f"{h}×{w}" for h, w in sizes)
    corrupted = len(report["corrupted_images"])
    return (
        f"Wrote {parameters['images']} images ({shown}, {parameters['classes']} classes, "
        f"{corrupted} with annotation errors) to {out}."
    )
