"""Inputs behind URLs: ``s3://``, ``gs://``, ``file://``, anything fsspec knows.

A stacked ``.npy`` file is read by byte ranges (:class:`RangedNpy`: its header once,
then one ranged request per slice of images), never downloaded whole; a Zarr store
opens through zarr's fsspec store; a folder of one file per image is listed once
(:func:`find_url_files`) and each file fetched when its image is read. Credentials are
the filesystem's own (for S3: the AWS environment variables, profiles and roles,
``AWS_ENDPOINT_URL`` for S3-compatible servers such as MinIO). A store's identity is
its listing (names, sizes, ETags and modification times) and a hash of its metadata,
so a store rewritten during a run is noticed.

fsspec and its backends (s3fs, gcsfs) are imported only when a URL is given.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import numpy as np

from segaudit.errors import InputNotFoundError, InvalidInputError, UnreadableStoreError, reason

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_HEADER_BYTES = 1 << 17  # more than the largest .npy header read (max_header_size=100_000)
_EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs"}


def is_url(text: Any) -> bool:
    """Whether ``text`` is a URL (``scheme://...``) rather than a local path."""
    return isinstance(text, str) and bool(_URL.match(text))


def filesystem(url: str) -> tuple[Any, str]:
    """The fsspec filesystem of ``url`` and the path within it; one sentence when the
    scheme's package is missing."""
    try:
        from fsspec.core import url_to_fs
    except ImportError:
        raise UnreadableStoreError(
            f"{url}: reading URLs needs fsspec; install it with pip install 'segaudit[s3]'."
        ) from None
    scheme = url.split("://", 1)[0].lower()
    try:
        return url_to_fs(url)
    except ImportError:
        extra = _EXTRAS.get(scheme)
        how = f"pip install 'segaudit[{extra}]'" if extra else "pip (e.g. adlfs for az://)"
        raise UnreadableStoreError(
            f"{url}: reading {scheme}:// URLs needs its fsspec backend; install it with {how}."
        ) from None
    except (ValueError, OSError) as error:
        raise UnreadableStoreError(f"{url} is not a usable URL ({reason(error)}).") from None


def _refusal(url: str, error: BaseException) -> Exception:
    """One sentence for a failed request: missing, refused, or unreachable."""
    if isinstance(error, FileNotFoundError):
        return InputNotFoundError(f"{url} does not exist (or its bucket does not); check the URL.")
    if isinstance(error, PermissionError):
        return UnreadableStoreError(
            f"{url} cannot be read: access denied ({reason(error)}); check the credentials."
        )
    return UnreadableStoreError(
        f"{url} cannot be read ({reason(error)}); check the URL, the credentials and the "
        "endpoint (AWS_ENDPOINT_URL for S3-compatible servers)."
    )


@dataclass
class RangedNpy:
    """A ``.npy`` file behind a URL, sliced along its first axis by ranged reads."""

    url: str
    shape: tuple[int, ...]
    dtype: np.dtype
    offset: int  # where the data starts
    _fs: Any = field(default=None, repr=False, compare=False)

    @property
    def fs(self) -> Any:
        if self._fs is None:
            self._fs = filesystem(self.url)
        return self._fs

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_fs": None}  # a worker connects by itself

    def __getitem__(self, key: slice) -> np.ndarray:
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError("RangedNpy reads contiguous ranges of images only")
        start, stop, _ = key.indices(self.shape[0])
        stop = max(start, stop)
        row = math.prod(self.shape[1:]) * self.dtype.itemsize
        fs, path = self.fs
        first = self.offset + start * row
        data = fs.cat_file(path, start=first, end=first + (stop - start) * row) if row else b""
        if len(data) != (stop - start) * row:
            raise OSError(f"got {len(data)} bytes of {(stop - start) * row}: the file is truncated")
        return np.frombuffer(data, self.dtype).reshape((stop - start, *self.shape[1:]))


def open_npy_url(url: str) -> RangedNpy:
    """A remote ``.npy`` file's header, checked as a local one's would be."""
    from segaudit.sources.stores import _check_header_dtype, _read_npy_header, check_shape

    fs, path = filesystem(url)
    try:
        size = int(fs.info(path)["size"])
        head = fs.cat_file(path, start=0, end=min(size, _HEADER_BYTES))
    except Exception as error:  # each backend has its own errors
        raise _refusal(url, error) from None
    try:
        handle = io.BytesIO(head)
        version = np.lib.format.read_magic(handle)
        raw_shape, fortran_order, dtype = _read_npy_header(handle, version)
        offset = handle.tell()
    except Exception as error:  # numpy's header parser raises many types on garbage
        raise UnreadableStoreError(
            f"{url} is not a readable .npy file ({reason(error)}); regenerate it with numpy.save."
        ) from None
    _check_header_dtype(url, dtype)  # type: ignore[arg-type]
    shape = check_shape(url, raw_shape, dtype)  # type: ignore[arg-type]
    if fortran_order and sum(n > 1 for n in shape) > 1:
        raise UnreadableStoreError(
            f"{url} is stored in Fortran order, which cannot be streamed by image; "
            "save it with np.save(path, np.ascontiguousarray(array))."
        )
    expected = offset + math.prod(shape) * dtype.itemsize
    if size < expected:
        raise UnreadableStoreError(
            f"{url} is truncated ({size} bytes, its header promises {expected} for shape "
            f"{shape} of {dtype}); the file was cut short, regenerate it."
        )
    return RangedNpy(url, shape, dtype, offset, (fs, path))


def open_zarr_url(url: str, name: str) -> Any:
    """The Zarr array at ``url``, or the array ``name`` of the group there."""
    import zarr

    from segaudit.sources.stores import zarr_array

    filesystem(url)  # the backend's package, or one sentence
    try:
        node = zarr.open(url, mode="r")
    except FileNotFoundError as error:
        raise _refusal(url, error) from None
    except Exception as error:  # zarr and the backends raise many types
        raise UnreadableStoreError(
            f"{url} is not a readable Zarr store ({reason(error)}); check the URL and the "
            "credentials."
        ) from None
    return zarr_array(node, name, url, UnreadableStoreError)


def is_zarr_url(url: str) -> bool:
    """A Zarr store by name (``.zarr``) or by its metadata; else a file or a folder."""
    if url.rstrip("/").endswith(".zarr"):
        return True
    if PurePosixPath(url).suffix.lower() in (".npy", ".npz", ".png", ".tif", ".tiff", ".jpg"):
        return False
    fs, path = filesystem(url)
    try:
        return any(fs.exists(f"{path.rstrip('/')}/{meta}") for meta in _ZARR_METADATA)
    except Exception as error:  # each backend has its own errors
        raise _refusal(url, error) from None


_ZARR_METADATA = ("zarr.json", ".zarray", ".zgroup")


def _version(info: dict[str, Any]) -> str:
    """What says an object was written again: its ETag (its bytes) and its modification
    time (a rewrite of the same bytes, as a local file's change time says)."""
    keys = ("ETag", "etag", "LastModified", "last_modified", "mtime", "updated", "generation")
    return "|".join(str(info[key]) for key in keys if info.get(key) is not None)


def url_fingerprint(url: str) -> dict[str, Any]:
    """A remote store's identity: every object's name, size and version (:func:`_version`),
    and a hash of its metadata documents."""
    fs, path = filesystem(url)
    try:
        fs.invalidate_cache()
        found = fs.find(path, detail=True) if fs.isdir(path) else {path: fs.info(path)}
    except Exception as error:  # each backend has its own errors
        raise _refusal(url, error) from None
    entries, metadata = hashlib.sha256(), hashlib.sha256()
    total = 0
    for name in sorted(found):
        info = found[name]
        version = _version(info)
        size = int(info.get("size") or 0)
        total += size
        entries.update(f"{name}\0{size}\0{version}\n".encode())
        if name.rsplit("/", 1)[-1] in (*_ZARR_METADATA, ".zattrs"):
            metadata.update(fs.cat_file(name))
    return {
        "bytes": total,
        "files": len(found),
        "sha256_edges": metadata.hexdigest()[:16],
        "sha256_entries": entries.hexdigest()[:16],
    }


# -- folders of one file per image behind a URL ---------------------------------------


def find_url_files(url: str, suffixes: tuple[str, ...], what: str) -> dict[str, str]:
    """Files of one input by id under the folder ``url`` (hidden ones skipped), as URLs:
    one listing, as :func:`segaudit.sources.folder.find_files` walks a local folder."""
    from segaudit.sources.ids import check_id, check_unique, id_from_path

    fs, root = filesystem(url)
    root = root.rstrip("/")
    try:
        found = fs.find(root)
    except Exception as error:  # each backend has its own errors
        raise _refusal(url, error) from None
    relative = [
        PurePosixPath(name[len(root) + 1 :]) for name in sorted(found) if name.startswith(root)
    ]
    wanted = [
        r for r in relative
        if r.parts and not any(p.startswith(".") for p in r.parts)
        and r.suffix.lower() in suffixes
    ]  # fmt: skip
    if not wanted:
        raise InputNotFoundError(
            f"{what} {url} holds no {' or '.join(suffixes)} files; check the URL."
        )
    ids = [id_from_path(r) for r in wanted]
    for image_id in ids:
        check_id(image_id, f"{what} {url}")
    check_unique(ids, f"{what} {url}")
    urls = [fs.unstrip_protocol(f"{root}/{r}") for r in wanted]
    return dict(sorted(zip(ids, urls, strict=True)))


def url_kind(url: str) -> str:
    """``"file"``, ``"folder"`` (a prefix holding objects) or ``"missing"``."""
    fs, path = filesystem(url)
    try:
        if fs.isfile(path):
            return "file"
        return "folder" if fs.isdir(path) else "missing"
    except FileNotFoundError:
        return "missing"
    except Exception as error:  # each backend has its own errors
        raise _refusal(url, error) from None


def check_url_folder(url: str) -> None:
    """A DATASET URL must be a folder (a prefix holding objects)."""
    kind = url_kind(url)
    if kind == "missing":
        raise InputNotFoundError(f"dataset folder {url} does not exist; check the URL.")
    if kind == "file":
        raise InvalidInputError(
            f"dataset {url} is a file, not a folder; pass the folder that holds it, or the "
            "file itself with --labels or --pred-probs."
        )


def read_url_text(url: str) -> bytes:
    """A small object's bytes (a class-names file)."""
    fs, path = filesystem(url)
    try:
        return fs.cat_file(path)
    except Exception as error:  # each backend has its own errors
        raise _refusal(url, error) from None


def open_url_file(url: str, what: str) -> Any:
    """A file-like object reading ``url`` (blocks fetched as they are read)."""
    fs, path = filesystem(url)
    try:
        return fs.open(path, "rb")
    except Exception as error:  # each backend has its own errors
        raise _refusal(url, error) from None


def read_url_npy(url: str) -> np.ndarray:
    """One image's ``.npy`` behind a URL: its header, then its data in one ranged read."""
    array = open_npy_url(url)
    return array[0 : array.shape[0]] if array.shape else np.empty((), array.dtype)


def urls_fingerprint(urls: list[str]) -> dict[str, Any]:
    """The identity of many files behind URLs (sizes and ETags) from one listing of the
    folder holding them all."""
    import posixpath

    if not urls:
        return {"files": 0, "bytes": 0, "sha256_stat": ""}
    fs, _ = filesystem(urls[0])
    paths = [filesystem(u)[1] for u in urls]
    root = posixpath.commonpath(paths) if len(paths) > 1 else posixpath.dirname(paths[0])
    try:
        fs.invalidate_cache()
        listed = fs.find(root, detail=True)
    except Exception as error:  # each backend has its own errors
        raise _refusal(urls[0], error) from None
    digest, total = hashlib.sha256(), 0
    for path in paths:
        info = listed.get(path) or {}
        size = int(info.get("size") or 0)
        version = _version(info)
        total += size
        digest.update(f"{path}|{size}|{version}\n".encode())
    return {"files": len(paths), "bytes": total, "sha256_stat": digest.hexdigest()[:16]}
