"""What segaudit promises about its inputs: never written, never misread, never silently wrong.

The caller's arrays come back bit-identical; absent and unreadable Zarr chunks are named;
signed zeros are zeros; rewrites that keep the modification time are noticed; label and
ignore values keep their meaning whatever their integer type; API arguments are checked.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import zarr
from cleanlab.segmentation.filter import find_label_issues as cleanlab_find_label_issues
from cleanlab.segmentation.rank import get_label_quality_scores as cleanlab_scores
from helpers import (
    make_probs,
    naive_issues,
    one_line_error,
    run_file_bytes,
    softmax,
    well_posed_case,
)
from typer.testing import CliRunner

import segaudit.jobs.scan
from segaudit.api import as_source, find_label_issues, get_label_quality_scores, issues_from_scores
from segaudit.cli import app
from segaudit.engine.params import Params
from segaudit.errors import InputChangedError, InvalidInputError, UnreadableStoreError
from segaudit.sources import fingerprints
from segaudit.sources import stores as io

runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=True)


def write_dataset(folder: Path, labels: np.ndarray, probs: np.ndarray) -> Path:
    folder.mkdir(parents=True)
    np.save(folder / "labels.npy", labels)
    np.save(folder / "pred_probs.npy", probs)
    return folder


def run_outputs(run: Path) -> dict[str, object]:
    """What a run holds apart from timing and the inputs' identities: bytes and arrays."""
    summary = json.loads((run / "summary.json").read_text())
    for volatile in ("timing", "engine", "inputs"):
        summary.pop(volatile, None)
    found: dict[str, object] = {"summary": summary}
    for file in sorted(run.rglob("*")):
        if file.is_file() and file.name != "summary.json":
            found[str(file.relative_to(run))] = run_file_bytes(run, file)
    return found


# --- the caller's arrays are never written ------------------------------------------------


def callers_arrays(tmp_path: Path, how: str) -> tuple[np.ndarray, np.ndarray]:
    """labels and pred_probs as a caller may hold them: np.memmap objects that are not
    segaudit's to drop pages of (an in-memory copy, a private or a shared map with edits)."""
    labels, probs = make_probs(np.random.default_rng(3), 4, 5, 64, 64, "float32")
    np.save(tmp_path / "labels.npy", labels)
    np.save(tmp_path / "pred_probs.npy", probs)
    if how == "copy":
        given = np.load(tmp_path / "labels.npy", mmap_mode="r").copy()
        model = np.load(tmp_path / "pred_probs.npy", mmap_mode="r").copy()
    else:
        given = np.load(tmp_path / "labels.npy", mmap_mode=how)
        model = np.load(tmp_path / "pred_probs.npy", mmap_mode=how)
        given[1, :8] = (given[1, :8] + 1) % 5  # the caller's edits, in the mapping only
        model[2, [0, 1], 10:20] = model[2, [1, 0], 10:20]
    assert isinstance(given, np.memmap) and isinstance(model, np.memmap)
    return given, model


@pytest.mark.parametrize("how", ["copy", "c", "r+"])
@pytest.mark.parametrize("call", ["find_label_issues", "softmin", "num_pixel_issues"])
def test_the_callers_arrays_come_back_bit_identical(tmp_path, how, call):
    labels, probs = callers_arrays(tmp_path, how)
    labels_before, probs_before = np.array(labels), np.array(probs)

    def compute(given, model):
        if call == "find_label_issues":
            return (find_label_issues(given, model, n_jobs=2),)
        return get_label_quality_scores(given, model, method=call, n_jobs=2)

    got = compute(labels, probs)
    assert labels.tobytes() == labels_before.tobytes()
    assert probs.tobytes() == probs_before.tobytes()
    expected = compute(labels_before, probs_before)  # plain arrays: the right answer
    for mine, right in zip(got, expected, strict=True):
        assert mine.tobytes() == right.tobytes()


