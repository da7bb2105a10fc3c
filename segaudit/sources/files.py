"""One image's files: label masks (PNG, TIFF), predictions (``.npy``, ``.npz``), photos.

Each reader opens one file read-only and either returns its array or raises one
sentence naming the file. Headers are read without decoding pixels, so a dataset of
thousands of images is described (sizes, class count, dtype) before anything heavy
happens; pixels are decoded later, one image at a time, in the engine's workers.

``.npy`` predictions are memory-mapped through :func:`segaudit.sources.stores.open_npy` (never
unpickled); ``.npz`` archives are read member by member with ``allow_pickle=False``.
"""

from __future__ import annotations

import os
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from segaudit.errors import InputNotFoundError, InvalidInputError, UnreadableStoreError, reason
from segaudit.sources.remote import is_url, open_url_file

MASK_SUFFIXES = (".png", ".tif", ".tiff", ".nii", ".nii.gz")  # NIfTI: 3-D volumes
PROBS_SUFFIXES = (".npy", ".npz")
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".nii", ".nii.gz")
NPZ_KEYS = ("probabilities", "softmax")  # nnU-Net v2, then v1
PROBS_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


def check_regular_file(path: Path, what: str) -> None:
    """Refuse a missing path, a folder, a pipe or a device (opening a FIFO blocks forever)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise InputNotFoundError(f"{what} {path} does not exist; check the path.") from None
    except OSError as error:
        raise UnreadableStoreError(f"{what} {path} cannot be read ({reason(error)}).") from None
    if not stat.S_ISREG(info.st_mode):
        raise UnreadableStoreError(
            f"{what} {path} is not a regular file (a folder, pipe or device); "
            "pass the file itself."
        )


# --- masks ------------------------------------------------------------------------------


@dataclass(frozen=True)
class MaskHeader:
    """What a mask's header says, before its pixels are decoded."""

    height: int
    width: int
    mode: str  # Pillow mode: "L", "P", "I;16", "I", "1", "RGB", ...

    @property
    def is_colour(self) -> bool:
        return self.mode in ("RGB", "RGBA")


_MASK_MODES = ("1", "L", "P", "I;16", "I;16L", "I;16B", "I", "RGB", "RGBA")
_MASK_FORMATS = ("PNG", "TIFF")  # lossless, one image a file (checked too)


def _open_image(path: Path | str, what: str) -> Any:
    from PIL import Image

    # Pillow's guard against decompression bombs from the web warns from 89 megapixels and
    # refuses from 179: aerial tiles and slides are that big, and a mask's size is checked
    # against its predictions' before it is decoded. segaudit's own images lift it.
    Image.MAX_IMAGE_PIXELS = None
    if is_url(path):
        source: Any = open_url_file(str(path), what)
    else:
        check_regular_file(Path(path), what)
        source = path
    try:
        return Image.open(source)
    except Exception as error:  # Pillow raises many types for files it cannot identify
        raise UnreadableStoreError(
            f"{what} {path} is not a readable image ({reason(error)}); re-export it as PNG."
        ) from None


def mask_header(path: Path) -> MaskHeader:
    """Size and pixel mode of a label mask, from its header only."""
    with _open_image(path, "mask") as image:
        mode, kind = image.mode, image.format
        width, height = image.size
        pages = int(getattr(image, "n_frames", 1))
    if kind not in _MASK_FORMATS:
        raise InvalidInputError(
            f"mask {path} holds {kind} data, whose lossy compression changes class ids "
            "along every edge; export the masks as PNG or TIFF."
            if kind == "JPEG"
            else f"mask {path} holds {kind} data; export the masks as PNG or TIFF."
        )
    if pages > 1:
        raise InvalidInputError(
            f"mask {path} holds {pages} images ({'frames' if kind == 'PNG' else 'pages'}); "
            "a mask is one image: save each as its own mask file."
        )
    if mode not in _MASK_MODES:
        raise InvalidInputError(
            f"mask {path} has pixel mode {mode}; label masks are 8- or 16-bit grayscale, "
            "palette or RGB (with --label-map) images of integer class ids."
        )
    return MaskHeader(int(height), int(width), mode)


