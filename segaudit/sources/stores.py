"""Reading input stores: ``.npy`` (memory-mapped) and Zarr (v2 and v3 formats).

Inputs are opened, never loaded whole: an :class:`ArraySource` hands out image
batches and, for the files it memory-mapped itself, releases the pages of a batch
once it has been processed, so resident memory stays flat however large the file
is. Input files are only ever opened read-only, and a caller's arrays (the Python
API) are only ever read.

Zarr may legitimately lack chunks (it skips writing a chunk equal to the fill
value); :meth:`ArraySource.absent_images` names the images they hold, from the
store's listing alone. A chunk that is there but unreadable is an error naming it
and its images: a folder in its place (which zarr would read as the fill value) when
the store is opened; a file of the wrong size or of undecodable bytes (zarr raises)
when it is read. An uncompressed chunk of the right size holding wrong bytes is data
as far as any reader can tell; the value checks (label range, probability sums) are
what catch it.
"""

from __future__ import annotations

import ctypes
import math
import mmap
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segaudit.errors import (
    InputNotFoundError,
    InvalidInputError,
    UnreadableStoreError,
    reason,
)
from segaudit.libc import LIBC
from segaudit.sources.chunkgrid import ChunkGrid, images_phrase
from segaudit.sources.fingerprints import store_fingerprint
from segaudit.sources.remote import is_url

STORE_NAMES = ("labels", "pred_probs", "images")
_PAGE = mmap.PAGESIZE
_MADV_DONTNEED = 4
_MADV_POPULATE_READ = 22  # Linux 5.14+: map a whole range in one call instead of page by page


