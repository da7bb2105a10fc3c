"""The class legend and the swap heat map, drawn with matplotlib (lazily imported,
without pyplot, on the Agg canvas: nothing ever opens a window)."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from segaudit.report.colors import IGNORE_GREY, ISSUE_RED
from segaudit.report.panels import shown_name
from segaudit.report.swaps import (
    atomic_output,
)
from segaudit.safetext import printable

HEATMAP_MAX_CLASSES = 30
TICK_NAME_LIMIT = 30
"""... and longer than this on the heat map's axes, where they share the figure's width."""


# --- legend and heat map (matplotlib) -------------------------------------------------------


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


@contextlib.contextmanager
def _missing_glyphs_allowed() -> Iterator[None]:
    """Draw characters the font lacks as boxes without a warning per character on stderr:
    a class name in a script the font does not cover is the data's, not an error."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing from", category=UserWarning)
        yield


def _figure_pixels(figure: Any, *, crop: bool = False) -> np.ndarray:
    """A drawn figure as RGB pixels on white (no alpha channel); ``crop`` trims white."""
    figure.set_facecolor("white")
    with _missing_glyphs_allowed():
        figure.canvas.draw()
    rgb = np.asarray(figure.canvas.buffer_rgba())[..., :3]
    if crop:
        rows, cols = np.nonzero((rgb != 255).any(axis=-1))
        if len(rows):
            rgb = np.pad(
                rgb[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1],
                ((12, 12), (12, 12), (0, 0)),
                constant_values=255,
            )
    return np.ascontiguousarray(rgb)


def _save_png(pixels: np.ndarray, path: Path) -> None:
    Image.fromarray(pixels).save(path, format="PNG")


def _plain_text(texts: Iterator[Any] | Sequence[Any]) -> None:
    """Draw ``texts`` exactly as written: ``$...$`` is not maths and TeX is never run."""
    for text in texts:
        text.set_parse_math(False)
        text.set_usetex(False)


def render_legend(
    colors: np.ndarray, names: Sequence[str], path: Path, *, ignore_index: int | None = None
) -> list[str]:
    """Write a legend mapping each class colour to ``id name``; return the texts drawn."""
    pixels, texts = legend_pixels(colors, names, ignore_index=ignore_index)
    with atomic_output(path) as tmp:
        _save_png(pixels, tmp)
    return texts


