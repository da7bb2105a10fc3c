"""Issue masks are PNGs every reader opens: 8-bit grayscale, 0 or 255, the image's size."""

from __future__ import annotations

import io
import zlib

import numpy as np
import pytest
from PIL import Image

from segaudit.runs.masks import gray_png, issue_mask_path, read_issue_mask, write_issue_mask


def _decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()  # checks every chunk's CRC and the whole deflate stream
    return image


@pytest.mark.parametrize("shape", [(1, 1), (1, 257), (311, 1), (17, 23), (512, 1024), (640, 960)])
@pytest.mark.parametrize("density", [0.0, 0.003, 0.5, 1.0])
def test_masks_decode_to_255_where_flagged_and_0_elsewhere(shape, density):
    rng = np.random.default_rng(sum(shape))
    mask = rng.random(shape) < density
    image = _decoded(gray_png(mask))
    assert image.mode == "L" and image.size == (shape[1], shape[0])
    assert np.array_equal(np.asarray(image), np.where(mask, 255, 0).astype(np.uint8))


def test_the_png_is_well_formed_chunk_by_chunk():
    data = gray_png(np.eye(5, 9, dtype=bool))
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    kinds, at = [], 8
    while at < len(data):
        length = int.from_bytes(data[at : at + 4], "big")
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        crc = int.from_bytes(data[at + 8 + length : at + 12 + length], "big")
        assert crc == zlib.crc32(kind + body)
        kinds.append(kind)
        at += 12 + length
    assert kinds == [b"IHDR", b"IDAT", b"IEND"] and at == len(data)


def test_a_strided_mask_is_written_as_its_values(tmp_path):
    mask = (np.arange(40 * 30).reshape(40, 30) % 7 == 0)[::2, ::3]  # not contiguous
    write_issue_mask(tmp_path, "val/city/x", mask)
    assert issue_mask_path(tmp_path, "val/city/x").is_file()
    assert np.array_equal(read_issue_mask(tmp_path, "val/city/x"), mask)


def test_the_same_mask_gives_the_same_bytes():
    mask = np.random.default_rng(1).random((64, 80)) < 0.1
    assert gray_png(mask) == gray_png(mask.copy())
