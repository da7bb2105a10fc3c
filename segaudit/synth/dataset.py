""":func:`generate`: check the options, choose the corrupted images, write one layout."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from segaudit.progress import NullProgress, Progress
from segaudit.synth.folder import FolderLayout
from segaudit.synth.options import Size, check_options
from segaudit.synth.output import new_report, prepare_out, removed_on_failure, write_small_files
from segaudit.synth.stacked import StackedLayout
from segaudit.synth.world import World, choose_corrupted


def generate(
    out: str | Path,
    *,
    images: int,
    height: int | None = None,
    width: int | None = None,
    classes: int,
    seed: int,
    dtype: str = "float32",
    fmt: str = "npy",
    layout: str = "stacked",
    sizes: str | Sequence[Size] | None = None,
    corrupt_fraction: float = 0.3,
    class_names: Sequence[str] | None = None,
    difficulty: str = "standard",
    force: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Write a synthetic dataset with injected annotation errors into ``out``.

    The stacked layout (the default) gives ``out`` the arrays ``labels`` (noisy, what
    annotators drew), ``pred_probs`` (N, K, H, W) of ``dtype``, ``images`` (N, H, W, 3)
    uint8, ``true_labels`` and ``is_corrupted`` (N,) as ``.npy`` files or ``.zarr``
    stores. ``layout="folder"`` writes one file per image instead (see
    :mod:`segaudit.synth.folder`), in any of ``sizes`` (``"96x128,80x112"`` or pairs;
    instead of ``height`` and ``width``). Both add ``classes.txt`` and ``synth.json``
    (written last).

    Exactly ``round(corrupt_fraction * images)`` images get annotation errors; for each,
    ``synth.json`` lists the events: kind, class, changed pixels and the affected box
    ``[y0, x0, y1, x1]`` (end-exclusive). ``difficulty="hard"`` makes a model about 98%
    accurate with more confident mistakes of its own, and 1-3 small errors per corrupted
    image (small objects dropped or swapped, outlines 1-2 px off, small spurious blobs).
    Every layout also writes an error map per image
    (``errors``: (N, H, W) uint16 stacked, ``errors/ID.png`` 16-bit in a folder): 0 for an
    untouched pixel, e for a pixel the image's e-th event changed (the later event where
    two overlap). Returns what ``synth.json`` holds.
    """
    progress = progress or NullProgress()
    options = check_options(
        images=images,
        height=height,
        width=width,
        sizes=sizes,
        classes=classes,
        seed=seed,
        dtype=dtype,
        fmt=fmt,
        layout=layout,
        corrupt_fraction=corrupt_fraction,
        class_names=class_names,
        difficulty=difficulty,
    )
    out = Path(out)
    is_corrupted = choose_corrupted(options.seed, options.images, options.corrupt_fraction)
    world = World.build(options.seed, list(options.class_names), hard=options.difficulty == "hard")
    writer = (StackedLayout if options.layout == "stacked" else FolderLayout)(out, options)
    created = prepare_out(out, force, writer.needed_bytes())
    report = new_report(options, writer.files(), is_corrupted, writer.report_extras(is_corrupted))
    with removed_on_failure(out, created):
        writer.write(world, is_corrupted, report, progress)
        write_small_files(out, options.class_names, report)
    return report
