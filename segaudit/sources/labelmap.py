"""From the values a mask file stores to class ids: label maps and colour palettes.

Masks store what their dataset's tools wrote: Cityscapes its 34 raw label ids (of
which 19 are trained), ADE20K 0 for "other" and 1..150 for the classes, some exports
a colour per class. A :class:`LabelMap` turns those values into class ids 0..K-1 or
void (stored as the run's ignore value) with a lookup table, vectorised per image.

A label-map file (``--label-map FILE``) has one mapping per line, ``VALUE, CLASS``:

- VALUE: an integer mask value, an RGB colour as ``#rrggbb`` or ``R G B``, or ``*``
  for every value not listed;
- CLASS: a class id, a class name (from classes.txt or the layout), or ``void``.

Blank lines and lines starting with ``#`` followed by a space are comments. A value
the map does not list (and no ``*`` line) is an error naming the file and the value,
never silently void.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from segaudit.errors import InputNotFoundError, InvalidInputError, UnreadableStoreError
from segaudit.safetext import printable
from segaudit.sources.files import check_regular_file

VOID = None  # a map's value for void pixels
_UNLISTED = -1  # lookup-table entry of a value the map does not list
_VOID_ENTRY = -2  # lookup-table entry of a void value
_HEX = re.compile(r"^#([0-9a-fA-F]{6})$")
_TRIPLE = re.compile(r"^(\d{1,3})[\s,;]+(\d{1,3})[\s,;]+(\d{1,3})$")


def pack_rgb(pixels: np.ndarray) -> np.ndarray:
    """(…, 3) uint8 colours as one uint32 per pixel: 0xRRGGBB."""
    rgb = pixels.astype(np.uint32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


@dataclass(frozen=True)
class LabelMap:
    """Raw value (or packed RGB colour) -> class id, or void."""

    table: Mapping[int, int | None]
    colour: bool = False
    default: int | None | str = "error"  # what unlisted values become ("error": refuse)
    origin: str = "the label map"
    _keys: np.ndarray = field(init=False, repr=False, compare=False)
    _values: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        keys = np.array(sorted(self.table), dtype=np.int64)
        entries = [_VOID_ENTRY if self.table[k] is VOID else int(self.table[k]) for k in keys]
        object.__setattr__(self, "_keys", keys)
        object.__setattr__(self, "_values", np.array(entries, dtype=np.int64))

    def check_classes(self, num_classes: int) -> None:
        """Every class the map names must exist."""
        targets = [v for v in self.table.values() if v is not VOID]
        if isinstance(self.default, int):
            targets.append(self.default)
        bad = sorted({int(v) for v in targets if not 0 <= int(v) < num_classes})
        if bad:
            raise InvalidInputError(
                f"{self.origin} maps to class id(s) {bad[:5]} but there are {num_classes} "
                f"classes (0..{num_classes - 1}); fix the map or the class list."
            )

    def apply(self, raw: np.ndarray, void_value: int, path: Path) -> np.ndarray:
        """Class ids of a mask's pixels (void pixels hold ``void_value``), as int64."""
        if raw.ndim == 3 and not self.colour:
            raise InvalidInputError(
                f"mask {path} is an RGB colour-coded image but {self.origin} maps integer "
                "values; map colours (#rrggbb or R G B) instead."
            )
        if raw.ndim == 2 and self.colour:
            raise InvalidInputError(
                f"mask {path} holds integer values but {self.origin} maps colours; "
                "map integer values instead."
            )
        values = pack_rgb(raw).astype(np.int64) if self.colour else raw.astype(np.int64)
        if len(self._keys) == 0:
            index = np.zeros(values.shape, np.intp)
            found = np.zeros(values.shape, bool)
        else:
            index = np.minimum(np.searchsorted(self._keys, values), len(self._keys) - 1)
            found = self._keys[index] == values
        mapped = np.where(found, self._values[index], _UNLISTED)
        self._fill_unlisted(mapped, values, found, path)
        return np.where(mapped == _VOID_ENTRY, void_value, mapped)

    def _fill_unlisted(
        self, mapped: np.ndarray, values: np.ndarray, found: np.ndarray, path: Path
    ) -> None:
        if found.all():
            return
        if self.default == "error":
            at = int(np.flatnonzero(~found.ravel())[0])
            row, col = divmod(at, values.shape[1])
            first = values.ravel()[at]
            shown = f"#{int(first):06x}" if self.colour else str(int(first))
            count = int(np.count_nonzero(~found))
            more = f" (and {count - 1} more pixels)" if count > 1 else ""
            fix = (
                "add it to the map (or a '*, void' line)"
                if self.origin.startswith("label map")
                else "fix the mask, or pass --label-map FILE to say what it means"
            )
            raise InvalidInputError(
                f"mask {path} holds the value {shown} at pixel ({row}, {col}){more}, which "
                f"{self.origin} does not map; {fix}."
            )
        mapped[~found] = _VOID_ENTRY if self.default is VOID else int(self.default)


