"""Reading input stores: ``.npy`` (memory-mapped) and Zarr (v2 and v3 formats).

Inputs are opened, never loaded whole: an :class:`ArraySource` hands out image
batches and, for memory-mapped files, releases the pages of a batch once it has
been processed, so resident memory stays flat however large the file is. Input
files are only ever opened read-only.
"""

from __future__ import annotations

import ctypes
import hashlib
import math
import mmap
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segaudit.errors import (
    InputChangedError,
    InputNotFoundError,
    InvalidInputError,
    UnreadableStoreError,
)
from segaudit.libc import LIBC

STORE_NAMES = ("labels", "pred_probs", "images")
_PAGE = mmap.PAGESIZE
_MADV_DONTNEED = 4
_MADV_POPULATE_READ = 22  # Linux 5.14+: map a whole range in one call instead of page by page


@dataclass
class ArraySource:
    """A read-only array store that yields image batches ``[start, stop)``.

    ``bytes_read`` counts the bytes handed out, so tests can prove a store was read
    exactly once.
    """

    path: Path
    array: Any
    kind: str  # "npy" or "zarr"
    bytes_read: int = field(default=0)

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
            raise UnreadableStoreError(
                f"{self.path}: reading images {start}..{stop - 1} failed ({_reason(error)}); "
                "the store is corrupt or truncated, regenerate it."
            ) from None
        self.bytes_read += batch.nbytes
        if self.kind == "npy" and populate:
            self._populate(batch)
        return batch

    def _populate(self, batch: np.ndarray) -> None:
        """Fault a mapped batch in with one call; per-page faults cost more than the kernel."""
        if LIBC is None or batch.nbytes < 2 * _PAGE:
            return
        first = batch.ctypes.data // _PAGE * _PAGE
        length = batch.ctypes.data + batch.nbytes - first
        LIBC.madvise(ctypes.c_void_p(first), ctypes.c_size_t(length), _MADV_POPULATE_READ)

    def release(self, batch: np.ndarray) -> None:
        """Drop a processed batch's mapped pages from this process (page cache stays)."""
        if self.kind != "npy" or LIBC is None or batch.nbytes < 2 * _PAGE:
            return
        start = batch.ctypes.data
        first = (start + _PAGE - 1) // _PAGE * _PAGE
        last = (start + batch.nbytes) // _PAGE * _PAGE
        if last > first:
            LIBC.madvise(ctypes.c_void_p(first), ctypes.c_size_t(last - first), _MADV_DONTNEED)

    def fingerprint(self) -> dict[str, Any]:
        """Size, modification time and a content hash of the store's edges, to detect changes."""
        return store_fingerprint(self.path)


def _reason(error: BaseException) -> str:
    text = str(error).strip().rstrip(".") or type(error).__name__
    return text.splitlines()[0][:200]


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


def store_fingerprint(path: Path) -> dict[str, Any]:
    """A cheap identity of a store: total size, newest mtime, file count, hash of the edges.

    For a ``.npy`` file the hash covers its first and last MiB; for a Zarr directory
    it covers the metadata files. Any rewrite, truncation or growth changes it.
    Entries that cannot be read (a dangling link, a file removed meanwhile) count as
    part of the identity instead of failing, so a store changing under our feet is
    reported as a change.
    """
    path = Path(path)
    digest = hashlib.sha256()
    if path.is_file():
        try:
            with open(path, "rb") as handle:
                info = os.fstat(handle.fileno())
                digest.update(handle.read(1 << 20))
                if info.st_size > 1 << 20:
                    handle.seek(max(info.st_size - (1 << 20), 1 << 20))
                    digest.update(handle.read(1 << 20))
        except OSError as error:
            raise UnreadableStoreError(f"{path} cannot be read ({_reason(error)}).") from None
        return {
            "bytes": info.st_size,
            "mtime_ns": info.st_mtime_ns,
            "files": 1,
            "sha256_edges": digest.hexdigest()[:16],
        }
    total, newest, files = 0, 0, 0
    for root, dirs, names in os.walk(path):
        dirs.sort()
        for name in sorted(names):
            file = Path(root) / name
            relative = str(file.relative_to(path)).encode()
            try:
                info = file.stat()
                meta = (
                    file.read_bytes()
                    if name in ("zarr.json", ".zarray", ".zgroup", ".zattrs")
                    and stat.S_ISREG(info.st_mode)
                    else None
                )
            except OSError as error:
                digest.update(relative + f"!{error.errno}".encode())
                files += 1
                continue
            total += info.st_size
            newest = max(newest, info.st_mtime_ns)
            files += 1
            if meta is not None:
                digest.update(relative)
                digest.update(meta)
    return {
        "bytes": total,
        "mtime_ns": newest,
        "files": files,
        "sha256_edges": digest.hexdigest()[:16],
    }


def check_unchanged(source: ArraySource, before: dict[str, Any]) -> None:
    """Raise when a store changed between the start and the end of a run."""
    after = store_fingerprint(source.path)
    if after != before:
        raise InputChangedError(
            f"{source.path} changed while segaudit was reading it; its results would mix "
            "two versions, so nothing was written: rerun once the file is stable."
        )


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
        raise UnreadableStoreError(f"{path} cannot be read ({_reason(error)}).") from None
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
            f"{path} is not a readable .npy file ({_reason(error)}); regenerate it with numpy.save."
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
                f"{path} cannot be memory-mapped ({_reason(error)}); copy it to a local disk."
            ) from None
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


