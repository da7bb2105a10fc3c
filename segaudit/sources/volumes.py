"""3-D volumes: NIfTI label masks and (K, Z, Y, X) predictions, read a slab of slices at a time.

Axes. segaudit holds a volume as (Z, Y, X), z slowest, so ``volume[z]`` is an axial
slice. A NIfTI file stores its voxels x fastest (the Fortran order of nibabel's
(x, y, z) array), so the slices z0:z1 are one contiguous byte range and, read in file
order, are already (z, y, x) in C order: a volume is the transpose of what
``nibabel.load(path).get_fdata()`` returns. nnU-Net writes probabilities in that same
order, (K, z, y, x) (SimpleITK's ``GetArrayFromImage``, and nnU-Net's NibabelIO, which
transposes nibabel's array by (2, 1, 0)); a mask of nibabel shape (X, Y, Z) pairs with
probabilities of shape (K, Z, Y, X). Probabilities saved in nibabel's order
(K, X, Y, Z) are refused with the transpose that fixes them.

Reading. Masks (``.nii``, ``.nii.gz``) are read slab by slab from one sequential
stream (gzip decompresses forward only), so a volume is never held whole.
Predictions in ``.npy`` are memory-mapped and sliced. Predictions in ``.npz`` (as
nnU-Net saves them, compressed) are read into memory when they decompress to at most
:data:`NPZ_IN_MEMORY` bytes, else decompressed once into an unlinked temporary file
(in ``TMPDIR``) that is memory-mapped: a zip member can only be read from its start.

In a run a volume is a "sheet" of shape (Z·Y, X): the same voxels in the same order,
so every per-pixel array and flat index means the same voxel.
"""

from __future__ import annotations

import gzip
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segaudit.errors import InvalidInputError, OutputWriteError, UnreadableStoreError, reason
from segaudit.sources.files import check_regular_file

VOLUME_SUFFIXES = (".nii", ".nii.gz")
NPZ_IN_MEMORY = 512 << 20  # bytes: larger .npz predictions are decompressed to a temp file
WHOLE_SLABS = 4  # predictions held in memory are scanned whole up to this many slabs


def nibabel() -> Any:
    """nibabel, or one sentence on how to install it."""
    try:
        import nibabel as nib
    except ImportError:
        raise InvalidInputError(
            "reading NIfTI volumes needs nibabel: pip install 'segaudit[medical]'."
        ) from None
    return nib


def is_volume_file(path: Path | str) -> bool:
    return str(path).lower().endswith(VOLUME_SUFFIXES)


@dataclass(frozen=True)
class VolumeHeader:
    """A NIfTI file's geometry and storage, read from its header alone."""

    path: Path
    shape: tuple[int, int, int]  # (Z, Y, X)
    dtype: np.dtype  # as stored (byte order included)
    offset: int  # where the voxels start, in the (decompressed) file
    affine: np.ndarray  # (4, 4) voxel (i, j, k) -> world millimetres
    spacing: tuple[float, float, float]  # (sz, sy, sx) millimetres
    header: Any  # the nibabel header, for outputs in the same geometry
    slope: float = 1.0  # stored values are scaled by these (only scans may be)
    inter: float = 0.0

    @property
    def slice_voxels(self) -> int:
        return self.shape[1] * self.shape[2]


def nifti_header(path: Path, what: str = "mask") -> VolumeHeader:
    """The geometry of a NIfTI volume; one sentence when it is not one segaudit can read
    (a mask must store its class ids unscaled; a scan's ``image`` may be scaled)."""
    nib = nibabel()
    check_regular_file(Path(path), what)  # a pipe would block, a folder read as empty
    try:
        image = nib.load(str(path))
        header = image.header
        raw_shape = tuple(int(n) for n in header.get_data_shape())
        dtype = np.dtype(header.get_data_dtype())
        offset = int(image.dataobj.offset)
        # nibabel moves the header's scl_slope/scl_inter onto the data proxy as it loads
        slope, inter = getattr(image.dataobj, "slope", None), getattr(image.dataobj, "inter", None)
        zooms = tuple(float(z) for z in header.get_zooms()[:3])
        affine = np.asarray(image.affine, np.float64)
    except InvalidInputError:
        raise
    except Exception as error:  # nibabel raises many types on garbage and truncation
        raise UnreadableStoreError(
            f"{what} {path} is not a readable NIfTI file ({reason(error)}); save it again "
            "as .nii or .nii.gz."
        ) from None
    shape = raw_shape[:3] if len(raw_shape) == 4 and raw_shape[3] == 1 else raw_shape
    if len(shape) != 3:
        raise InvalidInputError(
            f"{what} {path} has shape {raw_shape}; a label volume is 3-D (x, y, z)."
        )
    slope = 1.0 if slope is None or np.isnan(slope) else float(slope)
    inter = 0.0 if inter is None or np.isnan(inter) else float(inter)
    if what == "mask" and (slope, inter) != (1.0, 0.0):
        raise InvalidInputError(
            f"{what} {path} scales its values (scl_slope {slope}, scl_inter {inter}); a label "
            "volume stores class ids as they are: save it without scaling."
        )
    if dtype.kind not in "iuf":
        raise InvalidInputError(
            f"{what} {path} holds {dtype} values; volumes hold integers or floats."
        )
    x, y, z = shape
    return VolumeHeader(
        Path(path), (z, y, x), dtype, offset, affine, zooms[::-1], header, slope, inter
    )