def read_label_map(path: Path, class_names: Sequence[str] | None) -> LabelMap:
    """Parse a label-map file (see the module's docstring)."""
    if not path.exists():
        raise InputNotFoundError(f"label map {path} does not exist; check --label-map.")
    check_regular_file(path, "label map")  # a pipe would block forever
    try:
        text = path.read_text(encoding="utf-8-sig")  # editors on Windows write a BOM
    except FileNotFoundError:
        raise InputNotFoundError(f"label map {path} does not exist; check --label-map.") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UnreadableStoreError(
            f"label map {path} is not a readable UTF-8 text file ({error})."
        ) from None
    table: dict[int, int | None] = {}
    default: int | None | str = "error"
    kinds: set[bool] = set()
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.strip()
        if not line or line.startswith("# ") or line == "#":
            continue
        where = f"label map {path}, line {number}"
        value_text, _, class_text = line.rpartition(",")
        if not value_text:
            raise InvalidInputError(
                f"{where} is {printable(line)!r}; write 'VALUE, CLASS' (e.g. '7, road')."
            )
        target = _parse_class(class_text.strip(), class_names, where)
        if value_text.strip() == "*":
            default = target
            continue
        value, colour = _parse_value(value_text.strip(), where)
        kinds.add(colour)
        if value in table:
            raise InvalidInputError(f"{where} maps {value_text.strip()} a second time.")
        table[value] = target
    if len(kinds) > 1:
        raise InvalidInputError(
            f"label map {path} mixes integer values and colours; one map is for one kind of mask."
        )
    if not table:
        only = "" if default == "error" else ", only '*'"
        raise InvalidInputError(
            f"label map {path} lists no mask value{only}; write 'VALUE, CLASS' lines."
        )
    return LabelMap(table, colour=kinds == {True}, default=default, origin=f"label map {path}")


_LARGEST = 2**63 - 1  # values and class ids are held as int64


def _parse_value(text: str, where: str) -> tuple[int, bool]:
    """An integer value, or a colour packed as 0xRRGGBB (and whether it is one)."""
    match = _HEX.match(text)
    if match:
        return int(match.group(1), 16), True
    match = _TRIPLE.match(text)
    if match:
        r, g, b = (int(part) for part in match.groups())
        if max(r, g, b) > 255:
            raise InvalidInputError(f"{where}: colour {text!r} has a channel above 255.")
        return (r << 16) | (g << 8) | b, True
    try:
        value = int(text)
    except ValueError:
        raise InvalidInputError(
            f"{where}: {printable(text)!r} is not a mask value (an integer, #rrggbb or 'R G B')."
        ) from None
    if value < 0:
        raise InvalidInputError(f"{where}: mask values are not negative, got {value}.")
    if value > _LARGEST:
        raise InvalidInputError(f"{where}: {text} is larger than any mask value.")
    return value, False


def _parse_class(text: str, class_names: Sequence[str] | None, where: str) -> int | None:
    """A class id, a class name, or void."""
    if text.lower() in ("void", "ignore"):
        return VOID
    if text.isascii() and text.isdigit():  # not '²', which str.isdigit also takes
        if int(text) > _LARGEST:
            raise InvalidInputError(f"{where}: {text} is larger than any class id.")
        return int(text)
    if class_names is not None and text in class_names:
        return list(class_names).index(text)
    hint = "a class id or void" if class_names is None else "a class id, a class name or void"
    raise InvalidInputError(f"{where}: {printable(text)!r} is not {hint}.")


def identity_needed(mask_is_colour: bool, path: Path) -> None:
    """A colour-coded mask cannot be read without a map from colours to classes."""
    if mask_is_colour:
        raise InvalidInputError(
            f"mask {path} is an RGB colour-coded image; pass --label-map FILE mapping each "
            "colour to a class ('#rrggbb, CLASS' lines)."
        )