@dataclass
class ArraySource:
    """A read-only array store that yields image batches ``[start, stop)``.

    ``kind`` says what the array is: ``"npy"`` (a ``.npy`` file), ``"zarr"`` or
    ``"array"`` (any other array a caller handed over). ``own_mapping`` is True only
    when this source memory-mapped a file itself, read-only (:func:`open_npy`): only
    then may the pages of a batch be mapped in ahead and dropped after use. A caller's
    ``np.memmap`` is never such a mapping, whatever its type says: dropping its pages
    would zero an in-memory copy or lose edits made through a private map.

    ``bytes_read`` counts the bytes handed out, so tests can prove a store was read
    exactly once.
    """

    path: Path
    array: Any
    kind: str  # "npy", "zarr" or "array"
    bytes_read: int = field(default=0)
    own_mapping: bool = False
    chunk_grid: ChunkGrid | None = field(default=None, repr=False)
    _absent: list[int] | None = field(default=None, init=False, repr=False)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self.array.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.array.dtype)

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize

    def read(self, start: int, stop: int, populate: bool = True) -> np.ndarray:
        """Images ``start:stop`` as a C-contiguous numpy array (a view for ``.npy``).

        ``populate`` maps a memory-mapped batch in with one call; callers that will
        touch only part of it pass False and let pages fault in as they are read.
        """
        try:
            batch = np.ascontiguousarray(self.array[start:stop])
        except MemoryError:
            need = (stop - start) * math.prod(self.shape[1:]) * self.dtype.itemsize
            raise UnreadableStoreError(
                f"{self.path}: images {start}..{stop - 1} need {_size(need)} in memory, more than "
                "this machine can give; split the images into smaller tiles."
            ) from None
        except Exception as error:  # any failure to decode is a store problem
            raise UnreadableStoreError(self._read_failure(start, stop, error)) from None
        self.bytes_read += batch.nbytes
        if self.own_mapping and populate:
            self._populate(batch)
        return batch

    def _read_failure(self, start: int, stop: int, error: BaseException) -> str:
        """One sentence on a failed read, naming the first chunk that cannot be decoded."""
        chunks = self._chunk_grid()
        broken = chunks.first_unreadable(self.array, start, stop) if chunks else None
        if broken is not None:
            key, images, why = broken
            return (
                f"{self.path}: chunk {key} ({images_phrase(images)}) cannot be read "
                f"({why}); the store is corrupt or truncated, regenerate it."
            )
        return (
            f"{self.path}: reading images {start}..{stop - 1} failed ({reason(error)}); "
            "the store is corrupt or truncated, regenerate it."
        )

    def _populate(self, batch: np.ndarray) -> None:
        """Fault a mapped batch in with one call; per-page faults cost more than the kernel."""
        if LIBC is None or batch.nbytes < 2 * _PAGE:
            return
        first = batch.ctypes.data // _PAGE * _PAGE
        length = batch.ctypes.data + batch.nbytes - first
        LIBC.madvise(ctypes.c_void_p(first), ctypes.c_size_t(length), _MADV_POPULATE_READ)

    def release(self, batch: np.ndarray) -> None:
        """Drop a processed batch's mapped pages from this process (page cache stays).

        Only for a file this source mapped read-only itself (``own_mapping``): there
        the pages are clean copies of the file, and reading them again re-reads it.
        """
        if not self.own_mapping or LIBC is None or batch.nbytes < 2 * _PAGE:
            return
        start = batch.ctypes.data
        first = (start + _PAGE - 1) // _PAGE * _PAGE
        last = (start + batch.nbytes) // _PAGE * _PAGE
        if last > first:
            LIBC.madvise(ctypes.c_void_p(first), ctypes.c_size_t(last - first), _MADV_DONTNEED)

    def absent_images(self) -> list[int]:
        """Sorted indices of the images (first axis) touching at least one absent Zarr chunk.

        Zarr reads an absent chunk as the array's fill value. The answer comes from the
        store's listing alone (no chunk is read) and is computed once; it is always
        empty for ``.npy`` files and in-memory arrays, and for Zarr stores that are not
        a local folder (which cannot be listed cheaply).
        """
        if self._absent is None:
            self._absent = self._survey()
        return list(self._absent)

    def _survey(self) -> list[int]:
        """List the store once: refuse folders standing for chunks; return absent images."""
        chunks = self._chunk_grid()
        if chunks is None or chunks.folder is None:
            return []
        inventory = chunks.inventory()
        chunks.check_no_folders(inventory, self.path)
        return chunks.absent_images(inventory)

    def _chunk_grid(self) -> ChunkGrid | None:
        if self.chunk_grid is None and self.kind == "zarr":
            self.chunk_grid = ChunkGrid.of(self.array)
        return self.chunk_grid

    def fingerprint(self) -> dict[str, Any]:
        """The store's identity (sizes, times, inodes, edge hashes; a URL's listing), to
        detect changes."""
        return store_fingerprint(self.path)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Pickled by reference: a memory-mapped ``.npy`` is mapped again where it is
        unpickled (a Dask worker), never copied into the pickle."""
        if self.own_mapping:
            return _reopen_npy, (os.path.abspath(self.path), self.path)
        return _rebuild, (self.path, self.array, self.kind, self.chunk_grid)


def _reopen_npy(absolute: str, shown: Path) -> ArraySource:
    source = open_npy(Path(absolute))
    source.path = shown  # messages keep naming the file as the user gave it
    return source


def _rebuild(path: Path, array: Any, kind: str, chunk_grid: ChunkGrid | None) -> ArraySource:
    return ArraySource(path, array, kind, chunk_grid=chunk_grid)


def as_array_argument(value: Any, name: str) -> Any:
    """An array handed to the Python API, ready to read, or an error naming ``name``.

    Accepted: numpy arrays (memory-maps included), Zarr arrays and any object with
    ``shape``, ``dtype`` and slicing (returned as they are, never copied or written),
    nested lists and tuples (turned into a numpy array), numbers (0-d arrays, which
    the shape checks then refuse). Raises ``TypeError`` for None, paths and other
    objects, and :class:`InvalidInputError` (a ``ValueError``) for ragged lists.
    """
    if isinstance(value, ArraySource):
        return value.array
    if value is None:
        raise TypeError(f"{name} must be an array (numpy, memory-map or Zarr), got None.")
    if isinstance(value, str | bytes | os.PathLike):
        raise TypeError(
            f"{name} must be an array, got {type(value).__name__} {os.fsdecode(value)!r}; "
            "to pass a file, open it first, e.g. with np.load(path, mmap_mode='r') or "
            "zarr.open_array(path, mode='r')."
        )
    if isinstance(value, list | tuple):
        try:
            array = np.asarray(value)
        except (ValueError, TypeError) as error:
            raise InvalidInputError(
                f"{name} is a nested list numpy cannot make an array of ({reason(error)}); "
                "give rows of equal length."
            ) from None
        if array.dtype == object:
            raise InvalidInputError(
                f"{name} is a nested list of mixed objects; give numbers in rows of equal length."
            )
        return array
    if all(hasattr(value, attribute) for attribute in ("shape", "dtype", "__getitem__")):
        return value
    if isinstance(value, int | float | np.generic) and not isinstance(value, bool):
        return np.asarray(value)
    raise TypeError(
        f"{name} must be an array (numpy, memory-map or Zarr) or a nested list, "
        f"got {type(value).__name__}."
    )


def _size(nbytes: int) -> str:
    """Bytes for people: ``3.2 GiB``."""
    value = float(nbytes)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024 or unit == "PiB":
            return f"{int(value)} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


MAX_DIMS = 8  # inputs are 3-D or 4-D; anything far beyond is a corrupt header
MAX_BYTES = 1 << 60  # no real store is an exabyte: a larger promise is a corrupt header


def check_shape(path: Path, shape: Any, dtype: np.dtype) -> tuple[int, ...]:
    """The shape as Python ints, or one sentence on why a header's shape is unusable.

    Guards what numpy would otherwise turn into tracebacks: negative or non-integer
    dimensions, absurd ranks, and sizes whose byte count overflows.
    """
    if not isinstance(shape, tuple | list) or not all(
        isinstance(n, int | np.integer) and not isinstance(n, bool | np.bool_) for n in shape
    ):
        raise UnreadableStoreError(
            f"{path} has an invalid shape {shape!r} in its header; regenerate the store."
        )
    dims = tuple(int(n) for n in shape)
    if any(n < 0 for n in dims):
        raise UnreadableStoreError(
            f"{path} has a negative dimension in its shape {dims}; regenerate the store."
        )
    if len(dims) > MAX_DIMS:
        raise InvalidInputError(
            f"{path} has {len(dims)} dimensions; inputs are (N, H, W) labels and "
            "(N, K, H, W) pred_probs."
        )
    if math.prod(dims) * max(1, dtype.itemsize) > MAX_BYTES:
        raise UnreadableStoreError(
            f"{path} claims shape {dims} of {dtype}, far more bytes than any real store; "
            "its header is corrupt, regenerate the store."
        )
    return dims


def is_zarr_path(path: Path) -> bool:
    if path.suffix == ".zarr":
        return True
    return path.is_dir() and any(
        (path / meta).exists() for meta in ("zarr.json", ".zarray", ".zgroup")
    )


def open_npy(path: Path) -> ArraySource:
    """Memory-map a ``.npy`` file read-only, never unpickling, rejecting unusable headers."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise InputNotFoundError(f"{path} does not exist; check the path.") from None
    except OSError as error:
        raise UnreadableStoreError(f"{path} cannot be read ({reason(error)}).") from None
    if stat.S_ISDIR(info.st_mode):
        raise UnreadableStoreError(f"{path} is a directory, not a .npy file.")
    if not stat.S_ISREG(info.st_mode):  # opening a pipe would wait forever for a writer
        raise UnreadableStoreError(
            f"{path} is not a regular file (a pipe or a device); save the array with "
            "numpy.save and pass that file."
        )
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            header = _read_npy_header(handle, version)
            offset = handle.tell()
    except FileNotFoundError:
        raise InputNotFoundError(f"{path} does not exist; check the path.") from None
    except Exception as error:  # numpy's header parser raises many types on garbage
        raise UnreadableStoreError(
            f"{path} is not a readable .npy file ({reason(error)}); regenerate it with numpy.save."
        ) from None
    raw_shape, fortran_order, dtype = header
    _check_header_dtype(path, dtype)
    shape = check_shape(path, raw_shape, dtype)
    if fortran_order and sum(n > 1 for n in shape) > 1:
        raise InvalidInputError(
            f"{path} is stored in Fortran order, which cannot be streamed by image; "
            "save it with np.save(path, np.ascontiguousarray(array))."
        )
    expected = offset + math.prod(shape) * dtype.itemsize
    if info.st_size < expected:
        raise UnreadableStoreError(
            f"{path} is truncated ({info.st_size} bytes, its header promises {expected} for "
            f"shape {shape} of {dtype}); the file was cut short, regenerate it."
        )
    if math.prod(shape) == 0 or dtype.itemsize == 0:
        array: Any = np.empty(shape, dtype)
    else:
        try:
            array = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="C")
        except (OSError, ValueError) as error:
            raise UnreadableStoreError(
                f"{path} cannot be memory-mapped ({reason(error)}); copy it to a local disk."
            ) from None
        return ArraySource(path, array, "npy", own_mapping=True)
    return ArraySource(path, array, "npy")