def test_only_files_segaudit_mapped_itself_have_pages_released(tmp_path):
    np.save(tmp_path / "p.npy", np.zeros((2, 3, 4), np.float32))
    assert io.open_store(tmp_path / "p.npy", "pred_probs").own_mapping
    for caller in (
        np.load(tmp_path / "p.npy", mmap_mode="r"),
        np.load(tmp_path / "p.npy", mmap_mode="r").copy(),
        np.zeros((2, 3, 4)),
    ):
        assert not as_source(caller, "pred_probs").own_mapping


# --- absent and unreadable Zarr chunks ----------------------------------------------------

LABELS = (np.arange(7 * 4 * 6).reshape(7, 4, 6) % 3 + 1).astype(np.uint8)  # no fill values


def zarr_labels(path: Path, fmt: int, separator: str, first: int, **options) -> zarr.Array:
    encoding = options.pop("encoding", "default") if fmt == 3 else "v2"
    options.pop("encoding", None)
    store = zarr.create_array(
        store=str(path),
        shape=LABELS.shape,
        dtype=LABELS.dtype,
        chunks=options.pop("chunks", (first, 2, 6)),
        zarr_format=fmt,
        chunk_key_encoding={"name": encoding, "separator": separator},
        **options,
    )
    store[:] = LABELS
    return store


def chunk_file(store: zarr.Array, path: Path, coords: tuple[int, ...]) -> Path:
    chunk = path / store.metadata.encode_chunk_key(coords)
    assert chunk.is_file(), chunk
    return chunk


CHUNKINGS = [
    (2, ".", "default"),
    (2, "/", "default"),
    (3, "/", "default"),
    (3, ".", "default"),
    (3, ".", "v2"),
    (3, "/", "v2"),
]


@pytest.mark.parametrize(("fmt", "separator", "encoding"), CHUNKINGS)
@pytest.mark.parametrize(
    ("first", "deleted", "expected"),
    [
        (1, [(2, 1, 0)], [2]),
        (2, [(1, 0, 0), (3, 1, 0)], [2, 3, 6]),  # the last chunk holds one image only
        (3, [(0, 1, 0), (0, 0, 0)], [0, 1, 2]),
        (7, [], []),
    ],
)
def test_absent_chunks_name_their_images(
    tmp_path, fmt, separator, encoding, first, deleted, expected
):
    path = tmp_path / "labels.zarr"
    store = zarr_labels(path, fmt, separator, first, encoding=encoding)
    for coords in deleted:
        chunk_file(store, path, coords).unlink()
    source = io.open_store(path, "labels")
    assert source.absent_images() == expected
    assert source.bytes_read == 0


def test_absent_images_come_from_the_listing_alone(tmp_path):
    path = tmp_path / "labels.zarr"
    store = zarr_labels(path, 3, "/", 1)
    for i in range(7):  # every chunk present but undecodable: nothing may read them
        chunk_file(store, path, (i, 0, 0)).write_bytes(b"garbage")
    chunk_file(store, path, (4, 1, 0)).unlink()
    assert io.open_store(path, "labels").absent_images() == [4]


def test_absent_shards_name_their_images(tmp_path):
    path = tmp_path / "labels.zarr"
    store = zarr_labels(path, 3, "/", 1, chunks=(1, 2, 3), shards=(2, 4, 6))
    (path / store.metadata.encode_chunk_key((1, 0, 0))).unlink()
    assert io.open_store(path, "labels").absent_images() == [2, 3]


def test_group_members_and_other_sources(tmp_path):
    group = zarr.open_group(str(tmp_path / "data.zarr"), mode="w")
    member = group.create_array("labels", shape=LABELS.shape, dtype=LABELS.dtype, chunks=(1, 4, 6))
    member[:] = LABELS
    (tmp_path / "data.zarr" / "labels" / member.metadata.encode_chunk_key((5, 0, 0))).unlink()
    assert io.open_store(tmp_path / "data.zarr", "labels").absent_images() == [5]
    assert as_source(
        zarr.open_group(str(tmp_path / "data.zarr"))["labels"], "labels"
    ).absent_images() == [5]
    np.save(tmp_path / "labels.npy", LABELS)
    assert io.open_store(tmp_path / "labels.npy", "labels").absent_images() == []
    assert as_source(LABELS, "labels").absent_images() == []


