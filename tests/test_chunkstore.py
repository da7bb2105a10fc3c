"""The run's fast array writer must produce ordinary Zarr v3 arrays."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr
from zarr.codecs import BloscCodec

from segaudit.runs.chunkstore import (
    ImageChunkedArray,
    PerImageArrays,
    blosc_level,
    blosc_shuffle,
    open_image_array,
)


@pytest.mark.parametrize("dtype", ["bool", "uint8", "uint16", "int32", "float32", "float64"])
def test_metadata_equals_zarrs_own_and_zarr_reads_the_chunks(tmp_path, dtype):
    shape = (5, 7, 9)
    rng = np.random.default_rng(0)
    data = (rng.random(shape) * 100).astype(dtype)
    ours = ImageChunkedArray(tmp_path / "ours.zarr", shape, dtype)
    ours[0:3] = data[0:3]
    ours[3:5] = data[3:5]
    level = 1 if np.dtype(dtype).kind == "f" else 5  # float scores: lz4's fastest level
    assert blosc_level(dtype) == level
    blosc = BloscCodec(cname="lz4", clevel=level, shuffle=blosc_shuffle(dtype))
    fill = np.nan if np.dtype(dtype).kind == "f" else 0
    zarr.create_array(
        store=str(tmp_path / "theirs.zarr"),
        shape=shape,
        chunks=(1, 7, 9),
        dtype=dtype,
        compressors=blosc,
        chunk_key_encoding={"name": "default", "separator": "."},
        fill_value=fill,
        zarr_format=3,
    )
    theirs = json.loads((tmp_path / "theirs.zarr" / "zarr.json").read_text())
    assert json.loads((tmp_path / "ours.zarr" / "zarr.json").read_text()) == theirs
    read = zarr.open_array(str(tmp_path / "ours.zarr"), mode="r")
    assert read.dtype == np.dtype(dtype)
    assert np.array_equal(read[:], data)
    assert np.array_equal(ours[1:4], data[1:4])
    names = sorted(p.name for p in (tmp_path / "ours.zarr").iterdir())
    assert names == ["c.0.0.0", "c.1.0.0", "c.2.0.0", "c.3.0.0", "c.4.0.0", "zarr.json"]
    blosc_header = 16
    assert (tmp_path / "ours.zarr" / "c.4.0.0").read_bytes()[:1] == b"\x02"  # blosc format 2
    assert (tmp_path / "ours.zarr" / "c.4.0.0").stat().st_size >= blosc_header


@pytest.mark.parametrize("layout", ["stacked", "per-image"])
def test_arrays_written_raw_are_read_by_the_codec_their_metadata_names(tmp_path, layout):
    """Runs written before float scores were compressed hold raw float chunks: readers
    follow each array's own ``zarr.json``, not what segaudit would write today."""
    data = np.random.default_rng(1).random((2, 3, 4)).astype(np.float32)
    path = tmp_path / "scores.zarr"
    zarr.create_array(
        store=str(path / "0") if layout == "per-image" else str(path),
        shape=data.shape[1:] if layout == "per-image" else data.shape,
        chunks=data.shape[1:] if layout == "per-image" else (1, *data.shape[1:]),
        dtype="float32",
        compressors=None,
        chunk_key_encoding={"name": "default", "separator": "."},
        fill_value=np.nan,
        zarr_format=3,
    )
    if layout == "per-image":
        group = PerImageArrays(path, 2, "float32")  # writes the group's metadata
        zarr.open_array(str(path / "0"), mode="r+")[:] = data[0]
        group.write_image(1, data[1])  # today's writer: compressed
        assert (path / "0" / "c.0.0").stat().st_size == data[0].nbytes  # raw
    else:
        zarr.open_array(str(path), mode="r+")[:] = data
    array = open_image_array(path)
    for i in range(2):
        np.testing.assert_array_equal(array.read_image(i), data[i])


def test_unwritten_images_read_as_the_fill_value(tmp_path):
    array = ImageChunkedArray(tmp_path / "a.zarr", (3, 2, 2), "float32")
    array[1:2] = np.ones((1, 2, 2), np.float32)
    got = array[0:3]
    assert np.isnan(got[0]).all() and (got[1] == 1).all() and np.isnan(got[2]).all()
    assert np.isnan(zarr.open_array(str(tmp_path / "a.zarr"))[2]).all()
