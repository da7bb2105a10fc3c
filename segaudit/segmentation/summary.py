"""``cleanlab.segmentation.summary`` on segaudit's report code: :func:`display_issues`,
:func:`common_label_issues`, :func:`filter_by_class` (and the private
``_generate_colormap``).

Same signatures, defaults, results and printing as cleanlab 2.9: ``display_issues``
draws matplotlib figures and calls ``plt.show()``; ``common_label_issues`` returns a
pandas DataFrame (pandas is optional: ``pip install 'segaudit[pandas]'``) and prints
one line per row. Counting streams over batches of images
(:func:`segaudit.report.swaps.tally_issues`); the class colours are segaudit's
(:func:`segaudit.report.colors.distinct_colors`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from segaudit.report import swaps
from segaudit.report.colors import distinct_colors
from segaudit.report.panels import issue_pixels, label_pixels
from segaudit.segmentation._progress import count_bar

__all__ = ["common_label_issues", "display_issues", "filter_by_class"]

DEFAULT_TOP = 20
COLUMNS = ["given_label", "predicted_label", "num_pixel_issues"]
PANDAS_MISSING = (
    "common_label_issues returns a pandas DataFrame, and pandas is not installed; "
    "install it with: pip install 'segaudit[pandas]'"
)


def _pandas() -> Any:
    try:
        import pandas
    except ImportError as error:
        raise ImportError(PANDAS_MISSING) from error
    return pandas


def _images(num_images: int, bytes_per_image: int) -> Iterator[slice]:
    return swaps.image_batches(num_images, max(1, bytes_per_image))


def _issue_counts(issues: Any) -> np.ndarray:
    """Issue pixels per image (``issues.sum(axis=(1, 2))``), streaming."""
    num_images = len(issues)
    counts = np.zeros(num_images, np.int64)
    per_image = int(np.prod(issues.shape[1:])) * np.dtype(issues.dtype).itemsize
    for batch in _images(num_images, per_image):
        counts[batch] = np.sum(np.asarray(issues[batch]), axis=(1, 2))
    return counts


def _num_label_classes(labels: Any) -> int:
    """1 + the largest label, streaming (cleanlab: ``max(np.unique(labels)) + 1``)."""
    largest = None
    per_image = int(np.prod(labels.shape[1:])) * np.dtype(labels.dtype).itemsize
    for batch in _images(len(labels), per_image):
        values = np.asarray(labels[batch])
        if values.size:
            top = values.max()
            largest = top if largest is None else max(largest, top)
    if largest is None:
        raise ValueError("max() arg is an empty sequence")
    return int(largest) + 1


def display_issues(
    issues: np.ndarray,
    *,
    labels: np.ndarray | None = None,
    pred_probs: np.ndarray | None = None,
    class_names: list[str] | None = None,
    exclude: list[int] | None = None,
    top: int | None = None,
    **kwargs: Any,
) -> None:
    """Show the ``top`` (default 20) images with the most issue pixels, one matplotlib
    figure each, as cleanlab does: the given labels (with ``labels``), the argmax of
    ``pred_probs`` (with ``pred_probs``) and the issues in red, titled as in cleanlab;
    pixels of a given class in ``exclude`` (needs ``labels``) are not shown as issues.
    With ``class_names`` and a label panel, a legend figure comes first. Every figure
    ends with ``plt.show(**kwargs)``. Returns None.
    """
    exclude = [] if exclude is None else exclude
    top = DEFAULT_TOP if top is None else top
    if labels is None and len(exclude) > 0:
        raise ValueError("Provide labels to allow class exclusion")
    top = min(top, len(issues))
    shown = np.argsort(-_issue_counts(issues))[:top]

    try:
        import matplotlib.patches as mpatches
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError('try "pip install matplotlib"') from error

    panels = (pred_probs is not None) + (labels is not None) + 1
    colors = None
    if panels > 1:
        if pred_probs is not None:
            num_classes = int(pred_probs.shape[1])
        else:
            num_classes = _num_label_classes(labels)
        colors = distinct_colors(max(1, num_classes))

    if class_names is not None and colors is not None:
        rgba = _generate_colormap(len(colors))
        handles = [
            mpatches.Patch(color=rgba[i], label=class_names[i]) for i in range(len(class_names))
        ]
        legend = plt.figure()
        legend.legend(
            handles=handles, loc="center", ncol=len(class_names), facecolor="white", fontsize=20
        )
        plt.axis("off")
        plt.show(**kwargs)

    for image in shown:
        _, axes = plt.subplots(1, panels, figsize=(5 * panels, 5))
        axes_list = list(axes) if isinstance(axes, np.ndarray) else [axes]
        drawn = []
        if labels is not None:
            drawn.append(("Given Labels", label_pixels(np.asarray(labels[image]), colors)))
        if pred_probs is not None:
            predicted = np.argmax(np.asarray(pred_probs[image]), axis=0)
            drawn.append(("Argmaxed Prediction Probabilities", label_pixels(predicted, colors)))
        mask = np.asarray(issues[image], dtype=bool)
        if labels is not None and len(exclude) != 0:
            mask = mask & ~np.isin(np.asarray(labels[image]), exclude)
        drawn.append((f"Image {image}: Suggested Errors (in Red)", issue_pixels(mask)))
        # As cleanlab: the first panels, as many as there are axes.
        for ax, (title, pixels) in zip(axes_list, drawn, strict=False):
            ax.imshow(pixels)
            ax.set_title(title)
        plt.show(**kwargs)
    return None


def common_label_issues(
    issues: np.ndarray,
    labels: np.ndarray,
    pred_probs: np.ndarray,
    *,
    class_names: list[str] | None = None,
    exclude: list[int] | None = None,
    top: int | None = None,
    verbose: bool = True,
) -> Any:
    """How often each given class is flagged as each predicted class, as cleanlab does.

    Returns a pandas DataFrame with columns ``given_label``, ``predicted_label`` (class
    names, or ids as strings) and ``num_pixel_issues`` (int64), one row per (given,
    predicted) pair with issues, most issue pixels first (ties by given, then predicted
    class), at most ``top`` (default 20) rows. ``exclude`` drops the issue pixels whose
    *predicted* class is listed (cleanlab's behaviour; segaudit's own swap table drops
    a listed given class too). ``verbose`` (default True) prints one line per row;
    like cleanlab, a progress bar over the issue pixels goes to stderr either way.
    """
    pd = _pandas()
    try:
        num_images, num_classes, height, width = pred_probs.shape
    except (AttributeError, TypeError, ValueError):
        raise ValueError("pred_probs must be of shape (N, K, H, W)") from None
    if tuple(labels.shape) != (num_images, height, width):
        raise AssertionError("labels must be of shape (N, H, W)")
    exclude = [] if exclude is None else exclude
    top = DEFAULT_TOP if top is None else top

    tally = swaps.tally_issues(issues, labels, swaps.ArgmaxView(pred_probs), int(num_classes))
    count_bar(tally.total)
    pixels = tally.pixels.copy()
    pixels[:, [p for p in range(num_classes) if p in exclude]] = 0

    names = [str(i) for i in range(num_classes)] if class_names is None else class_names
    info = []
    for given, name in enumerate(names):
        if given >= num_classes:
            break
        for predicted, count in enumerate(pixels[given]):
            if count > 0:
                info.append([name, names[predicted], count])
    info = sorted(info, key=lambda row: row[2], reverse=True)[:top]
    table = pd.DataFrame(info, columns=COLUMNS)
    if verbose:
        for _, row in table.iterrows():
            print(
                f"Class '{row['given_label']}' is potentially mislabeled as class for "
                f"'{row['predicted_label']}' {row['num_pixel_issues']} pixels in the dataset"
            )
    return table


def filter_by_class(
    class_index: int, issues: np.ndarray, labels: np.ndarray, pred_probs: np.ndarray
) -> np.ndarray:
    """Issues whose given or predicted class is ``class_index`` (an id or a list of ids),
    as cleanlab; a class that does not occur gives an all-False mask."""
    ids = np.asarray(class_index).ravel()
    if ids.dtype.kind == "b":
        ids = ids.astype(np.int64)
    elif ids.dtype.kind == "f":  # np.isin matches a whole-number float with that class
        with np.errstate(invalid="ignore"):
            ids = ids[ids == np.trunc(ids)].astype(np.int64)
    elif ids.dtype.kind not in "iu":
        ids = np.zeros(0, np.int64)  # nothing else equals a class id
    return swaps.filter_by_class(ids.tolist(), issues, labels, pred_probs)


def _generate_colormap(num_colors: int) -> np.ndarray:
    """``num_colors`` distinct RGBA colours (floats in [0, 1]), as cleanlab's helper
    returns them; the colours are segaudit's class colours."""
    if num_colors < 1:
        return np.zeros((0, 4))
    rgb = distinct_colors(int(num_colors)) / 255.0
    return np.column_stack([rgb, np.ones(len(rgb))])
