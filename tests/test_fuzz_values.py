"""Generated float bit patterns in pred_probs: signed zeros, subnormals, NaN payloads, infinities.

For float16, float32 and float64 alike:

- ``-0.0`` is 0: a dataset and its twin with every zero stored as ``+0.0`` give
  byte-identical runs (``scan``) and bit-identical API results;
- subnormal probabilities are ordinary small probabilities;
- any NaN (quiet or signalling, either sign, any payload) or infinity of either sign is
  refused with one sentence saying so (``scan``: exit 2), never a crash, never a result.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
from helpers import run_file_bytes
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from segaudit.api import find_label_issues, get_label_quality_scores
from segaudit.cli import app
from segaudit.errors import InvalidInputError, SegauditError

runner = CliRunner()
FUZZ = settings(
    max_examples=int(os.environ.get("SEGAUDIT_FUZZ_EXAMPLES", "60")) // 2,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)

# (bits, mantissa bits) of each float type: the patterns below are built from them.
LAYOUTS = {"float16": (16, 10), "float32": (32, 23), "float64": (64, 52)}
UINT = {"float16": np.uint16, "float32": np.uint32, "float64": np.uint64}


def pattern(dtype: str, kind: str, negative: bool, payload: int) -> int:
    """A bit pattern of ``kind``: negative zero, subnormal, infinity, quiet or signalling NaN."""
    bits, mantissa = LAYOUTS[dtype]
    sign = 1 << (bits - 1) if negative else 0
    exponent = ((1 << (bits - 1 - mantissa)) - 1) << mantissa  # all ones
    quiet = 1 << (mantissa - 1)
    payload %= quiet
    return {
        "zero": 1 << (bits - 1),
        "subnormal": 1 + payload,  # a positive subnormal
        "inf": sign | exponent,
        "qnan": sign | exponent | quiet | payload,
        "snan": sign | exponent | max(1, payload),
    }[kind]


@st.composite
def value_datasets(draw):
    """Valid probabilities with exact zeros, some of them turned into other patterns.

    Zeros become -0.0 or subnormals (both still valid probabilities: a subnormal is far
    below any tolerance) or, with ``poison``, NaN or infinity anywhere.
    """
    dtype = draw(st.sampled_from(sorted(LAYOUTS)))
    n, k = draw(st.integers(1, 3)), draw(st.integers(2, 4))
    h, w = draw(st.sampled_from([1, 2, 4])), draw(st.sampled_from([1, 2, 4]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    probs = rng.random((n, k, h, w)) ** 4
    probs[rng.random(probs.shape) < draw(st.sampled_from([0.2, 0.5]))] = 0
    probs[:, 0] += probs.sum(axis=1) == 0  # every pixel keeps some probability
    probs = (probs / probs.sum(axis=1, keepdims=True)).astype(dtype)
    labels = rng.integers(0, k, (n, h, w)).astype(np.uint8)
    flat = probs.view(UINT[dtype]).reshape(-1)
    zeros = np.flatnonzero(flat == 0)
    for index in zeros:
        kind = draw(st.sampled_from(["zero", "zero", "zero", "subnormal", "keep"]))
        if kind != "keep":
            flat[index] = pattern(dtype, kind, False, draw(st.integers(0, 2**60)))
    poison = []
    for _ in range(draw(st.sampled_from([0, 0, 1, 2]))):
        index = draw(st.integers(0, flat.size - 1))
        kind = draw(st.sampled_from(["inf", "qnan", "snan"]))
        flat[index] = pattern(dtype, kind, draw(st.booleans()), draw(st.integers(0, 2**60)))
        poison.append(int(index))
    options = draw(
        st.lists(
            st.sampled_from(
                [
                    ("--downsample", "2"),
                    ("--ignore-index", "3"),
                    ("--workers", "2"),
                    ("--batch-size", "1"),
                ]
            ),
            max_size=2,
            unique=True,
        )
    )
    flags = [part for option in options for part in option]
    if "--downsample" in flags and (h % 2 or w % 2):
        flags = []
    return labels, probs, flags, poison


def positive_twin(probs: np.ndarray) -> np.ndarray:
    """The same values with every -0.0 stored as +0.0."""
    twin = probs.copy()
    twin[(twin == 0) & np.signbit(twin)] = 0
    return twin


def invoke(command: str, data: Path, run: Path, flags: list[str]):
    """Run a command; it ends in exit 0 or 2 without a warning (a second line on stderr)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = runner.invoke(app, [command, str(data), "-o", str(run), "-q", *flags])
    assert [f"{w.filename}:{w.lineno}: {w.message}" for w in caught] == []
    assert isinstance(result.exception, SystemExit | type(None)), repr(result.exception)
    assert result.exit_code in (0, 2), (result.exit_code, result.output)
    if result.exit_code == 2:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    return result


