"""Generated garbage in, one sentence out: readers and the CLI never crash on bad input.

Every case must end either in success with sane output, or in a SegauditError (the CLI:
exit 2 with one line on stderr) — never a traceback, a hang, or exit 1 by accident.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
import warnings
from pathlib import Path

import numpy as np
import zarr
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from segaudit.cli import app
from segaudit.errors import SegauditError
from segaudit.sources import stores as io

runner = CliRunner()
# SEGAUDIT_FUZZ_EXAMPLES=2000 for a deeper (nightly) search; the default keeps CI quick.
FUZZ = settings(
    max_examples=int(os.environ.get("SEGAUDIT_FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)


def npy_bytes(header: str, body: bytes, version: tuple[int, int] = (1, 0)) -> bytes:
    encoded = header.encode("utf8", "surrogatepass" if version == (3, 0) else "strict")
    size_field = 2 if version[0] == 1 else 4
    pad = -(6 + 2 + size_field + len(encoded) + 1) % 64
    encoded += b" " * pad + b"\n"
    size = struct.pack("<H" if size_field == 2 else "<I", len(encoded) % (1 << 8 * size_field))
    return b"\x93NUMPY" + bytes(version) + size + encoded + body


def reader_outcome(path: Path, name: str) -> str:
    """Open a store and read its first image: 'ok' or 'refused', anything else fails."""
    try:
        source = io.open_store(path, name)
        assert isinstance(source.shape, tuple) and all(n >= 0 for n in source.shape)
        if source.shape and source.shape[0] > 0:
            batch = source.read(0, 1)
            assert batch.shape == (1, *source.shape[1:])
            source.release(batch)
        source.fingerprint()
    except SegauditError as error:
        message = str(error)
        assert message and "\n" not in message and len(message) < 600, message
        assert str(path) in message or "images" in message, message
        return "refused"
    return "ok"


# --- .npy headers and bodies --------------------------------------------------------------

DESCRS = st.one_of(
    st.sampled_from(
        ["|u1", "<i2", ">i2", "<u8", "<f2", "<f4", ">f4", "<f8", "|b1", "|O", "<c8"]
        + ["<M8[ns]", "|V0", "|V8", "|S0", "<U3", "|V99999999999", "x", ""]
    ),
    st.lists(
        st.tuples(st.text(min_size=1, max_size=2), st.sampled_from(["<u1", "<f4", "|O"])),
        max_size=3,
    ),
    st.tuples(st.just("<f4"), st.lists(st.integers(-2, 3), max_size=2).map(tuple)),
    st.integers(),
    st.none(),
)
DIMS = st.one_of(
    st.integers(-2, 6),
    st.integers(-(2**70), 2**70),
    st.booleans(),
    st.floats(),
    st.none(),
    st.text(max_size=2),
)
SHAPES = st.one_of(
    st.lists(st.integers(0, 5), max_size=5).map(tuple),
    st.lists(DIMS, max_size=10).map(tuple),
    st.lists(DIMS, max_size=4),
    DIMS,
)


@st.composite
def npy_files(draw):
    """A valid header and body with zero to three of its parts replaced by garbage."""
    broken = draw(
        st.sets(
            st.sampled_from(["descr", "fortran", "shape", "keys", "text", "version", "body"]),
            max_size=3,
        )
    )
    descr = draw(DESCRS) if "descr" in broken else draw(st.sampled_from(["|u1", "<i4", "<f4"]))
    fields = {
        "descr": descr,
        "fortran_order": draw(st.sampled_from([True, 0, 1, "no", None]))
        if "fortran" in broken
        else False,
        "shape": draw(SHAPES)
        if "shape" in broken
        else tuple(draw(st.lists(st.integers(0, 4), min_size=1, max_size=4))),
    }
    if "keys" in broken:
        if draw(st.booleans()):
            del fields[draw(st.sampled_from(sorted(fields)))]
        else:
            fields[draw(st.text(max_size=3))] = draw(st.integers())
    header = draw(st.text(max_size=60)) if "text" in broken else repr(fields)
    version = (1, 0)
    if "version" in broken:
        version = draw(st.sampled_from([(2, 0), (3, 0), (0, 9), (4, 0), (255, 255)]))
    if "body" in broken:
        body = draw(st.one_of(st.binary(max_size=300), st.integers(0, 400).map(bytes)))
    else:  # exactly the size the header promises, where that can be computed
        try:
            count = int(np.prod(fields["shape"])) * np.dtype(fields["descr"]).itemsize
        except Exception:
            count = 0
        count = count if 0 <= count < 500 else 0
        body = draw(st.binary(min_size=count, max_size=count))
    return npy_bytes(header, body, version)


@FUZZ
@given(data=npy_files())
@example(data=npy_bytes("{'descr': '|u1', 'fortran_order': False, 'shape': (-2, 4, 4)}", b""))
@example(data=npy_bytes("{'descr': '|u1', 'fortran_order': False, 'shape': (True, 4)}", b""))
@example(data=npy_bytes("{'descr': '|u1', 'fortran_order': False, 'shape': (2**62,)}", b""))
def test_npy_headers_and_bodies_never_crash_the_reader(data):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "labels.npy"
        path.write_bytes(data)
        event(reader_outcome(path, "labels"))


@FUZZ
@given(
    cuts=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), min_size=1, max_size=6),
    truncate=st.one_of(st.none(), st.integers(0, 400)),
)
def test_corrupted_npy_files_never_crash_the_cli(cuts, truncate):
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "data"
        data.mkdir()
        labels = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4) % 3
        probs = np.full((2, 3, 4, 4), 1 / 3, np.float32)
        np.save(data / "labels.npy", labels)
        np.save(data / "pred_probs.npy", probs)
        target = data / "pred_probs.npy"
        raw = bytearray(target.read_bytes())
        for position, value in cuts:
            raw[position % len(raw)] = value
        target.write_bytes(bytes(raw[:truncate] if truncate is not None else raw))
        event(cli_outcome(data, Path(folder) / "run"))


# --- Zarr metadata and chunks -------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**66), 2**66) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=8,
)
TARGETED = {
    "shape": st.lists(st.one_of(st.integers(-3, 6), st.integers(2**31, 2**64)), max_size=6),
    "chunks": st.lists(st.integers(-1, 8), max_size=4),
    "dtype": st.sampled_from(["|O", ">u2", "<f4", "|b1", "<c8", "|V2", "<M8[s]", "nope"]),
    "data_type": st.sampled_from(["uint8", "bool", "float32", "string", "complex64", "nope"]),
    "fill_value": st.one_of(st.none(), st.integers(), st.text(max_size=3), st.just("NaN")),
    "order": st.sampled_from(["C", "F", "X"]),
    "zarr_format": st.integers(0, 4),
    "node_type": st.sampled_from(["array", "group", "nope"]),
}
_TEMPLATES: dict[int, Path] = {}


def zarr_template(fmt: int) -> Path:
    """A valid small labels store of format ``fmt``, made once and copied per example."""
    if fmt not in _TEMPLATES:
        folder = Path(tempfile.mkdtemp(prefix="segaudit-fuzz-"))
        store = zarr.create_array(
            store=str(folder / "labels.zarr"),
            shape=(2, 4, 4),
            dtype="uint8",
            chunks=(1, 4, 4),
            zarr_format=fmt,
        )
        store[:] = np.arange(32, dtype=np.uint8).reshape(2, 4, 4) % 3
        _TEMPLATES[fmt] = folder / "labels.zarr"
    return _TEMPLATES[fmt]


@st.composite
def zarr_edits(draw):
    fmt = draw(st.sampled_from([2, 3]))
    keys = list(TARGETED) + ["codecs", "compressor", "filters", "chunk_grid", "attributes"]
    changes = {}
    for key in draw(st.lists(st.sampled_from(keys), min_size=1, max_size=3, unique=True)):
        changes[key] = draw(TARGETED[key] if key in TARGETED else JSON)
    removed = draw(st.lists(st.sampled_from(keys), max_size=1))
    chunk = draw(st.one_of(st.none(), st.binary(max_size=64)))
    return fmt, changes, removed, chunk


@FUZZ
@given(edit=zarr_edits())
@example(edit=(2, {"shape": [-2, 4, 4]}, [], None))
@example(edit=(3, {"data_type": "string"}, [], None))
@example(edit=(2, {"dtype": ">u2"}, [], None))
@example(edit=(3, {"shape": [2**62, 2**62, 4]}, [], None))
def test_zarr_metadata_and_chunks_never_crash_the_reader(edit):
    fmt, changes, removed, chunk = edit
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "labels.zarr"
        shutil.copytree(zarr_template(fmt), path)
        meta_path = path / (".zarray" if fmt == 2 else "zarr.json")
        meta = json.loads(meta_path.read_text())
        meta.update(changes)
        for key in removed:
            meta.pop(key, None)
        meta_path.write_text(json.dumps(meta))
        if chunk is not None:
            chunks = [p for p in sorted(path.rglob("*")) if p.is_file() and p != meta_path]
            chunks[0].write_bytes(chunk)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zarr warns about odd metadata; not our concern
            event(reader_outcome(path, "labels"))


# --- label and probability arrays through the CLI -----------------------------------------

LABEL_DTYPES = ["uint8", "int8", "int16", "uint16", "int32", "int64", "uint64", "float32", "bool"]
PROB_DTYPES = ["float16", "float32", "float64", "int32", "complex64"]
SPECIALS = [np.nan, np.inf, -np.inf, -0.25, 0.0, 1.0, 2.0, 1e-30, 5e-324, 1e38]


@st.composite
def datasets(draw):
    """Mostly valid arrays with a few things wrong, or shapes that are wrong outright."""
    n, k = draw(st.integers(1, 3)), draw(st.integers(2, 4))
    h, w = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    shape_labels, shape_probs = (n, h, w), (n, k, h, w)
    kind = draw(st.sampled_from(["valid"] * 6 + ["zero-size", "other-ndim"]))
    if kind == "zero-size":
        n, k, h = draw(st.sampled_from([(0, k, h), (n, 0, h), (n, 1, h), (n, k, 0)]))
        shape_labels, shape_probs = (n, h, w), (n, k, h, w)
    elif kind == "other-ndim":  # 1-D to 5-D, unrelated to each other
        shape_labels = tuple(draw(st.lists(st.integers(0, 3), min_size=1, max_size=5)))
        shape_probs = tuple(draw(st.lists(st.integers(0, 3), min_size=1, max_size=5)))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    label_dtype = draw(st.sampled_from(LABEL_DTYPES[:7] * 3 + LABEL_DTYPES[7:]))
    prob_dtype = draw(st.sampled_from(PROB_DTYPES[:3] * 3 + PROB_DTYPES[3:]))
    labels = rng.integers(0, max(k, 1), shape_labels)
    probs = rng.random(shape_probs) ** draw(st.sampled_from([1, 4]))  # 4: more peaked
    if len(shape_probs) == 4:
        probs /= np.maximum(probs.sum(axis=1, keepdims=True), 1e-12)
    flat_labels, flat_probs = labels.reshape(-1), probs.reshape(-1)
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 3]))):
        if flat_labels.size:
            flat_labels[draw(st.integers(0, flat_labels.size - 1))] = draw(
                st.sampled_from([-1, k, 255, 2**31 - 1])
            )
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 3]))):
        if flat_probs.size:
            flat_probs[draw(st.integers(0, flat_probs.size - 1))] = draw(st.sampled_from(SPECIALS))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        labels = labels.astype(label_dtype)
        probs = probs.astype(prob_dtype)
    options = draw(
        st.lists(
            st.sampled_from(
                [
                    ("--logits",),
                    ("--ignore-index", "255"),
                    ("--ignore-index", "-1"),
                    ("--downsample", "2"),
                    ("--batch-size", "1"),
                    ("--workers", "2"),
                    ("--channels-last",),
                ]
            ),
            max_size=2,
            unique=True,
        )
    )
    if "--channels-last" in [o[0] for o in options] and probs.ndim == 4:
        probs = np.ascontiguousarray(np.moveaxis(probs, 1, -1))
    return labels, probs, [part for option in options for part in option]


def cli_outcome(data: Path, run: Path, *options: str) -> str:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = runner.invoke(app, ["scan", str(data), "-o", str(run), "-q", *options])
    # A warning would be a second line on a user's terminal. Known and tracked by
    # test_infinite_logits_are_one_line: the softmax of --logits warns on infinities.
    known = "--logits" in options
    ours = [w for w in caught if "segaudit" in w.filename]
    ours = [w for w in ours if not (known and w.filename.endswith("engine.py"))]
    assert [f"{w.filename}:{w.lineno}: {w.message}" for w in ours] == []
    assert isinstance(result.exception, SystemExit | type(None)), repr(result.exception)
    assert result.exit_code in (0, 2), (result.exit_code, result.output)
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, result.stderr
        assert not list(run.parent.glob(".segaudit-tmp-*"))
        return "refused"
    assert (run / "summary.json").is_file()
    return "ok"


def check_run(run: Path, labels: np.ndarray, probs: np.ndarray, options: list[str]) -> None:
    """A successful scan's output agrees with the inputs where it can be checked simply."""
    if "--logits" in options or "--downsample" in options:
        return
    if "--channels-last" in options:
        probs = np.moveaxis(probs, -1, 1)
    # Like any option given twice, the last --ignore-index wins.
    last = (
        len(options) - 1 - options[::-1].index("--ignore-index")
        if "--ignore-index" in options
        else None
    )
    ignore = int(options[last + 1]) if last is not None else None
    summary = json.loads((run / "summary.json").read_text())
    n, k = probs.shape[:2]
    assert summary["dataset"]["num_images"] == n and summary["dataset"]["num_classes"] == k
    pred = zarr.open_array(str(run / "pred_labels.zarr"), mode="r")[:]
    issues = zarr.open_array(str(run / "issues.zarr"), mode="r")[:]
    scores = zarr.open_array(str(run / "pixel_scores.zarr"), mode="r")[:]
    given = labels.astype(np.int64)
    ignored = given == ignore if ignore is not None else np.zeros(given.shape, bool)
    assert np.array_equal(pred, probs.argmax(axis=1))
    assert not (issues & ignored).any() and not (issues & (pred == given)).any()
    safe = np.where(ignored, 0, given)
    expected = np.take_along_axis(probs, safe[:, None], 1)[:, 0].astype(scores.dtype)
    assert np.array_equal(np.isnan(scores), ignored)
    assert np.array_equal(scores[~ignored], expected[~ignored])
    assert summary["totals"]["issue_pixels"] == int(issues.sum()) <= summary["totals"]["candidates"]
    rows = (run / "image_scores.csv").read_text().splitlines()
    assert len(rows) == n + 1


@FUZZ
@given(dataset=datasets())
def test_label_and_probability_arrays_never_crash_the_cli(dataset):
    labels, probs, options = dataset
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "data"
        data.mkdir()
        np.save(data / "labels.npy", labels)
        np.save(data / "pred_probs.npy", probs)
        run = Path(folder) / "out" / "run"
        outcome = cli_outcome(data, run, *options)
        event(outcome)
        if outcome == "ok":
            check_run(run, labels, probs, options)


def test_infinite_logits_are_one_line(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    np.save(data / "labels.npy", np.zeros((1, 2, 2), np.uint8))
    np.save(data / "pred_probs.npy", np.full((1, 2, 2, 2), np.inf, np.float32))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = runner.invoke(app, ["scan", str(data), "-o", str(tmp_path / "run"), "--logits"])
    assert result.exit_code == 2
    assert [str(w.message) for w in caught] == []  # each would print a line on stderr
