"""One synthetic image, made from its own random streams, whatever layout it is written in.

Both layouts make images with :func:`make_image`, their probabilities band by band with
:func:`probability_bands`, and run the work on threads with :func:`map_in_order`, so
the same seed gives the same pixels in a stacked array and in a folder.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from segaudit.synth.annotation_errors import ERROR_MAP_DTYPE, Event, corrupt_with_map
from segaudit.synth.model import Model
from segaudit.synth.photo import photo
from segaudit.synth.scene import make_scene
from segaudit.synth.world import ERRORS, MODEL, PHOTO, SCENE, World, rng

WORKERS = min(4, os.cpu_count() or 1)  # threads making images ahead of the writer
PROBS_BAND_BYTES = 256 * 2**20  # pred_probs rows computed (and zarr-chunked) per step

T = TypeVar("T")


@dataclass
class SynthImage:
    """Everything of one image except its probabilities, which are made band by band.

    ``errors`` is the error map (see :mod:`~segaudit.synth.annotation_errors`): all zeros
    for an image without annotation errors.
    """

    truth: np.ndarray
    noisy: np.ndarray
    events: list[Event]
    photo: np.ndarray
    model: Model
    errors: np.ndarray

    @property
    def noisy_pixels(self) -> int:
        """Pixels whose given label differs from the truth."""
        return int(np.count_nonzero(self.noisy != self.truth))


def make_image(world: World, i: int, corrupted: bool, h: int, w: int) -> SynthImage:
    """Image ``i``, from its own random streams (so any thread may make it)."""
    scene = make_scene(rng(world.seed, SCENE, i), h, w, world)
    noisy, events = scene.truth, []
    errors = np.zeros((h, w), dtype=ERROR_MAP_DTYPE)
    if corrupted:
        noisy, events, errors = corrupt_with_map(rng(world.seed, ERRORS, i), scene, world)
    picture = photo(rng(world.seed, PHOTO, i), scene, world)
    model = Model.build(rng(world.seed, MODEL, i), scene, world)
    return SynthImage(scene.truth, noisy, events, picture, model, errors)


def band_rows(classes: int, height: int, width: int) -> int:
    """Rows of pred_probs computed per step: the whole image unless K·H·W is huge.

    The band depends on the image's shape only (never on the machine), because
    probabilities made in other bands may differ in the last bit.
    """
    return int(max(1, min(height, PROBS_BAND_BYTES // (4 * classes * width))))


def probability_bands(
    model: Model, band: int, buffer: np.ndarray
) -> Iterator[tuple[int, np.ndarray]]:
    """pred_probs of one image, ``band`` rows at a time: (first row, (K, rows, W) float32).

    Each band is a view into ``buffer`` (at least K·band·W floats), overwritten by the next.
    """
    k, h, w = model.shape
    for r0 in range(0, h, band):
        r1 = min(h, r0 + band)
        yield r0, model.probs(r0, r1, buffer[: k * (r1 - r0) * w].reshape(k, -1, w))


class ThreadBuffers:
    """A float32 scratch buffer per thread, kept between images: first touch is slow."""

    def __init__(self) -> None:
        self._local = threading.local()

    def get(self, size: int) -> np.ndarray:
        buffer = getattr(self._local, "buffer", None)
        if buffer is None or buffer.size < size:
            buffer = self._local.buffer = np.empty(size, dtype=np.float32)
        return buffer


def map_in_order(work: Callable[[int], T], count: int) -> Iterator[T]:
    """``work(i)`` for each image on worker threads (numpy releases the GIL), a few ahead
    of the consumer; results come in image order."""
    ahead = 2 * WORKERS
    with ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="synth") as pool:
        pending: deque[Future[T]] = deque()
        try:
            for i in range(count):
                pending.append(pool.submit(work, i))
                if len(pending) > ahead:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