class SlabReader:
    """A NIfTI volume's slices in order, a slab at a time, from one sequential stream."""

    def __init__(self, header: VolumeHeader) -> None:
        self.header = header
        opener = gzip.open if str(header.path).lower().endswith(".gz") else open
        self._handle: Any = opener(header.path, "rb")
        self._next = 0
        try:
            self._skip(header.offset)
        except BaseException:
            self.close()
            raise

    def _skip(self, count: int) -> None:
        got = self._handle.read(count)
        if len(got) != count:
            raise self._truncated()

    def _truncated(self) -> UnreadableStoreError:
        return UnreadableStoreError(
            f"volume {self.header.path} is truncated: it ends before its last slice; save it "
            "again."
        )

    def read(self, start: int, stop: int) -> np.ndarray:
        """Slices ``start:stop`` (the next ones: reads never go back) as (s, Y, X)."""
        if start != self._next:
            raise ValueError(f"slabs are read in order: expected slice {self._next}, got {start}")
        _, height, width = self.header.shape
        out = np.empty((stop - start, height, width), self.header.dtype)
        view = memoryview(out.reshape(-1)).cast("B")
        try:
            done = 0
            while done < len(view):
                got = self._handle.readinto(view[done:])
                if not got:
                    raise self._truncated()
                done += got
            if stop == self.header.shape[0]:
                self._handle.read()  # to the end: gzip checks the stream's CRC and length there
        except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as error:
            if isinstance(error, UnreadableStoreError):
                raise
            raise UnreadableStoreError(
                f"volume {self.header.path} is corrupt ({reason(error)}); save it again."
            ) from None
        self._next = stop
        return out if out.dtype.isnative else out.astype(out.dtype.newbyteorder("="))

    def close(self) -> None:
        self._handle.close()


def integer_labels(slab: np.ndarray, path: Path, first_slice: int = 0) -> np.ndarray:
    """A slab of labels (slices from ``first_slice``) as integers: float-stored masks must
    hold whole numbers."""
    if slab.dtype.kind in "iu":
        return slab
    with np.errstate(invalid="ignore"):
        whole = np.isfinite(slab) & (slab == np.round(slab)) & (np.abs(slab) < 2**31)
    if not whole.all():
        z, y, x = (int(n) for n in np.argwhere(~whole)[0])
        value = float(slab[z, y, x])
        kind = "value" if np.isfinite(value) and value == np.round(value) else "non-integer value"
        raise InvalidInputError(
            f"mask {path} holds the {kind} {value!r} at voxel (x, y, z) = "
            f"({x}, {y}, {first_slice + z}); label volumes hold integer class ids."
        )
    return slab.astype(np.int32)


def label_dtype(header: VolumeHeader) -> np.dtype:
    """The integer type labels of this volume are read as."""
    dtype = header.dtype.newbyteorder("=")
    return dtype if dtype.kind in "iu" else np.dtype(np.int32)


def read_volume(header: VolumeHeader) -> np.ndarray:
    """A whole volume (Z, Y, X) as stored (for pictures and truth, not for the scan)."""
    reader = SlabReader(header)
    try:
        return reader.read(0, header.shape[0])
    finally:
        reader.close()


def read_scan(header: VolumeHeader) -> np.ndarray:
    """A scan's values (Hounsfield units for CT) as float32, its scaling applied."""
    values = read_volume(header).astype(np.float32)
    if (header.slope, header.inter) != (1.0, 0.0):
        values *= np.float32(header.slope)
        values += np.float32(header.inter)
    return values


# --- predictions ------------------------------------------------------------------------


def check_volume_axes(probs_shape: tuple[int, ...], mask: VolumeHeader, probs_path: Any) -> None:
    """A mask and its probabilities must agree on (Z, Y, X); one sentence when they do not,
    with the transpose when the probabilities are in nibabel's axis order."""
    spatial = tuple(probs_shape[1:])
    if spatial == mask.shape or (mask.shape[0] == 1 and spatial == mask.shape[1:]):
        return  # a single slice's predictions may be saved (K, Y, X), as nnU-Net 2-D does
    z, y, x = mask.shape
    if len(probs_shape) == 4 and spatial == (x, y, z):
        raise InvalidInputError(
            f"predictions {probs_path} have shape {tuple(probs_shape)}, the mask {mask.path}'s "
            f"axes in nibabel's (x, y, z) order; segaudit reads volumes as nnU-Net writes them, "
            f"(K, z, y, x) = (K, {z}, {y}, {x}): save probs.transpose(0, 3, 2, 1)."
        )
    raise InvalidInputError(
        f"predictions {probs_path} have shape {tuple(probs_shape)} but the mask {mask.path} "
        f"is a volume of (z, y, x) = ({z}, {y}, {x}) voxels; they must be (K, {z}, {y}, {x})."
    )


