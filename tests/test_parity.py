"""find_label_issues must equal cleanlab 2.9's mask exactly."""

from __future__ import annotations

import numpy as np
import pytest
from cleanlab.segmentation.filter import find_label_issues as cleanlab_find_label_issues
from helpers import PARITY_CASES as CASES
from helpers import naive_issues, well_posed_case

from segaudit.api import find_label_issues
from segaudit.engine import cut as select


def reference(labels, probs, downsample=1):
    return cleanlab_find_label_issues(labels, probs, downsample=downsample, verbose=False, n_jobs=1)


@pytest.mark.parametrize(("n", "k", "h", "w", "dtype", "absent"), CASES)
def test_matches_cleanlab(n, k, h, w, dtype, absent):
    labels, probs, naive = well_posed_case(n, k, h, w, dtype, absent=absent)
    expected = reference(labels, probs)
    assert expected.any(), "the case should flag something"
    assert np.array_equal(naive.issues, expected)
    got = find_label_issues(labels, probs)
    assert got.dtype == bool and got.shape == labels.shape
    assert np.array_equal(got, expected)


@pytest.mark.parametrize("batch_size", [1, 2 * 5 * 16 * 24, 3 * 5 * 16 * 24, 10**9])
@pytest.mark.parametrize("n_jobs", [1, 2])
def test_batching_never_changes_the_result(batch_size, n_jobs):
    labels, probs, _ = well_posed_case(5, 5, 16, 24, "float32")
    expected = reference(labels, probs)
    got = find_label_issues(labels, probs, batch_size=batch_size, n_jobs=n_jobs)
    assert np.array_equal(got, expected)


@pytest.mark.parametrize("downsample", [2, 4])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_downsampling_with_mean_pooling_matches_cleanlab(downsample, dtype):
    labels, probs, naive = well_posed_case(3, 5, 16, 32, dtype, downsample=downsample)
    expected = reference(labels, probs, downsample)
    assert expected.any()
    got = find_label_issues(labels, probs, downsample=downsample, label_pooling="mean")
    assert np.array_equal(got, expected)
    assert np.array_equal(naive.issues, expected)


def test_accepts_memmap_and_zarr(tmp_path):
    import zarr

    labels, probs, _ = well_posed_case(3, 5, 16, 24, "float32")
    expected = reference(labels, probs)
    np.save(tmp_path / "p.npy", probs)
    mm = np.load(tmp_path / "p.npy", mmap_mode="r")
    assert np.array_equal(find_label_issues(labels, mm), expected)
    z = zarr.create_array(
        store=str(tmp_path / "p.zarr"),
        shape=probs.shape,
        dtype=probs.dtype,
        chunks=(1, *probs.shape[1:]),
    )
    z[:] = probs
    assert np.array_equal(
        find_label_issues(labels, zarr.open_array(str(tmp_path / "p.zarr"))), expected
    )


def test_channels_last_and_logits_give_the_same_mask():
    labels, probs, _ = well_posed_case(2, 5, 16, 16, "float64")
    expected = find_label_issues(labels, probs)
    assert np.array_equal(
        find_label_issues(labels, np.moveaxis(probs, 1, -1).copy(), channels_last=True), expected
    )
    logits = np.log(probs) + 3.0
    assert np.array_equal(find_label_issues(labels, logits, logits=True), expected)


def test_ties_at_the_cut_go_to_the_lowest_flat_index():
    # 24 pixels labelled 0 all have s = 0.2 and are predicted 1; only the 12 whose p_1 = 0.75
    # reach t_1 = 0.72, so m = 12 of 24 tied candidates: the first 12 in flat order win.
    n, k, h, w = 2, 3, 4, 4
    probs = np.empty((n, k, h, w), np.float32)
    probs[:, 0], probs[:, 1], probs[:, 2] = 0.2, 0.7, 0.1
    labels = np.zeros((n, h, w), np.int64)
    labels[1, 2:, :] = 1
    probs[1, :, 2:, :] = np.array([0.2, 0.72, 0.08], np.float32)[:, None, None]
    reaching = np.zeros((n, h, w), bool)
    reaching[0, 3, :] = reaching[1, :2, :] = True  # 12 pixels, none of them among the first 12
    probs[:, 1][reaching] = 0.75
    probs[:, 2][reaching] = 0.05
    naive = naive_issues(labels, probs)
    assert naive.tie_at_cut and naive.m == 12
    mask = find_label_issues(labels, probs)
    assert np.flatnonzero(mask.ravel()).tolist() == list(range(12))
    assert np.array_equal(mask, naive.issues)


