"""The folder layout: one file per image and kind, the way people keep datasets.

- ``OUT/labels/ID.png``: the noisy labels, 8-bit grayscale ("L"), or 16-bit ("I;16")
  past 256 classes; ``OUT/true_labels/ID.png``: the clean labels, likewise;
- ``OUT/pred_probs/ID.npy``: (K, H, W) probabilities of the chosen dtype;
- ``OUT/images/ID.png``: RGB photos; ``OUT/is_corrupted.csv``: ``id,is_corrupted`` (0/1);
- ``OUT/errors/ID.png``: the error map, 16-bit grayscale ("I;16"): 0 where the pixel is
  untouched, e where the image's e-th event in ``synth.json`` changed it (see
  :mod:`~segaudit.synth.annotation_errors`); all zeros for a clean image.

Ids are ``img_00000``, ``img_00001``, ... Images may have several sizes, dealt out by the
seed. Each worker thread makes one image and writes its files itself, so only a few
images are in memory at a time, however large the dataset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from segaudit.progress import Progress
from segaudit.synth.annotation_errors import Event
from segaudit.synth.image import (
    SynthImage,
    ThreadBuffers,
    band_rows,
    make_image,
    map_in_order,
    probability_bands,
)
from segaudit.synth.options import Size, SynthOptions
from segaudit.synth.output import label_dtype, record_image
from segaudit.synth.world import SIZES, World, rng
from segaudit.synth.writers import NpyWriter, write_png

_PNG_FOLDERS = ("labels", "true_labels", "images", "errors")
_CSV_NAME = "is_corrupted.csv"
_NPY_HEADER_BYTES = 128


def id_digits(count: int) -> int:
    """Digits of the zero-padded image number: the image count's, and at least 5."""
    return max(5, len(str(count)))


def assign_sizes(seed: int, count: int, sizes: tuple[Size, ...]) -> np.ndarray:
    """(count, 2) height and width of each image (or (count, 3) for volume shapes):
    ``sizes`` dealt out in turn (so each is used about equally often), in an order
    shuffled by the seed."""
    choices = np.asarray(sizes, dtype=np.int64).reshape(len(sizes), -1)
    if len(choices) == 1:
        return np.broadcast_to(choices, (count, choices.shape[1]))
    order = np.resize(np.arange(len(choices)), count)
    rng(seed, SIZES).shuffle(order)
    return choices[order]


class FolderLayout:
    """Writes a dataset as a folder of per-image files in ``out``."""

    def __init__(self, out: Path, options: SynthOptions) -> None:
        self.out, self.options = out, options
        self.sizes = assign_sizes(options.seed, options.images, options.sizes)
        self.digits = id_digits(options.images)
        self.label_dtype = label_dtype(options.classes)

    def image_id(self, i: int) -> str:
        return f"img_{i:0{self.digits}d}"

    def needed_bytes(self) -> int:
        """Bytes of the predictions, plus the photos as if they did not compress."""
        per_pixel = self.options.classes * np.dtype(self.options.dtype).itemsize + 3
        pixels = int(self.sizes.prod(axis=1).sum())
        return pixels * per_pixel + _NPY_HEADER_BYTES * self.options.images

    def files(self) -> dict[str, Any]:
        """What ``synth.json`` says about the files: where each kind is and how it is stored."""
        mode = "L" if self.label_dtype == np.uint8 else "I;16"
        return {
            "labels": {"path": "labels/ID.png", "mode": mode},
            "pred_probs": {"path": "pred_probs/ID.npy", "axes": "KHW", "dtype": self.options.dtype},
            "images": {"path": "images/ID.png", "mode": "RGB"},
            "true_labels": {"path": "true_labels/ID.png", "mode": mode},
            "is_corrupted": {"path": _CSV_NAME, "columns": ["id", "is_corrupted"]},
        }

    def report_extras(self, is_corrupted: np.ndarray) -> dict[str, Any]:
        """The corrupted images by id, and how many images have each size."""
        counts = {f"{h}x{w}": 0 for h, w in self.options.sizes}
        sizes, number = np.unique(self.sizes, axis=0, return_counts=True)
        for (h, w), n in zip(sizes.tolist(), number.tolist(), strict=True):
            counts[f"{h}x{w}"] = n
        return {
            "corrupted_ids": [self.image_id(int(i)) for i in np.flatnonzero(is_corrupted)],
            "image_sizes": counts,
        }

    def write(
        self, world: World, is_corrupted: np.ndarray, report: dict[str, Any], progress: Progress
    ) -> None:
        """Make and write the images on worker threads; record them in order."""
        for name in (*_PNG_FOLDERS, "pred_probs"):
            (self.out / name).mkdir()
        buffers = ThreadBuffers()

        def make(i: int) -> tuple[list[Event], int]:
            return self._write_image(world, i, bool(is_corrupted[i]), buffers)

        progress.start("Generating synthetic dataset", self.options.images)
        try:
            for i, (events, noisy_pixels) in enumerate(map_in_order(make, self.options.images)):
                if is_corrupted[i]:
                    record_image(report, i, events, noisy_pixels, self.image_id(i))
                progress.advance(1)
        finally:
            progress.finish()
        self._write_is_corrupted(is_corrupted)

    def _write_image(
        self, world: World, i: int, corrupted: bool, buffers: ThreadBuffers
    ) -> tuple[list[Event], int]:
        """Make image ``i`` and write its five files; return its errors and noisy pixels."""
        h, w = (int(n) for n in self.sizes[i])
        image = make_image(world, i, corrupted, h, w)
        name = f"{self.image_id(i)}.png"
        write_png(self.out / "labels" / name, image.noisy.astype(self.label_dtype))
        write_png(self.out / "true_labels" / name, image.truth.astype(self.label_dtype))
        write_png(self.out / "images" / name, image.photo)
        write_png(self.out / "errors" / name, image.errors)
        self._write_probs(self.out / "pred_probs" / f"{self.image_id(i)}.npy", image, buffers)
        return image.events, image.noisy_pixels if corrupted else 0

    def _write_probs(self, path: Path, image: SynthImage, buffers: ThreadBuffers) -> None:
        """One image's (K, H, W) probabilities, band by band, into its own ``.npy`` file."""
        k, h, w = image.model.shape
        band = band_rows(k, h, w)
        dtype = np.dtype(self.options.dtype)
        writer = NpyWriter(path, (k, h, w), dtype)
        try:
            for r0, probs in probability_bands(image.model, band, buffers.get(k * band * w)):
                writer.put_all(probs.astype(dtype, copy=False), r0)
        finally:
            writer.close()

    def _write_is_corrupted(self, is_corrupted: np.ndarray) -> None:
        """``is_corrupted.csv``: one row per image, streamed, ``1`` for corrupted images."""
        with open(self.out / _CSV_NAME, "w", encoding="utf-8", newline="") as file:
            file.write("id,is_corrupted\n")
            for i, corrupted in enumerate(is_corrupted.tolist()):
                file.write(f"{self.image_id(i)},{int(corrupted)}\n")