def open_zarr(path: Path, name: str) -> ArraySource:
    """Open a Zarr array (v2 or v3), or the array ``name`` inside a Zarr group."""
    import zarr

    if not path.exists():
        raise InputNotFoundError(f"{path} does not exist; check the path.")
    try:
        node = zarr.open(str(path), mode="r")
        if isinstance(node, zarr.Group):
            keys = sorted(node.array_keys())
            if name not in keys:
                raise InvalidInputError(
                    f"{path} is a Zarr group without an array named '{name}'; "
                    f"it holds {keys or 'no arrays'}."
                )
            node = node[name]
        dtype = np.dtype(node.dtype)
        raw_shape = tuple(node.shape)
    except InvalidInputError:
        raise
    except Exception as error:  # zarr raises many types for bad metadata
        raise UnreadableStoreError(
            f"{path} is not a readable Zarr store ({_reason(error)}); regenerate it."
        ) from None
    _check_header_dtype(path, dtype)
    check_shape(path, raw_shape, dtype)
    return ArraySource(path, node, "zarr")


def open_store(path: str | os.PathLike[str], name: str) -> ArraySource:
    """Open the store at ``path`` for the input called ``name`` (labels, pred_probs, images)."""
    path = Path(path)
    if is_zarr_path(path):
        return open_zarr(path, name)
    if not path.exists():
        raise InputNotFoundError(f"{path} does not exist; check the path.")
    if path.suffix != ".npy" and path.is_dir():
        raise UnreadableStoreError(f"{path} is a directory but not a Zarr store.")
    return open_npy(path)


@dataclass
class DatasetPaths:
    """Where a dataset's stores are, after conventions and explicit overrides."""

    labels: Path
    pred_probs: Path
    images: Path | None
    class_names: Path | None


def _find(folder: Path, name: str) -> Path | None:
    for suffix in (".npy", ".zarr"):
        candidate = folder / f"{name}{suffix}"
        if candidate.exists():
            return candidate
    return None


def resolve_dataset(
    dataset: str | os.PathLike[str] | None,
    *,
    labels: str | os.PathLike[str] | None = None,
    pred_probs: str | os.PathLike[str] | None = None,
    images: str | os.PathLike[str] | None = None,
    class_names: str | os.PathLike[str] | None = None,
) -> DatasetPaths:
    """Find a dataset's stores by convention (``DATASET/labels.npy`` ...) with overrides.

    A DATASET that is itself a Zarr group holding ``labels`` and ``pred_probs`` works too.
    """
    folder = Path(dataset) if dataset is not None else None
    if folder is not None and not folder.exists():
        raise InputNotFoundError(f"dataset folder {folder} does not exist; check the path.")
    group_arrays = _group_arrays(folder) if folder is not None else None
    group = group_arrays is not None
    if folder is not None and not group and not folder.is_dir():
        raise InvalidInputError(
            f"dataset {folder} is a file, not a folder; pass the folder that holds it, "
            "or the file itself with --labels or --pred-probs."
        )

    def pick(override: Any, name: str, required: bool) -> Path | None:
        if override is not None:
            return Path(override)
        if folder is None:
            return None
        if group:
            return folder
        found = _find(folder, name)
        if found is None and required:
            raise InputNotFoundError(
                f"{folder} has no {name}.npy or {name}.zarr; pass --{name.replace('_', '-')} PATH."
            )
        return found

    labels_path = pick(labels, "labels", True)
    probs_path = pick(pred_probs, "pred_probs", True)
    if labels_path is None or probs_path is None:
        raise InputNotFoundError("give a DATASET folder or both --labels and --pred-probs.")
    images_path = pick(images, "images", False)
    if group and images is None and "images" not in (group_arrays or []):
        images_path = None
    names_path = Path(class_names) if class_names is not None else None
    if names_path is None and folder is not None and (folder / "classes.txt").is_file():
        names_path = folder / "classes.txt"
    return DatasetPaths(labels_path, probs_path, images_path, names_path)


def _group_arrays(folder: Path) -> list[str] | None:
    """The array names of a DATASET that is a Zarr group; None for a plain folder."""
    if not is_zarr_path(folder):
        return None
    import zarr

    try:
        node = zarr.open(str(folder), mode="r")
    except Exception as error:  # zarr raises many types for bad metadata
        if folder.is_dir() and (_find(folder, "labels") or _find(folder, "pred_probs")):
            return None  # a plain dataset folder that merely ends in .zarr
        raise UnreadableStoreError(
            f"dataset {folder} is not a readable Zarr group ({_reason(error)}); "
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
            f"({_reason(error)}); regenerate it."
        ) from None


def read_class_names(path: Path | None, num_classes: int) -> list[str]:
    """Class names from a file with one name per line, or ``class_0``... when absent."""
    if path is None:
        return [f"class_{k}" for k in range(num_classes)]
    if path.exists() and not path.is_file():
        raise UnreadableStoreError(f"{path} is not a regular text file; check --class-names.")
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except FileNotFoundError:
        raise InputNotFoundError(f"{path} does not exist; check --class-names.") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UnreadableStoreError(
            f"{path} is not a readable UTF-8 text file ({_reason(error)})."
        ) from None
    names = [line for line in lines if line]
    if len(names) != num_classes:
        raise InvalidInputError(
            f"{path} lists {len(names)} class names but pred_probs has {num_classes} classes; "
            "write one name per line, one line per class."
        )
    return names