def test_tie_inside_the_boundary_takes_lowest_indices():
    n, k, h, w = 1, 2, 4, 8
    probs = np.empty((n, k, h, w), np.float32)
    probs[:, 0] = 0.3
    probs[:, 1] = 0.7
    labels = np.zeros((n, h, w), np.int64)
    labels[0, 0, :4] = 1  # 4 pixels labelled 1 with s = 0.7: t_1 = 0.7
    # 28 pixels labelled 0, s = 0.3, predicted 1 with p = 0.7 >= t_1 -> m = 28 of 28 wrong ones
    mask = find_label_issues(labels, probs)
    assert mask.sum() == 28
    # make only some of them count: raise t_1 above 0.7 for half the pixels
    probs2 = probs.copy()
    probs2[0, 1, 0, :4] = 0.9
    probs2[0, 0, 0, :4] = 0.1  # t_1 = 0.9 -> no wrong pixel reaches it -> m = 0
    assert not find_label_issues(labels, probs2).any()


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_a_cut_at_the_highest_score_a_mispredicted_pixel_can_have(dtype):
    # Mispredicted pixels score at most (1 + tol) / 2, so the pass counts scores only up
    # to there. Here every pixel scores exactly 0.5 (K=2, p = [0.5, 0.5]): the 16 labelled
    # 1 are mispredicted (the first maximum is class 0) and reach t_0 = 0.5, so m = 16 of
    # 32 tied scores, and the cut is the last bin the pass counts.
    n, k, h, w = 1, 2, 4, 8
    probs = np.full((n, k, h, w), 0.5, dtype)
    labels = np.zeros((n, h, w), np.int64)
    labels[0, ::2] = 1  # rows 0 and 2: the first 8 tied pixels in flat order are wrong
    naive = naive_issues(labels, probs)
    assert naive.m == 16 and naive.tie_at_cut
    mask = find_label_issues(labels, probs)
    assert np.array_equal(mask, naive.issues)
    assert mask.sum() == 8 and mask[0, 0].all() and not mask[0, 2].any()


def test_ignored_pixels_change_nothing_else():
    labels, probs, _ = well_posed_case(3, 5, 20, 24, "float32")
    cropped = find_label_issues(labels[:, :16], np.ascontiguousarray(probs[:, :, :16]))
    padded = labels.copy()
    padded[:, 16:] = 255
    got = find_label_issues(padded, probs, ignore_index=255)
    assert not got[:, 16:].any()
    assert np.array_equal(got[:, :16], cropped)
    naive = naive_issues(padded, probs, ignore=255)
    assert np.array_equal(got, naive.issues)


def test_scattered_ignore_pixels_match_the_naive_reference():
    labels, probs, _ = well_posed_case(3, 5, 16, 24, "float32")
    rng = np.random.default_rng(5)
    labels = labels.copy()
    labels[rng.random(labels.shape) < 0.2] = -1
    got = find_label_issues(labels, probs, ignore_index=-1)
    naive = naive_issues(labels, probs, ignore=-1)
    assert not naive.tie_at_cut
    assert not got[labels == -1].any()
    assert np.array_equal(got, naive.issues)


@pytest.mark.parametrize("downsample", [2, 4])
def test_mode_pooling_matches_a_loop_implementation(downsample):
    labels, probs, _ = well_posed_case(2, 4, 16, 16, "float32")
    labels = labels.copy()
    labels[0, :4, :4] = 255
    naive = naive_issues(labels, probs, downsample=downsample, pooling="mode", ignore=255)
    assert not naive.tie_at_cut
    got = find_label_issues(
        labels, probs, downsample=downsample, label_pooling="mode", ignore_index=255
    )
    assert np.array_equal(got, naive.issues)