@pytest.mark.parametrize(("fmt", "separator"), [(2, "."), (2, "/"), (3, "/"), (3, ".")])
def test_a_folder_in_place_of_a_chunk_is_named(tmp_path, fmt, separator):
    path = tmp_path / "labels.zarr"
    store = zarr_labels(path, fmt, separator, 2)
    chunk = chunk_file(store, path, (1, 1, 0))
    chunk.unlink()
    chunk.mkdir()
    key = store.metadata.encode_chunk_key((1, 1, 0))
    with pytest.raises(UnreadableStoreError) as error:
        io.open_store(path, "labels")
    message = str(error.value)
    assert str(path) in message and key in message and "images 2..3" in message, message


def unreadable_chunk(path: Path, damage: str) -> str:
    """A labels store whose chunk (3, 1, 0) is damaged; returns that chunk's key."""
    compressed = damage == "garbage"
    store = zarr_labels(path, 3, "/", 1, compressors="auto" if compressed else None)
    chunk = chunk_file(store, path, (3, 1, 0))
    data = chunk.read_bytes()
    chunk.write_bytes(
        {"short": data[:-5], "long": data + b"x", "garbage": b"\x07" * len(data)}[damage]
    )
    return store.metadata.encode_chunk_key((3, 1, 0))


@pytest.mark.parametrize("damage", ["short", "long", "garbage"])
def test_an_unreadable_chunk_is_named_with_its_images(tmp_path, damage):
    path = tmp_path / "labels.zarr"
    key = unreadable_chunk(path, damage)
    source = io.open_store(path, "labels")
    assert source.absent_images() == []
    np.testing.assert_array_equal(source.read(0, 3), LABELS[:3])
    with pytest.raises(UnreadableStoreError) as error:
        source.read(2, 6)
    message = str(error.value)
    assert "\n" not in message and str(path) in message, message
    assert f"chunk {key}" in message and "image 3" in message, message


@pytest.mark.parametrize("damage", ["folder", "garbage"])
def test_the_cli_names_an_unreadable_chunk(tmp_path, damage):
    data = tmp_path / "data"
    data.mkdir()
    probs = softmax(np.random.default_rng(0).normal(size=(7, 4, 4, 6))).astype(np.float32)
    np.save(data / "pred_probs.npy", probs)
    path = data / "labels.zarr"
    if damage == "folder":
        store = zarr_labels(path, 2, ".", 1)
        chunk = chunk_file(store, path, (3, 1, 0))
        chunk.unlink()
        chunk.mkdir()
        key = store.metadata.encode_chunk_key((3, 1, 0))
    else:
        key = unreadable_chunk(path, damage)
    message = one_line_error(invoke("scan", data, "-o", tmp_path / "run", "-q"))
    assert key in message and "image 3" in message, message
    assert not (tmp_path / "run").exists()


# --- signed zeros -------------------------------------------------------------------------


def negative_zeros(probs: np.ndarray) -> np.ndarray:
    """The same probabilities with every zero stored as -0.0."""
    flipped = probs.copy()
    flipped[probs == 0] = -0.0
    assert np.signbit(flipped).sum() == (probs == 0).sum() > 0
    return flipped


def zero_given_label(labels: np.ndarray, probs: np.ndarray, count: int) -> np.ndarray:
    """Move the given label's probability to the predicted class at ``count`` mispredicted
    pixels, so that their given label has probability exactly 0."""
    probs = probs.copy()
    pred = probs.argmax(axis=1)
    for i, y, x in np.argwhere(pred != labels)[::7][:count]:
        given, top = labels[i, y, x], pred[i, y, x]
        probs[i, top, y, x] += probs[i, given, y, x]
        probs[i, given, y, x] = 0
    return probs