def read_mask(path: Path) -> np.ndarray:
    """A mask's pixels: (H, W) integers, or (H, W, 3) uint8 for a colour-coded mask.

    Palette ("P") images give their pixel indices, which are the class ids (as VOC
    stores them); the palette's colours are never looked at.
    """
    with _open_image(path, "mask") as image:
        try:
            if image.mode == "RGBA":
                pixels = np.asarray(image.convert("RGB"))
            else:
                pixels = np.asarray(image)
        except Exception as error:  # truncated or corrupt data
            raise UnreadableStoreError(
                f"mask {path} is corrupt or truncated ({reason(error)}); re-export it."
            ) from None
        if image.format == "PNG" and not is_url(path) and not _ends_with_iend(Path(path)):
            raise UnreadableStoreError(
                f"mask {path} does not end with PNG's IEND chunk (it was cut short, or other "
                "data follows it); re-export it."
            )
    if pixels.dtype == bool:
        pixels = pixels.astype(np.uint8)
    if not pixels.dtype.isnative:  # 16-bit big-endian PNG data
        pixels = pixels.astype(pixels.dtype.newbyteorder("="))
    if pixels.dtype.kind not in "iu":
        raise InvalidInputError(
            f"mask {path} holds {pixels.dtype} values; label masks hold integer class ids."
        )
    return pixels


_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # a PNG's last chunk: empty, with its CRC


