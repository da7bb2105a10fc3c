"""File writers that take an array piece by piece: ``.npy``, Zarr v3 and PNG.

The ``.npy`` and Zarr writers take one image, or one band of rows of one image's
probabilities, at a time, so no output ever has to sit whole in memory.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

# Fixed encoder settings: the same pixels always give the same PNG bytes.
PNG_OPTIONS: dict[str, Any] = {"format": "PNG", "compress_level": 6, "optimize": False}


class NpyWriter:
    """Writes one ``.npy`` file piece by piece.

    ``open_memmap`` lays out the header and the full-size file; the data then go through
    plain positioned writes, so no mapping of the whole (possibly multi-GB) file builds up
    in the process's memory and no page faults are paid per written page.
    """

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: np.dtype) -> None:
        array = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
        self.offset = array.offset
        del array
        self.shape, self.dtype = shape, np.dtype(dtype)
        self.file = open(path, "r+b")

    def put(self, i: int, data: np.ndarray, r0: int = 0) -> None:
        """Store image ``i`` of a stacked array, or rows ``r0:`` of it for (N, K, H, W)."""
        item = math.prod(self.shape[1:]) * self.dtype.itemsize
        self._put_item(self.offset + i * item, self.shape[1:], data, r0)

    def put_all(self, data: np.ndarray, r0: int = 0) -> None:
        """Store the whole array, or rows ``r0:`` of it for a (K, H, W) array."""
        self._put_item(self.offset, self.shape, data, r0)

    def _put_item(self, position: int, shape: tuple[int, ...], data: np.ndarray, r0: int) -> None:
        data = np.ascontiguousarray(data, dtype=self.dtype)
        if data.shape == shape:
            self._write(position, data)
            return
        k, h, w = shape
        for plane, rows in enumerate(data):  # a band of rows: one write per class plane
            self._write(position + ((plane * h + r0) * w) * self.dtype.itemsize, rows)

    def _write(self, position: int, data: np.ndarray) -> None:
        self.file.seek(position)
        self.file.write(memoryview(data).cast("B"))

    def close(self) -> None:
        self.file.close()


class ZarrWriter:
    """Writes one Zarr v3 store image by image (one image, or band of rows, per chunk)."""

    def __init__(
        self, path: Path, shape: tuple[int, ...], dtype: np.dtype, chunks: tuple[int, ...]
    ) -> None:
        import zarr
        from zarr.codecs import BloscCodec

        extra: dict[str, Any] = {}
        if path.stem == "pred_probs":  # probabilities barely compress; lz4 decodes fastest
            extra["compressors"] = BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")
        self.array = zarr.create_array(
            store=str(path),
            shape=shape,
            chunks=chunks,
            dtype=dtype,
            fill_value=0,
            zarr_format=3,
            overwrite=True,
            **extra,
        )

    def put(self, i: int, data: np.ndarray, r0: int = 0) -> None:
        """Store image ``i``, or rows ``r0:`` of it for (N, K, H, W) arrays."""
        if data.shape == self.array.shape[1:]:
            self.array[i] = data
        else:
            self.array[i, :, r0 : r0 + data.shape[1]] = data

    def put_all(self, data: np.ndarray) -> None:
        self.array[...] = data

    def close(self) -> None:
        pass


def write_png(path: Path, pixels: np.ndarray) -> None:
    """Save (H, W) uint8 ("L"), (H, W) uint16 ("I;16") or (H, W, 3) uint8 ("RGB") as PNG."""
    from PIL import Image

    if pixels.dtype == np.uint16:
        image = Image.frombytes("I;16", pixels.shape[::-1], pixels.astype("<u2").tobytes())
    else:
        image = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8))
    image.save(path, **PNG_OPTIONS)
