"""Where the pass puts what it keeps: per-image arrays and the mispredicted pixels.

A :class:`Sink` stores each image's compact arrays (labels, predicted class, score,
issues) by image index, at the image's own size, and the records of mispredicted
pixels by batch. The run directory's sink (:class:`segaudit.runs.sink.RunSink`) writes
them to disk as they come; :class:`MemorySink` keeps them in memory for the Python API.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from segaudit.engine.pixels import Records

CL, FULL = "cl", "full"  # the two resolutions records are kept at (see Sink.add_records)


class Sink(Protocol):
    """Per-image arrays and per-batch records of one pass."""

    def create(self, name: str, sizes: np.ndarray, dtype: Any, scratch: bool = False) -> None:
        """Make room for the array ``name`` of images of ``sizes`` (N, 2); ``scratch``
        arrays are working data, dropped before the results are published."""
        ...

    def write(self, name: str, index: int, value: np.ndarray) -> None:
        """Store image ``index`` of ``name`` (threads write different images at once)."""
        ...

    def read(self, name: str, index: int) -> np.ndarray:
        """Image ``index`` of ``name`` as written."""
        ...

    def add_records(self, start: int, records: Records, resolution: str = CL) -> None:
        """Append records to the batch starting at image ``start`` (its images add theirs
        in image order, one thread per batch). They are views into the caller's reused
        buffers, valid only during the call. ``resolution``: the records at Confident
        Learning's resolution (``CL``), or, when that is downsampled, at full
        resolution (``FULL``)."""
        ...

    def records(self, start: int, fields: tuple[str, ...], resolution: str = CL) -> Records: ...

    def record_starts(self) -> list[int]: ...

    def pass_written(self) -> None:
        """The streaming pass has written every per-pixel array it makes."""
        ...


class MemorySink:
    """Keeps everything in memory: an (N, H, W) array per name when the images share a
    size (what the Python API returns), else a list of per-image arrays."""

    def __init__(self) -> None:
        self.arrays: dict[str, Any] = {}
        self._records: dict[tuple[str, int], list[Records]] = {}

    def create(self, name: str, sizes: np.ndarray, dtype: Any, scratch: bool = False) -> None:
        sizes = np.asarray(sizes).reshape(-1, 2)
        if len(sizes) and (sizes == sizes[0]).all():
            height, width = (int(n) for n in sizes[0])
            self.arrays[name] = np.empty((len(sizes), height, width), dtype)
        else:
            self.arrays[name] = [np.empty((int(h), int(w)), dtype) for h, w in sizes]

    def write(self, name: str, index: int, value: np.ndarray, row: int = 0) -> None:
        self.arrays[name][index][row : row + len(value)] = value

    def read(self, name: str, index: int) -> np.ndarray:
        return self.arrays[name][index]

    def get(self, name: str) -> Any:
        """The whole array ``name``: (N, H, W), or a list of (H_i, W_i) arrays."""
        return self.arrays[name]

    def add_records(self, start: int, records: Records, resolution: str = CL) -> None:
        parts = self._records.setdefault((resolution, start), [])
        parts.append({name: np.array(values) for name, values in records.items()})

    def records(self, start: int, fields: tuple[str, ...], resolution: str = CL) -> Records:
        parts = self._records[(resolution, start)]
        return {name: np.concatenate([part[name] for part in parts]) for name in fields}

    def record_starts(self) -> list[int]:
        return sorted(start for resolution, start in self._records if resolution == CL)

    def pass_written(self) -> None:
        pass