def _read_npy_header(handle: Any, version: tuple[int, int]) -> tuple[Any, bool, np.dtype]:
    """Parse a .npy header (versions 1–3) without ever evaluating more than a literal."""
    fmt = np.lib.format
    if version == (1, 0):
        return fmt.read_array_header_1_0(handle, max_header_size=100_000)
    if version == (2, 0):
        return fmt.read_array_header_2_0(handle, max_header_size=100_000)
    if version != (3, 0):
        raise ValueError(f"unknown .npy format version {version[0]}.{version[1]}")
    try:  # version 3.0 (utf-8 field names) has no public reader
        from numpy.lib._format_impl import _read_array_header  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.lib.format import _read_array_header  # type: ignore[attr-defined,no-redef]
    return _read_array_header(handle, version, max_header_size=100_000)


def _check_header_dtype(path: Path, dtype: np.dtype) -> None:
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
        raise InvalidInputError(
            f"{path} holds {dtype} values; segaudit reads plain numeric arrays only "
            "(integer labels, float probabilities)."
        )
    if dtype.byteorder == ">" and dtype.itemsize > 1:
        raise InvalidInputError(
            f"{path} is big-endian ({dtype.str}); convert it with "
            "np.save(path, array.astype(array.dtype.newbyteorder('=')))."
        )


