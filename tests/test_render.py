"""Pictures: exact panel pixels, page order, legend, index.html, and `segaudit render`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from segaudit.cli import app
from segaudit.errors import RunDirectoryError
from segaudit.report.array_pages import display_issues
from segaudit.report.colors import IGNORE_GREY, ISSUE_RED, NEUTRAL_WHITE, distinct_colors
from segaudit.report.heatmap import heatmap_classes, render_legend, swap_heatmap
from segaudit.report.panels import OVERLAY_ALPHA, PHOTO_SATURATION, pooled_mask
from segaudit.report.render import page_filename, render_run
from segaudit.runs.run import open_run

IGNORE = 255
NAMES = ["road", "car <&>", "sky", "tree"]
N, H, W, K = 5, 10, 14, 4
ISSUES_PER_IMAGE = [3, 7, 0, 7, 5]  # -> ranks: image 1, 3 (tie: lower index first), 4, 0


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, K, size=(N, H, W)).astype(np.uint8)
    labels[:, 0, :2] = IGNORE
    pred = np.where(labels == IGNORE, 0, labels).astype(np.uint8)
    issues = np.zeros((N, H, W), bool)
    for image, count in enumerate(ISSUES_PER_IMAGE):
        flat = rng.choice(np.arange(2, H * W), size=count, replace=False)  # never ignored
        issues[image].flat[flat] = True
    pred[issues] = (labels[issues] + 1) % K
    photos = rng.integers(0, 256, size=(N, H, W, 3), dtype=np.uint8)
    return labels, pred, issues, photos


@pytest.fixture
def run(make_run, data) -> Path:
    labels, pred, issues, photos = data
    ids = [f"img{i}" for i in range(N)]
    ids[3] = "../../etc/<evil> id"
    return make_run(
        labels,
        pred,
        issues,
        num_classes=K,
        names=NAMES,
        ignore_index=IGNORE,
        images=photos,
        ids=ids,
    )


def load(path: Path) -> np.ndarray:
    with Image.open(path) as png:
        assert png.mode == "RGB"
        return np.asarray(png)


def find(page: np.ndarray, panel: np.ndarray) -> tuple[int, int]:
    """Where ``panel`` occurs in ``page``, exactly once."""
    height, width = panel.shape[:2]
    corners = np.argwhere((page[: 1 - height or None, : 1 - width or None] == panel[0, 0]).all(-1))
    hits = [
        (int(y), int(x))
        for y, x in corners
        if np.array_equal(page[y : y + height, x : x + width], panel)
    ]
    assert len(hits) == 1, f"panel found {len(hits)} times"
    return hits[0]


def expected_panels(data, image: int, keep: np.ndarray):
    labels, pred, _, photos = data
    colors = distinct_colors(K)
    given = np.empty((H, W, 3), np.uint8)
    given[...] = IGNORE_GREY
    valid = labels[image] != IGNORE
    given[valid] = colors[labels[image][valid]]
    issue = np.empty((H, W, 3), np.uint8)
    issue[...] = NEUTRAL_WHITE
    issue[keep] = ISSUE_RED
    photo = photos[image].astype(np.float32)
    luminance = photo @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    overlay = photo * PHOTO_SATURATION + luminance[..., None] * (1.0 - PHOTO_SATURATION)
    overlay[keep] = overlay[keep] * (1 - OVERLAY_ALPHA) + np.array(ISSUE_RED) * OVERLAY_ALPHA
    return {
        "photo": np.round(overlay).astype(np.uint8),
        "given": given,
        "predicted": colors[pred[image]],
        "issues": issue,
    }


def test_pages_show_exact_pixels_in_rank_order(run: Path, data) -> None:
    result = render_run(open_run(run), top=3, png_pages=True)
    names = sorted(p.name for p in result.out.glob("rank*.png"))
    assert names == [page.filename for page in result.pages]  # file names sort by rank
    assert [page.image for page in result.pages] == [1, 3, 4]
    assert [page.issue_pixels for page in result.pages] == [7, 7, 5]
    assert names[0] == "rank001_image00001_img1.png"
    assert names[1] == "rank002_image00003_etc_evil_id.png"  # sanitised, stays in out
    _, _, issues, _ = data
    for page in result.pages:
        image = load(result.out / page.filename)
        panels = expected_panels(data, page.image, issues[page.image])
        positions = {name: find(image, pixels) for name, pixels in panels.items()}
        xs = [positions[name][1] for name in ("photo", "given", "predicted", "issues")]
        assert xs == sorted(xs) and len({y for y, _ in positions.values()}) == 1
        assert (panels["issues"] == ISSUE_RED).all(axis=-1).sum() == page.issue_pixels
    assert (result.out / "legend.png").is_file() and (result.out / "index.html").is_file()


def test_exclude_removes_red_and_reranks(run: Path, data) -> None:
    labels, pred, issues, _ = data
    excluded = 2
    keep = issues & (labels != excluded) & (pred != excluded)
    counts = keep.sum(axis=(1, 2))
    expected_order = sorted(np.flatnonzero(counts), key=lambda i: (-counts[i], i))
    result = render_run(open_run(run), top=N, exclude=[excluded], png_pages=True)
    assert [page.image for page in result.pages] == expected_order
    for page in result.pages:
        image = load(result.out / page.filename)
        panels = expected_panels(data, page.image, keep[page.image])
        find(image, panels["issues"])  # red exactly at the kept issues, white elsewhere
        find(image, panels["photo"])
        find(image, panels["given"])  # ignored pixels grey, never red


def test_without_photos_there_are_three_panels(make_run, data, tmp_path: Path) -> None:
    labels, pred, issues, _ = data
    run = make_run(labels, pred, issues, num_classes=K, names=NAMES, ignore_index=IGNORE)
    result = render_run(open_run(run), top=1, out=tmp_path / "pages", png_pages=True)
    image = load(result.paths[0])
    panels = expected_panels(data, 1, issues[1])
    assert find(image, panels["given"])[1] < find(image, panels["issues"])[1]
    with pytest.raises(AssertionError, match="found 0 times"):
        find(image, panels["photo"])


def test_max_width_and_zoom(run: Path, data) -> None:
    result = render_run(open_run(run), top=1, zoom=8, max_width=300, png_pages=True)
    image = load(result.paths[0])
    assert image.shape[1] <= 300
    big = render_run(open_run(run), top=1, zoom=8, out=run / "big", png_pages=True)
    unscaled = load(big.paths[0])
    assert unscaled.shape[1] > 4 * W * 8
    zoomed = np.repeat(np.repeat(expected_panels(data, 1, data[2][1])["issues"], 8, 0), 8, 1)
    find(unscaled, zoomed)


def test_pooled_mask_keeps_lone_issue_pixels_when_shrinking() -> None:
    mask = np.zeros((100, 120), bool)
    mask[37, 91] = True
    small = pooled_mask(mask, (25, 30))
    assert small.sum() == 1 and small[37 // 4, 91 // 4]
    assert np.array_equal(pooled_mask(mask, (200, 240)), np.repeat(np.repeat(mask, 2, 0), 2, 1))


def test_legend_holds_every_class_name_and_colour(tmp_path: Path) -> None:
    names = [f"name{i}" for i in range(40)]
    texts = render_legend(distinct_colors(40), names, tmp_path / "legend.png", ignore_index=255)
    assert texts[:40] == [f"{i}  name{i}" for i in range(40)]
    assert texts[40:] == ["ignored (label 255)", "issue pixel"]
    pixels = load(tmp_path / "legend.png").reshape(-1, 3)
    for colour in [*distinct_colors(40).tolist(), list(IGNORE_GREY), list(ISSUE_RED)]:
        assert (pixels == colour).all(axis=1).sum() >= 50, f"swatch {colour} missing"


def test_heatmap_shows_the_most_involved_classes(tmp_path: Path) -> None:
    pixels = np.zeros((150, 150), np.int64)
    for i in range(60):
        pixels[i, i + 60] = 1000 - i  # classes 0..59 and 60..119 involved, earlier ones more
    shown = heatmap_classes(pixels)  # default: at most 30
    assert shown.tolist() == list(range(15)) + list(range(60, 75))
    labels = swap_heatmap(pixels, [f"c{i}" for i in range(150)], tmp_path / "h.png", max_classes=4)
    assert labels == ["c0", "c1", "c60", "c61"]
    assert (tmp_path / "h.png").stat().st_size < 200_000
    labels = swap_heatmap(np.zeros((3, 3), int), ["a", "b", "c"], tmp_path / "empty.png")
    assert labels == [] and (tmp_path / "empty.png").is_file()


def test_review_page_lists_images_in_rank_order_with_their_files(run: Path) -> None:
    result = render_run(open_run(run), top=4, exclude=[1])
    text = (result.out / "data.js").read_text(encoding="ascii")
    assert text.startswith("window.SEGAUDIT_REVIEW = ") and "</" not in text
    data = json.loads(text.split(" = ", 1)[1].rstrip(";\n"))
    columns = data["images"]["columns"]
    rows = [dict(zip(columns, row, strict=True)) for row in data["images"]["rows"]]
    assert [(r["image"], r["id"], r["issue_pixels"]) for r in rows] == [
        (page.image, page.image_id, page.issue_pixels) for page in result.images
    ]
    assert len(rows) == 4 and [r["image"] for r in rows][:2] == [1, 3]
    assert data["classes"]["names"] == NAMES and "../../etc/<evil> id" in {r["id"] for r in rows}
    index = (result.out / "index.html").read_text()
    assert "<evil>" not in index and "car <&>" not in index  # data reach the page as text only
    assert re.findall(r'<script src="([^"]+)"', index) == ["data.js", "review.js"]
    for row in rows:
        for prefix, suffix in (("p", "jpg"), ("t", "jpg"), ("m", "js")):
            assert (result.out / f"{prefix}{row['image']:05d}.{suffix}").is_file()
    assert result.pages == [] and not (result.out / "legend.png").exists()  # no PNG pages


def test_rerender_replaces_but_never_deletes_foreign_files(run: Path, tmp_path: Path) -> None:
    out = run / "render"
    render_run(open_run(run), top=4, png_pages=True)
    assert len(list(out.glob("rank*.png"))) == 4
    render_run(open_run(run), top=1, png_pages=True)
    assert len(list(out.glob("rank*.png"))) == 1  # no stale pages
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(RunDirectoryError, match="is not a segaudit render"):
        render_run(open_run(run), out=foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_page_filenames_sort_by_rank() -> None:
    names = [page_filename(rank, 1000 - rank, "x/y", 120, 5000) for rank in range(1, 121)]
    assert names == sorted(names) and names[0] == "rank001_image00999_x_y.png"
    assert all("/" not in name and not name.startswith(".") for name in names)


def test_display_issues_api(data, tmp_path: Path) -> None:
    labels, pred, issues, _ = data
    probs = np.eye(K, dtype=np.float32)[pred].transpose(0, 3, 1, 2)  # argmax == pred
    images = display_issues(issues, labels=labels, pred_probs=probs, top=2, ignore_index=IGNORE)
    assert len(images) == 2
    page = np.asarray(images[0])
    panels = expected_panels(data, 1, issues[1])
    find(page, panels["given"]) and find(page, panels["predicted"]) and find(page, panels["issues"])
    paths = display_issues(issues, labels=labels, class_names=NAMES, out=tmp_path / "api", top=9)
    assert [p.name for p in paths] == [
        page_filename(r, i, str(i), 9, N) for r, i in enumerate([1, 3, 4, 0], start=1)
    ]
    with pytest.raises(ValueError, match="Provide labels to allow class exclusion"):
        display_issues(issues, exclude=[1])


# --- the command ---------------------------------------------------------------------------


def test_render_command_writes_pages(run: Path) -> None:
    args = ["render", str(run), "--top", "2", "--class", "sky", "--pages"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    wrote = f"wrote the review page of 2 images and 2 PNG pages to {run / 'render'}"
    assert wrote in result.stdout
    assert "legend.png" in {p.name for p in (run / "render").glob("*.png")}
    args = ["render", str(run), "--quiet", "--out", str(run / "q"), "--pages"]
    quiet = CliRunner().invoke(app, args)
    assert quiet.exit_code == 0 and quiet.stdout == ""
    assert len(list((run / "q").glob("rank*.png"))) == 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--top", "0"], "--top must be at least 1; got 0."),
        (["--class", "bus"], "unknown class 'bus'"),
        (["--images", "/nonexistent/images.npy"], "do not exist; pass --images PATH"),
        (["--zoom", "0"], "zoom must be at least 1; got 0."),
    ],
)
def test_render_bad_input_exits_2_with_one_line(run: Path, args, message) -> None:
    result = CliRunner().invoke(app, ["render", str(run), *args])
    assert result.exit_code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (run / "render").exists()


def test_render_refuses_a_run_without_summary(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["render", str(tmp_path)])
    assert result.exit_code == 2 and "not a complete segaudit run" in result.stderr


SAMPLE = Path(__file__).resolve().parent.parent / "sample_data"


@pytest.mark.skipif(not (SAMPLE / "synth.json").is_file(), reason="sample_data not generated")
def test_sample_data_worst_pages_are_the_corrupted_images(tmp_path: Path) -> None:
    """On sample_data, the pages ranked first are exactly the images with injected errors."""
    import json

    corrupted = json.loads((SAMPLE / "synth.json").read_text())["corrupted_images"]
    run = tmp_path / "run"
    runner = CliRunner()
    assert runner.invoke(app, ["scan", str(SAMPLE), "-o", str(run), "--quiet"]).exit_code == 0
    args = ["render", str(run), "--top", str(len(corrupted)), "--quiet", "--pages"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    pages = sorted((run / "render").glob("rank*.png"))
    assert sorted(int(p.name.split("_image")[1][:5]) for p in pages) == sorted(corrupted)
    swaps = runner.invoke(app, ["swaps", str(run), "--json", "--top", "3"])
    assert swaps.exit_code == 0 and len(json.loads(swaps.stdout)) == 3