def bits(array: np.ndarray) -> bytes:
    return np.ascontiguousarray(array).tobytes()


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_a_zero_given_label_probability_is_flagged_whatever_its_sign(dtype):
    labels, probs, _ = well_posed_case(3, 5, 16, 24, dtype)
    positive = zero_given_label(labels, probs, 6)
    negative = negative_zeros(positive)
    expected = cleanlab_find_label_issues(labels, positive, verbose=False, n_jobs=1)
    assert np.array_equal(cleanlab_find_label_issues(labels, negative, verbose=False), expected)
    assert expected[(positive == 0).any(axis=1) & (positive.argmax(axis=1) != labels)].all()
    assert np.array_equal(find_label_issues(labels, negative), expected)
    assert np.array_equal(find_label_issues(labels, positive), expected)
    mean = find_label_issues(labels, negative, downsample=2, label_pooling="mean")
    assert np.array_equal(
        mean, cleanlab_find_label_issues(labels, positive, downsample=2, verbose=False)
    )


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("method", ["softmin", "num_pixel_issues"])
def test_signed_zeros_score_alike(dtype, method):
    labels, probs, _ = well_posed_case(3, 5, 16, 24, dtype)
    positive = zero_given_label(labels, probs, 6)
    negative = negative_zeros(positive)
    image_pos, pixel_pos = get_label_quality_scores(labels, positive, method=method)
    image_neg, pixel_neg = get_label_quality_scores(labels, negative, method=method)
    assert bits(image_neg) == bits(image_pos) and bits(pixel_neg) == bits(pixel_pos)
    assert not np.signbit(pixel_neg).any()
    reference = cleanlab_scores(labels, positive, method=method, verbose=False)
    np.testing.assert_allclose(image_pos, reference[0], rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(pixel_pos, reference[1])


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_a_class_whose_probabilities_are_all_negative_zero(dtype):
    labels, probs = make_probs(np.random.default_rng(5), 3, 5, 16, 24, "float64")
    probs[:, 0] += probs[:, 4]  # class 4's probability moves to class 0
    probs[:, 4] = 0
    labels[labels == 4] = 0
    labels[:, :2, :3] = 4  # labelled class 4, whose probability is 0 everywhere: issues
    positive = probs.astype(dtype)
    negative = negative_zeros(positive)
    naive = naive_issues(labels, positive).issues
    assert naive[:, :2, :3].all()
    assert np.array_equal(find_label_issues(labels, positive), naive)
    assert np.array_equal(find_label_issues(labels, negative), naive)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_signed_zeros_give_byte_identical_runs(tmp_path, dtype):
    labels, probs, _ = well_posed_case(3, 5, 16, 24, dtype)
    positive = zero_given_label(labels, probs, 6)
    positive[:, 2, :4, :4] += positive[:, 3, :4, :4]  # and zeros that are nobody's label
    positive[:, 3, :4, :4] = 0
    outputs = []
    for name, values in (("pos", positive), ("neg", negative_zeros(positive))):
        data = write_dataset(tmp_path / name, labels.astype(np.uint8), values)
        for command, extra in (("scan", ()), ("scan", ("--downsample", "2")), ("score", ())):
            run = tmp_path / f"{name}-{command}-{len(extra)}"
            result = invoke(command, data, "-o", run, "-q", *extra)
            assert result.exit_code == 0, result.output
            outputs.append(run_outputs(run))
    assert outputs[:3] == outputs[3:]


# --- rewrites that restore the modification time ------------------------------------------


def after_a_ctime_tick(path: Path, probe: Path) -> None:
    """Return once the file system's clock has moved past ``path``'s last change (at most a
    clock tick: a rewrite in the same tick as the write it replaces could not be told apart)."""
    while True:
        probe.write_bytes(b"")
        if probe.stat().st_ctime_ns > path.stat().st_ctime_ns:
            return


def rewrite_in_place(path: Path, first: int, second: int | None = None) -> None:
    """Change bytes inside a file, keeping its size, inode and modification time (cp -p):
    swap the 4 bytes at ``first`` and ``second``, or invert 8 bytes at ``first``."""
    info = path.stat()
    with open(path, "r+b") as handle:
        handle.seek(first)
        old = handle.read(4 if second is not None else 8)
        if second is None:
            new = bytes(255 - b for b in old)
        else:
            handle.seek(second)
            new = handle.read(4)
            handle.seek(second)
            handle.write(old)
        assert new != old
        handle.seek(first)
        handle.write(new)
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))
    assert path.stat().st_mtime_ns == info.st_mtime_ns and path.stat().st_size == info.st_size