def _ends_with_iend(path: Path) -> bool:
    """Whether a PNG ends as every whole PNG does. Pillow decodes the pixels of a file cut
    within its last few dozen bytes without a word (the stream's checksum and the end are
    not checked), so a cut file would pass for a whole one."""
    with open(path, "rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        if size < len(_IEND):
            return False
        handle.seek(size - len(_IEND))
        return handle.read() == _IEND


# --- predictions --------------------------------------------------------------------------


@dataclass(frozen=True)
class ProbsHeader:
    """Shape and dtype of an image's prediction array as stored (singleton axis dropped)."""

    shape: tuple[int, ...]
    dtype: np.dtype


def npz_member(archive: zipfile.ZipFile, path: Path) -> str:
    """The member holding the probabilities: the only array, or a known nnU-Net key."""
    arrays = [name[:-4] for name in archive.namelist() if name.endswith(".npy")]
    if len(arrays) == 1:
        return arrays[0]
    for key in NPZ_KEYS:
        if key in arrays:
            return key
    if not arrays:
        raise InvalidInputError(
            f"predictions {path} hold no array (an empty .npz archive); save the "
            "probabilities with numpy.savez."
        )
    shown = ", ".join(sorted(arrays)[:8])
    raise InvalidInputError(
        f"predictions {path} hold several arrays ({shown}) and none is named "
        f"{' or '.join(NPZ_KEYS)}; save one array per file."
    )


def _npz_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    check_regular_file(path, "predictions")
    try:
        with zipfile.ZipFile(path) as archive:
            member = npz_member(archive, path)
            with archive.open(member + ".npy") as handle:
                version = np.lib.format.read_magic(handle)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
                else:
                    shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
    except InvalidInputError:
        raise
    except Exception as error:  # zipfile and numpy raise many types on garbage
        raise UnreadableStoreError(
            f"predictions {path} are not a readable .npz archive ({reason(error)}); "
            "save them again with numpy.savez."
        ) from None
    return tuple(int(n) for n in shape), np.dtype(dtype)


def squeeze_spatial(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Drop one singleton spatial axis: nnU-Net saves 2-D cases as (K, 1, H, W)."""
    if len(shape) == 4 and 1 in shape[1:]:
        axis = 1 + shape[1:].index(1)
        return shape[:axis] + shape[axis + 1 :]
    return shape


def _suffix(path: Path | str) -> str:
    return PurePosixPath(str(path)).suffix


def _refuse_remote_npz(path: Path | str) -> None:
    if is_url(path) and _suffix(path) == ".npz":
        raise UnreadableStoreError(
            f"predictions {path}: .npz archives behind URLs are not read (they cannot be "
            "read by byte ranges); save the predictions as .npy files."
        )


def probs_header(path: Path) -> ProbsHeader:
    """Shape and dtype of one image's predictions without reading them."""
    _refuse_remote_npz(path)
    if is_url(path):
        from segaudit.sources.remote import open_npy_url

        remote = open_npy_url(str(path))
        _check_probs_dtype(path, remote.dtype)
        return ProbsHeader(squeeze_spatial(remote.shape), remote.dtype)
    if _suffix(path) == ".npz":
        shape, dtype = _npz_header(path)
    else:
        from segaudit.sources.stores import open_npy

        source = open_npy(path)
        shape, dtype = source.shape, source.dtype
    _check_probs_dtype(path, dtype)
    return ProbsHeader(squeeze_spatial(shape), dtype)


def _check_probs_dtype(path: Path, dtype: np.dtype) -> None:
    if dtype not in PROBS_DTYPES:
        from segaudit.engine.params import dtype_text

        raise InvalidInputError(
            f"predictions {path} hold {dtype_text(dtype)} values; predictions must be "
            "float16, float32 or float64, in the machine's byte order."
        )


@dataclass
class Loaded:
    """One image's array, and how to give its memory back once it is processed."""

    array: np.ndarray
    source: Any = None  # the io.ArraySource of a memory map segaudit opened

    def release(self) -> None:
        """Drop the mapped pages of a processed image (the page cache keeps them)."""
        if self.source is not None:
            self.source.release(self.array)


def read_probs(path: Path) -> Loaded:
    """One image's predictions as stored, with a singleton spatial axis dropped.

    A ``.npy`` file is memory-mapped (pages are released after use); an ``.npz``
    member is decompressed into memory, as zip archives cannot be mapped. A ``.npy``
    behind a URL is read with one ranged request.
    """
    _refuse_remote_npz(path)
    if is_url(path):
        from segaudit.sources.remote import read_url_npy

        array = read_url_npy(str(path))
        _check_probs_dtype(path, array.dtype)
        return Loaded(array.reshape(squeeze_spatial(array.shape)))
    if _suffix(path) == ".npz":
        array = read_npz(path)
        _check_probs_dtype(path, array.dtype)
        return Loaded(array.reshape(squeeze_spatial(array.shape)))
    from segaudit.sources.stores import open_npy

    source = open_npy(path)
    _check_probs_dtype(path, source.dtype)
    array = source.read(0, source.shape[0]) if source.shape else source.array
    return Loaded(array.reshape(squeeze_spatial(array.shape)), source)


def read_npz(path: Path) -> np.ndarray:
    check_regular_file(path, "predictions")
    try:
        with np.load(path, allow_pickle=False) as archive:
            with zipfile.ZipFile(path) as listing:
                member = npz_member(listing, path)
            return np.ascontiguousarray(archive[member])
    except InvalidInputError:
        raise
    except MemoryError:
        raise
    except Exception as error:  # corrupt archives, pickled members, truncation
        raise UnreadableStoreError(
            f"predictions {path} are not a readable .npz archive ({reason(error)}); "
            "save them again with numpy.savez."
        ) from None


# --- photos -------------------------------------------------------------------------------


def read_photo(path: Path) -> np.ndarray:
    """A photo as (H, W, 3) uint8 RGB, whatever its mode (grayscale, palette, alpha)."""
    with _open_image(path, "photo") as image:
        try:
            return np.asarray(image.convert("RGB"))
        except Exception as error:
            raise UnreadableStoreError(
                f"photo {path} is corrupt or truncated ({reason(error)})."
            ) from None
