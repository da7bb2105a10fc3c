"""Fast image-chunked Zarr v3 arrays for the run directory's per-pixel outputs.

Zarr's generic write path costs several times more than compressing the data (and
importing it costs a third of a second), so the run's arrays — one image per chunk,
written once, image-aligned — are written here directly: the v3 metadata document
Zarr itself would write, and each chunk encoded with the same blosc codec. Chunk
keys use the "." separator (``c.7.0.0``), so every chunk is a file directly in the
array's folder, with no directories to create per image. Any Zarr reader sees an
ordinary Zarr v3 array (the tests check that, and that the metadata equals Zarr's own).
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from segaudit.libc import start_writeback

_CNAME = "lz4"
CHUNK_KEY_SEPARATOR = "."


def blosc_level(dtype: Any) -> int:
    """lz4's level for arrays of ``dtype``.

    Class maps and masks shrink 15–60× at level 5, almost for free. Float scores keep
    noise in their low mantissa bits: at level 1, lz4 gives up on those bytes fast and
    still packs the sign, exponent and top mantissa bytes (byte-shuffled), storing a
    float32 score in about 2.9 bytes (1.7 when the probabilities were float16) at over
    1 GB/s; higher levels save a few percent more at half the speed.
    """
    return 1 if np.dtype(dtype).kind == "f" else 5


def blosc_shuffle(dtype: np.dtype) -> str:
    """Byte shuffle suits multi-byte values; one-byte masks and class maps compress as
    well or better unshuffled, and 2.5× faster than bit-shuffled."""
    return "noshuffle" if np.dtype(dtype).itemsize == 1 else "shuffle"


def zarr_v3_metadata(shape: tuple[int, ...], dtype: np.dtype) -> dict[str, Any]:
    """The ``zarr.json`` of an array chunked one image per chunk, blosc-compressed
    (lz4, :func:`blosc_level`, :func:`blosc_shuffle`)."""
    if dtype.kind == "f":
        fill: Any = "NaN"
    elif dtype.kind == "b":
        fill = False
    else:
        fill = 0
    bytes_codec: dict[str, Any] = {"name": "bytes"}
    if dtype.itemsize > 1:
        bytes_codec["configuration"] = {"endian": "little"}
    blosc = {
        "typesize": dtype.itemsize,
        "cname": _CNAME,
        "clevel": blosc_level(dtype),
        "shuffle": blosc_shuffle(dtype),
        "blocksize": 0,
    }
    codecs: list[dict[str, Any]] = [bytes_codec, {"name": "blosc", "configuration": blosc}]
    return {
        "shape": list(shape),
        "data_type": "bool" if dtype.kind == "b" else dtype.name,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [1, *shape[1:]]}},
        "chunk_key_encoding": {
            "name": "default",
            "configuration": {"separator": CHUNK_KEY_SEPARATOR},
        },
        "fill_value": fill,
        "codecs": codecs,
        "attributes": {},
        "zarr_format": 3,
        "node_type": "array",
        "storage_transformers": [],
    }


class ImageChunkedArray:
    """An (N, ...) Zarr v3 array with one chunk per image, read and written by image range."""

    def __init__(
        self, path: Path, shape: tuple[int, ...], dtype: Any, *, create: bool = True
    ) -> None:
        self.path = Path(path)
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype)
        self._stored = self.dtype.newbyteorder("<")  # chunk bytes are little-endian
        self.fill_value = np.nan if self.dtype.kind == "f" else 0
        if create:
            self.path.mkdir(parents=True, exist_ok=True)
            metadata = zarr_v3_metadata(self.shape, self.dtype)
            (self.path / "zarr.json").write_text(json.dumps(metadata, indent=2))
            self._codec = _codec_for(self.dtype)
        else:
            self._codec = codec_of(json.loads((self.path / "zarr.json").read_text()))

    @property
    def num_images(self) -> int:
        return self.shape[0]

    def chunk_path(self, image: int) -> Path:
        key = CHUNK_KEY_SEPARATOR.join(["c", str(image), *(["0"] * (len(self.shape) - 1))])
        return self.path / key

    def __setitem__(self, key: slice, value: np.ndarray) -> None:
        start, stop = self._bounds(key)
        value = np.ascontiguousarray(value, dtype=self._stored).reshape(
            (stop - start, *self.shape[1:])
        )
        for offset, image in enumerate(range(start, stop)):
            _write_file(self.chunk_path(image), _encode(self._codec, value[offset]))

    def __getitem__(self, key: slice) -> np.ndarray:
        start, stop = self._bounds(key)
        out = np.empty((stop - start, *self.shape[1:]), self.dtype)
        for offset, image in enumerate(range(start, stop)):
            path = self.chunk_path(image)
            if not path.exists():
                out[offset] = self.fill_value
                continue
            with open(path, "rb") as handle:
                data = handle.read()
            if self._codec is None:
                out[offset] = np.frombuffer(data, self._stored).reshape(self.shape[1:])
            else:
                self._codec.decode(data, out=out[offset])
        return out

    def write_image(self, index: int, value: np.ndarray) -> None:
        """Store image ``index`` (of the array's one image size)."""
        self[index : index + 1] = value[None]

    def read_image(self, index: int) -> np.ndarray:
        """Image ``index`` as written; a missing chunk is an error, never a fill value."""
        data = self.chunk_path(index).read_bytes()
        return _decode(self._codec, data, self._stored, self.shape[1:])

    def folders(self) -> list[Path]:
        """Where the chunk files are (to flush them to disk early)."""
        return [self.path]

    def _bounds(self, key: slice) -> tuple[int, int]:
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError("ImageChunkedArray supports contiguous image ranges only")
        start, stop, _ = key.indices(self.shape[0])
        return start, stop


def _encode(codec: Any, chunk: np.ndarray) -> Any:
    return chunk.data if codec is None else codec.encode(chunk)


def _decode(codec: Any, data: bytes, stored: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """One chunk's bytes as an array of ``shape`` (the array's dtype, native order)."""
    if codec is None:
        return np.frombuffer(data, stored).reshape(shape).astype(stored.newbyteorder("="))
    out = np.empty(shape, stored.newbyteorder("="))
    try:
        codec.decode(data, out=out)
    except RuntimeError as error:  # blosc's answer to a truncated or damaged chunk
        raise ValueError(f"a chunk of {len(data)} bytes does not decompress: {error}") from None
    return out


def _codec_for(dtype: np.dtype) -> Any:
    """The blosc codec segaudit writes arrays of ``dtype`` with."""
    return _blosc(_CNAME, blosc_level(dtype), blosc_shuffle(dtype))


def codec_of(metadata: dict[str, Any]) -> Any:
    """The blosc codec an array's ``zarr.json`` names, or None for raw chunks (as runs
    written before float scores were compressed have them)."""
    for codec in metadata.get("codecs", []):
        if codec.get("name") == "blosc":
            config = codec["configuration"]
            return _blosc(config["cname"], int(config["clevel"]), config["shuffle"])
    return None


def _blosc(cname: str, level: int, shuffle: str) -> Any:
    from numcodecs import Blosc

    modes = {"noshuffle": Blosc.NOSHUFFLE, "shuffle": Blosc.SHUFFLE, "bitshuffle": Blosc.BITSHUFFLE}
    return Blosc(cname=cname, clevel=level, shuffle=modes[shuffle])


def _write_file(path: Path, data: Any) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        start_writeback(handle.fileno())


GROUP_LAYOUT = "per-image"


@functools.lru_cache(maxsize=64)
def _image_metadata_text(shape: tuple[int, ...], chunk: tuple[int, ...], dtype: np.dtype) -> str:
    """One image's ``zarr.json`` text. Datasets hold few distinct sizes, and ``json.dumps``
    with an indent runs in Python holding the GIL: made once per size, not per image."""
    metadata = zarr_v3_metadata(shape, dtype)
    metadata["chunk_grid"]["configuration"]["chunk_shape"] = list(chunk)
    return json.dumps(metadata, indent=2)


class PerImageArrays:
    """Images of different sizes: a Zarr v3 group holding one 2-D array per image.

    ``NAME.zarr/zarr.json`` is a group whose attributes say ``{"segaudit": {"layout":
    "per-image", "images": N}}``; image i is the array ``NAME.zarr/i`` (its own size, one
    chunk, chunk file ``i/c.0.0``), compressed as :class:`ImageChunkedArray` compresses.
    Any Zarr reader opens it: ``zarr.open_group(path)["17"]``.

    A volume's sheet (Z·Y, X) is chunked by slabs of slices instead (``chunk_rows``
    rows a chunk, chunk files ``i/c.R.0``, the last padded as Zarr pads edge chunks),
    so the pass writes each slab as it goes and never holds a volume's arrays whole.
    """

    def __init__(
        self,
        path: Path,
        num_images: int,
        dtype: Any,
        *,
        create: bool = True,
        sizes: np.ndarray | None = None,
        chunk_rows: np.ndarray | None = None,
    ) -> None:
        self.path = Path(path)
        self.num_images = int(num_images)
        self.sizes = sizes
        self.chunk_rows = chunk_rows
        self.dtype = np.dtype(dtype)
        self._stored = self.dtype.newbyteorder("<")
        self._codec = _codec_for(self.dtype)
        if create:
            self.path.mkdir(parents=True, exist_ok=True)
            group = {
                "zarr_format": 3,
                "node_type": "group",
                "attributes": {
                    "segaudit": {
                        "layout": GROUP_LAYOUT,
                        "images": self.num_images,
                        "dtype": self.dtype.name,
                    }
                },
            }
            (self.path / "zarr.json").write_text(json.dumps(group, indent=2))

    def write_image(self, index: int, value: np.ndarray, row: int = 0) -> None:
        """Store image ``index`` (any 2-D size): its metadata, then its one chunk; or, for
        a volume chunked by slabs, rows ``row:row + len(value)`` (whole chunks)."""
        chunk = np.ascontiguousarray(value, dtype=self._stored)
        rows = self._slab_rows(index)
        if rows is None:
            if row:
                raise ValueError(f"{self.path}: image {index} is written whole")
            folder = self._image_folder(index, chunk.shape)
            _write_file(folder / self._key(chunk.ndim), _encode(self._codec, chunk))
            return
        assert self.sizes is not None
        shape = (int(self.sizes[index][0]), int(self.sizes[index][1]))
        if row % rows:
            raise ValueError(f"{self.path}: row {row} of image {index} starts no chunk")
        folder = self._image_folder(index, shape, rows) if row == 0 else self.path / str(index)
        for start in range(0, len(chunk), rows):
            piece = chunk[start : start + rows]
            if len(piece) < rows:  # the edge chunk, padded with the fill value
                padding = np.zeros((rows - len(piece), shape[1]), piece.dtype)
                piece = np.concatenate([piece, padding])
            key = CHUNK_KEY_SEPARATOR.join(("c", str((row + start) // rows), "0"))
            _write_file(folder / key, _encode(self._codec, piece))

    def _slab_rows(self, index: int) -> int | None:
        """Rows of image ``index``'s chunks when it is chunked by slabs, else None."""
        if self.chunk_rows is None or self.sizes is None:
            return None
        rows = int(self.chunk_rows[index])
        return rows if rows < int(self.sizes[index][0]) else None

    def fresh(self) -> PerImageArrays:
        """The same array for a task in another process: every image is its own folder,
        written and read by itself, so there is nothing to share but the path."""
        return self

    def adopt_chunk(self, index: int, chunk: Path, shape: tuple[int, ...]) -> None:
        """Make an encoded chunk file image ``index`` of the group (renamed, not copied)."""
        folder = self._image_folder(index, shape)
        os.rename(chunk, folder / self._key(len(shape)))

    def _image_folder(self, index: int, shape: tuple[int, ...], rows: int | None = None) -> Path:
        """Image ``index``'s folder with its metadata: one array of ``shape``, one chunk
        (or chunks of ``rows`` rows)."""
        folder = self.path / str(index)
        folder.mkdir(exist_ok=True)
        chunk = tuple(shape) if rows is None else (rows, *shape[1:])
        (folder / "zarr.json").write_text(_image_metadata_text(tuple(shape), chunk, self.dtype))
        return folder

    @staticmethod
    def _key(ndim: int) -> str:
        return CHUNK_KEY_SEPARATOR.join(["c", *(["0"] * ndim)])

    def read_image(self, index: int) -> np.ndarray:
        """Image ``index`` as written; a missing image is an error, never a fill value."""
        folder = self.path / str(index)
        metadata = json.loads((folder / "zarr.json").read_text())
        shape = tuple(int(n) for n in metadata["shape"])
        chunk = tuple(int(n) for n in metadata["chunk_grid"]["configuration"]["chunk_shape"])
        codec = codec_of(metadata)
        if chunk == shape:
            key = CHUNK_KEY_SEPARATOR.join(["c", *(["0"] * len(shape))])
            return _decode(codec, (folder / key).read_bytes(), self._stored, shape)
        pieces = [
            _decode(codec, (folder / CHUNK_KEY_SEPARATOR.join(("c", str(r), "0"))).read_bytes(),
                    self._stored, chunk)
            for r in range(-(-shape[0] // chunk[0]))
        ]  # fmt: skip
        return np.concatenate(pieces)[: shape[0]]

    def folders(self) -> list[Path]:
        """Where the chunk files are (to flush them to disk early)."""
        return [p for p in self.path.iterdir() if p.is_dir()]


ImageArray = ImageChunkedArray | PerImageArrays


class ImageChunkWriter:
    """A run array written image by image, before every image's size is known.

    Each image's chunk is written as it comes, as ``NAME.zarr/c.I.0.0`` — the chunk of
    an (N, H, W) array — and :meth:`finish` writes the metadata once all are in: one
    (N, H, W) array (:class:`ImageChunkedArray`) when the images share a size, else a
    group of per-image arrays (:class:`PerImageArrays`), each chunk renamed into its
    image's folder (bytes unchanged). A pass that learns the sizes as it goes (images
    streamed from a model) and one that knew them all along write the same run.
    """

    def __init__(self, path: Path, dtype: Any) -> None:
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self._stored = self.dtype.newbyteorder("<")
        self._codec = _codec_for(self.dtype)
        self.shapes: dict[int, tuple[int, ...]] = {}
        self.known: dict[int, tuple[int, ...]] = {}  # images another writer wrote (fresh())
        self.finished = False
        self.per_image = False  # finished as a group of per-image arrays
        self.path.mkdir(parents=True, exist_ok=True)

    def fresh(self) -> ImageChunkWriter:
        """A writer of the same array for another process: it reads every image written so
        far, and its ``shapes`` hold only the images it writes itself."""
        copy = ImageChunkWriter(self.path, self.dtype)
        copy.known = {**self.known, **self.shapes} if self.shapes else self.known
        copy.finished, copy.per_image = self.finished, self.per_image
        return copy

    def chunk_path(self, index: int) -> Path:
        if self.per_image:
            return self.path / str(index) / CHUNK_KEY_SEPARATOR.join(("c", "0", "0"))
        return self.path / CHUNK_KEY_SEPARATOR.join(("c", str(index), "0", "0"))

    def write_image(self, index: int, value: np.ndarray) -> None:
        """Store image ``index`` (any 2-D size); threads may write different images."""
        chunk = np.ascontiguousarray(value, dtype=self._stored)
        _write_file(self.chunk_path(index), _encode(self._codec, chunk))
        self.shapes[index] = chunk.shape

    def read_image(self, index: int) -> np.ndarray:
        data = self.chunk_path(index).read_bytes()
        shape = self.shapes.get(index) or self.known[index]
        return _decode(self._codec, data, self._stored, shape)

    def folders(self) -> list[Path]:
        """Where the chunk files are (to flush them to disk early)."""
        if self.per_image:
            return [self.path / str(index) for index in range(len(self.shapes))]
        return [self.path]

    def finish(self) -> None:
        """Write the metadata of images 0..N-1 in the layout their sizes call for."""
        self.finished = True
        count = len(self.shapes)
        if sorted(self.shapes) != list(range(count)):
            raise ValueError(f"{self.path}: images {sorted(self.shapes)[:5]}... are not 0..N-1")
        sizes = {self.shapes[i] for i in range(count)}
        if len(sizes) <= 1:
            size = next(iter(sizes), (0, 0))
            metadata = zarr_v3_metadata((count, *size), self.dtype)
            (self.path / "zarr.json").write_text(json.dumps(metadata, indent=2))
            return
        group = PerImageArrays(self.path, count, self.dtype)
        for index in range(count):
            group.adopt_chunk(index, self.chunk_path(index), self.shapes[index])
        self.per_image = True


def rebased(array: Any, old: Path, new: Path) -> Any:
    """The same array written under the folder ``new`` instead of ``old`` (same names):
    what a task on a worker writes before uploading it (:mod:`segaudit.runs.parts`)."""
    path = new / array.path.relative_to(old)
    if isinstance(array, PerImageArrays):
        path.mkdir(parents=True, exist_ok=True)
        return PerImageArrays(
            path, array.num_images, array.dtype, create=False, sizes=array.sizes,
            chunk_rows=array.chunk_rows,
        )  # fmt: skip
    moved = ImageChunkWriter(path, array.dtype)
    moved.known, moved.finished, moved.per_image = array.known, array.finished, array.per_image
    return moved


def open_image_array(path: Path) -> ImageArray:
    """An array a run holds, in either layout, for reading image by image."""
    metadata = json.loads((Path(path) / "zarr.json").read_text())
    if metadata.get("node_type") == "group":
        info = metadata["attributes"]["segaudit"]
        return PerImageArrays(path, int(info["images"]), info["dtype"], create=False)
    dtype = "bool" if metadata["data_type"] == "bool" else metadata["data_type"]
    return ImageChunkedArray(path, tuple(metadata["shape"]), dtype, create=False)
