"""The review page ``segaudit render`` writes: ``index.html``, its script and style, the
run's list as ``data.js`` and, per image, a photo, a thumbnail and its label maps.

The page is static and reads only its own folder: it opens from disk (``file://``) or
any web server, with no network. Everything from the data (class names, ids, paths)
reaches the page as JSON inside a script and is put into the document as text, never
as markup, so a class named ``<img src=x onerror=alert(1)>`` shows as those characters.

Files, flat in the folder (names made of digits only, so no id reaches a file name):

- ``index.html``, ``review.js``, ``review.css``: the page (``page_assets/``);
- ``data.js``: ``window.SEGAUDIT_REVIEW = {...}``: classes and colours, one row per
  image and per region, the run's fingerprint (decisions are stored under it);
- ``p00017.jpg``: image 17's photo, at the page's resolution (when photos exist);
- ``t00017.jpg``: its thumbnail, the photo (or the given labels) with issues in red;
- ``m00017.js``: its given and predicted labels and issues as PNG data URLs, which a
  canvas may read back (a page opened from disk may not read its own image files), so
  the class names under the cursor come from the exact pixels.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from segaudit.report.colors import IGNORE_GREY, ISSUE_RED
from segaudit.report.decisions import fingerprint_of
from segaudit.report.panels import Sources, image_arrays, label_pixels, nearest, pooled_mask

ASSETS = ("review.js", "review.css")
"""Files copied from ``segaudit/report/page_assets/`` next to ``index.html``."""
# Every name the page puts in its folder is in segaudit.runs.rundir.RENDER_FILES: a run
# may be replaced only when its render folder holds nothing else.
MAP_SIDE = 1024
"""Longest side of an image's maps and photo on the page, unless ``max_width`` says less."""
THUMB_WIDTH = 112
PHOTO_QUALITY = 80
THUMB_QUALITY = 70
IMAGE_COLUMNS = (
    "image", "id", "score", "issue_pixels", "pixels", "given", "predicted", "kind",
    "regions", "width", "height", "map_width", "map_height", "photo",
)  # fmt: skip
REGION_COLUMNS = (
    "image", "region", "given", "predicted", "pixels", "x0", "y0", "x1", "y1", "score",
    "kind", "rank",
)  # fmt: skip


@dataclass
class PageImage:
    """One image on the page: its place in the run and its numbers."""

    image: int
    image_id: str
    issue_pixels: int
    pixels: int
    score: float | None = None


@dataclass
class ImageAssets:
    """What :func:`write_image_assets` learnt of an image while writing its files."""

    given: int
    predicted: int
    map_size: tuple[int, int]
    size: tuple[int, int]
    photo: bool


def asset_text(name: str) -> str:
    """A file of ``page_assets/`` (package data)."""
    return resources.files("segaudit.report").joinpath("page_assets", name).read_text("utf-8")


