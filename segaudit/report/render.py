"""Pictures a reviewer looks at: issue panels, the class legend and the swap heat map.

Panels are built pixel by pixel with numpy and Pillow, so every colour is
exact: class colours from :func:`segaudit.report.colors.distinct_colors`, issues in
pure red, ignored pixels in neutral grey and never red. Each page shows, side
by side and at native resolution (or scaled to ``max_width``):

1. the photo, desaturated to 30% so that red can only mean an issue, with
   issue pixels overlaid in red at 60% opacity (only when photos exist);
2. the given labels (ignored pixels grey);
3. the predicted labels;
4. the issues alone, red on white.

When scaled down, label panels take the nearest pixel (colours stay exact) and
the issue mask is max-pooled, so a lone issue pixel never disappears.
Matplotlib (legend, heat map) is imported lazily, without pyplot, on the Agg
canvas: nothing ever opens a window.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import html
import os
import re
import shutil
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from segaudit.errors import (
    InvalidInputError,
    RunDirectoryError,
    SegauditError,
)
from segaudit.progress import NullProgress, Progress
from segaudit.report.colors import IGNORE_GREY, ISSUE_RED, NEUTRAL_WHITE, distinct_colors
from segaudit.report.photos import run_photos
from segaudit.report.swaps import (
    DEFAULT_TOP,
    ArgmaxView,
    IssueTally,
    atomic_output,
    atomic_outputs,
    check_array,
    check_filters,
    check_same_run,
    check_top,
    default_names,
    image_batches,
    keep_mask,
    run_swaps,
    tally_issues,
    write_failure,
    write_swap_rows,
    writing_into_run,
)
from segaudit.runs.rundir import pid_alive
from segaudit.safetext import from_csv_cell, printable

OVERLAY_ALPHA = 0.6
PHOTO_SATURATION = 0.3
MARGIN = 10
GAP = 8
PAGE_BACKGROUND = (236, 236, 236)
TEXT_COLOUR = (20, 20, 20)
FRAME_COLOUR = (150, 150, 150)
MARKER = ".segaudit-render"
HEATMAP_MAX_CLASSES = 30
NAME_LIMIT = 60
"""Class names longer than this are shortened in the legend (the CSV keeps them whole)."""
TICK_NAME_LIMIT = 30
"""... and longer than this on the heat map's axes, where they share the figure's width."""
DEFAULT_REGIONS = 5
"""Issue regions boxed on each page of a run with ``regions.csv``."""
RENDER_ENTRY = re.compile(
    rf"{re.escape(MARKER)}|index\.html|legend\.png|rank\d+_image\d+(_[A-Za-z0-9_-]+)?\.png"
)
"""Every name :func:`write_pages` writes into its folder; nothing else may be replaced."""


@dataclass
class PageInfo:
    """What one page shows: an image and its numbers."""

    rank: int
    image: int
    image_id: str
    issue_pixels: int
    pixels: int
    score: float | None = None
    filename: str = ""

    @property
    def header(self) -> str:
        """The line above the panels."""
        parts = [f"#{self.rank}   image {self.image}"]
        if self.image_id != str(self.image):
            parts[0] += f" ({printable(self.image_id)})"
        fraction = self.issue_pixels / max(1, self.pixels)
        parts.append(f"{self.issue_pixels:,} issue pixels ({fraction:.2%})")
        if self.score is not None:
            parts.append(f"score {self.score:.4f}")
        return "   |   ".join(parts)


@dataclass
class Sources:
    """Where a page's pixels come from; every array is indexed by image."""

    issues: Any
    labels: Any | None
    predicted: Any | None
    photos: Any | None
    num_classes: int
    ignore_index: int | None = None
    classes: Sequence[int] = ()
    exclude: Sequence[int] = ()
    regions: Any | None = None
    """The regions to box on each page (:class:`region_pictures.PageRegions`), if any."""