def legend_pixels(
    colors: np.ndarray, names: Sequence[str], *, ignore_index: int | None = None
) -> tuple[np.ndarray, list[str]]:
    """The legend picture (each class colour with ``id name``) and the texts drawn."""
    from matplotlib.patches import Patch

    entries = [
        (tuple(c / 255), f"{i}  {shown_name(name)}")
        for i, (c, name) in enumerate(zip(colors, names[: len(colors)], strict=True))
    ]
    if ignore_index is not None:
        entries.append((tuple(np.array(IGNORE_GREY) / 255), f"ignored (label {ignore_index})"))
    entries.append((tuple(np.array(ISSUE_RED) / 255), "issue pixel"))
    columns = -(-len(entries) // 25)
    rows = -(-len(entries) // columns)
    longest = max(len(text) for _, text in entries)
    figure = _figure(columns * (0.9 + 0.085 * longest), 0.7 + 0.27 * rows)
    handles = [Patch(facecolor=c, edgecolor="black", linewidth=0.5, label=t) for c, t in entries]
    legend = figure.legend(
        handles=handles,
        loc="center",
        ncol=columns,
        frameon=False,
        fontsize=10,
        title="segaudit class colours",
        title_fontsize=11,
        handlelength=2.4,
        handleheight=1.4,
    )
    _plain_text(legend.get_texts())
    return _figure_pixels(figure, crop=True), [text.get_text() for text in legend.get_texts()]


def _compact(count: int) -> str:
    if count < 1000:
        return str(count)
    if count < 1_000_000:
        return f"{count / 1000:.3g}k"
    return f"{count / 1_000_000:.3g}M"


def heatmap_classes(pixels: np.ndarray, max_classes: int = HEATMAP_MAX_CLASSES) -> np.ndarray:
    """Classes in some swap, at most the ``max_classes`` most involved, in id order."""
    involvement = pixels.sum(axis=0) + pixels.sum(axis=1)
    involved = np.flatnonzero(involvement)
    if len(involved) > max_classes:
        order = np.lexsort((involved, -involvement[involved]))
        involved = np.sort(involved[order[:max_classes]])
    return involved


def swap_heatmap(
    pixels: np.ndarray,
    names: Sequence[str],
    path: Path,
    *,
    max_classes: int = HEATMAP_MAX_CLASSES,
    note: str = "",
) -> list[str]:
    """Write a heat map of swap counts (given rows, predicted columns, log colour scale).

    Empty cells are white, the diagonal (never an issue) light grey.
    Only classes that take part in some swap are drawn; with more than
    ``max_classes`` of them, the most involved are kept and the title says so.
    Returns the class names on the axes, in order.
    """
    pixels_drawn, labels = heatmap_pixels(pixels, names, max_classes=max_classes, note=note)
    with atomic_output(path) as tmp:
        _save_png(pixels_drawn, tmp)
    return labels


def heatmap_pixels(
    pixels: np.ndarray,
    names: Sequence[str],
    *,
    max_classes: int = HEATMAP_MAX_CLASSES,
    note: str = "",
) -> tuple[np.ndarray, list[str]]:
    """The heat map of :func:`swap_heatmap` as RGB pixels, and the class names on its axes."""
    from matplotlib.colors import LogNorm

    shown = heatmap_classes(pixels, max_classes)
    involved = int(np.count_nonzero(pixels.sum(axis=0) + pixels.sum(axis=1)))
    total = int(pixels.sum())
    side = max(6.0, 2.8 + 0.3 * len(shown))
    figure = _figure(side + 1.6, side)
    axes = figure.add_subplot()
    title = f"Label swaps over {total:,} issue pixels"
    if len(shown) < involved:
        kept = int(pixels[np.ix_(shown, shown)].sum())
        title += (
            f"\nshowing the {len(shown)} most involved of {involved} classes "
            f"({kept / total:.1%} of issue pixels)"
        )
    if note:
        title += f"\n{printable(note)}"
    axes.set_title(title, fontsize=11, parse_math=False)
    if len(shown) == 0:
        axes.text(0.5, 0.5, "no issue pixels", ha="center", va="center", fontsize=14)
        axes.set_axis_off()
        labels: list[str] = []
    else:
        matrix = pixels[np.ix_(shown, shown)].astype(float)
        diagonal = np.zeros((len(shown), len(shown), 4))
        diagonal[np.diag_indices(len(shown))] = (0.85, 0.85, 0.85, 1.0)  # given == predicted
        axes.imshow(diagonal, interpolation="nearest")
        image = axes.imshow(
            np.ma.masked_equal(matrix, 0),
            cmap=_viridis_white(),
            norm=LogNorm(vmin=1, vmax=max(2.0, matrix.max())),
            interpolation="nearest",
        )
        labels = [shown_name(names[i], TICK_NAME_LIMIT) for i in shown]
        fontsize = 9 if len(shown) <= 20 else 7
        axes.set_xticks(range(len(shown)), labels, rotation=90, fontsize=fontsize)
        axes.set_yticks(range(len(shown)), labels, fontsize=fontsize)
        _plain_text([*axes.get_xticklabels(), *axes.get_yticklabels()])
        axes.set_xticks(np.arange(len(shown) + 1) - 0.5, minor=True)
        axes.set_yticks(np.arange(len(shown) + 1) - 0.5, minor=True)
        axes.grid(which="minor", color="#e4e4e4", linewidth=0.5)
        axes.tick_params(which="minor", length=0)
        axes.set_xlabel("predicted class (model)")
        axes.set_ylabel("given class (annotation)")
        if len(shown) <= 20:
            _annotate(axes, matrix, image.norm)
        bar = figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
        bar.set_label("issue pixels (log scale)")
    with _missing_glyphs_allowed():
        figure.tight_layout()
    return _figure_pixels(figure), labels


def _viridis_white() -> Any:
    from matplotlib import colormaps

    return colormaps["viridis"].with_extremes(bad=(1.0, 1.0, 1.0, 0.0))


def _annotate(axes: Any, matrix: np.ndarray, norm: Any) -> None:
    """Write each non-zero count in its cell, dark on light cells and light on dark ones."""
    for row, col in zip(*np.nonzero(matrix), strict=True):
        value = matrix[row, col]
        colour = "black" if norm(value) > 0.6 else "white"
        text = _compact(int(value))
        axes.text(col, row, text, ha="center", va="center", fontsize=7, color=colour)
