"""Options of the volume generator: defaults, checks, and one sentence for each bad value."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from segaudit.synth.options import DTYPES, SynthOptionError

# fmt: off
DEFAULT_ORGAN_NAMES = (
    "background", "liver", "spleen", "kidney_right", "kidney_left", "stomach", "pancreas",
    "gallbladder", "aorta", "esophagus", "duodenum", "urinary_bladder",
)
# fmt: on
DEFAULT_SHAPE = (32, 64, 64)
MAX_VOLUME_CLASSES = 255  # labels are uint8, and the ignore label (K) must fit too
_SHAPE = re.compile(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*[xX×]\s*(\d+)\s*")
_HINT = "ZxYxX sizes in voxels, such as 32x64x64 (several: comma-separated or repeated)"

Shape3 = tuple[int, int, int]


@dataclass(frozen=True)
class VolumeOptions:
    """Checked options of one volume dataset."""

    volumes: int
    shapes: tuple[Shape3, ...]  # dealt out to the volumes by the seed
    classes: int
    seed: int
    dtype: str
    corrupt_fraction: float
    void_fraction: float
    class_names: tuple[str, ...]


def check_volume_options(
    *,
    volumes: Any,
    shapes: Any,
    classes: Any,
    seed: Any,
    dtype: Any,
    corrupt_fraction: Any,
    void_fraction: Any,
    class_names: Sequence[str] | None,
) -> VolumeOptions:
    """Check every option, in the order the command line lists them; return them checked."""
    if not _is_int(volumes) or volumes < 1:
        raise SynthOptionError(f"--images must be a positive integer, got {volumes!r}.")
    parsed = parse_shapes(DEFAULT_SHAPE if shapes is None else shapes)
    if not _is_int(classes) or not 2 <= classes <= MAX_VOLUME_CLASSES:
        raise SynthOptionError(
            f"--classes must be an integer from 2 to {MAX_VOLUME_CLASSES} with --volumes, "
            f"got {classes!r}."
        )
    if not _is_int(seed) or seed < 0:
        raise SynthOptionError(f"--seed must be a non-negative integer, got {seed!r}.")
    if dtype not in DTYPES:
        raise SynthOptionError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}.")
    _check_fraction("corrupt-fraction", corrupt_fraction, 1.0, "from 0 to 1")
    _check_fraction("void-fraction", void_fraction, 0.5, "from 0 to 0.5")
    return VolumeOptions(
        volumes=int(volumes),
        shapes=tuple(parsed),
        classes=int(classes),
        seed=int(seed),
        dtype=dtype,
        corrupt_fraction=float(corrupt_fraction),
        void_fraction=float(void_fraction),
        class_names=tuple(_names(class_names, int(classes))),
    )


def parse_shapes(shapes: str | Sequence[Any]) -> list[Shape3]:
    """``"32x64x64,16x48x48"``, a list of such strings, or triples, as a list of triples."""
    items: list[Any] = []
    for item in [shapes] if isinstance(shapes, str) else list(shapes):
        items += item.split(",") if isinstance(item, str) else [item]
    if items and not isinstance(items[0], (str, list, tuple)):
        items = [items]  # one triple of ints
    parsed = [_parse_shape(item) for item in items]
    if not parsed or any(shape is None for shape in parsed):
        bad = next((i for i, s in zip(items, parsed, strict=True) if s is None), shapes)
        shown = repr(bad.strip()) if isinstance(bad, str) else repr(bad)
        raise SynthOptionError(f"--shape must be {_HINT}, got {shown}.")
    return [shape for shape in parsed if shape is not None]


def _parse_shape(item: Any) -> Shape3 | None:
    if isinstance(item, str):
        match = _SHAPE.fullmatch(item)
        triple: Any = tuple(int(n) for n in match.groups()) if match else None
    else:
        triple = tuple(item) if isinstance(item, (list, tuple)) else None
    if triple is None or len(triple) != 3 or any(not _is_int(n) or n < 1 for n in triple):
        return None
    return int(triple[0]), int(triple[1]), int(triple[2])


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_fraction(name: str, value: Any, top: float, words: str) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= top
    if not ok:
        raise SynthOptionError(f"--{name} must be a number {words}, got {value!r}.")


def _names(class_names: Sequence[str] | None, classes: int) -> list[str]:
    """The class names given (checked; class 0 is the background), or organ names."""
    if class_names is None:
        return [
            DEFAULT_ORGAN_NAMES[k] if k < len(DEFAULT_ORGAN_NAMES) else f"organ_{k}"
            for k in range(classes)
        ]
    names = [str(n).strip() for n in class_names]
    if len(names) != classes:
        raise SynthOptionError(
            f"--class-names gives {len(names)} names but --classes is {classes}; "
            "pass one name per class."
        )
    if names[0] != "background":
        raise SynthOptionError(
            "--class-names must start with background: class 0 of a volume dataset is "
            "nnU-Net's background."
        )
    if any(not n or "\n" in n or "\r" in n for n in names):
        raise SynthOptionError("--class-names must not contain empty names or line breaks.")
    if len(set(names)) != len(names) or "ignore" in names:
        raise SynthOptionError(
            "--class-names must not repeat a name or use ignore (nnU-Net's ignore label)."
        )
    return names
