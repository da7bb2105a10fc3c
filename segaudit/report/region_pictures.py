"""Issue regions on a rendered page: numbered boxes, one caption line each, zoomed crops.

For a run with ``regions.csv``, :func:`decorate_page` takes a page from
:func:`segaudit.report.panels.compose` and, for the image's worst regions (lowest
score first), draws a 1-pixel box just outside each region's bounding box on the
photo and issues panels (yellow, with a dark outline so it reads over any class
colour, never issue red) and a number tag beside it. Under the panels it adds one
line per region and a row of tiles, each the region's box padded by a margin and
upscaled by nearest neighbour, with the region's own pixels outlined. Pages of
images without regions are returned unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from segaudit.report import panels as _panels
from segaudit.report.panels import _font, _text_width, nearest, shown_name
from segaudit.report.regions import REGIONS_TABLE, read_regions_table
from segaudit.safetext import printable

BOX_COLOUR = (255, 230, 40)
"""Region boxes, tags and outlines: a bright yellow, never a class colour of the first tier."""
BOX_OUTLINE = (0, 0, 0)
TILE = 128
"""Side of a zoomed crop, in page pixels."""
TILE_BACKGROUND = (60, 60, 60)
LINE_GAP = 2


@dataclass(frozen=True)
class Region:
    """One region drawn on a page: its number there, its id in ``regions.zarr``, its box."""

    number: int
    region: int
    box: tuple[int, int, int, int]
    """x0, y0, x1, y1, inclusive, in full-resolution pixels."""
    caption: str


@dataclass
class PageRegions:
    """The regions drawn on each image's page and where their pixels are read."""

    by_image: dict[int, list[Region]]
    pixels: Any
    """Indexed by image: region numbers, 0 elsewhere (``regions.zarr``)."""

    def for_image(self, image: int) -> list[Region]:
        return self.by_image.get(image, [])

    def decorate(
        self,
        page: Image.Image,
        panels: Sequence[tuple[str, np.ndarray]],
        boxes: Sequence[tuple[int, int, int, int]],
        image: int,
        arrays: tuple[np.ndarray, Any, Any, Any],
        colors: np.ndarray,
        ignore_index: int | None,
        *,
        max_width: int | None = None,
    ) -> Image.Image:
        """Image ``image``'s page with its regions drawn; unchanged when it has none.

        ``arrays`` are :func:`segaudit.report.panels.image_arrays` of the image.
        """
        regions = self.for_image(image)
        if not regions:
            return page
        mask, given, _, photo = arrays
        numbers = np.asarray(self.pixels[image])
        if numbers.shape != mask.shape:
            return page  # a damaged run; the panels stay right without the boxes
        picture = crop_picture(mask, given, photo, colors, ignore_index)
        return decorate_page(page, panels, boxes, regions, numbers, picture, max_width=max_width)


def caption(number: int, row: dict[str, Any]) -> str:
    """``1  given road -> predicted car, 812 px, missing, score 0.123``; names made printable."""
    given = shown_name(row["given_name"])
    predicted = shown_name(row["predicted_name"])
    return (
        f"{number}  given {given} -> predicted {predicted}, {int(row['pixels']):,} px, "
        f"{printable(row['kind'])}, score {float(row['score']):.3f}"
    )


def passes_filters(row: dict[str, Any], classes: Sequence[int], exclude: Sequence[int]) -> bool:
    """Whether a region's class pair survives the page's class filters (as its pixels do)."""
    pair = (row["given_class"], row["predicted_class"])
    if classes and not any(side in classes for side in pair):
        return False
    return not any(side in exclude for side in pair)


def run_regions(
    run: Any, limit: int, classes: Sequence[int] = (), exclude: Sequence[int] = ()
) -> PageRegions | None:
    """Each image's ``limit`` worst regions, or None without ``regions.csv`` or when 0."""
    path = Path(run.path)
    if limit < 1 or not (path / REGIONS_TABLE).is_file():
        return None
    by_image: dict[int, list[Region]] = {}
    rows = sorted(read_regions_table(path), key=lambda row: (row["score"], row["rank"]))
    for row in rows:
        shown = by_image.setdefault(row["image"], [])
        if len(shown) >= limit or not passes_filters(row, classes, exclude):
            continue
        box = (row["x0"], row["y0"], row["x1"], row["y1"])
        number = len(shown) + 1
        shown.append(Region(number, row["region"], box, caption(number, row)))
    from segaudit.report.render import RunArray  # render draws these pages: no cycle at import

    return PageRegions(by_image, RunArray(run, "regions"))


