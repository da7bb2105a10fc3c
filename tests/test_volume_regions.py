"""Volume regions: issue voxels grouped into 26-connected regions of one class pair.

Every case is checked against a whole-volume reference written here with scipy alone:
:func:`scipy.ndimage.label` with the 3 × 3 × 3 structure per class pair, numbered in the
raster order of each region's first voxel, thickness from
:func:`scipy.ndimage.distance_transform_cdt` (chessboard) of the padded region, and
edge fractions from a dilated map of the labelled edges. Then the cases that matter by
name: touching pairs, corner links, numbering, ``min_pixels``, spacing, map types, and a
single slice against the 2-D regions of the same image.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from segaudit.engine.regions import EDGE_REACH, REGION_COLUMNS, IssuePixels, image_regions
from segaudit.engine.volume_regions import VOLUME_REGION_COLUMNS, cube_dilation, volume_regions

SPACING = (2.5, 0.8, 0.75)


def issue_pixels(issues: np.ndarray, given: np.ndarray, predicted: np.ndarray, seed: int = 0):
    """The issue voxels of ``issues`` with their classes and made-up probabilities."""
    rng = np.random.default_rng(seed)
    index = np.flatnonzero(issues)
    return IssuePixels(
        index=index,
        given=given.ravel()[index].astype(np.uint8),
        predicted=predicted.ravel()[index].astype(np.uint8),
        score=rng.random(index.size).astype(np.float32),
        top=rng.random(index.size).astype(np.float32),
    )


def labelled_edges_near(labels: np.ndarray, ignore: int | None, reach: int) -> np.ndarray:
    """Whether each voxel is within ``reach`` (chessboard) of either voxel of a
    6-adjacent pair of different labelled classes: a whole-volume edge map, dilated."""
    valid = np.ones(labels.shape, bool) if ignore is None else labels != ignore
    edge = np.zeros(labels.shape, bool)
    for axis in range(3):
        a = [slice(None)] * 3
        b = [slice(None)] * 3
        a[axis], b[axis] = slice(1, None), slice(None, -1)
        a, b = tuple(a), tuple(b)
        pair = (labels[a] != labels[b]) & valid[a] & valid[b]
        edge[a] |= pair
        edge[b] |= pair
    return ndimage.maximum_filter(edge, size=2 * reach + 1, mode="constant", cval=False)


def thickness(shape: tuple[int, int, int], voxels: tuple[np.ndarray, ...]) -> int:
    """The largest chessboard distance of a region's voxels from its outside, beyond the
    volume's edge counting as outside along the axes longer than one voxel."""
    pad = [(1, 1) if n > 1 else (0, 0) for n in shape]
    mask = np.pad(np.zeros(shape, bool), pad)
    at = tuple(c + p[0] for c, p in zip(voxels, pad, strict=True))
    mask[at] = True
    return int(ndimage.distance_transform_cdt(mask, metric="chessboard")[at].max())


def reference_regions(issues, given, predicted, pixels, min_pixels, ignore):
    """Columns and map of the regions, from scipy.ndimage.label per class pair."""
    shape = issues.shape
    found = []
    pairs = {(int(g), int(p)) for g, p in zip(given[issues], predicted[issues], strict=True)}
    for g, p in sorted(pairs):
        mask = issues & (given == g) & (predicted == p)
        labelled, count = ndimage.label(mask, np.ones((3, 3, 3), int))
        for number in range(1, count + 1):
            flat = np.flatnonzero(labelled == number)
            if flat.size >= min_pixels:
                found.append((int(flat[0]), (g, p), flat))
    found.sort()
    near = labelled_edges_near(given, ignore, EDGE_REACH)
    position = {int(q): i for i, q in enumerate(pixels.index)}
    rows = {name: [] for name in VOLUME_REGION_COLUMNS}
    region_map = np.zeros(shape, np.int64)
    for number, (_, (g, p), flat) in enumerate(found, 1):
        z, y, x = np.unravel_index(flat, shape)
        at = [position[int(q)] for q in flat]
        region_map[z, y, x] = number
        values = {
            "region": number, "given_class": g, "predicted_class": p, "pixels": flat.size,
            "volume_mm3": flat.size * np.prod(SPACING),
            "x0": x.min(), "y0": y.min(), "z0": z.min(),
            "x1": x.max(), "y1": y.max(), "z1": z.max(),
            "centroid_x": x.mean(), "centroid_y": y.mean(), "centroid_z": z.mean(),
            "mean_self_confidence": np.asarray(pixels.score, np.float64)[at].mean(),
            "mean_predicted_probability": np.asarray(pixels.top, np.float64)[at].mean(),
            "edge_fraction": near[z, y, x].mean(),
            "thickness": thickness(shape, (z, y, x)),
        }  # fmt: skip
        for name, value in values.items():
            rows[name].append(value)
    return rows, region_map