@dataclass
class RenderResult:
    """Files written by :func:`render_run` or :func:`display_issues`."""

    out: Path
    pages: list[PageInfo] = field(default_factory=list)
    legend: Path | None = None
    index: Path | None = None

    @property
    def paths(self) -> list[Path]:
        return [self.out / page.filename for page in self.pages]


# --- pixels -------------------------------------------------------------------------------


def label_pixels(
    labels: np.ndarray, colors: np.ndarray, ignore_index: int | None = None
) -> np.ndarray:
    """Class colours for a label map; ignored or out-of-range labels in neutral grey."""
    labels = np.asarray(labels)
    valid = (labels >= 0) & (labels < len(colors))
    if ignore_index is not None:
        valid &= labels != ignore_index
    out = np.empty((*labels.shape, 3), dtype=np.uint8)
    out[...] = IGNORE_GREY
    out[valid] = colors[labels[valid].astype(np.intp)]
    return out


def issue_pixels(mask: np.ndarray) -> np.ndarray:
    """Issues in red on a white background."""
    out = np.empty((*mask.shape, 3), dtype=np.uint8)
    out[...] = NEUTRAL_WHITE
    out[mask] = ISSUE_RED
    return out


def overlay_pixels(photo: np.ndarray, mask: np.ndarray, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """The photo, mostly desaturated so red stands out, with issue pixels blended towards red."""
    photo = np.asarray(photo, dtype=np.float32)
    luminance = photo @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    out = photo * PHOTO_SATURATION + luminance[..., None] * (1.0 - PHOTO_SATURATION)
    out[mask] = out[mask] * (1.0 - alpha) + np.asarray(ISSUE_RED, np.float32) * alpha
    return np.round(out).astype(np.uint8)


def nearest(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resample the first two axes to ``size`` by taking each target pixel's centre source pixel."""
    height, width = array.shape[:2]
    rows = ((np.arange(size[0]) + 0.5) * height / size[0]).astype(np.intp)
    cols = ((np.arange(size[1]) + 0.5) * width / size[1]).astype(np.intp)
    return array[rows[:, None], cols[None, :]]


def pooled_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resample a mask; when shrinking, a target pixel is set if any source pixel under it is."""
    height, width = mask.shape
    if size[0] >= height and size[1] >= width:
        return nearest(mask, size)
    rows, cols = np.nonzero(mask)
    out = np.zeros(size, dtype=bool)
    out[rows * size[0] // height, cols * size[1] // width] = True
    return out


def panel_size(
    height: int, width: int, panels: int, max_width: int | None, zoom: int
) -> tuple[int, int]:
    """Panel size after zooming and fitting ``panels`` panels into ``max_width``."""
    height, width = height * zoom, width * zoom
    if max_width is None:
        return height, width
    room = max_width - 2 * MARGIN - (panels - 1) * GAP
    scale = min(1.0, room / (panels * width))
    return max(1, int(height * scale)), max(1, int(width * scale))


# --- pages --------------------------------------------------------------------------------


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow without FreeType: fixed bitmap font
        return ImageFont.load_default()


def _text_width(font: Any, text: str) -> int:
    left, _, right, _ = font.getbbox(text)
    return int(right - left)


def _fit(font: Any, text: str, width: int) -> str:
    """``text``, shortened with an ellipsis until it is at most ``width`` pixels wide."""
    if _text_width(font, text) <= width:
        return text
    fits, too_long = 0, min(len(text), max(1, width // 2)) + 1  # no glyph is under 2 pixels
    while too_long - fits > 1:  # bisect the longest prefix that fits with the ellipsis
        middle = (fits + too_long) // 2
        if _text_width(font, text[:middle] + "…") <= width:
            fits = middle
        else:
            too_long = middle
    return text[:fits] + "…"


def shown_name(name: Any, limit: int = NAME_LIMIT) -> str:
    """A class name as pictures show it: control characters escaped, at most ``limit`` long."""
    text = printable(name)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def compose(
    panels: Sequence[tuple[str, np.ndarray]], header: str, *, max_width: int | None = None
) -> tuple[Image.Image, list[tuple[int, int, int, int]]]:
    """Lay titled panels side by side under a header line.

    Returns the page and each panel's box (left, top, right, bottom), so callers
    and tests can find the exact pixels of a panel.
    """
    header_font, title_font = _font(15), _font(13)
    header_height = header_font.getbbox("Ag|")[3] + 2
    title_height = title_font.getbbox("Ag|")[3] + 2
    widths = [max(pixels.shape[1], _text_width(title_font, title)) for title, pixels in panels]
    gaps = 2 * MARGIN + GAP * (len(panels) - 1)
    if max_width is not None and gaps + sum(widths) > max_width:
        widths = [pixels.shape[1] for _, pixels in panels]  # titles give way, shortened
    page_width = max(gaps + sum(widths), 2 * MARGIN + _text_width(header_font, header))
    if max_width is not None:
        page_width = max(gaps + sum(widths), min(page_width, max_width))
    panel_height = max(pixels.shape[0] for _, pixels in panels)
    top = MARGIN + header_height + 6 + title_height + 4
    page = Image.new("RGB", (page_width, top + panel_height + MARGIN), PAGE_BACKGROUND)
    draw = ImageDraw.Draw(page)
    draw.text(
        (MARGIN, MARGIN),
        _fit(header_font, header, page_width - 2 * MARGIN),
        fill=TEXT_COLOUR,
        font=header_font,
    )
    boxes = []
    x = MARGIN
    for (title, pixels), width in zip(panels, widths, strict=True):
        left = x + (width - pixels.shape[1]) // 2
        draw.text(
            (x, MARGIN + header_height + 6),
            _fit(title_font, title, width),
            fill=TEXT_COLOUR,
            font=title_font,
        )
        page.paste(Image.fromarray(np.ascontiguousarray(pixels), "RGB"), (left, top))
        frame = (left - 1, top - 1, left + pixels.shape[1], top + pixels.shape[0])
        draw.rectangle(frame, outline=FRAME_COLOUR)  # drawn outside the panel's pixels
        boxes.append((left, top, left + pixels.shape[1], top + pixels.shape[0]))
        x += width + GAP
    return page, boxes


def image_arrays(sources: Sources, index: int) -> tuple[np.ndarray, Any, Any, Any]:
    """Image ``index``'s filtered issue mask, given and predicted labels and photo (or None)."""
    given = np.asarray(sources.labels[index]) if sources.labels is not None else None
    predicted = np.asarray(sources.predicted[index]) if sources.predicted is not None else None
    mask = keep_mask(
        np.asarray(sources.issues[index], dtype=bool),
        given,
        predicted,
        sources.num_classes,
        classes=sources.classes,
        exclude=sources.exclude,
        ignore_index=sources.ignore_index,
    )
    photo = sources.photos[index] if sources.photos is not None else None
    return mask, given, predicted, photo


def build_panels(
    sources: Sources,
    index: int,
    colors: np.ndarray,
    *,
    max_width: int | None = None,
    zoom: int = 1,
    arrays: tuple[np.ndarray, Any, Any, Any] | None = None,
) -> list[tuple[str, np.ndarray]]:
    """The titled panels of image ``index``: photo+issues, given, predicted, issues."""
    mask, given, predicted, photo_pixels = arrays or image_arrays(sources, index)
    count = 1 + (photo_pixels is not None) + (given is not None) + (predicted is not None)
    size = panel_size(*mask.shape, count, max_width, zoom)
    shown = pooled_mask(mask, size)
    panels = []
    if photo_pixels is not None:
        photo = Image.fromarray(np.ascontiguousarray(photo_pixels), "RGB")
        shrinking = size[0] < mask.shape[0]
        method = Image.Resampling.BOX if shrinking else Image.Resampling.NEAREST
        photo_pixels = np.asarray(photo.resize((size[1], size[0]), method))
        panels.append(("Photo + issues (red)", overlay_pixels(photo_pixels, shown)))
    if given is not None:
        pixels = label_pixels(given, colors, sources.ignore_index)
        panels.append(("Given labels", nearest(pixels, size)))
    if predicted is not None:
        panels.append(("Predicted labels", nearest(label_pixels(predicted, colors), size)))
    panels.append(("Issues (red)", issue_pixels(shown)))
    return panels


def worst_images(per_image: np.ndarray, top: int) -> np.ndarray:
    """Indices of the ``top`` images with the most issue pixels (ties by index), none empty."""
    order = np.lexsort((np.arange(len(per_image)), -per_image))
    return order[per_image[order] > 0][:top]


def safe_name(text: str, limit: int = 40) -> str:
    """``text`` reduced to characters safe in a file name (no separators, no leading dot)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")[:limit]


def page_filename(rank: int, image: int, image_id: str, top: int, num_images: int) -> str:
    """``rank003_image00017[_id].png``: zero-padded so names sort by rank."""
    name = f"rank{rank:0{max(3, len(str(top)))}d}_image{image:0{max(5, len(str(num_images - 1)))}d}"
    suffix = safe_name(image_id) if image_id != str(image) else ""
    return f"{name}_{suffix}.png" if suffix else f"{name}.png"


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


# --- the output directory ------------------------------------------------------------------


def check_render_folder(out: Path) -> None:
    """Refuse an ``out`` that is not render's to replace.

    ``out`` may be missing, empty, or a previous render: it holds render's marker and
    nothing but the files render writes (pages, legend, index). A folder holding
    anything else, marker or not, is refused, so segaudit never deletes files it did
    not write.
    """
    try:
        if out.is_symlink() or (out.exists() and not out.is_dir()):
            raise RunDirectoryError(
                f"{printable(out)} exists and is not a directory; choose another --out."
            )
        entries = list(os.scandir(out)) if out.is_dir() else []
        foreign = sorted(
            entry.name
            for entry in entries
            if not RENDER_ENTRY.fullmatch(entry.name) or not entry.is_file(follow_symlinks=False)
        )
    except OSError as error:
        raise write_failure(out, error, out) from None
    if entries and (foreign or not any(entry.name == MARKER for entry in entries)):
        held = f" (it holds '{printable(foreign[0])}')" if foreign else ""
        raise RunDirectoryError(
            f"{printable(out)} exists and is not a segaudit render{held}; choose another "
            "--out or empty it (segaudit never deletes files it did not write)."
        )


# ``.OUT.segaudit-tmp-PPPPPPPPNNNNNNNN``: the folder being written (``old``: the previous
# render being replaced) beside OUT; P is the writer's pid in hex, N a random nonce.
_STAGE = re.compile(
    r"\.(?P<name>.*)\.segaudit-(?P<kind>tmp|old)-(?P<pid>[0-9a-f]{8})[0-9a-f]{8}", re.DOTALL
)


def _stage_name(out: Path, kind: str) -> Path:
    nonce = uuid.uuid4().hex[:8]
    return out.parent / f".{out.name}.segaudit-{kind}-{os.getpid():08x}{nonce}"


def clean_stale_stages(out: Path) -> None:
    """Remove what killed renders into ``out`` left beside it; bring back a lost previous one."""
    stale: list[tuple[Path, str]] = []
    with contextlib.suppress(OSError), os.scandir(out.parent) as entries:
        stale = [
            (Path(entry.path), match["kind"])
            for entry in entries
            if (match := _STAGE.fullmatch(entry.name))
            and match["name"] == out.name
            and not pid_alive(int(match["pid"], 16))
        ]
    for path, kind in sorted(stale, key=lambda item: item[1] == "tmp"):
        if kind == "old" and not os.path.lexists(out) and (path / MARKER).is_file():
            with contextlib.suppress(OSError):  # killed between the two renames
                os.rename(path, out)  # the previous render comes back
            continue
        shutil.rmtree(path, ignore_errors=True)


def _replace(stage: Path, out: Path) -> None:
    """Put the finished ``stage`` in place of ``out``; on failure ``out`` stays as it was."""
    if not os.path.lexists(out):
        os.rename(stage, out)
        return
    old = _stage_name(out, "old")
    os.rename(out, old)
    try:
        os.rename(stage, out)
    except BaseException:
        os.rename(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def staging_directory(
    out: Path, *, before_publish: Callable[[], None] | None = None
) -> Iterator[Path]:
    """Yield a fresh directory that replaces ``out`` as a whole on success.

    ``out`` must pass :func:`check_render_folder`, before and again just before it is
    replaced. ``before_publish`` runs last of all, to refuse when what was rendered is
    no longer current. A failed write (a full disk, a read-only folder) is one sentence
    and leaves ``out`` as it was.
    """
    out = Path(os.path.abspath(out))  # "." has no name to stage beside
    check_render_folder(out)
    stage = _stage_name(out, "tmp")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        clean_stale_stages(out)
        stage.mkdir()
        yield stage
        (stage / MARKER).write_text("written by segaudit render; safe to replace\n")
        check_render_folder(out)
        if before_publish is not None:
            before_publish()
        _replace(stage, out)
    except SegauditError:
        raise
    except OSError as error:
        where = str(error.filename or out).replace(str(stage), str(out))
        raise write_failure(where, error, out) from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def write_index(
    path: Path, pages: Sequence[PageInfo], *, title: str, notes: Sequence[str] = (), legend: bool
) -> None:
    """A static HTML page with every panel in rank order; relative links, escaped text."""
    text = index_html(pages, title=title, notes=notes, legend=legend)
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def index_html(
    pages: Sequence[PageInfo], *, title: str, notes: Sequence[str] = (), legend: bool
) -> str:
    """The text of :func:`write_index`."""
    esc = html.escape
    rows = []
    for page in pages:
        score = "" if page.score is None else f"{page.score:.4f}"
        anchor = f"rank{page.rank}"
        rows.append(
            f'<tr><td><a href="#{anchor}">{page.rank}</a></td><td>{page.image}</td>'
            f"<td>{esc(page.image_id)}</td><td>{page.issue_pixels:,}</td><td>{score}</td></tr>"
        )
    sections = [
        f'<section id="rank{page.rank}"><h2>{esc(page.header)}</h2>'
        f'<img src="{quote(page.filename)}" alt="{esc(page.header)}"></section>'
        for page in pages
    ]
    body = [f"<h1>{esc(title)}</h1>"]
    body += [f"<p>{esc(note)}</p>" for note in notes]
    if legend:
        body.append('<p><img src="legend.png" alt="class colours"></p>')
    if pages:
        body.append(
            "<table><tr><th>rank</th><th>image</th><th>id</th><th>issue pixels</th>"
            "<th>score</th></tr>" + "".join(rows) + "</table>"
        )
    else:
        body.append("<p>No image has issue pixels after the filters.</p>")
    body += sections
    style = (
        "body{font-family:sans-serif;margin:1em;background:#f4f4f4}"
        "img{max-width:100%;image-rendering:pixelated}"
        "table{border-collapse:collapse}td,th{padding:2px 8px;border-bottom:1px solid #ccc}"
        "section{margin:1.5em 0}h2{font-size:1em}"
    )
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{style}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def write_pages(
    out: Path,
    sources: Sources,
    pages: Sequence[PageInfo],
    names: Sequence[str],
    *,
    title: str,
    notes: Sequence[str] = (),
    max_width: int | None = None,
    zoom: int = 1,
    progress: Progress | None = None,
    before_publish: Callable[[], None] | None = None,
) -> RenderResult:
    """Render every page, the legend and ``index.html`` into ``out``, replacing it whole.

    The folder is written whole and then swapped in (see :func:`staging_directory`),
    so its files are written directly, without temporary files of their own.
    """
    progress = progress or NullProgress()
    colors = distinct_colors(sources.num_classes)
    progress.start("Rendering pages", len(pages))
    with staging_directory(out, before_publish=before_publish) as stage:
        for page in pages:
            arrays = image_arrays(sources, page.image)
            panels = build_panels(
                sources, page.image, colors, max_width=max_width, zoom=zoom, arrays=arrays
            )
            image, boxes = compose(panels, page.header, max_width=max_width)
            if sources.regions is not None:
                drawn = (page.image, arrays, colors, sources.ignore_index)
                image = sources.regions.decorate(image, panels, boxes, *drawn, max_width=max_width)
            image.save(stage / page.filename, format="PNG")
            progress.advance()
        legend = sources.labels is not None or sources.predicted is not None
        if legend:
            pixels, _ = legend_pixels(colors, names, ignore_index=sources.ignore_index)
            _save_png(pixels, stage / "legend.png")
        text = index_html(pages, title=title, notes=notes, legend=legend)
        (stage / "index.html").write_text(text, encoding="utf-8")
    progress.finish()
    return RenderResult(
        out, list(pages), out / "legend.png" if legend else None, out / "index.html"
    )


# --- run directories -------------------------------------------------------------------------


def read_image_scores(run_path: Path) -> dict[int, tuple[str, float | None]]:
    """Image id and softmin score per image index, from the run's ``image_scores.csv``."""
    path = run_path / "image_scores.csv"
    if not path.is_file():
        return {}
    scores: dict[int, tuple[str, float | None]] = {}
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            score = row.get("softmin_score") or row.get("score") or ""
            image_id = from_csv_cell(row.get("id") or row["image"])
            scores[int(row["image"])] = (image_id, float(score) if score else None)
    return scores


def filter_note(names: Sequence[str], classes: Sequence[int], exclude: Sequence[int]) -> str:
    """A human sentence for the active class filters ('' when none)."""
    parts = []
    if classes:
        parts.append("only issues involving " + ", ".join(names[i] for i in classes))
    if exclude:
        parts.append("excluding " + ", ".join(names[i] for i in exclude))
    return "; ".join(parts)


def _inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies under it (links resolved)."""
    path, folder = Path(os.path.realpath(path)), Path(os.path.realpath(folder))
    return path == folder or folder in path.parents


def render_run(
    run: Any,
    *,
    top: int = DEFAULT_TOP,
    classes: Sequence[int] = (),
    exclude: Sequence[int] = (),
    images: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    max_width: int | None = None,
    zoom: int = 1,
    regions: int = DEFAULT_REGIONS,
    progress: Progress | None = None,
) -> RenderResult:
    """Render the ``top`` images of a run with the most issue pixels after the filters.

    Pages go to ``out`` (default RUN/render). Writing inside the run holds its writer
    lock from the first read to the last write, as a scan does, so the pages always
    come from the run they are written into; writing elsewhere only reads the run and
    refuses to publish pages of a run replaced meanwhile. The photos are the ``images``
    given, or those the run recorded, which must still be the same file. Each page
    boxes its image's ``regions`` worst issue regions (from ``regions.csv``, if any).
    """
    from segaudit.report.region_pictures import run_regions

    if top < 1:
        raise InvalidInputError(f"top must be at least 1; got {top}.")
    if zoom < 1:
        raise InvalidInputError(f"zoom must be at least 1; got {zoom}.")
    if max_width is not None and max_width < 64:
        raise InvalidInputError(f"max width must be at least 64 pixels; got {max_width}.")
    if regions < 0:
        raise InvalidInputError(f"regions must be at least 0; got {regions}.")
    check_filters(run.num_classes, classes, exclude)
    target = Path(out) if out is not None else run.path / "render"
    with contextlib.ExitStack() as stack:
        before_publish = None
        if _inside(target, run.path):
            stack.enter_context(writing_into_run(run, "render", elsewhere="--out DIR"))
        else:
            before_publish = functools.partial(check_same_run, run, "render")
        sources, tally = _render_sources(run, classes, exclude, images, progress)
        sources.regions = run_regions(run, regions, classes, exclude)
        pages = _pages(run, tally, top)
        note = filter_note(run.class_names, classes, exclude)
        affected = np.count_nonzero(tally.per_image)
        notes = [f"run: {printable(run.path)}"]
        notes += [f"{tally.total:,} issue pixels in {affected} images"]
        notes += [f"filters: {printable(note)}"] if note else []
        return write_pages(
            target,
            sources,
            pages,
            run.class_names,
            title=f"segaudit: the {len(pages)} images with the most issue pixels",
            notes=notes,
            max_width=max_width,
            zoom=zoom,
            progress=progress,
            before_publish=before_publish,
        )


class RunArray:
    """One of a run's per-pixel arrays, indexed by image (each at its own size)."""

    def __init__(self, run: Any, name: str) -> None:
        self.run, self.name = run, name

    def __getitem__(self, index: int) -> np.ndarray:
        return self.run.read(self.name, index)


def _render_sources(
    run: Any,
    classes: Sequence[int],
    exclude: Sequence[int],
    images: str | os.PathLike[str] | None,
    progress: Progress | None,
) -> tuple[Sources, IssueTally]:
    """The arrays a run's pages are drawn from, and the issue counts that rank them."""
    sources = Sources(
        RunArray(run, "issues"),
        RunArray(run, "labels"),
        RunArray(run, "pred_labels"),
        run_photos(run, images),
        run.num_classes,
        run.ignore_index,
        classes,
        exclude,
    )
    tally = run_swaps(run, classes=classes, exclude=exclude, progress=progress)
    return sources, tally


def _pages(run: Any, tally: IssueTally, top: int) -> list[PageInfo]:
    """The pages for the ``top`` images with the most (filtered) issue pixels, ranked."""
    scores = read_image_scores(run.path)
    pages = []
    for rank, image in enumerate(worst_images(tally.per_image, top).tolist(), start=1):
        image_id, score = scores.get(image, (run.images.ids[image], None))
        pixels = run.images.pixels(image)
        page = PageInfo(rank, image, image_id, int(tally.per_image[image]), pixels, score)
        page.filename = page_filename(rank, image, image_id, top, len(tally.per_image))
        pages.append(page)
    return pages


# --- the swap table of a run ------------------------------------------------------------------


@dataclass
class SwapsResult:
    """What :func:`write_run_swaps` counted and wrote."""

    tally: IssueTally
    rows: list[dict[str, Any]]
    note: str
    csv: Path
    png: Path


def write_run_swaps(
    run: Any,
    *,
    classes: Sequence[int] = (),
    exclude: Sequence[int] = (),
    progress: Progress | None = None,
) -> SwapsResult:
    """Count a run's swaps and write RUN/swaps.csv and RUN/swaps.png, together or not at all.

    The run's writer lock is held from the first read to the last write, so the table
    is always computed from the run it is written into (a scan replacing the run waits
    for nobody: it is refused, and so is this while a scan runs).
    """
    names = run.class_names
    csv_path, png_path = run.path / "swaps.csv", run.path / "swaps.png"
    with writing_into_run(run, "swaps"):
        tally = run_swaps(run, classes=classes, exclude=exclude, progress=progress)
        rows = tally.rows(names)
        note = filter_note(names, classes, exclude)
        heatmap, _ = heatmap_pixels(tally.pixels, names, note=note)
        with atomic_outputs(csv_path, png_path) as (csv_tmp, png_tmp):
            write_swap_rows(csv_tmp, rows)
            _save_png(heatmap, png_tmp)
    return SwapsResult(tally, rows, note, csv_path, png_path)


# --- reference-compatible API ----------------------------------------------------------------


def _count_classes(labels: Any, ignore_index: int | None) -> int:
    """1 + the largest label other than the ignore value, streaming."""
    largest = -1
    per_image = int(np.prod(labels.shape[1:])) * np.dtype(labels.dtype).itemsize
    for batch in image_batches(int(labels.shape[0]), per_image):
        values = np.asarray(labels[batch])
        if ignore_index is not None:
            values = values[values != ignore_index]
        if values.size:
            largest = max(largest, int(values.max()))
    return largest + 1


def display_issues(
    issues: Any,
    *,
    labels: Any | None = None,
    pred_probs: Any | None = None,
    class_names: Sequence[str] | None = None,
    exclude: Sequence[int] | None = None,
    top: int | None = None,
    out: str | os.PathLike[str] | None = None,
    images: Any | None = None,
    ignore_index: int | None = None,
    max_width: int | None = None,
    zoom: int = 1,
) -> list[Image.Image] | list[Path]:
    """Panels for the images with the most issue pixels (reference-compatible).

    With ``out`` the pages, ``legend.png`` and ``index.html`` are written there and
    their page paths returned; without it the pages are returned as PIL images.
    Differences from the reference: ``exclude`` drops issue pixels whose given or
    predicted class is excluded (the reference looks at the given label only) and
    images are ranked after that filter; images without issue pixels are not shown;
    ties in the issue count go to the lower image index.
    """
    shape = check_array(issues, "issues", "N, H, W")
    if labels is not None:
        check_array(labels, "labels", "N, H, W", shape)
    if pred_probs is not None:
        check_array(pred_probs, "pred_probs", "N, K, H, W", (shape[0], None, *shape[1:]))
    if images is not None:
        check_array(images, "images", "N, H, W, 3", (*shape, 3))
        if np.dtype(images.dtype) != np.uint8:
            raise InvalidInputError(f"images must be uint8 RGB; got {np.dtype(images.dtype)}.")
    check_top(top)
    exclude = tuple(exclude) if exclude is not None else ()
    if labels is None and exclude:
        raise InvalidInputError("Provide labels to allow class exclusion.")
    predicted = ArgmaxView(pred_probs) if pred_probs is not None else None
    if predicted is not None:
        num_classes = predicted.num_classes
    elif class_names is not None:
        num_classes = len(class_names)
    else:
        num_classes = max(1, _count_classes(labels, ignore_index)) if labels is not None else 1
    names = default_names(num_classes, class_names)
    sources = Sources(issues, labels, predicted, images, num_classes, ignore_index, (), exclude)
    tally = tally_issues(
        issues, labels, predicted, num_classes, exclude=exclude, ignore_index=ignore_index
    )
    top = DEFAULT_TOP if top is None else top
    per_pixel = int(np.prod(issues.shape[1:]))
    pages = []
    for rank, image in enumerate(worst_images(tally.per_image, top).tolist(), start=1):
        page = PageInfo(rank, image, str(image), int(tally.per_image[image]), per_pixel)
        page.filename = page_filename(rank, image, str(image), top, len(tally.per_image))
        pages.append(page)
    if out is not None:
        title = f"segaudit: the {len(pages)} images with the most issue pixels"
        written = write_pages(
            Path(out), sources, pages, names, title=title, max_width=max_width, zoom=zoom
        )
        return written.paths
    colors = distinct_colors(num_classes)
    rendered = []
    for page in pages:
        panels = build_panels(sources, page.image, colors, max_width=max_width, zoom=zoom)
        rendered.append(compose(panels, page.header, max_width=max_width)[0])
    return rendered
