"""Issue masks as images: ``RUN/issues/ID.png``, for annotation tools and image viewers.

One 8-bit grayscale PNG per image, the image's own size: 0 where the label looks right,
255 where it is flagged. A volume's issues are ``RUN/issues/ID.nii.gz`` instead: uint8,
1 where flagged, with the label volume's affine and header, so they open over the scan
in ITK-SNAP, 3D Slicer or any NIfTI viewer. Sub-folders of ids are kept
(``issues/val/munich/x.png``).
Ids were checked when the dataset was opened (:mod:`segaudit.sources.ids`), so a path
built from one stays inside the run.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

ISSUES_FOLDER = "issues"
ISSUE_VALUE = 255
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def issue_mask_path(run: Path, image_id: str) -> Path:
    """Where the run keeps image ``image_id``'s issue mask."""
    return run / ISSUES_FOLDER / f"{image_id}.png"


def write_issue_mask(run: Path, image_id: str, mask: np.ndarray) -> None:
    """Write one image's issue mask (:func:`gray_png`)."""
    path = issue_mask_path(run, image_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gray_png(np.asarray(mask, bool)))


def gray_png(mask: np.ndarray) -> bytes:
    """A boolean (H, W) mask as an 8-bit grayscale PNG, 0 or 255, written directly.

    Masks are long runs of zeros: every row is left unfiltered (filter byte 0) and the
    rows deflated at level 1 with zlib's run-length strategy, which is what a mask
    needs; Pillow's encoder, trying its filters row by row, took three times as long.
    """
    height, width = mask.shape
    rows = np.zeros((height, width + 1), np.uint8)  # each row: its filter byte, its pixels
    np.multiply(mask, ISSUE_VALUE, out=rows[:, 1:], dtype=np.uint8, casting="unsafe")
    deflate = zlib.compressobj(1, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    return b"".join((
        PNG_SIGNATURE,
        _png_chunk(b"IHDR", header),
        _png_chunk(b"IDAT", deflate.compress(rows.data) + deflate.flush()),
        _png_chunk(b"IEND", b""),
    ))  # fmt: skip


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, and the CRC of type and data."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def issue_volume_path(run: Path, image_id: str) -> Path:
    """Where the run keeps volume ``image_id``'s issue volume."""
    return run / ISSUES_FOLDER / f"{image_id}.nii.gz"


def write_issue_volume(run: Path, image_id: str, sheet: np.ndarray, volume: Any) -> None:
    """Write one volume's issues, given as its sheet (Z·Y, X), as ``issues/ID.nii.gz``:
    uint8, 1 where flagged, in the label volume's geometry (affine and header)."""
    from segaudit.sources.volumes import write_issue_volume as write_nifti

    write_nifti(issue_volume_path(run, image_id), np.asarray(sheet).reshape(volume.shape), volume)


def read_issue_mask(run: Path, image_id: str) -> np.ndarray:
    """An issue mask as written, as booleans."""
    from PIL import Image

    with Image.open(issue_mask_path(run, image_id)) as image:
        return np.asarray(image) == ISSUE_VALUE
