"""Stacked stores: every image of one input in a single ``.npy`` or Zarr array.

labels (N, H, W), pred_probs (N, K, H, W) or (N, H, W, K), photos (N, H, W, 3): the
images share one size and are known by their index. Each class here reads one image
at a time from such a store (a view into the memory map for ``.npy``), so the engine
treats stacked and per-file datasets alike.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from segaudit.errors import InvalidInputError
from segaudit.sources.files import Loaded
from segaudit.sources.fingerprints import check_unchanged
from segaudit.sources.remote import is_url
from segaudit.sources.stores import ArraySource

# Images with absent chunks named in summary.json per store (the count is always exact).
ABSENT_LISTED = 100


def absolute(path: Any) -> str:
    """``path`` made absolute without resolving symbolic links.

    A later command run from another folder then opens what the user named (a link to
    ``latest/`` still means the latest), and the recorded fingerprint tells it whether
    that is still the same file.
    """
    return str(path) if is_url(path) else os.path.abspath(path)


class StackedArrays:
    """One stacked input; image i is ``array[i]``."""

    ids: list[str] | None = None  # images are known by index only

    def __init__(self, source: ArraySource, what: str) -> None:
        self.source = source
        self.what = what
        self.before = source.fingerprint()
        self.absent = source.absent_images()

    def __len__(self) -> int:
        return self.source.shape[0]

    @property
    def path(self) -> Any:
        """The store's path (a URL stays a str)."""
        return self.source.path if is_url(self.source.path) else Path(self.source.path)

    def read(self, index: int, populate: bool = True) -> Loaded:
        array = self.source.read(index, index + 1, populate=populate)[0]
        return Loaded(array, self.source)

    def describe(self) -> dict[str, Any]:
        """What summary.json says about this input: where, what, and its identity."""
        return {
            "path": absolute(self.source.path),
            "format": self.source.kind,
            "shape": list(self.source.shape),
            "dtype": str(self.source.dtype),
            **self.before,
            "absent_chunk_images": {
                "count": len(self.absent),
                "images": self.absent[:ABSENT_LISTED],
            },
        }

    def check_unchanged(self) -> None:
        check_unchanged(self.source, self.before)

    def file_of(self, index: int) -> str:
        return f"{absolute(self.source.path)}[{index}]"


class StackedLabels(StackedArrays):
    """labels (N, H, W) integers."""

    def __init__(self, source: ArraySource) -> None:
        super().__init__(source, "labels")
        shape = source.shape
        if len(shape) != 3:
            raise InvalidInputError(
                f"{source.path} has shape {shape}; labels must be (N, H, W)."
            )
        if source.dtype.kind not in "iu":
            raise InvalidInputError(
                f"{source.path} holds {source.dtype} values; labels must be integers."
            )

    def size(self, index: int) -> tuple[int, int]:
        return self.source.shape[1], self.source.shape[2]

    @property
    def dtype(self) -> np.dtype:
        return self.source.dtype


class StackedProbs(StackedArrays):
    """pred_probs (N, K, H, W), or (N, H, W, K) with ``channels_last``."""

    def __init__(self, source: ArraySource, channels_last: bool) -> None:
        super().__init__(source, "pred_probs")
        shape = source.shape
        hint = "(N, H, W, K) with --channels-last" if channels_last else "(N, K, H, W)"
        if len(shape) != 4:
            raise InvalidInputError(f"{source.path} has shape {shape}; pred_probs must be {hint}.")
        self.channels_last = channels_last
        self.num_classes = shape[3] if channels_last else shape[1]
        self.dtype = source.dtype

    def size(self, index: int) -> tuple[int, int]:
        shape = self.source.shape
        return (shape[1], shape[2]) if self.channels_last else (shape[2], shape[3])


class StackedPhotos(StackedArrays):
    """Photos (N, H, W, 3) uint8."""

    def __init__(self, source: ArraySource) -> None:
        super().__init__(source, "images")
        shape = source.shape
        if len(shape) != 4 or shape[3] != 3:
            raise InvalidInputError(
                f"{source.path} has shape {shape}; images must be (N, H, W, 3) uint8 RGB."
            )
        if source.dtype != np.uint8:
            raise InvalidInputError(
                f"{source.path} holds {source.dtype} values; images must be uint8 RGB."
            )

    def size(self, index: int) -> tuple[int, int]:
        return self.source.shape[1], self.source.shape[2]


class ImageList:
    """Images handed over one array each, in memory (the Python API's lists): image i is
    ``arrays[i]``, of its own size. Used for labels (H, W) and predictions (K, H, W)."""

    ids: list[str] | None = None
    absent: list[int] = []  # noqa: RUF012 - never absent: the arrays are in memory

    def __init__(self, arrays: list[Any], what: str, channels_last: bool = False) -> None:
        self.arrays, self.what = arrays, what
        self.path = Path(f"<{what}>")
        self.channels_last = channels_last
        dims = 3 if what == "pred_probs" else 2
        for index, array in enumerate(arrays):
            if np.ndim(array) != dims:
                shape = "(H, W, K)" if channels_last else "(K, H, W)"
                expected = shape if dims == 3 else "(H, W)"
                raise InvalidInputError(
                    f"{what}[{index}] has shape {np.shape(array)}; each image's {what} must "
                    f"be {expected}."
                )
        first = np.asarray(arrays[0]) if arrays else np.zeros((0,) * dims)
        self.dtype = first.dtype
        if dims == 3:
            self.num_classes = first.shape[2] if channels_last else first.shape[0]
            mixed = {np.asarray(a).dtype for a in arrays}
            if len(mixed) > 1 or any(self._classes(a) != self.num_classes for a in arrays):
                raise InvalidInputError(
                    f"{what} arrays differ in dtype or class count; give every image's "
                    "predictions the same classes and dtype."
                )
        elif any(np.asarray(a).dtype.kind not in "iu" for a in arrays):
            raise InvalidInputError(f"{what} must hold integers (class ids).")
        else:
            self.dtype = np.result_type(*[np.asarray(a).dtype for a in arrays])

    def _classes(self, array: Any) -> int:
        shape = np.shape(array)
        return int(shape[2] if self.channels_last else shape[0])

    def __len__(self) -> int:
        return len(self.arrays)

    def size(self, index: int) -> tuple[int, int]:
        shape = np.shape(self.arrays[index])
        if len(shape) == 2:
            return int(shape[0]), int(shape[1])
        return (int(shape[0]), int(shape[1])) if self.channels_last else (
            int(shape[1]), int(shape[2]))  # fmt: skip

    def read(self, index: int, populate: bool = True) -> Loaded:
        return Loaded(np.ascontiguousarray(self.arrays[index]))

    def file_of(self, index: int) -> str:
        return f"{self.path}[{index}]"

    def describe(self) -> dict[str, Any]:
        return {"path": str(self.path), "format": "arrays", "images": len(self.arrays)}

    def check_unchanged(self) -> None:
        pass


def is_image_list(value: Any) -> bool:
    """Whether an API argument is a list of per-image arrays (rather than one array)."""
    return (
        isinstance(value, list | tuple)
        and len(value) > 0
        and all(hasattr(item, "shape") and hasattr(item, "dtype") for item in value)
    )