def map_size(height: int, width: int, max_width: int | None) -> tuple[int, int]:
    """The size an image is shown at: at most ``MAP_SIDE`` (or ``max_width`` wide)."""
    scale = min(1.0, MAP_SIDE / max(height, width))
    if max_width is not None:
        scale = min(scale, max_width / width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def main_pair(mask: np.ndarray, given: Any, predicted: Any, num_classes: int) -> tuple[int, int]:
    """The (given, predicted) pair of most of an image's issue pixels; -1 where unknown."""
    if given is None or predicted is None or not mask.any():
        return -1, -1
    g = np.asarray(given)[mask].astype(np.int64)
    p = np.asarray(predicted)[mask].astype(np.int64)
    valid = (g >= 0) & (g < num_classes) & (p >= 0) & (p < num_classes)
    if not valid.any():
        return -1, -1
    counts = np.bincount(g[valid] * num_classes + p[valid])
    best = int(np.argmax(counts))  # ties: the lowest pair
    return best // num_classes, best % num_classes


def png_data_url(image: Image.Image) -> str:
    """``image`` as a ``data:image/png;base64,...`` URL."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def label_image(labels: np.ndarray, colors: np.ndarray, ignore_index: int | None) -> Image.Image:
    """A label map in class colours (ignored pixels grey), as a palette image when it can."""
    pixels = label_pixels(labels, colors, ignore_index)
    if len(colors) < 256:
        palette = np.vstack([colors, np.asarray([IGNORE_GREY], np.uint8)])
        index = np.full(labels.shape, len(colors), np.uint8)
        valid = (labels >= 0) & (labels < len(colors))
        if ignore_index is not None:
            valid &= labels != ignore_index
        index[valid] = labels[valid]
        image = Image.fromarray(index, "P")
        image.putpalette(palette.ravel().tolist())
        return image
    return Image.fromarray(pixels, "RGB")


def issue_image(mask: np.ndarray) -> Image.Image:
    """Issues in red on transparency (a two-colour palette image)."""
    image = Image.fromarray(mask.astype(np.uint8), "P")
    image.putpalette([0, 0, 0, *ISSUE_RED])
    image.info["transparency"] = 0
    return image


def thumbnail(base: np.ndarray, mask: np.ndarray) -> Image.Image:
    """A small picture of the image: ``base`` with issue pixels in red."""
    height, width = mask.shape
    size = (max(1, round(height * THUMB_WIDTH / width)), THUMB_WIDTH)
    if size[0] > 2 * THUMB_WIDTH:
        size = (2 * THUMB_WIDTH, max(1, round(width * 2 * THUMB_WIDTH / height)))
    shrinking = size[1] < width
    method = Image.Resampling.BOX if shrinking else Image.Resampling.NEAREST
    small = np.array(Image.fromarray(base, "RGB").resize((size[1], size[0]), method))
    small[pooled_mask(mask, size)] = ISSUE_RED
    return Image.fromarray(small, "RGB")


def write_image_assets(
    folder: Path,
    sources: Sources,
    image: int,
    colors: np.ndarray,
    max_width: int | None,
) -> ImageAssets:
    """Write image ``image``'s photo, thumbnail and maps into ``folder``."""
    mask, given, predicted, photo = image_arrays(sources, image)
    size = map_size(*mask.shape, max_width)
    shown = pooled_mask(mask, size)
    maps: dict[str, Any] = {"w": size[1], "h": size[0], "issues": png_data_url(issue_image(shown))}
    if sources.extras is not None:
        maps.update(sources.extras(image) or {})
    base = None
    for name, labels, ignore in (
        ("given", given, sources.ignore_index),
        ("predicted", predicted, None),
    ):
        if labels is not None:
            small = nearest(np.asarray(labels), size)
            maps[name] = png_data_url(label_image(small, colors, ignore))
            if base is None:
                base = label_pixels(small, colors, ignore)
    if photo is not None:
        method = Image.Resampling.BOX if size[0] < mask.shape[0] else Image.Resampling.NEAREST
        picture = Image.fromarray(np.ascontiguousarray(photo), "RGB").resize(
            (size[1], size[0]), method
        )
        picture.save(folder / f"p{image:05d}.jpg", quality=PHOTO_QUALITY)
        base = np.asarray(picture)
    if base is None:
        base = np.full((*size, 3), 255, np.uint8)
    thumbnail(base, shown).save(folder / f"t{image:05d}.jpg", quality=THUMB_QUALITY)
    text = f"segauditMaps({image}, {json.dumps(maps)});\n"
    (folder / f"m{image:05d}.js").write_text(text, encoding="ascii")
    pair = main_pair(mask, given, predicted, sources.num_classes)
    return ImageAssets(pair[0], pair[1], size, mask.shape, photo is not None)


def _number(value: float | None) -> float | None:
    """A JSON-safe number (NaN and infinities become null)."""
    if value is None or not np.isfinite(value):
        return None
    return float(value)


def image_row(page: PageImage, assets: ImageAssets, regions: Sequence[dict[str, Any]]) -> list:
    """An image's row of ``data.js`` (:data:`IMAGE_COLUMNS`)."""
    worst = min(regions, key=lambda row: (row["score"], row["rank"]), default=None)
    return [
        page.image, page.image_id, _number(page.score), page.issue_pixels, page.pixels,
        assets.given, assets.predicted, worst["kind"] if worst else "", len(regions),
        assets.size[1], assets.size[0], assets.map_size[1], assets.map_size[0],
        int(assets.photo),
    ]  # fmt: skip


def region_row(row: dict[str, Any]) -> list:
    """A region's row of ``data.js`` (:data:`REGION_COLUMNS`)."""
    return [
        row["image"], row["region"], row["given_class"], row["predicted_class"], row["pixels"],
        row["x0"], row["y0"], row["x1"], row["y1"], _number(row["score"]), row["kind"],
        row["rank"],
    ]  # fmt: skip


def hex_colors(colors: np.ndarray) -> list[str]:
    """Colours as ``#rrggbb``."""
    return ["#" + "".join(f"{int(c):02x}" for c in rgb) for rgb in colors]


def page_data(
    *,
    title: str,
    notes: Sequence[str],
    fingerprint: str,
    names: Sequence[str],
    colors: np.ndarray,
    ignore_index: int | None,
    images: list[list],
    regions: list[list] | None,
) -> dict[str, Any]:
    """Everything ``data.js`` holds."""
    return {
        "version": 1,
        "title": title,
        "notes": list(notes),
        "fingerprint": fingerprint,
        "classes": {"names": [str(n) for n in names], "colors": hex_colors(colors)},
        "ignore": {"index": ignore_index, "color": hex_colors(np.asarray([IGNORE_GREY]))[0]},
        "issue_color": hex_colors(np.asarray([ISSUE_RED]))[0],
        "images": {"columns": list(IMAGE_COLUMNS), "rows": images},
        "regions": None if regions is None else {"columns": list(REGION_COLUMNS), "rows": regions},
    }


def data_script(data: dict[str, Any]) -> str:
    """``data.js``: the data as one JSON literal (ASCII only, so no character of a name
    can end the script or a string early)."""
    text = json.dumps(data, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return "window.SEGAUDIT_REVIEW = " + text.replace("</", "<\\/") + ";\n"


def index_html(title: str) -> str:
    """The page: the shell ``review.js`` fills in; the title escaped."""
    return asset_text("index.html").replace("{{title}}", html.escape(title))


def write_review_page(
    folder: Path,
    sources: Sources,
    pages: Sequence[PageImage],
    names: Sequence[str],
    *,
    colors: np.ndarray,
    title: str,
    notes: Sequence[str] = (),
    region_rows: Sequence[dict[str, Any]] | None = None,
    fingerprint: str | None = None,
    max_width: int | None = None,
    advance: Any = None,
) -> None:
    """Write the review page of ``pages`` into ``folder`` (which must be empty of it).

    ``region_rows`` are the regions to list (``regions.csv`` rows; None: no region
    list); only those of images on the page are kept. ``fingerprint`` names the run
    (default: a digest of the data).
    """
    by_image: dict[int, list[dict[str, Any]]] = {}
    for row in region_rows or ():
        by_image.setdefault(row["image"], []).append(row)
    image_rows, shown = [], set()
    for page in pages:
        assets = write_image_assets(folder, sources, page.image, colors, max_width)
        image_rows.append(image_row(page, assets, by_image.get(page.image, [])))
        shown.add(page.image)
        if advance is not None:
            advance()
    regions = None
    if region_rows is not None:
        regions = [region_row(row) for row in region_rows if row["image"] in shown]
    data = page_data(
        title=title, notes=notes, fingerprint="", names=names, colors=colors,
        ignore_index=sources.ignore_index, images=image_rows, regions=regions,
    )  # fmt: skip
    data["fingerprint"] = fingerprint or fingerprint_of(json.dumps(data).encode())
    (folder / "data.js").write_text(data_script(data), encoding="ascii")
    (folder / "index.html").write_text(index_html(title), encoding="utf-8")
    for name in ASSETS:
        (folder / name).write_text(asset_text(name), encoding="utf-8")
