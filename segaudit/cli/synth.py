"""`segaudit synth`: write a synthetic dataset with known annotation errors."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from segaudit.cli._common import console, make_progress, user_errors


@user_errors
def synth(
    ctx: typer.Context,
    out: Annotated[
        Path,
        typer.Argument(
            help="Folder to write the dataset into (created; must be empty).", show_default=False
        ),
    ],
    images: Annotated[
        int,
        typer.Option(
            "--images", help="Number of images N (volumes with --volumes).", show_default=False
        ),
    ],
    classes: Annotated[
        int,
        typer.Option(
            "--classes",
            help="Number of classes K (2 to 65535; 2 to 255 with --volumes).",
            show_default=False,
        ),
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
            "(default: street-scene names, then class_19, class_20, ...; with --volumes: "
            "background, then organ names).",
            show_default=False,
        ),
    ] = None,
    volumes: Annotated[
        bool,
        typer.Option(
            "--volumes",
            help="Write 3-D volumes in nnU-Net's raw layout instead: dataset.json, "
            "imagesTr/, labelsTr/ (NIfTI), predictions/ (.npz), true_labels/, is_corrupted.csv, "
            "errors.json (needs nibabel, segaudit's medical extra).",
        ),
    ] = False,
    shape: Annotated[
        list[str] | None,
        typer.Option(
            "--shape",
            metavar="ZxYxX",
            help="Volume shape(s) for --volumes, dealt out to the volumes by the seed "
            "(repeat it or comma-separate; default 32x64x64).",
            show_default=False,
        ),
    ] = None,
    void_fraction: Annotated[
        float | None,
        typer.Option(
            "--void-fraction",
            help="With --volumes: share of each volume's slices labelled ignore "
            "(nnU-Net's ignore label, K; default 0).",
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

        segaudit synth data/ct --volumes --images 20 --shape 128x256x256 --classes 8 \\
            --seed 0 --dtype float16
    """
    from segaudit.synth.options import SynthOptionError

    names = None if class_names is None else class_names.split(",")
    if volumes:
        _check_volume_flags(ctx)
        _synth_volumes(out, images, classes, seed, shape, dtype, corrupt_fraction,
                       void_fraction, names, force, quiet)  # fmt: skip
        return
    for flag, given in (("--shape", shape), ("--void-fraction", void_fraction)):
        if given is not None:
            raise SynthOptionError(f"{flag} applies to --volumes; give image sizes with --sizes.")
    from segaudit.synth import generate

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


_NOT_FOR_VOLUMES = {
    "height": "--height",
    "width": "--width",
    "sizes": "--sizes",
    "fmt": "--format",
    "layout": "--layout",
    "difficulty": "--difficulty",
}


def _check_volume_flags(ctx: typer.Context) -> None:
    """--volumes has its own layout and shapes: the 2-D options are refused, not ignored."""
    from segaudit.synth.options import SynthOptionError

    for name, flag in _NOT_FOR_VOLUMES.items():
        source = ctx.get_parameter_source(name)
        if source is not None and source.name != "DEFAULT":  # given on the command line
            raise SynthOptionError(
                f"{flag} does not apply to --volumes, which writes nnU-Net's layout; "
                "give volume shapes with --shape."
            )


def _synth_volumes(
    out: Path,
    images: int,
    classes: int,
    seed: int,
    shape: list[str] | None,
    dtype: str,
    corrupt_fraction: float,
    void_fraction: float | None,
    names: list[str] | None,
    force: bool,
    quiet: bool,
) -> None:
    from segaudit.synth.volumes import generate_volumes

    report = generate_volumes(
        out,
        volumes=images,
        classes=classes,
        seed=seed,
        shapes=shape,
        dtype=dtype,
        corrupt_fraction=corrupt_fraction,
        void_fraction=0.0 if void_fraction is None else void_fraction,
        class_names=names,
        force=force,
        progress=make_progress(quiet),
    )
    if not quiet:
        parameters = report["parameters"]
        shown = " or ".join("×".join(str(n) for n in s) for s in parameters["shapes"])
        console.print(
            f"Wrote {parameters['volumes']} volumes ({shown}, {parameters['classes']} classes, "
            f"{len(report['corrupted_cases'])} with annotation errors) to {out}.",
            highlight=False,
            markup=False,
        )


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