def test_fingerprints_carry_inode_and_change_time(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros(3))
    info = (tmp_path / "a.npy").stat()
    fingerprint = fingerprints.store_fingerprint(tmp_path / "a.npy")
    assert fingerprint["ctime_ns"] == info.st_ctime_ns
    assert (fingerprint["inode"], fingerprint["device"]) == (info.st_ino, info.st_dev)
    store = zarr_labels(tmp_path / "l.zarr", 3, "/", 1)
    folder = fingerprints.store_fingerprint(tmp_path / "l.zarr")
    newest = max(p.stat().st_ctime_ns for p in (tmp_path / "l.zarr").rglob("*") if p.is_file())
    assert folder["ctime_ns"] == newest and len(folder["sha256_entries"]) >= 16
    assert store.shape == LABELS.shape


def test_a_large_npy_rewritten_in_the_middle_with_its_mtime_restored(tmp_path):
    path = tmp_path / "pred_probs.npy"
    np.save(path, np.full((4, 3, 256, 256), 1 / 3, np.float32))  # 3 MiB: the middle is unhashed
    source = io.open_store(path, "pred_probs")
    before = source.fingerprint()
    after_a_ctime_tick(path, tmp_path / "probe")
    rewrite_in_place(path, path.stat().st_size // 2)
    with pytest.raises(InputChangedError, match="changed while segaudit was reading"):
        fingerprints.check_unchanged(source, before)


def test_a_zarr_chunk_rewritten_with_its_mtime_restored(tmp_path):
    path = tmp_path / "labels.zarr"
    store = zarr_labels(path, 3, "/", 1, compressors=None)
    chunk = chunk_file(store, path, (5, 1, 0))
    source = io.open_store(path, "labels")
    before = source.fingerprint()
    after_a_ctime_tick(chunk, tmp_path / "probe")
    rewrite_in_place(chunk, 0)
    with pytest.raises(InputChangedError):
        fingerprints.check_unchanged(source, before)


def test_a_scan_notices_a_rewrite_with_the_mtime_restored(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    labels, probs = make_probs(rng, 4, 3, 256, 256, "float32")
    data = write_dataset(tmp_path / "data", labels.astype(np.uint8), probs)  # 3 MiB of pred_probs
    target = data / "pred_probs.npy"
    after_a_ctime_tick(target, tmp_path / "probe")
    calls: list[int] = []

    # Image 2's classes 0 and 1 swapped at pixel (100, 100): valid probabilities still,
    # in the middle of the file, which no edge hash covers.
    start = target.stat().st_size - probs.nbytes
    at = [start + (((2 * 3 + k) * 256 + 100) * 256 + 100) * 4 for k in (0, 1)]
    assert 1 << 20 < at[0] < at[1] < target.stat().st_size - (1 << 20)

    def rewrite_after_first_image(stop: int) -> None:
        if not calls:
            rewrite_in_place(target, *at)
        calls.append(stop)

    monkeypatch.setattr(segaudit.jobs.scan, "_test_hook_after_batch", rewrite_after_first_image)
    result = invoke(
        "scan", data, "-o", tmp_path / "run", "-q", "--batch-size", "1", "--workers", "1"
    )
    message = one_line_error(result)
    assert "changed while segaudit was reading it" in message
    assert calls and not (tmp_path / "run").exists()


# --- hostile label and ignore values ------------------------------------------------------


def small_case(label_dtype: str = "uint8", k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    labels, probs = make_probs(np.random.default_rng(2), 2, k, 8, 8, "float32")
    return labels.astype(label_dtype), probs


@pytest.mark.parametrize("value", [2**64 - 1, 2**63])
def test_huge_uint64_labels_are_out_of_range_not_ignored(tmp_path, value):
    labels, probs = small_case("uint64")
    labels[1, 2, 3] = value
    data = write_dataset(tmp_path / "data", labels, probs)
    message = one_line_error(invoke("scan", data, "-o", tmp_path / "run", "--ignore-index", "-1"))
    assert f"has label {value} outside 0..2" in message and "image 1, pixel (2, 3)" in message
    with pytest.raises(InvalidInputError, match=f"has label {value} outside"):
        find_label_issues(labels, probs, ignore_index=-1)
    with pytest.raises(InvalidInputError, match=f"has label {value} outside"):
        get_label_quality_scores(labels, probs, ignore_index=-1)


def test_an_ignore_index_that_fits_the_labels_is_honoured(tmp_path):
    for dtype, ignore in (("int64", 2**32), ("int64", 2**63 - 1), ("uint64", 2**64 - 1)):
        labels, probs = small_case(dtype)
        labels[0, :2] = ignore
        data = write_dataset(tmp_path / f"{dtype}-{ignore}", labels, probs)
        run = tmp_path / f"run-{dtype}-{ignore}"
        result = invoke("scan", data, "-o", run, "-q", "--ignore-index", ignore)
        assert result.exit_code == 0, result.output
        summary = json.loads((run / "summary.json").read_text())
        assert summary["totals"]["ignored_pixels"] == 16
        assert summary["parameters"]["ignore_index"] == ignore
        issues = find_label_issues(labels, probs, ignore_index=ignore)
        assert not issues[0, :2].any()
        _, pixels = get_label_quality_scores(labels, probs, ignore_index=ignore)
        assert np.isnan(pixels[0, :2]).all() and not np.isnan(pixels[0, 2:]).any()


def test_an_ignore_index_no_label_can_take_matches_nothing(tmp_path):
    labels, probs = small_case("uint8")
    expected = find_label_issues(labels, probs)
    for ignore in (-1, 256, 2**40):
        assert np.array_equal(find_label_issues(labels, probs, ignore_index=ignore), expected)
    data = write_dataset(tmp_path / "data", labels, probs)
    for ignore in (2**64, -(2**63) - 1):
        message = one_line_error(
            invoke("scan", data, "-o", tmp_path / "run", "--ignore-index", ignore)
        )
        assert "ignore" in message and str(ignore) in message
        with pytest.raises(InvalidInputError, match="ignore_index"):
            find_label_issues(labels, probs, ignore_index=ignore)


def test_more_classes_than_predictions_can_hold_are_refused(tmp_path):
    k = 65537
    probs = np.full((1, k, 1, 2), 0.5 / (k - 1), np.float32)
    probs[0, k - 1] = 0.5  # the predicted class is the last, past 16 bits
    labels = np.zeros((1, 1, 2), np.uint32)
    with pytest.raises(InvalidInputError, match="65,537 classes.*at most 65,535"):
        find_label_issues(labels, probs)
    with pytest.raises(InvalidInputError, match="at most 65,535"):
        get_label_quality_scores(labels, probs)
    data = write_dataset(tmp_path / "data", labels, probs)
    message = one_line_error(invoke("scan", data, "-o", tmp_path / "run"))
    assert "pred_probs.npy" in message and "65,535" in message


def truth_dataset(folder: Path) -> None:
    labels, probs = make_probs(np.random.default_rng(4), 4, 3, 8, 8, "float32")
    write_dataset(folder, labels.astype(np.uint8), probs)
    np.save(folder / "true_labels.npy", probs.argmax(axis=1).astype(np.uint8))
    np.save(folder / "is_corrupted.npy", np.array([True, False, True, False]))


@pytest.mark.parametrize(
    ("name", "values", "phrase"),
    [
        ("is_corrupted", np.array([0.5, 0.0, 1.0, 0.0]), "bool"),
        ("is_corrupted", np.array([0, 2, 1, 0]), "0 or 1"),
        ("true_labels", None, "integer"),
    ],
)
def test_eval_refuses_truth_that_is_not_flags_or_labels(tmp_path, name, values, phrase):
    data = tmp_path / "data"
    truth_dataset(data)
    assert invoke("scan", data, "-o", tmp_path / "run", "-q").exit_code == 0
    if values is None:
        values = np.load(data / "true_labels.npy").astype(np.float32)
    np.save(data / f"{name}.npy", values)
    message = one_line_error(invoke("eval", tmp_path / "run", "--truth", data))
    assert f"{name}.npy" in message and phrase in message, message


# --- class names --------------------------------------------------------------------------


def test_class_names_split_on_newlines_only(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_bytes("road\u2028side\r\nsky\x1cline\nsea\x85foam\u2029\n".encode())
    assert io.read_class_names(path, 3) == ["road\u2028side", "sky\x1cline", "sea\x85foam"]


# --- API arguments ------------------------------------------------------------------------


def test_lists_are_arrays_with_or_without_batch_size():
    labels, probs = small_case("int64")
    expected = find_label_issues(labels, probs)
    as_lists = find_label_issues(labels.tolist(), probs.tolist(), batch_size=3 * 64)
    assert np.array_equal(as_lists, expected)
    image, pixel = get_label_quality_scores(labels.tolist(), probs.tolist(), batch_size=3 * 64)
    reference = get_label_quality_scores(labels, probs.astype(np.float64))
    assert bits(image) == bits(reference[0]) and bits(pixel) == bits(reference[1])


@pytest.mark.parametrize("function", [find_label_issues, get_label_quality_scores])
@pytest.mark.parametrize(
    ("argument", "value", "error"),
    [
        ("labels", None, TypeError),
        ("pred_probs", None, TypeError),
        ("labels", "labels.npy", TypeError),
        ("pred_probs", Path("pred_probs.npy"), TypeError),
        ("pred_probs", {"a": 1}, TypeError),
        ("labels", [[[0, 1]], [[0]]], ValueError),  # ragged
        ("batch_size", "10", TypeError),
        ("batch_size", 0, ValueError),
        ("batch_size", 2.5, TypeError),
        ("n_jobs", 0, ValueError),
        ("n_jobs", "2", TypeError),
        ("downsample", 0, ValueError),
        ("downsample", "2", TypeError),
        ("ignore_index", 2.0, TypeError),
        ("label_pooling", "median", ValueError),
        ("label_pooling", None, ValueError),
    ],
)
def test_bad_api_arguments_are_named(function, argument, value, error):
    labels, probs = small_case("int64")
    arguments = {"labels": labels, "pred_probs": probs, argument: value}
    with pytest.raises(error, match=argument):
        function(**arguments)


@pytest.mark.parametrize(
    ("arguments", "error", "name"),
    [
        ({"image_scores": "0.5"}, TypeError, "image_scores"),
        ({"image_scores": np.ones(2), "pixel_scores": "x"}, TypeError, "pixel_scores"),
        ({"image_scores": np.ones(2), "threshold": "0.1"}, TypeError, "threshold"),
        ({"image_scores": np.ones(2), "threshold": 2}, ValueError, "threshold"),
    ],
)
def test_bad_issues_from_scores_arguments_are_named(arguments, error, name):
    with pytest.raises(error, match=name):
        issues_from_scores(**arguments)
    assert issues_from_scores([0.05, 0.5], threshold=0.1).tolist() == [0, 1]


def test_params_refuse_an_unknown_label_pooling():
    with pytest.raises(InvalidInputError, match="label_pooling must be 'mode' or 'mean'"):
        Params(label_pooling="median")
    with pytest.raises(InvalidInputError, match="downsample"):
        Params(downsample=0)


def test_the_argument_helper_names_the_argument():
    assert io.as_array_argument([[1, 2]], "labels").shape == (1, 2)
    array = np.zeros(3)
    assert io.as_array_argument(array, "labels") is array
    with pytest.raises(TypeError, match="issues must be an array"):
        io.as_array_argument(None, "issues")