class ProbsVolume:
    """One volume's predictions (K, Z, Y, X), sliced by slabs of slices."""

    def __init__(self, path: Path, array: np.ndarray, source: Any = None) -> None:
        self.path = path
        self.array = array
        self._source = source  # a memory map to release pages of

    @classmethod
    def open(cls, path: Path) -> ProbsVolume:
        from segaudit.sources import files

        if str(path).endswith(".npz"):
            return cls(path, _npz_volume(path))
        loaded = files.read_probs(path)
        return cls(path, loaded.array, loaded.source)

    @property
    def in_memory(self) -> bool:
        """Whether the predictions are held whole (a small ``.npz``), not mapped."""
        return self._source is None and not isinstance(self.array, np.memmap)

    def slab(self, start: int, stop: int) -> np.ndarray:
        """Slices ``start:stop`` of every class as a contiguous (K, s, Y, X) array."""
        part = np.ascontiguousarray(self.array[:, start:stop])
        if self._source is not None:
            self._source.release(self.array[:, start:stop])
        return part

    def close(self) -> None:
        self.array = np.empty((0, 0, 0, 0), self.array.dtype)


def _npz_volume(path: Path) -> np.ndarray:
    """An ``.npz`` member, in memory when small enough, else mapped from a temp file."""
    from segaudit.sources import files

    files.check_regular_file(path, "predictions")
    try:
        with zipfile.ZipFile(path) as archive:
            member = files.npz_member(archive, path) + ".npy"
            if archive.getinfo(member).file_size <= NPZ_IN_MEMORY:
                return files.read_npz(path)
            return _spilled(archive, member)
    except (InvalidInputError, UnreadableStoreError, OutputWriteError, MemoryError):
        raise
    except Exception as error:  # corrupt archives, truncation
        raise UnreadableStoreError(
            f"predictions {path} are not a readable .npz archive ({reason(error)}); "
            "save them again with numpy.savez."
        ) from None


def _spilled(archive: zipfile.ZipFile, member: str) -> np.ndarray:
    """Decompress one member to an unlinked temporary file and map it (read-only)."""
    folder = tempfile.gettempdir()
    with tempfile.NamedTemporaryFile(prefix="segaudit-npz-", suffix=".npy") as spill:
        with archive.open(member) as source:
            try:
                shutil.copyfileobj(source, spill, 16 << 20)
                spill.flush()
            except OSError as error:  # a full disk, mostly
                raise OutputWriteError(
                    f"decompressing {archive.filename} into {folder} failed ({reason(error)}); "
                    "free space there, or point TMPDIR at a folder with room for one "
                    "volume's predictions."
                ) from None
        array = np.load(spill.name, mmap_mode="r", allow_pickle=False)
    return array  # the mapping keeps the unlinked file's pages alive


def iter_slabs(
    mask: VolumeHeader, probs: ProbsVolume, slices: int
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(first slice, labels (s, Y, X), probabilities (K, s, Y, X)) for consecutive slabs;
    predictions already held whole in memory are one slab when that is at most
    ``WHOLE_SLABS`` slabs (slicing them would copy; a slab's work buffers grow with it)."""
    reader = SlabReader(mask)
    try:
        depth = mask.shape[0]
        if probs.in_memory and depth <= WHOLE_SLABS * slices:
            slices = depth
        for start in range(0, depth, slices):
            stop = min(depth, start + slices)
            labels = integer_labels(reader.read(start, stop), mask.path, start)
            yield start, labels, probs.slab(start, stop)
    finally:
        reader.close()
        probs.close()


def write_issue_volume(path: Path, issues: np.ndarray, like: VolumeHeader) -> None:
    """An issue volume (Z, Y, X) bool as a uint8 NIfTI (1 = issue) in ``like``'s geometry:
    its affine and header, so it opens over the scan in any NIfTI viewer. Gzipped with no
    timestamp, so the same run writes the same bytes."""
    nib = nibabel()
    header = like.header.copy()
    header.set_data_dtype(np.uint8)
    header.set_slope_inter(1, 0)
    kind = nib.Nifti2Image if isinstance(header, nib.Nifti2Header) else nib.Nifti1Image
    image = kind(np.asarray(issues, np.uint8).T, like.affine, header)
    image.header["descrip"] = b"segaudit issues: 1 = flagged voxel"
    data = image.to_bytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as raw, gzip.GzipFile(
        filename="", mode="wb", fileobj=raw, compresslevel=1, mtime=0
    ) as handle:
        handle.write(data)