def zarr_array(node: Any, name: str, where: Any, error: type[Exception]) -> Any:
    """``node`` when it is an array, its array ``name`` when it is a group; a group
    without it is ``error``, naming ``where`` and the arrays it holds."""
    import zarr

    if not isinstance(node, zarr.Group):
        return node
    keys = sorted(node.array_keys())
    if name not in keys:
        raise error(
            f"{where} is a Zarr group without an array named '{name}'; it holds "
            f"{keys or 'no arrays'}."
        )
    return node[name]


def open_zarr(path: Path, name: str) -> ArraySource:
    """Open a Zarr array (v2 or v3), or the array ``name`` inside a Zarr group."""
    import zarr

    if not path.exists():
        raise InputNotFoundError(f"{path} does not exist; check the path.")
    try:
        node = zarr_array(zarr.open(str(path), mode="r"), name, path, InvalidInputError)
        dtype = np.dtype(node.dtype)
        raw_shape = tuple(node.shape)
    except InvalidInputError:
        raise
    except Exception as error:  # zarr raises many types for bad metadata
        raise UnreadableStoreError(
            f"{path} is not a readable Zarr store ({reason(error)}); regenerate it."
        ) from None
    _check_header_dtype(path, dtype)
    check_shape(path, raw_shape, dtype)
    source = ArraySource(path, node, "zarr", chunk_grid=ChunkGrid.of(node))
    source.absent_images()  # one listing now: a folder where a chunk should be is refused
    return source


def open_store(path: str | os.PathLike[str], name: str) -> ArraySource:
    """Open the store at ``path`` for the input called ``name`` (labels, pred_probs, images);
    a URL opens through fsspec (:mod:`segaudit.sources.remote`)."""
    if is_url(path):
        return open_url(str(path), name)
    path = Path(path)
    if is_zarr_path(path):
        return open_zarr(path, name)
    if not path.exists():
        raise InputNotFoundError(f"{path} does not exist; check the path.")
    if path.suffix != ".npy" and path.is_dir():
        raise UnreadableStoreError(f"{path} is a directory but not a Zarr store.")
    return open_npy(path)