def test_mode_pooling_breaks_vote_ties_to_the_smaller_class():
    from segaudit.engine.pooling import pool_labels

    block = np.array([[[3, 1], [1, 3]]])
    assert pool_labels(block, 2, "mode", None)[0, 0, 0] == 1
    block = np.array([[[2, 2], [0, 255]]])
    assert pool_labels(block, 2, "mode", 255)[0, 0, 0] == 2
    assert pool_labels(np.full((1, 2, 2), 255), 2, "mode", 255)[0, 0, 0] == 255
    assert pool_labels(np.array([[[0, 1], [1, 1]]]), 2, "mean", None)[0, 0, 0] == 1


@pytest.mark.parametrize(
    ("n", "k", "h", "w", "dtype", "downsample", "reader"),
    [
        (4, 19, 16, 24, "float32", 1, "mispredicted"),
        (4, 5, 16, 24, "float16", 1, "mispredicted"),
        (3, 5, 16, 16, "float32", 2, "stored"),
    ],
)
def test_cut_refinement_reads_records_below_every_top_probability(
    monkeypatch, n, k, h, w, dtype, downsample, reader
):
    # Below (1 - tol) / K every pixel is mispredicted, so a boundary bin there is refined
    # from the mispredicted pixels' records alone; above it, from every stored score.
    readers = []
    original = select._refine

    def spy(stats, prefix, shift, reader, executor=None):
        readers.append(reader.source)
        return original(stats, prefix, shift, reader, executor)

    monkeypatch.setattr(select, "_refine", spy)
    labels, probs, _ = well_posed_case(n, k, h, w, dtype, downsample=downsample)
    got = find_label_issues(labels, probs, downsample=downsample, label_pooling="mean")
    assert np.array_equal(got, reference(labels, probs, downsample=downsample))
    assert readers == [reader]


@pytest.mark.parametrize("batch_size", [None, 3 * 4 * 4])  # one batch, or one image a batch
def test_ties_below_every_top_probability_are_shared_out_from_the_records(
    monkeypatch, batch_size
):
    # Three images of 16 pixels, K=3. Every pixel labelled 0 has s = 0.2, below any
    # pixel's top probability (at least 1/3), so all of them are mispredicted (class 1 at
    # 0.7 or 0.75) and in the records; the 8 an image whose p_1 = 0.75 reach t_1 = 0.72,
    # so m = 24 of 42 tied pixels: the first 24 in flat order (image 0's 14 and image
    # 1's first 10), across images and batches, found without reading a stored score.
    from segaudit.engine.sinks import MemorySink

    n, k, h, w = 3, 3, 4, 4
    probs = np.empty((n, k, h, w), np.float32)
    probs[:, 0], probs[:, 1], probs[:, 2] = 0.2, 0.7, 0.1
    labels = np.zeros((n, h, w), np.int64)
    labels[:, 3, 2:] = 1  # 2 pixels an image labelled 1, s = 0.72 (t_1 = 0.72)
    probs[:, 1, 3, 2:], probs[:, 2, 3, 2:] = 0.72, 0.08
    probs[:, 1, 1:3, :], probs[:, 2, 1:3, :] = 0.75, 0.05  # rows 1 and 2 reach t_1
    naive = naive_issues(labels, probs)
    assert naive.tie_at_cut and naive.m == 24
    read = []
    original = MemorySink.read

    def spy(sink, name, index):
        read.append(name)
        return original(sink, name, index)

    monkeypatch.setattr(MemorySink, "read", spy)
    mask = find_label_issues(labels, probs, batch_size=batch_size, n_jobs=1)
    assert np.array_equal(mask, naive.issues)
    assert np.array_equal(mask, reference(labels, probs))
    assert mask[0].sum() == 14 and mask[1].sum() == 10 and not mask[2].any()
    assert "pixel_scores" not in read