def random_case(shape, seed, classes=4, density=0.45, ignore=None, block=3):
    """Blocky given labels (with some ``ignore`` voxels), predictions that differ at a
    random ``density`` of voxels: dense enough that pairs touch and regions merge."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, classes, tuple(max(1, n // block + 1) for n in shape))
    cube = np.ones((block,) * 3, int)
    given = np.kron(coarse, cube)[tuple(slice(0, n) for n in shape)]
    if ignore is not None:
        given = np.where(rng.random(shape) < 0.02, ignore, given)
    issues = rng.random(shape) < density
    predicted = np.where(issues, (given + rng.integers(1, classes, shape)) % classes, given)
    predicted = np.where(given == ignore, 0, predicted) if ignore is not None else predicted
    return issues, given.astype(np.uint8), predicted.astype(np.uint8)


def assert_matches_reference(issues, given, predicted, *, min_pixels=1, ignore=None, seed=0):
    pixels = issue_pixels(issues, given, predicted, seed)
    got = volume_regions(issues.shape, pixels, given, spacing=SPACING, ignore=ignore,
                         min_pixels=min_pixels)  # fmt: skip
    want, want_map = reference_regions(issues, given, predicted, pixels, min_pixels, ignore)
    assert tuple(got.columns) == VOLUME_REGION_COLUMNS
    for name in VOLUME_REGION_COLUMNS:
        np.testing.assert_allclose(got.columns[name], np.asarray(want[name], np.float64),
                                   rtol=0, atol=1e-9, err_msg=name)  # fmt: skip
    np.testing.assert_array_equal(got.region_map, want_map)
    assert got.region_map.dtype == np.uint32
    return got


SHAPES = [(6, 9, 11), (4, 4, 4), (1, 13, 17), (7, 1, 12), (5, 8, 1), (1, 1, 20), (9, 1, 1),
          (3, 10, 10), (2, 2, 2)]  # fmt: skip


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_volumes_equal_the_scipy_reference(shape, seed):
    issues, given, predicted = random_case(shape, seed)
    assert_matches_reference(issues, given, predicted, seed=seed)


@pytest.mark.parametrize(
    "shape", [(10, 14, 16), (1, 20, 24), (12, 1, 15), (10, 14, 1), (1, 1, 30), (30, 1, 1)]
)
@pytest.mark.parametrize("seed", [0, 1])
def test_thick_regions_equal_the_scipy_reference(shape, seed):
    """Predictions that are the given blocks shifted: solid chunks of one pair, thick
    enough to have interior voxels, in volumes thin along any axis."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 3, tuple(n // 5 + 1 for n in shape))
    given = np.kron(coarse, np.ones((5, 5, 5), int))[tuple(slice(0, n) for n in shape)]
    predicted = np.roll(given, int(rng.integers(3, 5)), axis=int(np.argmax(shape)))
    given, predicted = given.astype(np.uint8), predicted.astype(np.uint8)
    got = assert_matches_reference(given != predicted, given, predicted, seed=seed)
    assert got.columns["thickness"].max() >= 2