def open_url(url: str, name: str) -> ArraySource:
    """A stacked store behind a URL: Zarr through fsspec, or a ``.npy`` read by ranges.
    ``path`` is then the URL itself (a str)."""
    from segaudit.sources.remote import is_zarr_url, open_npy_url, open_zarr_url

    if is_zarr_url(url):
        node = open_zarr_url(url, name)
        _check_header_dtype(url, np.dtype(node.dtype))  # type: ignore[arg-type]
        check_shape(url, tuple(node.shape), np.dtype(node.dtype))  # type: ignore[arg-type]
        return ArraySource(url, node, "zarr")  # type: ignore[arg-type]
    return ArraySource(url, open_npy_url(url), "npy")  # type: ignore[arg-type]


def _holds_inputs(folder: Path) -> bool:
    """Whether a folder holds labels or pred_probs as stores or folders of files."""
    names = ("labels", "pred_probs")
    suffixes = (".npy", ".zarr", "")
    return any((folder / f"{n}{suffix}").exists() for n in names for suffix in suffixes)


def group_arrays(folder: Path) -> list[str] | None:
    """The array names of a DATASET that is a Zarr group; None for a plain folder."""
    if not is_zarr_path(folder):
        return None
    import zarr

    try:
        node = zarr.open(str(folder), mode="r")
    except Exception as error:  # zarr raises many types for bad metadata
        if folder.is_dir() and _holds_inputs(folder):
            return None  # a plain dataset folder that merely ends in .zarr
        raise UnreadableStoreError(
            f"dataset {folder} is not a readable Zarr group ({reason(error)}); "
            "give a folder holding labels and pred_probs, or a Zarr group with those arrays."
        ) from None
    if not isinstance(node, zarr.Group):
        raise InvalidInputError(
            f"dataset {folder} is a single Zarr array, not a dataset; pass it with "
            "--labels or --pred-probs, or give a folder or Zarr group holding both."
        )
    try:
        return sorted(node.array_keys())
    except Exception as error:  # a member with corrupt metadata
        raise UnreadableStoreError(
            f"dataset {folder} is a Zarr group whose contents cannot be listed "
            f"({reason(error)}); regenerate it."
        ) from None


def read_class_names(path: Path | str | None, num_classes: int) -> list[str]:
    """Class names from a UTF-8 file with one name per line, or ``class_0``... when absent.

    Lines end at ``\n`` only (a ``\r`` before it is dropped, so Windows files work):
    a name may hold any other character, such as U+2028, U+0085 or ``\x1c``, which
    ``str.splitlines`` would take for line breaks. Spaces around a name are stripped and
    blank lines skipped.
    """
    if path is None:
        return [f"class_{k}" for k in range(num_classes)]
    if is_url(path):
        from segaudit.sources.remote import read_url_text

        return _names_in(read_url_text(str(path)), path, num_classes)
    path = Path(path)
    if path.exists() and not path.is_file():
        raise UnreadableStoreError(f"{path} is not a regular text file; check --class-names.")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputNotFoundError(f"{path} does not exist; check --class-names.") from None
    except OSError as error:
        raise UnreadableStoreError(
            f"{path} is not a readable UTF-8 text file ({reason(error)})."
        ) from None
    return _names_in(data, path, num_classes)


def _names_in(data: bytes, path: Any, num_classes: int) -> list[str]:
    """The class names a class-names file's bytes hold (see :func:`read_class_names`)."""
    try:
        text = data.decode("utf-8")  # no newline translation: "\n" alone splits
    except UnicodeDecodeError as error:
        raise UnreadableStoreError(
            f"{path} is not a readable UTF-8 text file ({reason(error)})."
        ) from None
    lines = [line.removesuffix("\r").strip() for line in text.split("\n")]
    names = [line for line in lines if line]
    if len(names) != num_classes:
        raise InvalidInputError(
            f"{path} lists {len(names)} class names but pred_probs has {num_classes} classes; "
            "write one name per line, one line per class."
        )
    return names
