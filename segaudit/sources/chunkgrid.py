"""How a Zarr input is cut into stored objects, read from the store's listing alone.

Zarr may legitimately lack chunks (it skips writing a chunk equal to the fill value):
:class:`ChunkGrid` names the images a missing chunk holds, spots a folder standing where
a chunk file should be (which zarr would read as the fill value), and finds the first
chunk of a failed batch that does not decode, so errors name the chunk and its images.
"""

from __future__ import annotations

import itertools
import math
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segaudit.errors import UnreadableStoreError, reason


@dataclass(frozen=True)
class ChunkInventory:
    """What a Zarr array's folder holds: chunks present per first-axis chunk index, and
    chunk keys that are folders instead of files."""

    present: Counter[int]
    folders: list[tuple[int, ...]]


@dataclass(frozen=True)
class ChunkGrid:
    """How a Zarr array is cut into stored objects (chunks, or shards when sharded), and
    how their keys are spelled: ``prefix`` then the grid coordinates joined by
    ``separator`` (``c/0/1/2``, ``c.0.1.2``, ``0.1.2`` or ``0/1/2``)."""

    shape: tuple[int, ...]
    chunk: tuple[int, ...]
    prefix: str
    separator: str
    folder: Path | None  # the array's folder, when it lives in a local directory store

    @classmethod
    def of(cls, array: Any) -> ChunkGrid | None:
        """The grid of a Zarr array (v2 or v3), or None when it has no usable grid."""
        try:
            shape = tuple(int(n) for n in array.shape)
            shards = getattr(array, "shards", None)
            chunk = tuple(int(n) for n in (shards or array.chunks))
            if len(shape) < 2 or len(chunk) != len(shape) or min(shape + chunk) <= 0:
                return None
            sample = str(array.metadata.encode_chunk_key(tuple(range(10, 10 + len(shape)))))
        except Exception:  # not a Zarr array after all, or metadata zarr cannot describe
            return None
        prefix = sample[: sample.find("10")]
        separator = sample[len(prefix) + 2 : sample.find("11")]
        if sample != prefix + separator.join(str(c) for c in range(10, 10 + len(shape))):
            return None  # a key encoding of unknown spelling
        return cls(shape, chunk, prefix, separator, _local_folder(array))

    @property
    def grid(self) -> tuple[int, ...]:
        return tuple(-(-n // c) for n, c in zip(self.shape, self.chunk, strict=True))

    def key(self, coords: tuple[int, ...]) -> str:
        return self.prefix + self.separator.join(str(c) for c in coords)

    def images(self, row: int) -> range:
        """The images held by chunks at index ``row`` of the first axis."""
        return range(row * self.chunk[0], min((row + 1) * self.chunk[0], self.shape[0]))

    def parse(self, relative: str) -> tuple[int, ...] | None:
        """Grid coordinates of a stored key (a path relative to the array's folder)."""
        if not relative.startswith(self.prefix):
            return None
        parts = relative[len(self.prefix) :].split(self.separator)
        if len(parts) != len(self.shape) or not all(p.isdigit() and p.isascii() for p in parts):
            return None
        coords = tuple(int(p) for p in parts)
        if any(c >= n for c, n in zip(coords, self.grid, strict=True)):
            return None
        return coords

    def inventory(self) -> ChunkInventory:
        """One walk of the array's folder: no chunk is opened."""
        assert self.folder is not None
        present: Counter[int] = Counter()
        folders: list[tuple[int, ...]] = []

        def refuse(error: OSError) -> None:
            raise UnreadableStoreError(
                f"{self.folder} cannot be listed ({reason(error)}); check its permissions."
            )

        for root, dirs, files in os.walk(self.folder, onerror=refuse):
            base = os.path.relpath(root, self.folder)
            base = "" if base == "." else base.replace(os.sep, "/") + "/"
            for name in files:
                coords = self.parse(base + name)
                if coords is not None:
                    present[coords[0]] += 1
            for name in dirs:
                coords = self.parse(base + name)
                if coords is not None:
                    folders.append(coords)
        return ChunkInventory(present, sorted(folders))

    def absent_images(self, inventory: ChunkInventory) -> list[int]:
        per_row = math.prod(self.grid[1:])
        return [
            image
            for row in range(self.grid[0])
            if inventory.present[row] < per_row
            for image in self.images(row)
        ]

    def check_no_folders(self, inventory: ChunkInventory, path: Path) -> None:
        """Zarr reads a folder standing where a chunk should be as the fill value: refuse."""
        if inventory.folders:
            coords = inventory.folders[0]
            more = f" (and {len(inventory.folders) - 1} more)" if len(inventory.folders) > 1 else ""
            raise UnreadableStoreError(
                f"{path}: chunk {self.key(coords)} ({images_phrase(self.images(coords[0]))}) "
                f"is a folder, not a chunk file{more}; the store is damaged, regenerate it."
            )

    def first_unreadable(self, array: Any, start: int, stop: int) -> tuple[str, range, str] | None:
        """The first chunk holding images ``start:stop`` that fails to decode, with its
        images and the reason (reads chunk by chunk: only after a batch failed)."""
        rows = range(start // self.chunk[0], (max(start, stop - 1)) // self.chunk[0] + 1)
        for row in rows:
            for rest in itertools.product(*(range(n) for n in self.grid[1:])):
                coords = (row, *rest)
                region = tuple(
                    slice(c * size, (c + 1) * size)
                    for c, size in zip(coords, self.chunk, strict=True)
                )
                try:
                    array[region]
                except Exception as error:  # what zarr raises depends on the codec
                    return self.key(coords), self.images(row), reason(error)
        return None


def _local_folder(array: Any) -> Path | None:
    """The folder of a Zarr array kept in a local directory store, else None."""
    try:
        store_path = array.store_path
        root = getattr(store_path.store, "root", None)
    except AttributeError:
        return None
    if root is None:
        return None
    folder = Path(root) / store_path.path if store_path.path else Path(root)
    return folder if folder.is_dir() else None


def images_phrase(images: range) -> str:
    """``image 7`` or ``images 4..7``."""
    if len(images) == 1:
        return f"image {images[0]}"
    return f"images {images[0]}..{images[-1]}"
