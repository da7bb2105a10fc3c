"""Volume pictures: worst slices, orthogonal views at physical proportions, photo
windows, the panels of each slice and the mosaic they are laid out in, pixel by pixel."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from segaudit.report import volume_pictures as vp
from segaudit.report.colors import IGNORE_GREY, ISSUE_RED, NEUTRAL_WHITE, distinct_colors
from segaudit.report.panels import Sources, build_panels


def test_worst_slices_rank_by_issue_voxels_then_by_z():
    issues = np.zeros((6, 4, 4), bool)
    issues[1, :2, :2] = True  # 4
    issues[3, 0, :3] = True  # 3
    issues[4, :2, :2] = True  # 4: ties slice 1, comes after it
    issues[5, 0, 0] = True  # 1
    assert vp.worst_slices(issues, 3) == [1, 4, 3]
    assert vp.worst_slices(issues, 10) == [1, 4, 3, 5]  # only slices with an issue voxel
    assert vp.worst_slices(issues, 1) == [1]
    assert vp.worst_slices(np.zeros((7, 3, 3), bool), 3) == [3]  # none: the middle slice
    assert vp.worst_slices(issues, 0) == []


def test_orthogonal_views_pass_through_the_point():
    volume = np.zeros((5, 6, 7), np.int32)
    point = (2, 4, 1)
    volume[point] = 9
    axial, coronal, sagittal = vp.orthogonal_views(volume, point)
    assert axial.shape == (6, 7) and coronal.shape == (5, 7) and sagittal.shape == (5, 6)
    assert axial[4, 1] == coronal[2, 1] == sagittal[2, 4] == 9
    assert [int(np.count_nonzero(v)) for v in (axial, coronal, sagittal)] == [1, 1, 1]
    rgb = np.zeros((5, 6, 7, 3), np.uint8)
    rgb[point] = (1, 2, 3)
    views = vp.orthogonal_views(rgb, (2.4, 3.6, 1.2))  # a centroid: rounded
    assert [tuple(v.shape) for v in views] == [(6, 7, 3), (5, 7, 3), (5, 6, 3)]
    assert tuple(views[1][2, 1]) == (1, 2, 3)
    far = vp.orthogonal_views(volume, (99, -3, 99))  # clipped into the volume
    np.testing.assert_array_equal(far[0], volume[4])
    np.testing.assert_array_equal(far[1], volume[:, 0])
    np.testing.assert_array_equal(far[2], volume[:, :, 6])


def test_views_are_resized_to_physical_proportions():
    spacing = (2.5, 0.8, 0.8)
    assert vp.display_aspect(spacing) == pytest.approx((2.5 / 0.8, 1.0, 1.0))
    labels = np.arange(8 * 20 * 30).reshape(8, 20, 30)  # every row of every view unique
    _, coronal, sagittal = vp.orthogonal_views(labels, (3, 10, 15))
    tall = vp.physical_view(coronal, "coronal", spacing, "labels")
    assert tall.shape == (round(8 * 2.5 / 0.8), 30)  # 25 rows for 8 slices
    assert vp.physical_view(sagittal, "sagittal", spacing, "labels").shape == (25, 20)
    # nearest voxel: every row shows a slice's exact labels, in order
    rows = [int(np.flatnonzero((coronal == row).all(axis=1))[0]) for row in tall]
    assert rows == sorted(rows) and set(rows) == set(range(8))
    assert vp.view_size((20, 30), "axial", spacing) == (20, 30)
    # anisotropic in-plane pixels: the finer one is a picture pixel
    assert vp.view_size((4, 10), "sagittal", (1.0, 0.5, 0.25)) == (16, 20)
    photo = np.linspace(0, 255, 8 * 30).reshape(8, 30).astype(np.uint8)
    smooth = vp.physical_view(photo, "coronal", spacing, "photo")
    assert smooth.shape == (25, 30) and smooth.dtype == np.uint8
    assert len(np.unique(smooth[:, 0])) > 8  # bilinear: values between the slices'


def test_a_shrunk_mask_keeps_a_lone_issue_voxel():
    mask = np.zeros((40, 10), bool)
    mask[17, 3] = True
    shrunk = vp.resize_view(mask, (5, 10), "mask")  # thin slices: fewer rows than slices
    assert shrunk.sum() == 1 and shrunk[17 * 5 // 40, 3]


def test_ct_photos_use_the_soft_tissue_window():
    hu = np.array([[[-1000, -160, 40, 240, 3000]]], np.int16)
    shown = vp.window_photo(hu, "CT")
    assert shown.dtype == np.uint8
    assert shown[0, 0].tolist() == [0, 0, 128, 255, 255]
    assert vp.window_photo(hu, "ct").tolist() == shown.tolist()  # any case, as nnU-Net
    assert vp.photo_window(hu, " Ct ") == vp.Window(-160.0, 240.0)
    assert not vp.is_ct("spectral") and not vp.is_ct("T1")


def test_other_photos_are_scaled_by_percentiles_of_a_subsample():
    rng = np.random.default_rng(0)
    mr = rng.normal(500, 100, (20, 64, 64)).astype(np.float32)
    mr[0, 0, 0] = 1e6  # one bright outlier does not set white
    window = vp.photo_window(mr, "T2")
    low, high = np.percentile(mr, vp.PERCENTILES)
    assert (window.low, window.high) == pytest.approx((low, high), rel=0.02)
    shown = vp.window_photo(mr, "T2")
    assert shown[0, 0, 0] == 255 and 100 < shown.mean() < 155
    assert (shown == 0).mean() == pytest.approx(0.005, abs=0.002)
    assert (shown == 255).mean() == pytest.approx(0.005, abs=0.002)
    assert vp.window_photo(mr, "T2").tobytes() == shown.tobytes()  # the same every time


def test_percentiles_of_a_big_volume_come_from_about_a_million_voxels(monkeypatch):
    seen = []
    real = np.percentile
    monkeypatch.setattr(np, "percentile", lambda a, q: seen.append(a.size) or real(a, q))
    vp.photo_window(np.zeros((100, 200, 200), np.int16), "MR")
    assert 0.5e6 <= seen[0] <= 1.1e6


def test_a_flat_photo_is_black_and_nan_is_black():
    flat = vp.window_photo(np.full((2, 3, 3), 7.0), "MR")
    assert not flat.any()
    assert vp.Window(0.0, 10.0)(np.array([np.nan, 5.0])).tolist() == [0, 128]


def labelled_volume():
    labels = np.zeros((4, 6, 8), np.uint8)
    labels[:, 2:5, 2:6] = 1
    labels[1, 0, 0] = 255  # ignored
    predicted = labels.copy()
    predicted[labels == 255] = 0
    predicted[2, 1:3, 1:4] = 2
    issues = (predicted != labels) & (labels != 255)
    photo = np.arange(4 * 6 * 8, dtype=np.uint8).reshape(4, 6, 8)
    return labels, predicted, issues, photo


def test_slice_panels_are_the_image_pages_panels():
    labels, predicted, issues, photo = labelled_volume()
    colors = distinct_colors(3)
    found = vp.volume_panels(labels, predicted, issues, photo, [2, 1], colors, ignore_index=255)
    assert [text for text, _ in found] == ["z=2", "z=1"]
    for (_, panels), z in zip(found, [2, 1], strict=True):
        rgb = np.repeat(photo[z][..., None], 3, axis=2)
        sources = Sources(None, None, None, None, 3, 255)
        want = build_panels(sources, z, colors, arrays=(issues[z], labels[z], predicted[z], rgb))
        assert [t for t, _ in panels] == [t for t, _ in want]
        for (_, a), (_, b) in zip(panels, want, strict=True):
            np.testing.assert_array_equal(a, b)
    (_, panels), _ = found
    by_title = dict(panels)
    assert tuple(by_title["Issues (red)"][1, 1]) == ISSUE_RED
    assert tuple(by_title["Issues (red)"][0, 0]) == NEUTRAL_WHITE
    ignored = dict(found[1][1])["Given labels"][0, 0]
    assert tuple(ignored) == IGNORE_GREY
    without = vp.volume_panels(None, None, issues, None, [2], colors)
    assert [t for t, _ in without[0][1]] == ["Issues (red)"]


def test_view_panels_are_resized_views_through_the_point():
    labels, predicted, issues, photo = labelled_volume()
    spacing = (2.0, 1.0, 1.0)
    found = vp.view_panels(labels, predicted, issues, photo, (2, 1, 1), spacing,
                           distinct_colors(3), ignore_index=255)  # fmt: skip
    assert [text for text, _ in found] == ["coronal y=1", "sagittal x=1"]
    coronal, sagittal = (dict(panels) for _, panels in found)
    assert coronal["Given labels"].shape == (8, 8, 3)  # 4 slices, 2 pixels each
    assert sagittal["Given labels"].shape == (8, 6, 3)
    # the issue voxel (2, 1, 1) lands on rows 4-5 of both views
    assert tuple(coronal["Issues (red)"][4, 1]) == tuple(coronal["Issues (red)"][5, 1]) == ISSUE_RED
    assert tuple(sagittal["Issues (red)"][4, 1]) == ISSUE_RED
    assert tuple(coronal["Issues (red)"][3, 1]) == NEUTRAL_WHITE


def tile(colour, height, width):
    out = np.empty((height, width, 3), np.uint8)
    out[...] = colour
    out[0, 0] = (1, 2, 3)  # a marked corner: where the tile starts
    return out


def test_the_mosaic_puts_each_tile_where_its_box_says():
    axial = [(f"z={z}", tile((10 * z, 200, 0), 20, 30)) for z in range(5)]
    views = [
        ("coronal y=3", tile((0, 0, 200), 40, 30)),
        ("sagittal x=2", tile((0, 90, 90), 40, 20)),
    ]
    picture, boxes = vp.volume_mosaic(axial, views, columns=3)
    assert picture.dtype == np.uint8 and picture.ndim == 3
    assert [b[0] for b in boxes] == [t for t, _ in axial + views]
    for (text, left, top, width, height), (_, pixels) in zip(boxes, axial + views, strict=True):
        assert (width, height) == (pixels.shape[1], pixels.shape[0]), text
        np.testing.assert_array_equal(picture[top : top + height, left : left + width], pixels)
    lefts = [b[1] for b in boxes]
    tops = [b[2] for b in boxes]
    assert lefts[:3] == sorted(lefts[:3]) and tops[0] == tops[1] == tops[2] < tops[3]
    assert lefts[3] == lefts[0]  # a grid of three columns
    assert tops[5] == tops[6] > tops[3] and lefts[6] > lefts[5]  # the views under the slices
    # thin separators: no two tiles touch, the gap between neighbours is the separator
    assert lefts[1] - (lefts[0] + 30) >= vp.SEPARATOR
    gap = picture[tops[0] + 5, lefts[0] + 30 : lefts[1]]
    assert (gap == vp.SEPARATOR_COLOUR).all(axis=-1).any()
    # the picture holds every tile and not much more
    assert picture.shape[1] == max(b[1] + b[3] for b in boxes) + vp.SEPARATOR
    assert picture.shape[0] == max(b[2] + b[4] for b in boxes) + vp.SEPARATOR


def test_a_mosaic_without_captions_is_tiles_and_separators_only():
    picture, boxes = vp.volume_mosaic([("a", tile((255, 0, 0), 4, 5))], [], captions=False)
    assert picture.shape == (4 + 2 * vp.SEPARATOR, 5 + 2 * vp.SEPARATOR, 3)
    assert boxes == [("a", vp.SEPARATOR, vp.SEPARATOR, 5, 4)]
    assert vp.volume_mosaic([], [])[1] == []


def test_a_grey_tile_is_shown_grey():
    grey = np.full((3, 4), 77, np.uint8)
    picture, [(_, left, top, w, h)] = vp.volume_mosaic([("g", grey)], captions=False)
    assert (picture[top : top + h, left : left + w] == 77).all()


def test_the_example_mosaic_of_a_synthetic_volume(tmp_path):
    """The whole picture of a small CT-like volume: four worst slices as page panels, then
    coronal and sagittal strips at physical proportions; saved for a look."""
    spacing = (2.5, 0.8, 0.8)
    shape = (16, 48, 56)
    z, y, x = np.mgrid[: shape[0], : shape[1], : shape[2]]

    def ball(cz, cy, cx, radius):
        d = (
            ((z - cz) * spacing[0]) ** 2
            + ((y - cy) * spacing[1]) ** 2
            + ((x - cx) * spacing[2]) ** 2
        )
        return d < radius**2

    labels = np.zeros(shape, np.uint8)
    labels[ball(8, 22, 20, 11)] = 1
    labels[ball(9, 30, 40, 6)] = 2
    predicted = labels.copy()
    predicted[ball(8, 22, 20, 13) & (labels == 0)] = 1  # a boundary one ring too wide
    predicted[ball(4, 36, 18, 5)] = 2  # a structure the annotator missed
    issues = predicted != labels
    hu = (
        np.where(ball(8, 24, 28, 20), 30.0, -1000.0)
        + 80.0 * (labels == 1)
        + 120.0 * (predicted == 2)
    )
    photo = vp.window_photo(hu.astype(np.float32), "CT")
    picture, boxes = vp.mosaic_of_volume(labels, predicted, issues, photo, spacing,
                                         distinct_colors(3), slices=4)  # fmt: skip
    assert [b[0].split()[0] for b in boxes][-2:] == ["coronal", "sagittal"]
    assert len(boxes) == 6
    per_slice = issues.reshape(shape[0], -1).sum(axis=1)
    worst = [int(b[0].split()[0][2:]) for b in boxes[:4]]
    assert worst == vp.worst_slices(issues, 4)
    assert per_slice[worst[0]] == per_slice.max()
    coronal = boxes[4]
    assert coronal[4] == round(shape[0] * 2.5 / 0.8)  # 50 rows for 16 slices
    red = (picture == ISSUE_RED).all(axis=-1)
    for _, left, top, width, height in boxes:
        assert red[top : top + height, left : left + width].any()
    out = tmp_path / "mosaic.png"
    Image.fromarray(picture).save(out)
    assert Image.open(out).size == (picture.shape[1], picture.shape[0])