# --- geometry ------------------------------------------------------------------------------


def scaled_span(low: int, high: int, length: int, size: int, pooled: bool) -> tuple[int, int]:
    """Panel pixels showing source pixels ``low..high`` (inclusive) of ``length``, at ``size``.

    Follows the panels' own scaling: the nearest source pixel per panel pixel, or,
    when ``pooled`` (shrinking), source pixel x landing on x * size // length.
    """
    if pooled:
        return low * size // length, high * size // length
    centres = ((np.arange(size) + 0.5) * length / size).astype(np.intp)
    first = int(np.searchsorted(centres, low, side="left"))
    last = int(np.searchsorted(centres, high, side="right")) - 1
    return first, max(first, last)


def panel_box(
    box: tuple[int, int, int, int], shape: tuple[int, int], size: tuple[int, int]
) -> tuple[int, int, int, int]:
    """A full-resolution inclusive box (x0, y0, x1, y1) in panel pixels, inclusive."""
    pooled = not (size[0] >= shape[0] and size[1] >= shape[1])  # as pooled_mask decides
    left, right = scaled_span(box[0], box[2], shape[1], size[1], pooled)
    top, bottom = scaled_span(box[1], box[3], shape[0], size[0], pooled)
    return left, top, right, bottom


# --- boxes on the panels --------------------------------------------------------------------


def draw_boxes(
    page: Image.Image,
    frame: tuple[int, int, int, int],
    regions: Sequence[Region],
    shape: tuple[int, int],
) -> None:
    """Box and tag every region on the panel at ``frame`` (left, top, right, bottom)."""
    size = (frame[3] - frame[1], frame[2] - frame[0])
    panel = page.crop(frame)  # drawing is clipped to the panel
    draw = ImageDraw.Draw(panel)
    font = _font(11)
    boxes = [panel_box(region.box, shape, size) for region in regions]
    for left, top, right, bottom in reversed(boxes):  # the worst region ends on top
        draw.rectangle((left - 2, top - 2, right + 2, bottom + 2), outline=BOX_OUTLINE)
        draw.rectangle((left - 1, top - 1, right + 1, bottom + 1), outline=BOX_COLOUR)
    placed: list[tuple[int, int, int, int]] = []
    for region, box in zip(regions, boxes, strict=True):
        text = str(region.number)
        size_of_tag = (_text_width(font, text) + 4, font.getbbox("0")[3] + 2)
        placed.append(tag_place(box, size_of_tag, size, placed))
        left, top, right, bottom = placed[-1]
        draw.rectangle((left, top, right, bottom), fill=BOX_OUTLINE)
        draw.text((left + 2, top), text, fill=BOX_COLOUR, font=font)
    page.paste(panel, frame[:2])


def tag_place(
    box: tuple[int, int, int, int],
    tag: tuple[int, int],
    size: tuple[int, int],
    taken: Sequence[tuple[int, int, int, int]],
) -> tuple[int, int, int, int]:
    """Where a (width, height) tag goes beside ``box`` in a panel of ``size``: above, right,
    below or left of it, the first spot inside the panel that no earlier tag covers."""
    (width, height), (left, top, right, bottom) = tag, box
    spots = [
        (left - 2, top - 3 - height),
        (right + 3, top - 2),
        (left - 2, bottom + 3),
        (left - 3 - width, top - 2),
    ]
    rects = []
    for x, y in spots:
        x, y = min(max(0, x), max(0, size[1] - width)), min(max(0, y), max(0, size[0] - height))
        rect = (x, y, x + width - 1, y + height - 1)
        if not any(_overlap(rect, other) for other in taken):
            return rect
        rects.append(rect)
    return rects[0]


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


# --- zoomed crops -----------------------------------------------------------------------------


