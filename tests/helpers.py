"""Test data and a deliberately simple in-memory implementation of the algorithm.

``naive_issues`` sorts the whole dataset in float64 — slow and obviously right —
so the streaming engine can be checked where cleanlab cannot (ignore pixels, mode
pooling), and so tests can see whether generated data has ties at the cut.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Shapes every parity test (masks and scores) runs on: K=2, 19, 150, an absent class,
# float16/32/64, one image.
PARITY_CASES = [
    # n, k, h, w, dtype, absent
    (3, 2, 24, 32, "float32", ()),
    (4, 19, 16, 24, "float32", ()),
    (2, 150, 8, 16, "float32", ()),
    (2, 300, 8, 16, "float32", ()),  # more than 256 classes: 16-bit predictions
    (3, 6, 16, 16, "float32", (2, 4)),
    (3, 5, 16, 24, "float16", ()),
    (3, 19, 12, 16, "float16", (0,)),
    (1, 7, 32, 32, "float32", ()),
    (2, 4, 16, 16, "float64", ()),
]


def softmax(logits: np.ndarray, axis: int = 1) -> np.ndarray:
    z = logits - logits.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def make_probs(
    rng: np.random.Generator,
    n: int,
    k: int,
    h: int,
    w: int,
    dtype: str = "float32",
    noise: float = 0.15,
    sharpness: float = 2.5,
    absent: tuple[int, ...] = (),
):
    """Random (labels, pred_probs): smooth-ish logits, labels = argmax with a fraction flipped.

    Classes in ``absent`` never appear as a given label (but keep probability mass).
    """
    logits = rng.normal(size=(n, k, h, w)) * sharpness
    probs64 = softmax(logits)
    labels = probs64.argmax(axis=1)
    flip = rng.random((n, h, w)) < noise
    labels[flip] = rng.integers(0, k, int(flip.sum()))
    present = np.setdiff1d(np.arange(k), np.asarray(absent, dtype=int))
    for cls in absent:
        mask = labels == cls
        labels[mask] = rng.choice(present, int(mask.sum()))
    probs = probs64.astype(dtype)
    return labels.astype(np.int64), probs


def pool_mean_reference(labels, probs, d):
    """The reference's downsampling, verbatim."""
    n, k, h, w = probs.shape
    small_labels = np.round(labels.reshape((n, h // d, d, w // d, d)).mean((4, 2)))
    small = probs.reshape((n, k, h // d, d, w // d, d)).mean((5, 3))
    return small_labels.astype(np.int64), small / np.expand_dims(small.sum(axis=1), 1)


def pool_mode_naive(labels, d, ignore=None):
    """Majority vote per block with Python loops (ties to the smaller id)."""
    n, h, w = labels.shape
    out = np.empty((n, h // d, w // d), np.int64)
    for i in range(n):
        for y in range(h // d):
            for x in range(w // d):
                block = labels[i, y * d : (y + 1) * d, x * d : (x + 1) * d].ravel().tolist()
                votes = [v for v in block if v != ignore]
                if not votes:
                    out[i, y, x] = ignore
                    continue
                best = max(set(votes), key=lambda v: (votes.count(v), -v))
                out[i, y, x] = best
    return out


@dataclass
class NaiveResult:
    issues: np.ndarray
    thresholds: np.ndarray
    m: int
    tie_at_cut: bool
    closest_to_threshold: float


def naive_issues(labels, probs, *, downsample=1, pooling="mean", ignore=None) -> NaiveResult:
    """The per-pixel Confident Learning algorithm in the plainest numpy, all in memory."""
    labels = np.asarray(labels).astype(np.int64)
    probs = np.asarray(probs)
    if downsample == 1:
        cl_labels, cl_probs = labels, probs
    elif pooling == "mean" and ignore is None:
        cl_labels, cl_probs = pool_mean_reference(labels, probs, downsample)
    else:
        assert pooling == "mode"
        cl_labels = pool_mode_naive(labels, downsample, ignore)
        cl_probs = pool_mean_reference(labels, probs, downsample)[1]
    n, k = cl_probs.shape[:2]
    flat_probs = np.moveaxis(cl_probs, 1, -1).reshape(-1, k)
    flat_labels = cl_labels.ravel()
    valid = flat_labels != ignore if ignore is not None else np.ones(flat_labels.shape, bool)
    vp, vl = flat_probs[valid], flat_labels[valid]
    t = np.array(
        [vp[vl == c, c].astype(np.float64).mean() if (vl == c).any() else 0.0 for c in range(k)]
    )
    t = np.maximum(t, 2e-6)
    pred = vp.argmax(axis=1)
    pmax = vp[np.arange(len(vp)), pred].astype(np.float64)
    wrong = pred != vl
    m = int(np.count_nonzero(wrong & (pmax >= t[pred] - 1e-6)))
    s = vp[np.arange(len(vp)), vl]
    order = np.lexsort((np.arange(len(s)), s))
    chosen = order[:m]
    tie = m > 0 and m < len(s) and s[order[m - 1]] == s[order[m]]
    gap = np.abs(pmax[wrong] - (t[pred[wrong]] - 1e-6)).min() if wrong.any() else 1.0
    cand = np.zeros(len(flat_labels), bool)
    cand[np.flatnonzero(valid)[chosen]] = True
    cand = cand.reshape(cl_labels.shape)
    if downsample != 1:
        cand = cand.repeat(downsample, axis=1).repeat(downsample, axis=2)
    full_pred = probs.argmax(axis=1)
    issues = cand & (full_pred != labels)
    if ignore is not None:
        issues &= labels != ignore
    return NaiveResult(issues, t, m, bool(tie), float(gap))


def assert_well_posed(result: NaiveResult, dtype: str) -> None:
    """Data for exact-parity tests must not hinge on ties or on last-ulp threshold sums."""
    assert not result.tie_at_cut, "generated data has a tie at the cut; pick other data"
    margin = 1e-3 if dtype == "float16" else 1e-9
    assert result.closest_to_threshold > margin, (
        "a probability sits on a threshold; pick other data"
    )


def well_posed_case(n, k, h, w, dtype, *, absent=(), downsample=1, seed=0):
    """First seed from ``seed`` whose data has no tie at the cut and no value on a threshold."""
    for attempt in range(seed, seed + 40):
        labels, probs = make_probs(np.random.default_rng(attempt), n, k, h, w, dtype, absent=absent)
        naive = naive_issues(labels, probs, downsample=downsample, pooling="mean")
        try:
            assert_well_posed(naive, dtype)
        except AssertionError:
            continue
        return labels, probs, naive
    raise AssertionError("no well-posed data found in 40 seeds")


# Columns of a run's tables that name the files an image was read from: they differ
# between two copies of one dataset, and nothing else in a run may.
SOURCE_COLUMNS = {"images.csv": ("labels", "pred_probs", "photo"), "image_scores.csv": ("file",)}


def run_file_bytes(run, file) -> bytes:
    """A run file's bytes, with the columns naming source files blanked out."""
    import csv
    import io

    data = file.read_bytes()
    dropped = SOURCE_COLUMNS.get(file.name) if file.parent == run else None
    if not dropped:
        return data
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
    for row in rows:
        for column in dropped:
            row[column] = ""
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def run_outputs(run) -> dict:
    """Every file of a run as bytes (source-file columns blanked, see
    :func:`run_file_bytes`), and under ``"summary"`` its summary without the timing and
    engine blocks: what must not change with batch sizes or worker counts."""
    import json

    summary = json.loads((run / "summary.json").read_text())
    summary.pop("timing"), summary.pop("engine")
    files = {
        str(f.relative_to(run)): run_file_bytes(run, f)
        for f in sorted(run.rglob("*"))
        if f.is_file() and f.name != "summary.json"
    }
    return {**files, "summary": json.dumps(summary, sort_keys=True).encode()}


def one_line_error(result) -> str:
    """The CLI's answer to a refusal: exit 2, one line on stderr starting with
    ``error:``, no traceback; returns the line."""
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 2, result.output
    message = result.stderr.strip()
    assert message.startswith("error:") and "\n" not in message, message
    assert "Traceback" not in result.output
    return message


def tree_digest(path) -> str:
    """One hash of a folder: every entry's relative name, a link's target, a file's bytes."""
    import hashlib
    import os

    digest = hashlib.sha256()
    for file in sorted(path.rglob("*")):
        digest.update(str(file.relative_to(path)).encode())
        if file.is_symlink():
            digest.update(os.readlink(file).encode())
        if file.is_file():
            digest.update(file.read_bytes())
    return digest.hexdigest()


# A scan that stops after HOLD_AFTER images, writes MARKER and waits to be signalled:
# a test knows the scan is mid-run without guessing with sleeps. SIGINT is reset to
# Python's default in case the test runner was started with SIGINT ignored.
HELD_SCAN = """
import os, signal, sys, time
from pathlib import Path
import segaudit.jobs.scan
signal.signal(signal.SIGINT, signal.default_int_handler)
def hold(stop):
    if stop >= int(os.environ["HOLD_AFTER"]):
        Path(os.environ["MARKER"]).write_text(str(stop))
        while True:
            time.sleep(0.05)
segaudit.jobs.scan._test_hook_after_batch = hold
sys.argv[0] = "segaudit"
from segaudit.cli import main
main()
"""
