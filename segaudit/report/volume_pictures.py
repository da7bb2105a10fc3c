"""A label volume as the few 2-D pictures a reviewer reads at a glance.

A volume is (Z, Y, X), z slowest; its axial slices are ``volume[z]``. The pictures are:

- the axial slices with the most issue voxels (:func:`worst_slices`);
- the three orthogonal views through a point, such as the worst region's centroid
  (:func:`orthogonal_views`): axial ``volume[z]`` (Y, X), coronal ``volume[:, y]``
  (Z, X) and sagittal ``volume[:, :, x]`` (Z, Y), rows going down in z; resized to
  physical proportions (:func:`display_aspect`, :func:`physical_view`), since slices are
  often several times thicker than their pixels are wide;
- photos windowed to 8 bits (:func:`photo_window`, :func:`window_photo`): a soft-tissue
  window for CT, the 0.5-99.5 percentiles of a subsample for anything else;
- each chosen slice or view as the panels of a 2-D page (:func:`volume_panels`,
  :func:`view_panels`): they are :func:`segaudit.report.panels.build_panels` itself, so
  class colours, ignored voxels in grey, issues in pure red and the desaturated photo
  under them are exactly those of image pages;
- all of it laid out in one picture (:func:`volume_mosaic`), with the box of every tile
  so callers can annotate it.

Everything here is a pure function of arrays; nothing is read or written.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from segaudit.report import panels as _panels
from segaudit.report.panels import Sources, build_panels, nearest, pooled_mask

CT_LEVEL = 40.0
CT_WIDTH = 400.0
"""The soft-tissue window of CT photos, in Hounsfield units: -160 HU black, 240 HU white."""
PERCENTILES = (0.5, 99.5)
"""The intensities mapped to black and white in photos of any other modality."""
SAMPLE_VOXELS = 1_000_000
"""About how many voxels (a regular grid of them) the percentiles are taken from."""
SEPARATOR = 2
"""Pixels between the tiles of a mosaic."""
SEPARATOR_COLOUR = (70, 70, 70)
CAPTION_PADDING = 2

Box = tuple[str, int, int, int, int]
"""A mosaic tile: its caption, and its pixels' left, top, width and height."""


# --- slices and views ------------------------------------------------------------------------