@pytest.mark.parametrize("ignore", [None, 3, 255, 300])
def test_edge_fraction_follows_the_ignore_rule_of_images(ignore):
    """Ignored voxels are no class: no edge between them and a class. An ignore value
    the labels' type cannot hold (300 in uint8) matches nothing."""
    label_ignore = 255 if ignore == 300 else ignore
    issues, given, predicted = random_case((16, 18, 20), 5, ignore=label_ignore, block=8,
                                           density=0.2)  # fmt: skip
    reference_ignore = None if ignore == 300 else ignore
    pixels = issue_pixels(issues, given, predicted)
    got = volume_regions(issues.shape, pixels, given, spacing=SPACING, ignore=ignore,
                         min_pixels=1)  # fmt: skip
    want, _ = reference_regions(issues, given, predicted, pixels, 1, reference_ignore)
    np.testing.assert_allclose(got.columns["edge_fraction"], want["edge_fraction"], atol=1e-12)
    assert 0 < got.columns["edge_fraction"].mean() < 1


@pytest.mark.parametrize("shape", [(9, 10, 11), (1, 7, 8), (3, 1, 2), (1, 1, 1), (2, 6, 1)])
@pytest.mark.parametrize("reach", [0, 1, 2, 3])
def test_cube_dilation_is_scipys_maximum_filter(shape, reach):
    mask = np.random.default_rng(reach).random(shape) < 0.05
    want = ndimage.maximum_filter(mask, size=2 * reach + 1, mode="constant", cval=False)
    np.testing.assert_array_equal(cube_dilation(mask, reach), want)


@pytest.mark.parametrize("min_pixels", [1, 3, 10, 40])
def test_min_pixels_drops_small_regions_from_list_and_map(min_pixels):
    issues, given, predicted = random_case((6, 12, 12), 4, density=0.3)
    got = assert_matches_reference(issues, given, predicted, min_pixels=min_pixels)
    assert (got.columns["pixels"] >= min_pixels).all()
    if min_pixels > 1:
        assert np.count_nonzero(got.region_map) < np.count_nonzero(issues)


def test_thick_blobs_and_slabs_get_their_chessboard_thickness():
    shape = (12, 14, 16)
    issues = np.zeros(shape, bool)
    issues[1:10, 1:10, 1:10] = True  # a 9-voxel cube: depth 5 at its centre
    issues[:, 11:13, :] = True  # a slab two voxels thick, touching the volume's edges
    given = np.zeros(shape, np.uint8)
    predicted = np.where(issues, 1, 0).astype(np.uint8)
    predicted[:, 11:13, :] = 2
    got = assert_matches_reference(issues, given, predicted)
    assert list(got.columns["thickness"]) == [1, 5]  # the slab starts in slice 0


def test_touching_pairs_are_separate_regions_and_corners_join_one_pair():
    shape = (3, 3, 3)
    issues = np.zeros(shape, bool)
    given = np.zeros(shape, np.uint8)
    predicted = np.zeros(shape, np.uint8)
    issues[0, 0, 0] = issues[1, 1, 1] = issues[2, 2, 2] = True  # a diagonal: corners only
    predicted[issues] = 1
    issues[0, 0, 1] = True  # touches (0,0,0) face to face, another pair
    predicted[0, 0, 1] = 2
    got = assert_matches_reference(issues, given, predicted)
    assert got.count == 2
    assert list(got.columns["pixels"]) == [3, 1]
    assert list(got.columns["predicted_class"]) == [1, 2]
    assert got.region_map[2, 2, 2] == 1 and got.region_map[0, 0, 1] == 2


def test_regions_are_numbered_by_their_first_voxel_in_z_y_x_order():
    shape = (4, 5, 6)
    issues = np.zeros(shape, bool)
    given = np.zeros(shape, np.uint8)
    predicted = np.zeros(shape, np.uint8)
    issues[2:4, 0, 0] = True  # large in z, but starts late
    issues[0, 4, 5] = True  # a single voxel, first in raster order
    issues[1, 0:5, 3] = True  # starts in slice 1, row 0
    issues[1, 2, 0] = True  # slice 1, row 2: after the column above
    predicted[issues] = 1
    got = assert_matches_reference(issues, given, predicted)
    assert [int(got.region_map[z, y, x]) for z, y, x in
            [(0, 4, 5), (1, 0, 3), (1, 2, 0), (2, 0, 0)]] == [1, 2, 3, 4]  # fmt: skip
    assert list(got.columns["z0"]) == [0, 1, 1, 2]
    assert list(got.columns["z1"]) == [0, 1, 1, 3]


