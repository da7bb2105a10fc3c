"""The generator's options: defaults, checks, and one sentence for each bad value.

Every check runs before anything is written, so a bad option leaves no trace on disk.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from segaudit.errors import SegauditError

# fmt: off
DEFAULT_CLASS_NAMES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)
# fmt: on
DTYPES = ("float16", "float32")
FORMATS = ("npy", "zarr")
LAYOUTS = ("stacked", "folder")
DIFFICULTIES = ("standard", "hard")
MAX_CLASSES = 65535

_SIZE = re.compile(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*")
_SIZES_HINT = "a comma-separated list of HxW sizes in pixels, such as 96x128,80x112"

Size = tuple[int, int]


class SynthOptionError(SegauditError):
    """An option of the synthetic-data generator is out of range."""


class OutputNotEmptyError(SegauditError, FileExistsError):
    """The output folder already holds files and ``force`` was not given."""


@dataclass(frozen=True)
class SynthOptions:
    """Checked options of one dataset: everything but where it goes."""

    images: int
    sizes: tuple[Size, ...]  # the sizes images are given (one size: every image)
    classes: int
    seed: int
    dtype: str
    fmt: str
    layout: str
    corrupt_fraction: float
    class_names: tuple[str, ...]
    height: int | None  # as given, for the record
    width: int | None
    difficulty: str = "standard"


def check_options(
    *,
    images: Any,
    height: Any,
    width: Any,
    sizes: Any,
    classes: Any,
    seed: Any,
    dtype: Any,
    fmt: Any,
    layout: Any,
    corrupt_fraction: Any,
    class_names: Sequence[str] | None,
    difficulty: Any = "standard",
) -> SynthOptions:
    """Check every option, in the order the command line lists them; return them checked."""
    _check_positive("images", images)
    resolved = resolve_sizes(height, width, sizes)
    _check_classes(classes)
    if _not_int(seed) or seed < 0:
        raise SynthOptionError(f"--seed must be a non-negative integer, got {seed!r}.")
    _check_choice("dtype", dtype, DTYPES)
    _check_choice("format", fmt, FORMATS)
    _check_choice("layout", layout, LAYOUTS)
    _check_layout(layout, fmt, resolved)
    _check_choice("difficulty", difficulty, DIFFICULTIES)
    if not (isinstance(corrupt_fraction, (int, float)) and 0 <= corrupt_fraction <= 1):
        raise SynthOptionError(
            f"--corrupt-fraction must be a number from 0 to 1, got {corrupt_fraction!r}."
        )
    return SynthOptions(
        images=int(images),
        sizes=tuple(resolved),
        classes=int(classes),
        seed=int(seed),
        dtype=dtype,
        fmt=fmt,
        layout=layout,
        corrupt_fraction=corrupt_fraction,
        class_names=tuple(_class_names(class_names, int(classes))),
        height=None if height is None else int(height),
        width=None if width is None else int(width),
        difficulty=difficulty,
    )


def resolve_sizes(height: Any, width: Any, sizes: Any) -> list[Size]:
    """The image sizes: ``--sizes``, or the one size ``--height`` by ``--width``."""
    if sizes is not None:
        if height is not None or width is not None:
            raise SynthOptionError(
                "pass either --sizes or --height and --width, not both; "
                "--sizes alone gives every size."
            )
        return parse_sizes(sizes)
    if height is None or width is None:
        raise SynthOptionError("give the image size with --height and --width, or with --sizes.")
    _check_positive("height", height)
    _check_positive("width", width)
    return [(int(height), int(width))]


def parse_sizes(sizes: str | Sequence[Size]) -> list[Size]:
    """``"96x128,80x112"`` (or pairs of ints) as ``[(96, 128), (80, 112)]``."""
    if isinstance(sizes, str):
        items: list[Any] = sizes.split(",")
    else:
        items = list(sizes) if isinstance(sizes, (list, tuple)) else [sizes]
    parsed = [_parse_size(item) for item in items]
    if not parsed or any(size is None for size in parsed):
        bad = next((item for item, size in zip(items, parsed, strict=True) if size is None), "")
        raise SynthOptionError(f"--sizes must be {_SIZES_HINT}, got {_shown(bad or sizes)}.")
    return [size for size in parsed if size is not None]


def _parse_size(item: Any) -> Size | None:
    """One ``HxW`` (text or a pair) of positive integers, or None."""
    if isinstance(item, str):
        match = _SIZE.fullmatch(item)
        pair: Any = (int(match[1]), int(match[2])) if match else None
    else:
        pair = tuple(item) if isinstance(item, (tuple, list)) else None
    if pair is None or len(pair) != 2 or any(_not_int(n) or n < 1 for n in pair):
        return None
    return int(pair[0]), int(pair[1])


def _shown(value: Any) -> str:
    return repr(value.strip()) if isinstance(value, str) else repr(value)


def _not_int(value: Any) -> bool:
    return isinstance(value, bool) or not isinstance(value, (int, np.integer))


def _check_positive(name: str, value: Any) -> None:
    if _not_int(value) or value < 1:
        raise SynthOptionError(f"--{name} must be a positive integer, got {value!r}.")


def _check_classes(classes: Any) -> None:
    if _not_int(classes) or not (2 <= classes <= MAX_CLASSES):
        raise SynthOptionError(
            f"--classes must be an integer from 2 to {MAX_CLASSES}, got {classes!r}."
        )


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise SynthOptionError(f"--{name} must be one of {', '.join(choices)}, got {value!r}.")


def _check_layout(layout: str, fmt: str, sizes: list[Size]) -> None:
    """Stacked arrays hold one size; a folder holds one ``.npy`` file per image."""
    if layout == "stacked" and len(set(sizes)) > 1:
        raise SynthOptionError(
            "--sizes with several sizes needs --layout folder; "
            "stacked arrays hold images of one size."
        )
    if layout == "folder" and fmt != "npy":
        raise SynthOptionError(
            f"--format {fmt} applies to the stacked layout; "
            "--layout folder writes PNG masks and one .npy file of predictions per image."
        )


def _class_names(class_names: Sequence[str] | None, classes: int) -> list[str]:
    """The class names given (checked), or the default street-scene names."""
    if class_names is None:
        return [
            DEFAULT_CLASS_NAMES[k] if k < len(DEFAULT_CLASS_NAMES) else f"class_{k}"
            for k in range(classes)
        ]
    names = [str(n).strip() for n in class_names]
    if len(names) != classes:
        raise SynthOptionError(
            f"--class-names gives {len(names)} names but --classes is {classes}; "
            "pass one name per class."
        )
    if any(not n or "\n" in n or "\r" in n for n in names):
        raise SynthOptionError("--class-names must not contain empty names or line breaks.")
    if len(set(names)) != len(names):
        raise SynthOptionError("--class-names must not repeat a name.")
    return names