def worst_slices(issues: np.ndarray, count: int) -> list[int]:
    """The ``count`` axial slices (z) of ``issues`` (Z, Y, X) holding the most issue
    voxels, most first, ties by ascending z; only slices with at least one. Without any
    issue voxel, the middle slice."""
    issues = np.asarray(issues)
    depth = issues.shape[0]
    if count < 1 or depth == 0:
        return []
    per_slice = np.count_nonzero(issues.reshape(depth, -1), axis=1)
    order = np.lexsort((np.arange(depth), -per_slice))
    chosen = [int(z) for z in order[:count] if per_slice[z] > 0]
    return chosen or [depth // 2]


def orthogonal_views(
    volume: np.ndarray, point: tuple[int, int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The axial (Y, X), coronal (Z, X) and sagittal (Z, Y) slices of ``volume`` (Z, Y, X,
    with any trailing channel axes) through ``point`` (z, y, x), rounded and clipped into
    the volume (a centroid may be given as floats)."""
    z, y, x = (
        min(max(0, int(round(float(p)))), n - 1)
        for p, n in zip(point, np.shape(volume)[:3], strict=True)
    )
    return (
        np.asarray(volume[z]),
        np.asarray(volume[:, y]),
        np.asarray(volume[:, :, x]),
    )


def display_aspect(spacing: Sequence[float]) -> tuple[float, float, float]:
    """How many picture pixels one voxel spans along z, y and x so that a picture pixel
    is the in-plane pixel spacing (the finer of sy and sx): (sz, sy, sx) / min(sy, sx)."""
    sz, sy, sx = (float(s) for s in spacing)
    if not min(sz, sy, sx) > 0:
        raise ValueError(f"voxel spacing must be positive; got {tuple(spacing)}")
    unit = min(sy, sx)
    return sz / unit, sy / unit, sx / unit


VIEW_AXES = {"axial": (1, 2), "coronal": (0, 2), "sagittal": (0, 1)}
"""The volume axes (of z, y, x) along each view's rows and columns."""


def view_size(shape: tuple[int, int], view: str, spacing: Sequence[float]) -> tuple[int, int]:
    """The (height, width) in picture pixels of a ``view`` of ``shape`` (its rows and
    columns in voxels) at physical proportions (:func:`display_aspect`)."""
    factors = display_aspect(spacing)
    rows, cols = VIEW_AXES[view]
    return (
        max(1, int(round(shape[0] * factors[rows]))),
        max(1, int(round(shape[1] * factors[cols]))),
    )


def resize_view(pixels: np.ndarray, size: tuple[int, int], kind: str) -> np.ndarray:
    """``pixels`` resampled to ``size`` (height, width): ``labels`` by the nearest voxel
    (classes stay exact), ``mask`` by the nearest voxel or, when shrinking, any voxel
    under a pixel (a lone issue voxel never disappears), ``photo`` (uint8, grey or RGB)
    bilinearly."""
    pixels = np.asarray(pixels)
    if tuple(pixels.shape[:2]) == tuple(size):
        return pixels
    if kind == "labels":
        return nearest(pixels, size)
    if kind == "mask":
        return pooled_mask(pixels.astype(bool, copy=False), size)
    if kind == "photo":
        image = Image.fromarray(np.ascontiguousarray(pixels, np.uint8))
        return np.asarray(image.resize((size[1], size[0]), Image.Resampling.BILINEAR))
    raise ValueError(f"kind is 'labels', 'mask' or 'photo'; got {kind!r}")


def physical_view(pixels: np.ndarray, view: str, spacing: Sequence[float], kind: str) -> np.ndarray:
    """A view from :func:`orthogonal_views` resized to physical proportions."""
    return resize_view(pixels, view_size(np.shape(pixels)[:2], view, spacing), kind)


# --- photos ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """Intensities ``low`` and below black, ``high`` and above white, linear between."""

    low: float
    high: float

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        """``pixels`` (a slice, or any array) as uint8; NaN black."""
        values = np.asarray(pixels, np.float32)
        if not self.high > self.low:
            return np.where(values > self.low, 255, 0).astype(np.uint8)
        scaled = (values - np.float32(self.low)) * np.float32(255.0 / (self.high - self.low))
        scaled = np.nan_to_num(scaled, nan=0.0)
        return np.rint(np.clip(scaled, 0, 255)).astype(np.uint8)


def is_ct(modality: str) -> bool:
    """Whether a channel name is CT, as nnU-Net's ``dataset.json`` ``channel_names`` read
    it: the name itself, in any case."""
    return str(modality).strip().casefold() == "ct"


def photo_window(photo_volume: np.ndarray, modality: str) -> Window:
    """The window a photo volume is shown through: CT's soft-tissue window (level
    ``CT_LEVEL``, width ``CT_WIDTH``, in HU), else the ``PERCENTILES`` of a regular grid of
    about ``SAMPLE_VOXELS`` of its voxels (every ``step``-th along each axis: the same
    voxels every time, and never a copy of the whole volume)."""
    if is_ct(modality):
        return Window(CT_LEVEL - CT_WIDTH / 2, CT_LEVEL + CT_WIDTH / 2)
    volume = photo_volume
    size = int(np.prod(np.shape(volume)))
    if size == 0:
        return Window(0.0, 0.0)
    step = max(1, math.ceil((size / SAMPLE_VOXELS) ** (1.0 / 3.0)))
    sample = np.asarray(volume[::step, ::step, ::step], np.float64).ravel()
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return Window(0.0, 0.0)
    low, high = np.percentile(sample, PERCENTILES)
    return Window(float(low), float(high))


def window_photo(photo_volume: np.ndarray, modality: str) -> np.ndarray:
    """The photo volume (Z, Y, X) as uint8 through :func:`photo_window`, a slice at a time."""
    window = photo_window(photo_volume, modality)
    out = np.empty(np.shape(photo_volume), np.uint8)
    for z in range(out.shape[0]):
        out[z] = window(photo_volume[z])
    return out


def grey_to_rgb(pixels: np.ndarray) -> np.ndarray:
    """A grey uint8 picture as RGB; RGB unchanged."""
    pixels = np.asarray(pixels, np.uint8)
    return pixels if pixels.ndim == 3 else np.repeat(pixels[..., None], 3, axis=2)


# --- panels --------------------------------------------------------------------------------------


Panels = list[tuple[str, np.ndarray]]


def _page_panels(
    mask: np.ndarray,
    given: np.ndarray | None,
    predicted: np.ndarray | None,
    photo: np.ndarray | None,
    colors: np.ndarray,
    ignore_index: int | None,
    max_width: int | None,
    zoom: int,
) -> Panels:
    sources = Sources(None, None, None, None, len(colors), ignore_index)
    arrays = (mask, given, predicted, None if photo is None else grey_to_rgb(photo))
    return build_panels(sources, 0, colors, max_width=max_width, zoom=zoom, arrays=arrays)


def volume_panels(
    labels: np.ndarray | None,
    predicted: np.ndarray | None,
    issues: np.ndarray,
    photo: np.ndarray | None,
    slices: Sequence[int],
    colors: np.ndarray,
    *,
    ignore_index: int | None = None,
    max_width: int | None = None,
    zoom: int = 1,
) -> list[tuple[str, Panels]]:
    """For each axial slice z in ``slices``: ``"z=12"`` and the titled panels an image
    page shows (:func:`segaudit.report.panels.build_panels`: photo + issues when there is a
    ``photo``, given labels, predicted labels, issues). Volumes are (Z, Y, X); the photo
    already 8-bit (:func:`window_photo`, grey or RGB)."""
    out = []
    for z in slices:
        z = int(z)
        panels = _page_panels(
            np.asarray(issues[z], bool),
            None if labels is None else np.asarray(labels[z]),
            None if predicted is None else np.asarray(predicted[z]),
            None if photo is None else np.asarray(photo[z]),
            colors, ignore_index, max_width, zoom,
        )  # fmt: skip
        out.append((f"z={z}", panels))
    return out


def view_panels(
    labels: np.ndarray | None,
    predicted: np.ndarray | None,
    issues: np.ndarray,
    photo: np.ndarray | None,
    point: tuple[int, int, int],
    spacing: Sequence[float],
    colors: np.ndarray,
    *,
    ignore_index: int | None = None,
    max_width: int | None = None,
) -> list[tuple[str, Panels]]:
    """The coronal and sagittal views through ``point`` (z, y, x) as the panels of an
    image page, each view first resized to physical proportions (labels by nearest voxel,
    issues max-pooled when shrinking, the photo bilinearly): ``"coronal y=40"`` and its
    panels, then ``"sagittal x=31"`` and its."""
    point = tuple(
        min(max(0, int(round(float(p)))), n - 1)
        for p, n in zip(point, np.shape(issues)[:3], strict=True)
    )
    out = []
    for view, name, at in (("coronal", "y", point[1]), ("sagittal", "x", point[2])):
        arrays = []
        for volume, kind in ((issues, "mask"), (labels, "labels"), (predicted, "labels"),
                             (photo, "photo")):  # fmt: skip
            if volume is None:
                arrays.append(None)
                continue
            _, coronal, sagittal = orthogonal_views(volume, point)
            pixels = coronal if view == "coronal" else sagittal
            arrays.append(physical_view(pixels, view, spacing, kind))
        panels = _page_panels(
            arrays[0].astype(bool), arrays[1], arrays[2], arrays[3], colors, ignore_index,
            max_width, 1,
        )  # fmt: skip
        out.append((f"{view} {name}={at}", panels))
    return out


def panel_strip(panels: Panels, gap: int = SEPARATOR) -> np.ndarray:
    """A slice's panels side by side, ``gap`` pixels of ``SEPARATOR_COLOUR`` between
    them, tops aligned (shorter panels padded below with the same colour)."""
    height = max(pixels.shape[0] for _, pixels in panels)
    width = sum(pixels.shape[1] for _, pixels in panels) + gap * (len(panels) - 1)
    out = np.empty((height, width, 3), np.uint8)
    out[...] = SEPARATOR_COLOUR
    x = 0
    for _, pixels in panels:
        out[: pixels.shape[0], x : x + pixels.shape[1]] = pixels
        x += pixels.shape[1] + gap
    return out


# --- the mosaic ---------------------------------------------------------------------------------


def volume_mosaic(
    axial: Sequence[tuple[str, np.ndarray]],
    views: Sequence[tuple[str, np.ndarray]] = (),
    *,
    columns: int = 4,
    gap: int = SEPARATOR,
    captions: bool = True,
    title: str = "",
) -> tuple[np.ndarray, list[Box]]:
    """One RGB picture (H, W, 3) uint8 of the ``axial`` pictures (caption, (h, w, 3)
    uint8) in rows of at most ``columns``, then the ``views`` (the coronal and sagittal
    pictures) in one row under them; ``gap`` pixels of ``SEPARATOR_COLOUR`` between
    tiles. With ``captions``, each tile's caption is written above it, and ``title`` (if
    any) on a line above all, in Pillow's default font. Returns the picture and each
    tile's (caption, left, top, width, height), in the order given: the tiles' pixels
    are exactly the pictures given."""
    font = _panels._font(12)
    caption_height = font.getbbox("Ag|")[3] + 2 * CAPTION_PADDING if captions else 0
    title_height = caption_height if captions and title else 0
    rows: list[list[tuple[str, np.ndarray]]] = []
    axial = [(text, grey_to_rgb(pixels)) for text, pixels in axial]
    views = [(text, grey_to_rgb(pixels)) for text, pixels in views]
    columns = max(1, int(columns))
    for start in range(0, len(axial), columns):
        rows.append(list(axial[start : start + columns]))
    if views:
        rows.append(list(views))
    if not rows:
        return np.zeros((0, 0, 3), np.uint8), []
    cell_width = max((p.shape[1] for _, p in axial), default=0)
    placed: list[tuple[str, np.ndarray, int, int]] = []
    width, y = 0, gap + title_height + (gap if title_height else 0)
    for row in rows:
        is_views = row is rows[-1] and bool(views)
        x = gap
        for text, pixels in row:
            placed.append((text, pixels, x, y + caption_height))
            x += (pixels.shape[1] if is_views else cell_width) + gap
        width = max(width, x)
        y += caption_height + max(p.shape[0] for _, p in row) + gap
    picture = Image.new("RGB", (width, y), SEPARATOR_COLOUR)
    draw = ImageDraw.Draw(picture)
    if title_height:
        draw.rectangle((gap, gap, width - gap - 1, gap + title_height - 1),
                       fill=_panels.PAGE_BACKGROUND)  # fmt: skip
        shown = _panels._fit(font, title, max(1, width - 2 * gap - 2 * CAPTION_PADDING))
        draw.text((gap + CAPTION_PADDING, gap + CAPTION_PADDING - 1), shown,
                  fill=_panels.TEXT_COLOUR, font=font)  # fmt: skip
    boxes: list[Box] = []
    for text, pixels, left, top in placed:
        height, tile_width = pixels.shape[:2]
        if captions:
            strip = (left, top - caption_height, left + tile_width - 1, top - 1)
            draw.rectangle(strip, fill=_panels.PAGE_BACKGROUND)
            shown = _panels._fit(font, text, max(1, tile_width - 2 * CAPTION_PADDING))
            draw.text((left + CAPTION_PADDING, top - caption_height + CAPTION_PADDING - 1),
                      shown, fill=_panels.TEXT_COLOUR, font=font)  # fmt: skip
        picture.paste(Image.fromarray(np.ascontiguousarray(pixels), "RGB"), (left, top))
        boxes.append((text, left, top, tile_width, height))
    return np.asarray(picture).copy(), boxes


def mosaic_of_volume(
    labels: np.ndarray | None,
    predicted: np.ndarray | None,
    issues: np.ndarray,
    photo: np.ndarray | None,
    spacing: Sequence[float],
    colors: np.ndarray,
    *,
    slices: int = 4,
    point: tuple[int, int, int] | None = None,
    ignore_index: int | None = None,
    columns: int = 2,
    pick: Callable[[Panels], Panels] | None = None,
) -> tuple[np.ndarray, list[Box]]:
    """The whole picture of a volume: its ``slices`` worst axial slices, each as the strip
    of its page panels (``pick`` chooses which; all by default), then the coronal and
    sagittal views through ``point`` (default: the middle of the worst slice's issue
    voxels) as strips too; see :func:`volume_mosaic`."""
    chosen = worst_slices(issues, slices)
    if point is None:
        z = chosen[0]
        ys, xs = np.nonzero(np.asarray(issues[z]))
        middle = (np.shape(issues)[1] // 2, np.shape(issues)[2] // 2)
        point = (z, *((int(np.median(ys)), int(np.median(xs))) if ys.size else middle))
    pick = pick or (lambda panels: panels)
    per_slice = np.count_nonzero(np.asarray(issues).reshape(np.shape(issues)[0], -1), axis=1)
    axial, titles = [], []
    for z, (text, panels) in zip(chosen, volume_panels(
        labels, predicted, issues, photo, chosen, colors, ignore_index=ignore_index
    ), strict=True):  # fmt: skip
        shown = pick(panels)
        titles = [title for title, _ in shown]
        axial.append((f"{text}  {int(per_slice[z]):,} issue voxels", panel_strip(shown)))
    views = [
        (text, panel_strip(pick(panels)))
        for text, panels in view_panels(
            labels, predicted, issues, photo, point, spacing, colors, ignore_index=ignore_index
        )
    ]
    title = "Left to right: " + " · ".join(titles)
    return volume_mosaic(axial, views, columns=columns, title=title)
