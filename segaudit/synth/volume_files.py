"""The files of a volume dataset, written byte for byte the same from the same arrays.

Arrays are indexed (z, y, x), as nnU-Net and SimpleITK index them; a NIfTI file's array
(what nibabel returns) is indexed (x, y, z), so a volume ``vol`` is saved as ``vol.T``.
Probabilities are saved untransposed, (K, Z, Y, X), as nnU-Net saves them.

gzip and zip both record a time; here it is fixed (gzip mtime 0, zip 1980-01-01), so the
same seed gives the same bytes.
"""

from __future__ import annotations

import gzip
import json
import math
import shutil
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np

from segaudit.errors import InvalidInputError
from segaudit.synth.writers import NpyWriter

SPACING_XYZ = (0.8, 0.8, 2.5)  # voxel size in mm along x, y, z
ORIGIN_XYZ = (-204.3, -187.6, -312.5)  # world position (mm) of voxel (0, 0, 0)
_TILT_DEGREES = (2.0, -1.5, 4.0)  # small rotations about x, y and z
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_LEVEL = 1  # gzip and zip deflate level: fast, as nibabel's own default for .nii.gz


def nibabel() -> Any:
    """The nibabel module, or one sentence saying how to install it."""
    try:
        import nibabel
    except ImportError:
        raise InvalidInputError(
            "writing NIfTI volumes needs nibabel: pip install 'segaudit[medical]'."
        ) from None
    return nibabel


def volume_affine() -> np.ndarray:
    """(4, 4) voxel (i, j, k) = (x, y, z) to world (mm): spacing, a small tilt, an origin."""
    ax, ay, az = (math.radians(d) for d in _TILT_DEGREES)
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rz @ ry @ rx @ np.diag(SPACING_XYZ)
    affine[:3, 3] = ORIGIN_XYZ
    return affine


def write_nifti(path: Path, volume: np.ndarray, affine: np.ndarray) -> None:
    """Save a (Z, Y, X) array as ``path`` (.nii.gz): the NIfTI array is ``volume.T``."""
    nib = nibabel()
    image = nib.Nifti1Image(volume.T, affine)
    image.set_qform(affine, code=1)  # both forms, so readers that prefer either agree
    image.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm")
    image.header.set_data_dtype(volume.dtype)
    with (
        open(path, "wb") as file,
        gzip.GzipFile(
            filename="", mode="wb", fileobj=file, compresslevel=_LEVEL, mtime=0
        ) as packed,
    ):
        packed.write(image.to_bytes())


class ProbabilityWriter:
    """Writes one case's (K, Z, Y, X) probabilities slab by slab, then packs them as
    nnU-Net does (``.npz``, key ``probabilities``) with a fixed member time.

    Slabs go to an uncompressed ``.npy`` beside the archive (each class's slices lie
    together there), which is then deflated into the archive in order and removed: the
    whole array never sits in memory.
    """

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.path, self.shape, self.dtype = path, tuple(shape), np.dtype(dtype)
        self.tmp = path.with_name(path.name + ".tmp")
        k, depth, h, w = self.shape
        self.writer = NpyWriter(self.tmp, (k, depth, h * w), self.dtype)

    def put(self, z0: int, slab: np.ndarray) -> None:
        """Slices z0: of every class: ``slab`` is (K, slices, Y, X)."""
        k, depth, h, w = slab.shape
        self.writer.put_all(slab.reshape(k, depth, h * w), z0)

    def close(self) -> None:
        """Pack the slabs into the ``.npz`` and remove the scratch file."""
        self.writer.close()
        header = {
            "descr": np.lib.format.dtype_to_descr(self.dtype),
            "fortran_order": False,
            "shape": self.shape,
        }
        with open(self.tmp, "rb") as source, _member(self.path) as file:
            np.lib.format.write_array_header_1_0(file, header)
            source.seek(self.writer.offset)
            shutil.copyfileobj(source, file, 16 * 2**20)
        self.tmp.unlink()


def write_probabilities(path: Path, probabilities: np.ndarray) -> None:
    """Save (K, Z, Y, X) probabilities as nnU-Net does (``.npz``, key ``probabilities``),
    with a fixed member time."""
    with _member(path) as file:
        np.lib.format.write_array(file, probabilities, allow_pickle=False)


@contextmanager
def _member(path: Path) -> Iterator[IO[bytes]]:
    """The ``probabilities.npy`` member of a new ``.npz`` at ``path``, open for writing."""
    member = zipfile.ZipInfo("probabilities.npy", date_time=_ZIP_TIME)
    member.compress_type = zipfile.ZIP_DEFLATED
    member.external_attr = 0o644 << 16
    # ZipInfo's deflate level: public from Python 3.13, private before
    level_name = "compress_level" if hasattr(member, "compress_level") else "_compresslevel"
    setattr(member, level_name, _LEVEL)
    with zipfile.ZipFile(path, "w") as archive, archive.open(member, "w", force_zip64=True) as file:
        yield file


def dataset_json(names: tuple[str, ...], cases: int, ignore: bool, name: str) -> dict[str, Any]:
    """nnU-Net v2's ``dataset.json``: channel, labels (``ignore`` last when used), count."""
    labels = {n: k for k, n in enumerate(names)}
    if ignore:
        labels["ignore"] = len(names)
    return {
        "channel_names": {"0": "CT"},
        "labels": labels,
        "numTraining": cases,
        "file_ending": ".nii.gz",
        "name": name,
    }


def write_json(path: Path, data: dict[str, Any]) -> None:
    """``path`` written whole, atomically (through a ``.tmp`` beside it)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
