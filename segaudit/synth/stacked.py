"""The stacked layout: one ``.npy`` file or Zarr store per array, images along axis 0.

``labels`` and ``true_labels`` (N, H, W), ``pred_probs`` (N, K, H, W), ``images``
(N, H, W, 3), ``is_corrupted`` (N,) and ``errors`` (N, H, W) uint16, every image of one
size. ``errors`` holds each image's error map (see
:mod:`~segaudit.synth.annotation_errors`): 0 where the pixel is untouched, e where the
image's e-th event in ``synth.json`` changed it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from segaudit.progress import Progress
from segaudit.synth.annotation_errors import ERROR_MAP_DTYPE
from segaudit.synth.image import (
    SynthImage,
    band_rows,
    make_image,
    map_in_order,
    probability_bands,
)
from segaudit.synth.options import SynthOptions
from segaudit.synth.output import UNRECORDED_FILES, label_dtype, record_image
from segaudit.synth.world import World
from segaudit.synth.writers import NpyWriter, ZarrWriter

# name -> (shape, dtype, zarr chunks)
Specs = dict[str, tuple[tuple[int, ...], Any, tuple[int, ...]]]


class StackedLayout:
    """Writes a dataset as stacked arrays in ``out``."""

    def __init__(self, out: Path, options: SynthOptions) -> None:
        self.out, self.options = out, options
        self.height, self.width = options.sizes[0]  # checked: one size
        self.band = band_rows(options.classes, self.height, self.width)
        self.specs = _array_specs(options, self.height, self.width, self.band)

    def needed_bytes(self) -> int:
        """Bytes the ``.npy`` files take (Zarr stores compress: not known ahead)."""
        if self.options.fmt != "npy":
            return 0
        return sum(math.prod(shape) * np.dtype(dt).itemsize for shape, dt, _ in self.specs.values())

    def files(self) -> dict[str, Any]:
        """What ``synth.json`` says about the files: shape and dtype of each array (the
        error maps left out, see :data:`~segaudit.synth.output.UNRECORDED_FILES`)."""
        return {
            name: {"shape": list(s[0]), "dtype": np.dtype(s[1]).name}
            for name, s in self.specs.items()
            if name not in UNRECORDED_FILES
        }

    def report_extras(self, is_corrupted: np.ndarray) -> dict[str, Any]:
        """Nothing: images are known by their index."""
        return {}

    def write(
        self, world: World, is_corrupted: np.ndarray, report: dict[str, Any], progress: Progress
    ) -> None:
        """Generate image after image into the stores (images are made on worker threads)."""
        n, k, h, w = self.specs["pred_probs"][0]
        dtype = self.specs["pred_probs"][1]
        buffer = np.empty(k * self.band * w, dtype=np.float32)  # reused: first touch is slow

        def make(i: int) -> SynthImage:
            return make_image(world, i, bool(is_corrupted[i]), h, w)

        writers = _open_writers(self.out, self.options.fmt, self.specs)
        progress.start("Generating synthetic dataset", n)
        try:
            for i, image in enumerate(map_in_order(make, n)):
                if is_corrupted[i]:
                    record_image(report, i, image.events, image.noisy_pixels)
                writers["true_labels"].put(i, image.truth)
                writers["labels"].put(i, image.noisy)
                writers["images"].put(i, image.photo)
                writers["errors"].put(i, image.errors)
                for r0, probs in probability_bands(image.model, self.band, buffer):
                    writers["pred_probs"].put(i, probs.astype(dtype, copy=False), r0)
                progress.advance(1)
            writers["is_corrupted"].put_all(is_corrupted)
        finally:
            progress.finish()
            _close_writers(writers)


def _array_specs(options: SynthOptions, height: int, width: int, band: int) -> Specs:
    """Shape, dtype and Zarr chunks of every array (one image, or band of rows, a chunk)."""
    n, k = options.images, options.classes
    labels = label_dtype(k)
    return {
        "labels": ((n, height, width), labels, (1, height, width)),
        "pred_probs": ((n, k, height, width), np.dtype(options.dtype), (1, k, band, width)),
        "images": ((n, height, width, 3), np.uint8, (1, height, width, 3)),
        "true_labels": ((n, height, width), labels, (1, height, width)),
        "is_corrupted": ((n,), np.bool_, (n,)),
        "errors": ((n, height, width), ERROR_MAP_DTYPE, (1, height, width)),
    }


def _open_writers(out: Path, fmt: str, specs: Specs) -> dict[str, Any]:
    """Create every output array (empty, full size) and return a writer for each."""
    writers: dict[str, Any] = {}
    try:
        for name, (shape, dtype, chunks) in specs.items():
            if fmt == "npy":
                writers[name] = NpyWriter(out / f"{name}.npy", shape, dtype)
            else:
                writers[name] = ZarrWriter(out / f"{name}.zarr", shape, dtype, chunks)
    except BaseException:
        _close_writers(writers)
        raise
    return writers


def _close_writers(writers: dict[str, Any]) -> None:
    for writer in writers.values():
        writer.close()
