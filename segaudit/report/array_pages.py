"""Pages for issue masks held as arrays, without a run: :func:`display_issues`.

The reference-compatible way to look at issues found in memory (numpy arrays, or any
array-like indexed by image): the same panels and review page as ``segaudit render``,
from ``issues`` with optional labels, predictions and photos.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from segaudit.errors import InvalidInputError
from segaudit.report.colors import distinct_colors
from segaudit.report.panels import Sources, build_panels, compose
from segaudit.report.render import PageInfo, page_filename, worst_images, write_pages
from segaudit.report.swaps import (
    DEFAULT_TOP,
    ArgmaxView,
    check_array,
    check_top,
    default_names,
    image_batches,
    tally_issues,
)


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
