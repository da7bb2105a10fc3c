"""The panels of a review page: an image's photo with its issues, given labels,
predicted labels and issues alone, and the page they are laid out on.

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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from segaudit.report.colors import IGNORE_GREY, ISSUE_RED, NEUTRAL_WHITE
from segaudit.report.swaps import (
    keep_mask,
)
from segaudit.safetext import printable

OVERLAY_ALPHA = 0.6
PHOTO_SATURATION = 0.3
MARGIN = 10
GAP = 8
PAGE_BACKGROUND = (236, 236, 236)
TEXT_COLOUR = (20, 20, 20)
FRAME_COLOUR = (150, 150, 150)
NAME_LIMIT = 60
"""Class names longer than this are shortened in the legend (the CSV keeps them whole)."""


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
    extras: Any | None = None
    """``extras(image)``: more for the review page to know of an image (a volume's views)."""


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
