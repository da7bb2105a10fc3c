"""Image ids: the name of each image, and the path of its files inside a run.

An id is the image's path under its folder without the extension (``val/munich/x``),
so it may hold sub-folders. Outputs are written at ``RUN/issues/ID.png``, so an id is
checked before anything uses it: no absolute path, no ``..`` or ``.`` component, no
empty component, no backslash, no NUL or control character, nothing but UTF-8. Then no
id, however it was made (a file name, a manifest row), can make segaudit write outside
RUN.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import PurePosixPath

from segaudit.errors import InvalidInputError
from segaudit.safetext import printable

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SURROGATE = re.compile("[\ud800-\udfff]")  # how Python decodes bytes that are not UTF-8
MAX_COMPONENT_BYTES = 200  # leaves room for a suffix under the usual 255-byte limit


def id_problem(image_id: str) -> str | None:
    """Why ``image_id`` cannot name an image's outputs, or None when it can."""
    if not image_id:
        return "is empty"
    if _CONTROL.search(image_id):
        return "holds a control character"
    if _SURROGATE.search(image_id):  # a file name's bytes that are not UTF-8
        return "is not UTF-8 text (a file name in another encoding)"
    if "\\" in image_id:
        return "holds a backslash"
    if image_id.startswith("/"):
        return "is an absolute path"
    for part in image_id.split("/"):
        if part in ("", ".", ".."):
            return f"has a '{part}' path component" if part else "has an empty path component"
        if len(part.encode("utf-8", "surrogateescape")) > MAX_COMPONENT_BYTES:
            return "has a path component longer than 200 bytes"
    return None


def check_id(image_id: str, where: str) -> str:
    """``image_id`` when it is safe to use as a relative output path; else one sentence."""
    problem = id_problem(image_id)
    if problem is not None:
        raise InvalidInputError(
            f"image id {printable(image_id)!r} in {where} {problem}; ids become file names "
            "under RUN, so give each image a plain relative name."
        )
    return image_id


def id_from_path(relative: PurePosixPath, suffix: str = "") -> str:
    """The id of a file at ``relative`` under its folder: the path without its extension
    (and without a layout's file-name ``suffix`` such as ``_gtFine_labelIds``)."""
    name = relative.name
    for extension in sorted(_extensions(name), key=len, reverse=True):
        if name.endswith(extension):
            name = name[: -len(extension)]
            break
    if suffix and name.endswith(suffix):
        name = name[: -len(suffix)]
    return str(relative.with_name(name)) if name else str(relative)


def _extensions(name: str) -> list[str]:
    """``x.nii.gz`` has the extension ``.nii.gz``; anything else its last suffix."""
    suffixes = PurePosixPath(name).suffixes
    if len(suffixes) >= 2 and suffixes[-1].lower() == ".gz":
        return ["".join(suffixes[-2:])]
    return suffixes[-1:]


def check_unique(ids: Iterable[str], where: str, *, rows: bool = False) -> None:
    """Two files with one id (``a.png`` and ``a.tif``) cannot both be the image ``a``."""
    seen: dict[str, int] = {}
    for image_id in ids:
        seen[image_id] = seen.get(image_id, 0) + 1
    duplicates = sorted(image_id for image_id, count in seen.items() if count > 1)
    if duplicates:
        shown = ", ".join(printable(d) for d in duplicates[:5])
        more = f" and {len(duplicates) - 5} more" if len(duplicates) > 5 else ""
        if rows:  # a manifest's own id column
            raise InvalidInputError(
                f"{where} lists the image id(s) {shown}{more} on several rows; give each "
                "image one row and its own id."
            )
        raise InvalidInputError(
            f"{where} holds several files for the image id(s) {shown}{more}; "
            "keep one file per image (ids are file paths without their extension)."
        )