def scan_outputs(folder: Path, labels: np.ndarray, probs: np.ndarray, flags: list[str]):
    """(exit code, stderr, what the run holds) of ``segaudit scan``; when the scan is
    refused, ``segaudit score`` must answer as cleanly (it reads fewer probabilities, so
    it may also succeed)."""
    data, run = folder / "data", folder / "run"
    data.mkdir()
    np.save(data / "labels.npy", labels)
    np.save(data / "pred_probs.npy", probs)
    result = invoke("scan", data, run, flags)
    if result.exit_code:
        invoke("score", data, folder / "scores", [])
        return result.exit_code, result.stderr, None
    summary = json.loads((run / "summary.json").read_text())
    for volatile in ("timing", "engine", "inputs"):
        summary.pop(volatile)
    found = {"summary": summary}
    for file in sorted(run.rglob("*")):
        if file.is_file() and file.name != "summary.json":
            found[str(file.relative_to(run))] = run_file_bytes(run, file)
    return 0, result.stderr, found


def api_results(labels: np.ndarray, probs: np.ndarray, flags: list[str]) -> list[bytes]:
    ignore = 3 if "--ignore-index" in flags else None
    downsample = 2 if "--downsample" in flags else 1
    results = [find_label_issues(labels, probs, ignore_index=ignore, downsample=downsample)]
    for method in ("softmin", "num_pixel_issues"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # images without scored pixels: a warning
            results.extend(
                get_label_quality_scores(labels, probs, method=method, ignore_index=ignore)
            )
    return [np.ascontiguousarray(r).tobytes() for r in results]


@FUZZ
@given(case=value_datasets())
@example(  # a class all -0.0 in float32
    case=(
        np.array([[[0, 1], [1, 1]]], np.uint8),
        np.array([[[[1.0, 1.0], [1.0, 1.0]], [[-0.0, -0.0], [-0.0, -0.0]]]], np.float32),
        [],
        [],
    )
)
@example(  # float16 -inf beside a valid value: an infinity, not a negative probability
    case=(
        np.zeros((1, 1, 2), np.uint8),
        np.array([[[[0.5, 1.0]], [[0.5, -np.inf]]]], np.float16),
        [],
        [3],
    )
)
def test_float_bit_patterns_in_pred_probs(case):
    labels, probs, flags, poison = case
    with tempfile.TemporaryDirectory() as folder:
        code, stderr, outputs = scan_outputs(Path(folder), labels, probs, flags)
    nonfinite = not np.isfinite(probs).all()
    assert nonfinite == bool(poison)  # the only non-finite values are the ones put there
    if nonfinite:
        event("refused")
        assert code == 2 and outputs is None
        assert "has NaN or infinite probabilities" in stderr, stderr
        try:
            find_label_issues(labels, probs)
        except InvalidInputError as error:
            assert "has NaN or infinite probabilities" in str(error)
        else:
            raise AssertionError("find_label_issues accepted NaN or infinity")
        try:  # softmin reads only the given label's probability: refused when it is bad
            get_label_quality_scores(labels, probs)
        except SegauditError:
            pass
        else:
            given = np.take_along_axis(probs, labels[:, None].astype(np.intp), 1)
            assert np.isfinite(given).all()
        return
    event("zeros" if np.signbit(probs).any() else "no negative zero")
    assert code == 0, stderr
    twin = positive_twin(probs)
    with tempfile.TemporaryDirectory() as folder:
        assert scan_outputs(Path(folder), labels, twin, flags) == (code, stderr, outputs)
    assert api_results(labels, probs, flags) == api_results(labels, twin, flags)
