"""Readers: .npy and Zarr stores are opened safely, and every bad header is one sentence.

These are the reader-level checks; `test_fuzz.py` throws generated garbage at the same
functions and `test_scan_cli.py` covers the common bad-input cases end to end.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import zarr

from segaudit.errors import (
    InputChangedError,
    InputNotFoundError,
    InvalidInputError,
    SegauditError,
    UnreadableStoreError,
)
from segaudit.sources import DatasetSpec, fingerprints, open_dataset
from segaudit.sources import stores as io


def npy_bytes(header: str, body: bytes = b"", version: tuple[int, int] = (1, 0)) -> bytes:
    """A .npy file with a hand-written header dict (any text) and body."""
    encoded = header.encode("utf8" if version == (3, 0) else "latin1")
    size_field = 2 if version == (1, 0) else 4
    pad = -(6 + 2 + size_field + len(encoded) + 1) % 64
    encoded += b" " * pad + b"\n"
    size = struct.pack("<H" if size_field == 2 else "<I", len(encoded))
    return b"\x93NUMPY" + bytes(version) + size + encoded + body


def header(descr: object = "|u1", shape: object = (2, 4, 4), fortran: object = False) -> str:
    return repr({"descr": descr, "fortran_order": fortran, "shape": shape})


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# --- .npy ---------------------------------------------------------------------------------


def test_npy_is_memory_mapped_read_only(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4)
    np.save(tmp_path / "a.npy", array)
    source = io.open_store(tmp_path / "a.npy", "labels")
    assert source.kind == "npy" and isinstance(source.array, np.memmap)
    assert source.shape == (2, 3, 4) and source.dtype == np.int16 and source.nbytes == 48
    assert not source.array.flags.writeable
    assert np.array_equal(source.read(1, 2), array[1:2])
    assert source.bytes_read == 24


def test_npy_with_pickled_objects_is_refused_without_unpickling(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (Path.touch, (marker,))

    array = np.empty((2, 2, 2), dtype=object)
    array[...] = Exploit()
    path = tmp_path / "labels.npy"
    with open(path, "wb") as handle:
        np.lib.format.write_array(handle, array, allow_pickle=True)
    assert pickle.dumps(Exploit())  # the payload really is a pickle
    with pytest.raises(InvalidInputError, match=r"labels\.npy holds object values"):
        io.open_store(path, "labels")
    assert not marker.exists()


@pytest.mark.parametrize(
    ("hdr", "error", "phrase"),
    [
        (header(shape=(-2, 4, 4)), UnreadableStoreError, "negative dimension"),
        (header(shape=(True, 4, 4)), UnreadableStoreError, "invalid shape"),
        (header(shape=(2**40, 2**40, 2**40)), UnreadableStoreError, "far more bytes"),
        (header(shape=(2**62, 4, 1)), UnreadableStoreError, "far more bytes"),
        (header(shape=(2**20, 4, 4)), UnreadableStoreError, "truncated"),
        (header(shape=(1,) * 9), InvalidInputError, "9 dimensions"),
        (header(descr="|O"), InvalidInputError, "object"),
        (header(descr=[("a", "<u1"), ("b", "<u1")]), InvalidInputError, "plain numeric"),
        (header(descr=("<f4", (3,))), InvalidInputError, "plain numeric"),
        (header(descr=">f4"), InvalidInputError, "big-endian"),
        (header(fortran=True), InvalidInputError, "Fortran order"),
        (header(fortran="yes"), UnreadableStoreError, "not a readable .npy"),
        (header(descr="|V99999999999999"), UnreadableStoreError, "not a readable .npy"),
        (header(descr=[("a", "<f4", (10**11,))]), UnreadableStoreError, "not a readable .npy"),
        ("{'descr': '|u1', 'shape': (2, 4, 4)}", UnreadableStoreError, "not a readable .npy"),
        ("__import__('os').system('true')", UnreadableStoreError, "not a readable .npy"),
        ("[1, 2, 3]", UnreadableStoreError, "not a readable .npy"),
    ],
)
def test_bad_npy_headers_are_one_sentence(tmp_path, hdr, error, phrase):
    path = write(tmp_path / "labels.npy", npy_bytes(hdr, bytes(32)))
    with pytest.raises(error, match=phrase) as caught:
        io.open_store(path, "labels")
    message = str(caught.value)
    assert str(path) in message and "\n" not in message and len(message) < 400


def test_npy_versions_2_and_3_and_fortran_order_of_a_single_row(tmp_path):
    for version in ((2, 0), (3, 0)):
        path = write(tmp_path / f"v{version[0]}.npy", npy_bytes(header(), bytes(32), version))
        assert io.open_store(path, "labels").shape == (2, 4, 4)
    path = write(tmp_path / "bad.npy", npy_bytes(header(), bytes(32), (9, 9)))
    with pytest.raises(UnreadableStoreError, match="not a readable"):
        io.open_store(path, "labels")
    # Fortran and C order agree when at most one dimension exceeds 1.
    row = write(tmp_path / "row.npy", npy_bytes(header(shape=(1, 1, 5), fortran=True), bytes(5)))
    assert io.open_store(row, "labels").shape == (1, 1, 5)


def test_zero_size_and_zero_itemsize_arrays_open_without_mapping(tmp_path):
    np.save(tmp_path / "empty.npy", np.zeros((0, 4, 4), np.uint8))
    source = io.open_store(tmp_path / "empty.npy", "labels")
    assert source.shape == (0, 4, 4) and not isinstance(source.array, np.memmap)
    path = write(tmp_path / "v0.npy", npy_bytes(header(descr="|V0")))
    assert io.open_store(path, "labels").shape == (2, 4, 4)


@pytest.mark.parametrize("cut", [0, 5, 40, 127, 128, 150])
def test_truncated_npy_files(tmp_path, cut):
    np.save(tmp_path / "full.npy", np.ones((2, 4, 4), np.float32))
    data = (tmp_path / "full.npy").read_bytes()
    path = write(tmp_path / "cut.npy", data[:cut])
    with pytest.raises(UnreadableStoreError, match="truncated|not a readable"):
        io.open_store(path, "pred_probs")


def test_npy_that_is_not_a_regular_file(tmp_path):
    os.mkfifo(tmp_path / "fifo.npy")  # opening it would block forever
    with pytest.raises(UnreadableStoreError, match="not a regular file"):
        io.open_store(tmp_path / "fifo.npy", "labels")
    (tmp_path / "dir.npy").mkdir()
    with pytest.raises(UnreadableStoreError, match="is a directory"):
        io.open_store(tmp_path / "dir.npy", "labels")
    (tmp_path / "dangling.npy").symlink_to(tmp_path / "nowhere.npy")
    with pytest.raises(InputNotFoundError, match="does not exist"):
        io.open_store(tmp_path / "dangling.npy", "labels")


def test_a_batch_too_big_for_memory_is_one_sentence(tmp_path):
    class Huge:
        shape = (3, 200_000, 200_000)
        dtype = np.dtype(np.float32)

        def __getitem__(self, key):
            raise MemoryError()

    source = io.ArraySource(tmp_path / "pred_probs.zarr", Huge(), "zarr")
    with pytest.raises(UnreadableStoreError, match=r"images 0\.\.1 need 298\.0 GiB in memory"):
        source.read(0, 2)


# --- Zarr ---------------------------------------------------------------------------------


def zarr_store(path: Path, fmt: int, data: np.ndarray | None = None) -> Path:
    data = np.arange(32, dtype=np.uint8).reshape(2, 4, 4) % 3 if data is None else data
    array = zarr.create_array(
        store=str(path), shape=data.shape, dtype=data.dtype, chunks=(1, 4, 4), zarr_format=fmt
    )
    array[:] = data
    return path


def edit_metadata(path: Path, **changes: object) -> None:
    name = ".zarray" if (path / ".zarray").exists() else "zarr.json"
    meta = json.loads((path / name).read_text())
    meta.update(changes)
    (path / name).write_text(json.dumps(meta))


@pytest.mark.parametrize("fmt", [2, 3])
def test_zarr_stores_open_lazily(tmp_path, fmt):
    path = zarr_store(tmp_path / "labels.zarr", fmt)
    source = io.open_store(path, "labels")
    assert source.kind == "zarr" and source.shape == (2, 4, 4)
    assert np.array_equal(source.read(0, 2), np.arange(32, dtype=np.uint8).reshape(2, 4, 4) % 3)


@pytest.mark.parametrize(
    ("fmt", "changes", "error", "phrase"),
    [
        (2, {"shape": [-2, 4, 4]}, UnreadableStoreError, "not a readable Zarr"),
        (3, {"shape": [-2, 4, 4]}, UnreadableStoreError, "not a readable Zarr"),
        (2, {"shape": [2**62, 2**62, 4]}, UnreadableStoreError, "far more bytes"),
        (2, {"dtype": "|O"}, UnreadableStoreError, "not a readable Zarr"),
        (2, {"dtype": [["a", "<u1"], ["b", "<u1"]]}, UnreadableStoreError, "not a readable Zarr"),
        (2, {"dtype": ">u2"}, InvalidInputError, "big-endian"),
        (3, {"data_type": "string"}, UnreadableStoreError, "not a readable Zarr"),
        (3, {"codecs": [{"name": "nosuch"}]}, UnreadableStoreError, "not a readable Zarr"),
        (3, {"node_type": "group"}, UnreadableStoreError, "not a readable Zarr"),
    ],
)
def test_bad_zarr_metadata_is_one_sentence(tmp_path, fmt, changes, error, phrase):
    path = zarr_store(tmp_path / "labels.zarr", fmt)
    edit_metadata(path, **changes)
    with pytest.raises(error, match=phrase) as caught:
        io.open_store(path, "labels")
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("fmt", [2, 3])
def test_corrupt_zarr_chunks_fail_on_read(tmp_path, fmt):
    path = zarr_store(tmp_path / "labels.zarr", fmt)
    chunk = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    chunk = [p for p in chunk if p.name != "zarr.json"][-1]
    chunk.write_bytes(b"\x00garbage" * 3)
    source = io.open_store(path, "labels")
    with pytest.raises(UnreadableStoreError, match=r"chunk \S+ \(image 1\) cannot be read"):
        source.read(1, 2)


def open_folder(path):
    return open_dataset(DatasetSpec(dataset=path))


def test_zarr_datasets_that_are_not_groups(tmp_path):
    zarr_store(tmp_path / "array.zarr", 3)
    with pytest.raises(InvalidInputError, match="single Zarr array, not a dataset"):
        open_folder(tmp_path / "array.zarr")
    (tmp_path / "empty.zarr").mkdir()
    with pytest.raises(UnreadableStoreError, match="not a readable Zarr group"):
        open_folder(tmp_path / "empty.zarr")
    (tmp_path / "file.zarr").write_text("x")
    with pytest.raises(SegauditError):
        open_folder(tmp_path / "file.zarr")
    (tmp_path / "plain").write_text("x")
    with pytest.raises(InvalidInputError, match="is a file, not a folder"):
        open_folder(tmp_path / "plain")
    # A plain folder whose name merely ends in .zarr is still a folder dataset.
    folder = tmp_path / "named.zarr"
    folder.mkdir()
    np.save(folder / "labels.npy", np.zeros((1, 2, 2), np.uint8))
    np.save(folder / "pred_probs.npy", np.full((1, 2, 2, 2), 0.5, np.float32))
    assert open_folder(folder).labels.path == folder / "labels.npy"


def test_zarr_group_dataset_finds_its_arrays(tmp_path):
    group = zarr.open_group(str(tmp_path / "ds.zarr"), mode="w")
    group.create_array("labels", data=np.zeros((1, 2, 2), np.uint8))
    group.create_array("pred_probs", data=np.full((1, 2, 2, 2), 0.5, np.float32))
    dataset = open_folder(tmp_path / "ds.zarr")
    assert dataset.labels.path == dataset.probs.path == tmp_path / "ds.zarr"
    assert dataset.photos is None
    assert dataset.probs.source.shape == (1, 2, 2, 2)
    with pytest.raises(InvalidInputError, match="without an array named 'images'"):
        io.open_store(tmp_path / "ds.zarr", "images")


def test_class_names_file_must_be_a_regular_text_file(tmp_path):
    os.mkfifo(tmp_path / "classes.txt")
    with pytest.raises(UnreadableStoreError, match="not a regular text file"):
        io.read_class_names(tmp_path / "classes.txt", 2)
    (tmp_path / "latin.txt").write_bytes(b"caf\xe9\nb\n")
    with pytest.raises(UnreadableStoreError, match="UTF-8"):
        io.read_class_names(tmp_path / "latin.txt", 2)


# --- fingerprints -------------------------------------------------------------------------


def test_npy_fingerprint_sees_append_rewrite_and_touch(tmp_path):
    path = tmp_path / "pred_probs.npy"
    np.save(path, np.full((2, 2, 4, 4), 0.5, np.float32))
    source = io.open_store(path, "pred_probs")
    before = source.fingerprint()
    fingerprints.check_unchanged(source, before)
    with open(path, "ab") as handle:
        handle.write(b"\x00")
    with pytest.raises(InputChangedError, match="changed while segaudit was reading"):
        fingerprints.check_unchanged(source, before)
    np.save(path, np.full((2, 2, 4, 4), 0.25, np.float32))  # same size, other content
    with pytest.raises(InputChangedError):
        fingerprints.check_unchanged(source, before)
    before = source.fingerprint()
    os.utime(path, ns=(before["mtime_ns"] + 10**9, before["mtime_ns"] + 10**9))
    with pytest.raises(InputChangedError):
        fingerprints.check_unchanged(source, before)


@pytest.mark.parametrize("fmt", [2, 3])
def test_zarr_fingerprint_sees_chunk_and_metadata_changes(tmp_path, fmt):
    path = zarr_store(tmp_path / "labels.zarr", fmt)
    source = io.open_store(path, "labels")
    before = source.fingerprint()
    zarr.open_array(str(path), mode="r+")[1] = 2
    with pytest.raises(InputChangedError):
        fingerprints.check_unchanged(source, before)
    before = source.fingerprint()
    (path / "dangling").symlink_to(tmp_path / "nowhere")  # must not crash the fingerprint
    after = fingerprints.store_fingerprint(path)
    assert after != before and after == fingerprints.store_fingerprint(path)
