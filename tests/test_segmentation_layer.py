"""segaudit.segmentation equals cleanlab.segmentation 2.9: results, dtypes, printing, errors.

Property tests draw small datasets (odd sizes, K = 2..300, float16/32/64, rows that do
or do not sum to 1, ties, batch sizes, downsampling) and call both libraries with the
same arguments, verbose on and off, comparing results, stdout and stderr (progress
bars with their timings blanked). Among pixels tied at the cut cleanlab keeps whichever
its unstable argsort puts first and segaudit the lowest flat indices, so masks may
differ there and only there (:func:`assert_same_issues`).
"""

from __future__ import annotations

import builtins
import contextlib
import io
import os
import re
import sys
import warnings
from unittest import mock

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from cleanlab.segmentation import filter as cl_filter  # noqa: E402
from cleanlab.segmentation import rank as cl_rank  # noqa: E402
from cleanlab.segmentation import summary as cl_summary  # noqa: E402
from helpers import naive_issues, pool_mean_reference  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from segaudit.segmentation import _inputs  # noqa: E402
from segaudit.segmentation import filter as sa_filter  # noqa: E402
from segaudit.segmentation import rank as sa_rank  # noqa: E402
from segaudit.segmentation import summary as sa_summary  # noqa: E402

PROPERTY = settings(
    max_examples=int(os.environ.get("SEGAUDIT_FUZZ_EXAMPLES", "60")) // 2,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
DRAWING = settings(PROPERTY, max_examples=max(1, PROPERTY.max_examples // 3))  # figures are slow
DTYPES = ("float16", "float32", "float64")


# -- data --------------------------------------------------------------------------------


@st.composite
def datasets(draw, max_side: int = 9, divisible: bool = True):
    """(labels, pred_probs, downsample): 1-3 images of odd or even sizes up to
    ``max_side``, K = 2..300, each dtype; rows random (not summing to 1), normalised,
    or on a 4-level grid (ties everywhere)."""
    n = draw(st.integers(1, 3))
    k = draw(
        st.one_of(st.integers(2, 6), st.sampled_from([19, 255, 256, 257, 300]), st.integers(2, 300))
    )
    d = draw(st.sampled_from([1, 1, 2, 3])) if divisible else 1
    h = d * draw(st.integers(1, max_side // d))
    w = d * draw(st.integers(1, max_side // d))
    dtype = draw(st.sampled_from(DTYPES))
    rows = draw(st.sampled_from(["random", "normalised", "grid"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    labels = rng.integers(0, k, (n, h, w))
    if rows == "grid":
        probs = rng.integers(1, 5, (n, k, h, w)) / 4
    else:
        probs = rng.random((n, k, h, w))
    # Mostly right predictions, as from a model: the given class gets a boost.
    boost = rng.random((n, h, w)) < draw(st.sampled_from([0.0, 0.5, 0.9]))
    np.put_along_axis(probs, labels[:, None], np.where(boost[:, None], 1.0, 0.0), axis=1)
    if rows == "normalised":
        probs = probs / probs.sum(axis=1, keepdims=True)
    labels = labels.astype(draw(st.sampled_from([np.int64, np.int32, np.uint16])))
    return labels, probs.astype(dtype), d


def cl_self_confidence(labels, probs, d):
    """cleanlab's self-confidence at Confident Learning's resolution."""
    if d == 1:
        small_labels, small = labels.astype(np.int64), probs
    else:
        small_labels, small = pool_mean_reference(labels.astype(np.int64), probs, d)
    return np.take_along_axis(small, small_labels[:, None], axis=1)[:, 0]


def assert_same_issues(expected, got, labels, probs, d=1):
    """Equal masks, except among pixels whose self-confidence ties at the cut."""
    assert isinstance(got, np.ndarray) and got.dtype == bool and got.shape == expected.shape
    differ = expected != got
    if not differ.any():
        return
    n, h, w = differ.shape
    blocks = differ.reshape(n, h // d, d, w // d, d).any(axis=(2, 4))
    scores = cl_self_confidence(labels, probs, d)
    tied = np.unique(scores[blocks])
    assert len(tied) == 1, f"masks differ at self-confidences {tied[:5]}, not only at a tie"
    assert np.count_nonzero(scores == tied[0]) > 1, "masks differ at a score nobody ties"


# -- calling both ------------------------------------------------------------------------


def call(function, *args, **kwargs):
    """(result, stdout, stderr frames): what ``function`` returns and prints."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        result = function(*args, **kwargs)
    return result, out.getvalue(), frames(err.getvalue())


def frames(stderr: str) -> list[str]:
    """The last frame of each tqdm bar, its elapsed time and rate blanked."""
    shown = []
    for line in stderr.split("\n"):
        if line:
            shown.append(re.sub(r"\[[^\]]*\]", "[...]", line.split("\r")[-1]))
    return shown


def error_of(function, *args, **kwargs):
    """(type, message) of what ``function`` raises (printing discarded)."""
    try:
        call(function, *args, **kwargs)
    except Exception as error:  # noqa: BLE001 - any type: it is what is compared
        return type(error), str(error)
    raise AssertionError(f"{function.__module__}.{function.__name__} raised nothing")


# -- find_label_issues -------------------------------------------------------------------


@PROPERTY
@given(
    data=datasets(),
    batch_size=st.one_of(st.none(), st.integers(1, 5000)),
    verbose=st.booleans(),
    n_jobs=st.sampled_from([1, 2]),
)
def test_find_label_issues_equals_cleanlab(data, batch_size, verbose, n_jobs):
    labels, probs, d = data
    options = dict(batch_size=batch_size, verbose=verbose, downsample=d)
    want, want_out, want_err = call(cl_filter.find_label_issues, labels, probs, n_jobs=1, **options)
    got, got_out, got_err = call(
        sa_filter.find_label_issues, labels, probs, n_jobs=n_jobs, **options
    )
    assert_same_issues(want, got, labels, probs, d)
    assert got_out == want_out
    assert got_err == want_err
    if not verbose:
        assert got_out == "" and got_err == []


@pytest.mark.parametrize("dtype", DTYPES)
def test_find_label_issues_prints_what_cleanlab_prints(dtype):
    rng = np.random.default_rng(1)
    labels, probs = rng.integers(0, 3, (4, 6, 10)), rng.random((4, 3, 6, 10)).astype(dtype)
    want, want_out, want_err = call(cl_filter.find_label_issues, labels, probs, n_jobs=None)
    got, got_out, got_err = call(sa_filter.find_label_issues, labels, probs, n_jobs=None)
    assert_same_issues(want, got, labels, probs)
    assert got_out == want_out
    assert got_out.endswith("Total number of examples whose labels have been evaluated: 240\n")
    assert got_err == want_err
    assert [frame.split(":")[0] for frame in got_err] == [
        "number of examples processed for estimating thresholds",
        "number of examples processed for checking labels",
    ]
    assert all("4/4" in frame for frame in got_err)


@pytest.mark.parametrize(
    ("dtype", "step"), [("float16", 2.0**-11), ("float32", 2.0**-24)], ids=["float16", "float32"]
)
def test_thresholds_are_rounded_as_cleanlab_rounds_them(dtype, step):
    """cleanlab averages a class's self-confidence with np.mean in the input's precision:
    here it rounds class 1's threshold down to 0.5, so the pixel labelled 0 and predicted
    1 with probability just above 0.5 - 1e-6 counts towards m, and is flagged; with the
    threshold exact (segaudit's own API) it would not be."""
    ones = np.array([0.5, 0.5 + step], dtype)
    rounded, exact = float(np.mean(ones)), (0.5 + (0.5 + step)) / 2
    pmax = np.array(rounded - 1e-6, dtype)
    while float(pmax) < rounded - 1e-6:
        pmax = np.nextafter(pmax, np.array(1, dtype))
    assert rounded - 1e-6 <= float(pmax) < exact - 1e-6
    labels = np.array([[[0, 1, 1]]])
    probs = np.array([[[[0.4, 0.1, 0.1]], [[pmax, *ones]]]], dtype)
    want = cl_filter.find_label_issues(labels, probs, verbose=False, n_jobs=1)
    assert want.tolist() == [[[True, False, False]]]
    assert not naive_issues(labels, probs).issues.any()  # exact thresholds flag nothing
    got = sa_filter.find_label_issues(labels, probs, verbose=False)
    assert np.array_equal(got, want)
    scores, _ = sa_rank.get_label_quality_scores(
        labels, probs, method="num_pixel_issues", verbose=False
    )
    assert np.array_equal(scores, [1 - 1 / 3])


def test_n_jobs_messages(monkeypatch):
    """Without psutil cleanlab names the logical cores; with it, nothing; outside Linux
    it says n_jobs is overridden."""
    monkeypatch.setitem(sys.modules, "psutil", None)
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert _inputs.resolve_jobs(None, verbose=True) == os.cpu_count()
    assert out.getvalue() == (
        f"Multiprocessing will default to using the number of logical cores "
        f"({os.cpu_count()}). To default to number of physical cores: pip install psutil\n"
    )
    fake = mock.Mock(cpu_count=mock.Mock(return_value=3))
    monkeypatch.setitem(sys.modules, "psutil", fake)
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert _inputs.resolve_jobs(None, verbose=True) == 3
        assert _inputs.resolve_jobs(2, verbose=True) == 2
    assert out.getvalue() == ""
    monkeypatch.setattr("platform.system", lambda: "Darwin")
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert _inputs.resolve_jobs(4, verbose=True) == 1
        assert _inputs.resolve_jobs(4, verbose=False) == 1
    assert out.getvalue() == (
        "n_jobs is overridden to 1 because multiprocessing is only supported for Linux.\n"
    )


@PROPERTY
@given(data=datasets(max_side=8))
def test_mode_pooling_extension_is_segaudits_mode(data):
    """label_pooling="mode" (an extension) pools labels by majority, ties to the smaller id."""
    labels, probs, d = data
    probs = probs.astype(np.float64)
    got = sa_filter.find_label_issues(
        labels, probs, verbose=False, downsample=d, label_pooling="mode"
    )
    naive = naive_issues(labels, probs, downsample=d, pooling="mode")
    assert np.array_equal(got, naive.issues)


def test_memory_maps_give_cleanlabs_mask_and_stay_intact(tmp_path):
    rng = np.random.default_rng(2)
    labels, probs = rng.integers(0, 4, (5, 16, 12)), rng.random((5, 4, 16, 12)).astype(np.float32)
    np.save(tmp_path / "p.npy", probs)
    np.save(tmp_path / "l.npy", labels)
    mapped = np.load(tmp_path / "p.npy", mmap_mode="r")
    mapped_labels = np.load(tmp_path / "l.npy", mmap_mode="r")
    assert _inputs.is_readonly_mapping(mapped) and _inputs.is_readonly_mapping(mapped[1:3])
    want = cl_filter.find_label_issues(labels, probs, verbose=False, n_jobs=1)
    for batch_size in (None, 1, 10**6):
        got = sa_filter.find_label_issues(
            mapped_labels, mapped, verbose=False, n_jobs=2, batch_size=batch_size
        )
        assert_same_issues(want, got, labels, probs)
    assert np.array_equal(mapped, probs) and np.array_equal(mapped_labels, labels)


def test_private_and_writable_maps_keep_their_pages(tmp_path):
    """Pages are dropped only from read-only maps: a copy-on-write map's edits count."""
    rng = np.random.default_rng(3)
    labels, probs = rng.integers(0, 3, (3, 8, 8)), rng.random((3, 3, 8, 8))
    np.save(tmp_path / "p.npy", probs)
    private = np.load(tmp_path / "p.npy", mmap_mode="c")
    writable = np.load(tmp_path / "p.npy", mmap_mode="r+")
    assert not _inputs.is_readonly_mapping(private)
    assert not _inputs.is_readonly_mapping(writable)
    assert not _inputs.is_readonly_mapping(np.load(tmp_path / "p.npy", mmap_mode="r")[:, :, ::2])
    assert not _inputs.is_readonly_mapping(probs)
    private[0] = private[0][::-1]  # edits held only in this process's copy of the pages
    edited = np.array(private)
    want = cl_filter.find_label_issues(labels, edited, verbose=False, n_jobs=1)
    got = sa_filter.find_label_issues(labels, private, verbose=False, n_jobs=1)
    assert_same_issues(want, got, labels, edited)
    assert np.array_equal(private, edited)


def test_float_and_bool_labels_are_class_ids():
    rng = np.random.default_rng(4)
    labels, probs = rng.integers(0, 2, (2, 6, 6)), rng.random((2, 2, 6, 6))
    want = cl_filter.find_label_issues(labels.astype(float), probs, verbose=False, n_jobs=1)
    for as_given in (labels.astype(float), labels.astype(bool), labels.astype(np.float16)):
        got = sa_filter.find_label_issues(as_given, probs, verbose=False)
        assert_same_issues(want, got, labels, probs)
    with pytest.raises(ValueError, match="no class id"):
        sa_filter.find_label_issues(labels + 0.5, probs, verbose=False)


# -- get_label_quality_scores --------------------------------------------------------------


@PROPERTY
@given(
    data=datasets(),
    temperature=st.sampled_from([0.01, 0.1, 0.5, 1.0, 3.0]),
    verbose=st.booleans(),
)
def test_softmin_equals_cleanlab(data, temperature, verbose):
    labels, probs, d = data
    options = dict(method="softmin", temperature=temperature, verbose=verbose, downsample=d)
    with warnings.catch_warnings(record=True) as want_warnings:
        warnings.simplefilter("always")
        want, want_out, want_err = call(cl_rank.get_label_quality_scores, labels, probs, **options)
    with warnings.catch_warnings(record=True) as got_warnings:
        warnings.simplefilter("always")
        got, got_out, got_err = call(sa_rank.get_label_quality_scores, labels, probs, **options)
    (want_images, want_pixels), (got_images, got_pixels) = want, got
    assert got_pixels.dtype == np.float64 and got_pixels.shape == labels.shape
    assert np.array_equal(got_pixels, want_pixels)
    assert got_images.dtype == np.float64 and got_images.shape == (len(labels),)
    np.testing.assert_allclose(got_images, want_images, rtol=1e-12, atol=0)
    assert (got_out, got_err) == (want_out, want_err)
    messages = [(w.category, str(w.message)) for w in want_warnings]
    assert [(w.category, str(w.message)) for w in got_warnings] == messages
    assert len(messages) == (d != 1)


@PROPERTY
@given(
    data=datasets(), batch_size=st.one_of(st.none(), st.integers(1, 5000)), verbose=st.booleans()
)
def test_num_pixel_issues_equals_cleanlab(data, batch_size, verbose):
    labels, probs, d = data
    options = dict(method="num_pixel_issues", downsample=d, batch_size=batch_size, verbose=verbose)
    want, want_out, want_err = call(
        cl_rank.get_label_quality_scores, labels, probs, n_jobs=1, **options
    )
    got, got_out, got_err = call(
        sa_rank.get_label_quality_scores, labels, probs, n_jobs=1, **options
    )
    (want_images, want_pixels), (got_images, got_pixels) = want, got
    assert got_pixels.dtype == probs.dtype == want_pixels.dtype
    assert np.array_equal(got_pixels, want_pixels)
    assert got_images.dtype == np.float64
    mask = sa_filter.find_label_issues(
        labels, probs, verbose=False, downsample=d, batch_size=batch_size
    )
    want_mask = cl_filter.find_label_issues(
        labels, probs, verbose=False, n_jobs=1, downsample=d, batch_size=batch_size
    )
    assert_same_issues(want_mask, mask, labels, probs, d)
    assert np.array_equal(got_images, 1 - np.mean(mask, axis=(1, 2)))
    if np.array_equal(mask, want_mask):
        assert np.array_equal(got_images, want_images)
    assert (got_out, got_err) == (want_out, want_err)


def test_no_images_score_as_in_cleanlab():
    labels, probs = np.zeros((0, 4, 5), int), np.zeros((0, 3, 4, 5))
    want, want_out, want_err = call(cl_rank.get_label_quality_scores, labels, probs)
    got, got_out, got_err = call(sa_rank.get_label_quality_scores, labels, probs)
    assert got[0].shape == want[0].shape == (0,) and got[1].shape == want[1].shape == (0, 4, 5)
    assert (got_out, got_err) == (want_out, want_err)


@PROPERTY
@given(
    n=st.integers(1, 6),
    side=st.integers(1, 7),
    threshold=st.one_of(st.sampled_from([0, 0.1, 0.5, 1]), st.floats(0, 1)),
    seed=st.integers(0, 2**32 - 1),
    dtype=st.sampled_from(DTYPES),
)
def test_issues_from_scores_equals_cleanlab(n, side, threshold, seed, dtype):
    rng = np.random.default_rng(seed)
    image_scores = rng.random(n).round(1)  # ties among images too
    pixel_scores = rng.random((n, side, side)).astype(dtype)
    for args in ((image_scores, pixel_scores), (image_scores,), (image_scores, None)):
        want = cl_rank.issues_from_scores(*args, threshold=threshold)
        got = sa_rank.issues_from_scores(*args, threshold=threshold)
        assert type(got) is type(want) and got.dtype == want.dtype
        assert np.array_equal(got, want)


# -- summary -----------------------------------------------------------------------------


@st.composite
def flagged(draw):
    """(issues, labels, pred_probs): a random boolean issue mask over a dataset."""
    labels, probs, _ = draw(datasets(divisible=False))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    issues = rng.random(labels.shape) < draw(st.sampled_from([0.0, 0.2, 0.7, 1.0]))
    return issues, labels, probs


@PROPERTY
@given(
    case=flagged(),
    exclude=st.one_of(st.none(), st.lists(st.integers(-1, 6), max_size=3)),
    top=st.one_of(st.none(), st.integers(-2, 8)),
    named=st.booleans(),
    verbose=st.booleans(),
)
def test_common_label_issues_equals_cleanlab(case, exclude, top, named, verbose):
    issues, labels, probs = case
    names = [f"class {i}" for i in range(probs.shape[1])] if named else None
    options = dict(class_names=names, exclude=exclude, top=top, verbose=verbose)
    want, want_out, want_err = call(
        cl_summary.common_label_issues, issues, labels, probs, **options
    )
    got, got_out, got_err = call(sa_summary.common_label_issues, issues, labels, probs, **options)
    assert isinstance(got, pd.DataFrame)
    assert list(got.columns) == ["given_label", "predicted_label", "num_pixel_issues"]
    pd.testing.assert_frame_equal(got, want)
    assert got_out == want_out
    assert got_err == want_err  # a bar over the issue pixels, whatever verbose says
    if not verbose:
        assert got_out == ""


def test_common_label_issues_prints_a_line_per_row():
    labels = np.array([[[0, 0, 0, 1]]])
    probs = np.array([[[[0.1, 0.2, 0.1, 0.1]], [[0.9, 0.8, 0.9, 0.9]]]])
    issues = np.array([[[True, True, True, False]]])
    got, out, err = call(sa_summary.common_label_issues, issues, labels, probs)
    assert got.to_dict("list") == {
        "given_label": ["0"],
        "predicted_label": ["1"],
        "num_pixel_issues": [3],
    }
    assert got["num_pixel_issues"].dtype == np.int64
    assert out == "Class '0' is potentially mislabeled as class for '1' 3 pixels in the dataset\n"
    assert len(err) == 1 and re.fullmatch(r"100%\|\S{10}\| 3/3 \[\.\.\.\]", err[0])
    excluded, out, _ = call(sa_summary.common_label_issues, issues, labels, probs, exclude=[1])
    assert excluded.empty and out == ""


def test_common_label_issues_needs_pandas(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # as if it were not installed
    issues, labels = np.zeros((1, 2, 2), bool), np.zeros((1, 2, 2), int)
    with pytest.raises(ImportError, match=re.escape("pip install 'segaudit[pandas]'")):
        sa_summary.common_label_issues(issues, labels, np.ones((1, 2, 2, 2)) / 2)
    # The module itself imports without pandas.
    real_import = builtins.__import__

    def no_pandas(name, *args, **kwargs):
        if name.split(".")[0] == "pandas":
            raise ImportError("No module named 'pandas'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pandas)
    for module in [m for m in sys.modules if m.startswith("segaudit.segmentation")]:
        monkeypatch.delitem(sys.modules, module)
    import segaudit.segmentation.summary  # noqa: F401


@PROPERTY
@given(
    case=flagged(),
    class_index=st.one_of(
        st.integers(-1, 301), st.lists(st.integers(0, 6), max_size=3), st.sampled_from([0.0, 1.0])
    ),
)
def test_filter_by_class_equals_cleanlab(case, class_index):
    issues, labels, probs = case
    want = cl_summary.filter_by_class(class_index, issues, labels, probs)
    got = sa_summary.filter_by_class(class_index, issues, labels, probs)
    assert got.dtype == want.dtype == bool
    assert np.array_equal(got, want)


class Shows:
    """Stands in for plt.show: records each figure's axes titles, images' sizes and
    legend texts, and the keyword arguments, then closes the figure."""

    def __init__(self):
        self.figures = []

    def __call__(self, **kwargs):
        figure = plt.gcf()
        axes = [
            (ax.get_title(), [im.get_array().shape[:2] for im in ax.get_images()])
            for ax in figure.axes
        ]
        legends = [[text.get_text() for text in legend.get_texts()] for legend in figure.legends]
        self.figures.append((axes, legends, kwargs))
        plt.close(figure)


@DRAWING
@given(
    case=flagged(),
    show_labels=st.booleans(),
    show_probs=st.booleans(),
    top=st.one_of(st.none(), st.integers(0, 4)),
    exclude=st.one_of(st.none(), st.lists(st.integers(0, 3), max_size=2)),
    named=st.booleans(),
)
def test_display_issues_draws_cleanlabs_figures(case, show_labels, show_probs, top, exclude, named):
    issues, labels, probs = case
    labels = labels.astype(np.int64)  # see test_display_issues_takes_unsigned_labels
    options = dict(
        labels=labels if show_labels else None,
        pred_probs=probs if show_probs else None,
        top=top,
        exclude=exclude if show_labels else None,
        class_names=[f"c{i}" for i in range(probs.shape[1])] if named else None,
    )
    shown = {}
    for name, module in (("cleanlab", cl_summary), ("segaudit", sa_summary)):
        shows = Shows()
        with mock.patch.object(plt, "show", shows):
            try:
                assert module.display_issues(issues, **options) is None
            except Exception as error:  # noqa: BLE001 - cleanlab's errors are compared
                shows.figures.append((type(error), str(error)))
        plt.close("all")
        shown[name] = shows.figures
    assert shown["segaudit"] == shown["cleanlab"]


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # cleanlab's
def test_display_issues_takes_unsigned_labels():
    """Documented difference: without pred_probs cleanlab counts classes as
    ``max(labels) + 1`` in the labels' type, and its colour map's arithmetic wraps for
    unsigned labels (a ValueError); the layer draws them."""
    labels = np.array([[[0, 1], [1, 0]]], np.uint8)
    issues = labels == 1
    with mock.patch.object(plt, "show", Shows()):
        with pytest.raises(ValueError):
            cl_summary.display_issues(issues, labels=labels)
        assert sa_summary.display_issues(issues, labels=labels) is None
    plt.close("all")


def test_display_issues_calls_plt_show_with_its_keywords():
    labels = np.array([[[0, 1], [1, 0]]])
    issues = np.array([[[True, False], [False, True]]])
    with mock.patch("matplotlib.pyplot.show") as show:
        sa_summary.display_issues(issues, labels=labels, top=1, block=False)
    show.assert_called_once_with(block=False)
    with mock.patch("matplotlib.pyplot.show") as show:
        sa_summary.display_issues(issues, labels=labels, class_names=["a", "b"], top=1)
    assert show.call_count == 2  # the legend, then the image
    plt.close("all")


def test_generate_colormap_is_rgba():
    assert sa_summary._generate_colormap(0).shape == (0, 4)
    assert sa_summary._generate_colormap(-3).shape == (0, 4)
    colors = sa_summary._generate_colormap(300)
    assert colors.shape == (300, 4) and len(np.unique(colors, axis=0)) == 300
    assert colors.min() >= 0 and colors.max() <= 1 and (colors[:, 3] == 1).all()


# -- errors ------------------------------------------------------------------------------

LABELS = np.random.default_rng(5).integers(0, 2, (3, 10, 10))
PROBS = np.random.default_rng(6).random((3, 2, 10, 10))
ISSUES = LABELS == 1

SAME_ERRORS = [
    ("filter", "find_label_issues", (LABELS, PROBS), {"batch_size": 0}),
    ("filter", "find_label_issues", (LABELS, PROBS), {"batch_size": -1}),
    ("filter", "find_label_issues", (np.array([[[[1, 2, 3]]]]), PROBS), {}),
    ("filter", "find_label_issues", (LABELS, np.array([[[[0.1, 0.2, 0.3]]]])), {}),
    ("filter", "find_label_issues", (LABELS, PROBS[0]), {}),
    ("filter", "find_label_issues", (LABELS.tolist(), PROBS), {}),
    ("filter", "find_label_issues", (LABELS, PROBS), {"downsample": 3}),
    ("filter", "find_label_issues", (LABELS, PROBS), {"downsample": 4}),
    ("filter", "find_label_issues", (LABELS, PROBS), {"downsample": 0}),
    ("rank", "get_label_quality_scores", (LABELS, PROBS), {"method": "invalid_method"}),
    ("rank", "get_label_quality_scores", (LABELS, PROBS), {"temperature": 0}),
    ("rank", "get_label_quality_scores", (LABELS, PROBS), {"temperature": None}),
    ("rank", "get_label_quality_scores", (LABELS[:, :0], PROBS[:, :, :0]), {}),
    ("rank", "get_label_quality_scores", (LABELS, PROBS), {"batch_size": 0}),
    (
        "rank",
        "get_label_quality_scores",
        (LABELS, PROBS),
        {"method": "num_pixel_issues", "downsample": 4},
    ),
    ("rank", "get_label_quality_scores", (LABELS[0], PROBS), {}),
    ("rank", "issues_from_scores", (None,), {}),
    ("rank", "issues_from_scores", (np.array([0.1, 0.2]),), {"threshold": 1.1}),
    ("rank", "issues_from_scores", (np.array([0.1, 0.2]),), {"threshold": -0.1}),
    ("rank", "issues_from_scores", (np.array([0.1, 0.2]),), {"threshold": None}),
    ("rank", "_get_label_quality_per_image", (np.array([]),), {"method": "softmin"}),
    ("rank", "_get_label_quality_per_image", (np.ones(3),), {"method": None}),
    (
        "rank",
        "_get_label_quality_per_image",
        (np.ones(3),),
        {"method": "softmin", "temperature": 0},
    ),
    ("summary", "common_label_issues", (ISSUES, LABELS, PROBS[0]), {}),
    ("summary", "common_label_issues", (ISSUES, LABELS[:2], PROBS), {}),
    ("summary", "display_issues", (ISSUES,), {"exclude": [0]}),
]


@pytest.mark.parametrize(("module", "name", "args", "kwargs"), SAME_ERRORS)
def test_bad_arguments_raise_what_cleanlab_raises(module, name, args, kwargs):
    cleanlab_module = {"filter": cl_filter, "rank": cl_rank, "summary": cl_summary}[module]
    segaudit_module = {"filter": sa_filter, "rank": sa_rank, "summary": sa_summary}[module]
    want = error_of(getattr(cleanlab_module, name), *args, **kwargs)
    got = error_of(getattr(segaudit_module, name), *args, **kwargs)
    assert got == want


def test_private_softmin_is_the_engines_to_an_ulp():
    scores = np.random.default_rng(7).random(100)
    got = sa_rank._get_label_quality_per_image(scores, method="softmin", temperature=0.3)
    want = cl_rank._get_label_quality_per_image(scores, method="softmin", temperature=0.3)
    assert isinstance(got, np.float64)
    assert got == pytest.approx(want, rel=1e-14, abs=0)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda p: np.where(p > 0.9, np.nan, p), "NaN"),
        (lambda p: p - 0.5, "negative"),
    ],
    ids=["nan", "negative"],
)
def test_probabilities_cleanlab_would_compute_on_are_refused(change, match):
    """Documented difference: NaN and negative probabilities are a ValueError here."""
    for function in (sa_filter.find_label_issues, sa_rank.get_label_quality_scores):
        with pytest.raises(ValueError, match=match):
            function(LABELS, change(PROBS), verbose=False)


def test_labels_outside_the_classes_are_refused():
    with pytest.raises(ValueError, match="outside 0..1"):
        sa_filter.find_label_issues(LABELS + 1, PROBS, verbose=False)


def test_scores_above_1_go_through_both_steps_as_cleanlab_takes_them():
    """Rows taken as they are may exceed 1: Confident Learning and the softmin both
    compute with them, as cleanlab does (segaudit.api refuses them as logits)."""
    mask = sa_filter.find_label_issues(LABELS, PROBS * 3, verbose=False)
    want = cl_filter.find_label_issues(LABELS, PROBS * 3, verbose=False, n_jobs=1)
    assert_same_issues(want, mask, LABELS, PROBS * 3)
    got_images, got_pixels = sa_rank.get_label_quality_scores(LABELS, PROBS * 3, verbose=False)
    want_images, want_pixels = cl_rank.get_label_quality_scores(
        LABELS, PROBS * 3, verbose=False, n_jobs=1
    )
    assert np.array_equal(got_pixels, want_pixels)
    np.testing.assert_allclose(got_images, want_images, rtol=1e-12, atol=0)


def test_temperatures_cleanlab_accepts_but_that_make_no_softmin_are_refused():
    with pytest.raises(ValueError, match="temperature"):
        sa_rank.get_label_quality_scores(LABELS, PROBS, temperature=-0.1, verbose=False)