def test_volume_is_voxels_times_spacing_and_the_map_takes_the_asked_type():
    issues, given, predicted = random_case((5, 6, 7), 9, density=0.6)
    pixels = issue_pixels(issues, given, predicted)
    got = volume_regions(issues.shape, pixels, given, spacing=(3.0, 0.5, 0.25),
                         map_dtype=np.uint16, min_pixels=1)  # fmt: skip
    np.testing.assert_allclose(got.columns["volume_mm3"], got.columns["pixels"] * 0.375)
    assert got.region_map.dtype == np.uint16 and got.region_map.shape == (5, 6, 7)
    assert int(got.region_map.max()) == got.count


def test_no_issue_voxels_and_only_specks_give_empty_columns():
    shape = (3, 4, 5)
    given = np.zeros(shape, np.uint8)
    empty = volume_regions(shape, issue_pixels(np.zeros(shape, bool), given, given), given,
                           spacing=SPACING)  # fmt: skip
    issues = np.zeros(shape, bool)
    issues[1, 1, 1] = True
    specks = volume_regions(shape, issue_pixels(issues, given, given + 1), given,
                            spacing=SPACING, min_pixels=2)  # fmt: skip
    for found in (empty, specks):
        assert found.count == 0 and not found.region_map.any()
        assert tuple(found.columns) == VOLUME_REGION_COLUMNS
        assert all(found.columns[name].size == 0 for name in VOLUME_REGION_COLUMNS)
        assert found.columns["pixels"].dtype == np.int64


def test_the_sheet_of_a_volume_is_accepted_as_its_labels():
    issues, given, predicted = random_case((4, 6, 8), 3)
    pixels = issue_pixels(issues, given, predicted)
    kwargs = {"spacing": SPACING, "min_pixels": 1}
    a = volume_regions(issues.shape, pixels, given, **kwargs)
    b = volume_regions(issues.shape, pixels, given.reshape(4 * 6, 8), **kwargs)
    for name in VOLUME_REGION_COLUMNS:
        np.testing.assert_array_equal(a.columns[name], b.columns[name])


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("ignore", [None, 2])
def test_a_single_slice_gives_the_regions_of_its_image(seed, ignore):
    """On one slice, 26-connectivity is the images' 8-connectivity: every image column
    (thickness and edge fraction included) and the map are the 2-D ones, bit for bit."""
    issues, given, predicted = random_case((1, 23, 31), seed, density=0.35, ignore=ignore)
    pixels = issue_pixels(issues, given, predicted, seed)
    volume = volume_regions(issues.shape, pixels, given, spacing=SPACING, ignore=ignore,
                            min_pixels=3)  # fmt: skip
    image = image_regions(issues.shape[1:], pixels, given[0], ignore=ignore, min_pixels=3)
    assert image.count > 5
    for name in REGION_COLUMNS:
        np.testing.assert_array_equal(volume.columns[name], image.columns[name], err_msg=name)
    np.testing.assert_array_equal(volume.region_map[0], image.region_map)
    assert (volume.columns["z0"] == 0).all() and (volume.columns["centroid_z"] == 0).all()


def test_a_large_volume_takes_well_under_two_seconds():
    import time

    shape = (128, 256, 256)
    rng = np.random.default_rng(0)
    given = np.kron(rng.integers(0, 6, (16, 32, 32)), np.ones((8, 8, 8), int)).astype(np.uint8)
    issues = ndimage.binary_dilation(rng.random(shape) < 0.005, np.ones((3, 3, 3), bool))
    predicted = np.where(issues, (given + 1 + (rng.random(shape) < 0.5)) % 6, given)
    index = np.flatnonzero(issues)
    probability = np.full(index.size, 0.1, np.float32)
    given_of, predicted_of = given.ravel()[index], predicted.ravel()[index].astype(np.uint8)
    pixels = IssuePixels(index, given_of, predicted_of, probability, 1 - probability)
    assert 0.8e6 < index.size < 2e6
    start = time.perf_counter()
    found = volume_regions(shape, pixels, given, spacing=SPACING)
    elapsed = time.perf_counter() - start
    assert found.count > 1000
    assert elapsed < 6.0  # about 1 s on one free core; room for a busy machine
