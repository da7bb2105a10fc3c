"""Reading input stores: ``.npy`` (memory-mapped) and Zarr (v2 and v3 formats).

Inputs are opened, never loaded whole: an :class:`ArraySource` hands out image
batches and, for memory-mapped files, releases the pages of a batch once it has
been processed, so resident memory stays flat however large the file is. Input
files are only ever opened read-only.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import mmap
import os
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

STORE_NAMES = ("labels", "pred_probs", "images")
_PAGE = mmap.PAGESIZE
_MADV_DONTNEED = 4
_MADV_POPULATE_READ = 22  # Linux 5.14+: map a whole range in one call instead of page by page


def _libc() -> Any:
    name = ctypes.util.find_library("c")
    return ctypes.CDLL(name, use_errno=True) if name else None


_LIBC = _libc()


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
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    def read(self, start: int, stop: int) -> np.ndarray:
        """Images ``start:stop`` as a C-contiguous numpy array (a view for ``.npy``)."""
        try:
            batch = np.ascontiguousarray(self.array[start:stop])
        except Exception as error:  # any failure to decode is a store problem
            raise UnreadableStoreError(
                f"{self.path}: reading images {start}..{stop - 1} failed ({_reason(error)}); "
                "the store is corrupt or truncated, regenerate it."
            ) from None
        self.bytes_read += batch.nbytes
        if self.kind == "npy":
            self._populate(batch)
        return batch

    def _populate(self, batch: np.ndarray) -> None:
        """Fault a mapped batch in with one call; per-page faults cost more than the kernel."""
        if _LIBC is None or batch.nbytes < 2 * _PAGE:
            return
        first = batch.ctypes.data // _PAGE * _PAGE
        length = batch.ctypes.data + batch.nbytes - first
        _LIBC.madvise(ctypes.c_void_p(first), ctypes.c_size_t(length), _MADV_POPULATE_READ)

    def release(self, batch: np.ndarray) -> None:
        """Drop a processed batch's mapped pages from this process (page cache stays)."""
        if self.kind != "npy" or _LIBC is None or batch.nbytes < 2 * _PAGE:
            return
        start = batch.ctypes.data
        first = (start + _PAGE - 1) // _PAGE * _PAGE
        last = (start + batch.nbytes) // _PAGE * _PAGE
        if last > first:
            _LIBC.madvise(ctypes.c_void_p(first), ctypes.c_size_t(last - first), _MADV_DONTNEED)

    def fingerprint(self) -> dict[str, Any]:
        """Size, modification time and a content hash of the store's edges, to detect changes."""
        return store_fingerprint(self.path)


def _reason(error: BaseException) -> str:
    text = str(error).strip().rstrip(".") or type(error).__name__
    return text.splitlines()[0][:200]


def store_fingerprint(path: Path) -> dict[str, Any]:
    """A cheap identity of a store: total size, newest mtime, file count, hash of the edges.

    For a ``.npy`` file the hash covers its first and last MiB; for a Zarr directory
    it covers the metadata files. Any rewrite, truncation or growth changes it.
    """
    path = Path(path)
    digest = hashlib.sha256()
    if path.is_file():
        stat = path.stat()
        with open(path, "rb") as handle:
            digest.update(handle.read(1 << 20))
            if stat.st_size > 1 << 20:
                handle.seek(max(stat.st_size - (1 << 20), 1 << 20))
                digest.update(handle.read(1 << 20))
        return {
            "bytes": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "files": 1,
            "sha256_edges": digest.hexdigest()[:16],
        }
    total, newest, files = 0, 0, 0
    for root, dirs, names in os.walk(path):
        dirs.sort()
        for name in sorted(names):
            file = Path(root) / name
            stat = file.stat()
            total += stat.st_size
            newest = max(newest, stat.st_mtime_ns)
            files += 1
            if name in ("zarr.json", ".zarray", ".zgroup", ".zattrs"):
                digest.update(str(file.relative_to(path)).encode())
                digest.update(file.read_bytes())
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
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            header = _read_npy_header(handle, version)
            offset = handle.tell()
    except FileNotFoundError:
        raise InputNotFoundError(f"{path} does not exist; check the path.") from None
    except IsADirectoryError:
        raise UnreadableStoreError(f"{path} is a directory, not a .npy file.") from None
    except (ValueError, OSError, SyntaxError, TypeError) as error:
        raise UnreadableStoreError(
            f"{path} is not a readable .npy file ({_reason(error)}); regenerate it with numpy.save."
        ) from None
    shape, fortran_order, dtype = header
    _check_header_dtype(path, dtype)
    if fortran_order and len(shape) > 1:
        raise InvalidInputError(
            f"{path} is stored in Fortran order, which cannot be streamed by image; "
            "save it with np.save(path, np.ascontiguousarray(array))."
        )
    expected = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    size = path.stat().st_size
    if size < expected:
        raise UnreadableStoreError(
            f"{path} is truncated ({size} bytes, its header promises {expected}); "
            "the file was cut short, regenerate it."
        )
    if int(np.prod(shape, dtype=np.int64)) == 0:
        array: Any = np.empty(shape, dtype)
    else:
        array = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=tuple(shape), order="C")
    return ArraySource(path, array, "npy")


def _read_npy_header(handle: Any, version: tuple[int, int]) -> tuple[Any, bool, np.dtype]:
    """Parse a .npy header (versions 1–3) without ever evaluating more than a literal."""
    fmt = np.lib.format
    if version == (1, 0):
        return fmt.read_array_header_1_0(handle, max_header_size=100_000)
    if version == (2, 0):
        return fmt.read_array_header_2_0(handle, max_header_size=100_000)
    from numpy.lib import _format_impl  # version 3.0 (utf-8 field names) has no public reader

    return _format_impl._read_array_header(handle, version, max_header_size=100_000)


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
    except Exception as error:  # zarr raises many types for bad metadata
        raise UnreadableStoreError(
            f"{path} is not a readable Zarr store ({_reason(error)}); regenerate it."
        ) from None
    if isinstance(node, zarr.Group):
        if name not in node.array_keys():
            raise InvalidInputError(
                f"{path} is a Zarr group without an array named '{name}'; "
                f"it holds {sorted(node.array_keys()) or 'no arrays'}."
            )
        node = node[name]
    dtype = np.dtype(node.dtype)
    _check_header_dtype(path, dtype)
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
    group = folder is not None and is_zarr_path(folder)

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
    if group and images is None and images_path is not None:
        import zarr

        if "images" not in zarr.open_group(str(folder), mode="r").array_keys():
            images_path = None
    names_path = Path(class_names) if class_names is not None else None
    if names_path is None and folder is not None and (folder / "classes.txt").is_file():
        names_path = folder / "classes.txt"
    return DatasetPaths(labels_path, probs_path, images_path, names_path)


def read_class_names(path: Path | None, num_classes: int) -> list[str]:
    """Class names from a file with one name per line, or ``class_0``... when absent."""
    if path is None:
        return [f"class_{k}" for k in range(num_classes)]
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
