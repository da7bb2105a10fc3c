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

import zlib
from pathlib import Path
from typing import Any

import numpy as np

ISSUES_FOLDER = "issues"
ISSUE_VALUE = 255


def issue_mask_path(run: Path, image_id: str) -> Path:
    """Where the run keeps image ``image_id``'s issue mask."""
    return run / ISSUES_FOLDER / f"{image_id}.png"


def write_issue_mask(run: Path, image_id: str, mask: np.ndarray) -> None:
    """Write one image's issue mask.

    Masks are long runs of zeros: zlib's run-length strategy encodes them in about 60%
    of the default's time, into files a third the size.
    """
    from PIL import Image

    path = issue_mask_path(run, image_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.multiply(np.asarray(mask, bool), ISSUE_VALUE, dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="PNG", compress_level=1, compress_type=zlib.Z_RLE)


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