def crop_window(box: tuple[int, int, int, int], shape: tuple[int, int]) -> tuple[slice, slice]:
    """A square window around the box, padded by half its larger side (at least 4 pixels)."""
    side = max(box[2] - box[0], box[3] - box[1]) + 1
    side += 2 * max(4, side // 2)
    windows = []
    for low, high, length in ((box[1], box[3], shape[0]), (box[0], box[2], shape[1])):
        extent = min(side, length)
        start = (low + high + 1 - extent) // 2
        start = min(max(0, start), length - extent)
        windows.append(slice(start, start + extent))
    return windows[0], windows[1]


def crop_tile(background: np.ndarray, inside: np.ndarray, tile: int) -> np.ndarray:
    """``background`` (h, w, 3) scaled by nearest to fit ``tile``, centred on a dark square,
    with the edge pixels of the ``inside`` mask painted in the box colour."""
    height, width = inside.shape
    scale = tile / max(height, width)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    pixels = nearest(background, size).copy()
    mask = nearest(inside, size)
    padded = np.pad(mask, 1)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    pixels[mask & ~interior] = BOX_COLOUR
    out = np.empty((tile, tile, 3), np.uint8)
    out[...] = TILE_BACKGROUND
    top, left = (tile - size[0]) // 2, (tile - size[1]) // 2
    out[top : top + size[0], left : left + size[1]] = pixels
    return out


def region_tiles(
    picture: np.ndarray, numbers: np.ndarray, regions: Sequence[Region], tile: int
) -> list[np.ndarray]:
    """One tile per region, cut from the full-resolution ``picture`` (h, w, 3)."""
    tiles = []
    for region in regions:
        rows, cols = crop_window(region.box, numbers.shape)
        inside = numbers[rows, cols] == region.region
        tiles.append(crop_tile(picture[rows, cols], inside, tile))
    return tiles


# --- the page ---------------------------------------------------------------------------------


def tile_side(count: int, max_width: int | None) -> int:
    """Tiles are ``TILE`` wide, smaller when ``count`` of them must fit in ``max_width``."""
    if max_width is None:
        return TILE
    room = max_width - 2 * _panels.MARGIN - (count - 1) * _panels.GAP
    return max(16, min(TILE, room // count))


def add_strip(
    page: Image.Image,
    regions: Sequence[Region],
    tiles: Sequence[np.ndarray],
) -> Image.Image:
    """``page`` with a caption line per region and the titled tiles in a row under it."""
    font, title_font = _font(13), _font(12)
    line_height = font.getbbox("Ag|")[3] + LINE_GAP
    title_height = title_font.getbbox("Ag|")[3] + 2
    side = tiles[0].shape[0] if tiles else 0
    margin, gap = _panels.MARGIN, _panels.GAP
    row_width = 2 * margin + len(tiles) * side + (len(tiles) - 1) * gap
    width = max(page.width, row_width)
    height = page.height + len(regions) * line_height + 6 + title_height + side + margin
    out = Image.new("RGB", (width, height), _panels.PAGE_BACKGROUND)
    out.paste(page, (0, 0))
    draw = ImageDraw.Draw(out)
    y = page.height - margin + 6
    for region in regions:
        text = _panels._fit(font, region.caption, width - 2 * margin)
        draw.text((margin, y), text, fill=_panels.TEXT_COLOUR, font=font)
        y += line_height
    y += 6
    for index, (region, pixels) in enumerate(zip(regions, tiles, strict=True)):
        x = margin + index * (side + gap)
        draw.text((x, y), str(region.number), fill=_panels.TEXT_COLOUR, font=title_font)
        out.paste(Image.fromarray(np.ascontiguousarray(pixels), "RGB"), (x, y + title_height))
        frame = (x - 1, y + title_height - 1, x + side, y + title_height + side)
        draw.rectangle(frame, outline=_panels.FRAME_COLOUR)
    return out


def crop_picture(
    mask: np.ndarray,
    given: np.ndarray | None,
    photo: np.ndarray | None,
    colors: np.ndarray,
    ignore_index: int | None,
) -> np.ndarray:
    """What the crops show at full resolution: the photo with issues, else the given labels."""
    if photo is not None:
        return _panels.overlay_pixels(np.asarray(photo), mask)
    if given is not None:
        return _panels.label_pixels(given, colors, ignore_index)
    return _panels.issue_pixels(mask)


def decorate_page(
    page: Image.Image,
    panels: Sequence[tuple[str, np.ndarray]],
    boxes: Sequence[tuple[int, int, int, int]],
    regions: Sequence[Region],
    numbers: np.ndarray,
    picture: np.ndarray,
    *,
    max_width: int | None = None,
) -> Image.Image:
    """``page`` with ``regions`` boxed on its photo and issues panels, captioned and cropped.

    ``panels`` and ``boxes`` are :func:`compose`'s input and output; ``numbers`` is
    the image's region map and ``picture`` the full-resolution pixels the crops show.
    """
    if not regions:
        return page
    for (title, _), frame in zip(panels, boxes, strict=True):
        if title.startswith(("Photo", "Issues")):
            draw_boxes(page, frame, regions, numbers.shape)
    tiles = region_tiles(picture, numbers, regions, tile_side(len(regions), max_width))
    return add_strip(page, regions, tiles)
