"""Issue regions on rendered pages: boxes at their scaled place, captions, crop tiles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from segaudit.cli import app
from segaudit.report.colors import distinct_colors
from segaudit.report.panels import (
    FRAME_COLOUR,
    GAP,
    MARGIN,
    Sources,
    build_panels,
    compose,
)
from segaudit.report.photos import run_photos
from segaudit.report.region_pictures import BOX_COLOUR, BOX_OUTLINE, TILE, caption, tag_place
from segaudit.report.regions import read_regions_table
from segaudit.report.render import RunArray
from segaudit.runs.run import open_run

SAMPLE = Path(__file__).resolve().parent.parent / "sample_data"
pytestmark = pytest.mark.skipif(
    not (SAMPLE / "synth.json").is_file(), reason="sample_data not generated"
)
runner = CliRunner()


def scan(out: Path) -> Path:
    result = runner.invoke(app, ["scan", str(SAMPLE), "-o", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return scan(tmp_path_factory.mktemp("regions") / "run")


def render(run: Path, out: Path, *args: str) -> list[Path]:
    args = ("--out", str(out), "--quiet", "--pages", *args)
    result = runner.invoke(app, ["render", str(run), *args])
    assert result.exit_code == 0, result.output
    return sorted(out.glob("rank*.png"))


def load(path: Path) -> np.ndarray:
    with Image.open(path) as png:
        return np.asarray(png.convert("RGB"))


def image_of(page: Path) -> int:
    return int(page.name.split("_image")[1][:5])


def panel_boxes(run: Path, image: int, *, zoom: int = 1, max_width: int | None = None) -> list:
    """The panel boxes of image ``image``'s page, as :func:`compose` lays them out."""
    opened = open_run(run)
    sources = Sources(
        RunArray(opened, "issues"),
        RunArray(opened, "labels"),
        RunArray(opened, "pred_labels"),
        run_photos(opened, None),
        opened.num_classes,
        opened.ignore_index,
    )
    colors = distinct_colors(opened.num_classes)
    panels = build_panels(sources, image, colors, zoom=zoom, max_width=max_width)
    return compose(panels, "", max_width=max_width)[1]


def drawn_regions(run: Path, image: int, limit: int = 5) -> list[dict]:
    rows = [row for row in read_regions_table(run) if row["image"] == image]
    return sorted(rows, key=lambda row: row["score"])[:limit]


def isolated(rows: list[dict], shape: tuple[int, int]) -> dict:
    """A drawn region whose box, widened for its tag, is clear of the others and the edges."""
    for row in rows:
        x0, y0, x1, y1 = row["x0"], row["y0"], row["x1"], row["y1"]
        inside = x0 >= 4 and y0 >= 16 and x1 < shape[1] - 4 and y1 < shape[0] - 4
        clear = all(
            other["x1"] < x0 - 20 or other["x0"] > x1 + 20
            or other["y1"] < y0 - 20 or other["y0"] > y1 + 20
            for other in rows if other is not row
        )  # fmt: skip
        if inside and clear:
            return row
    raise AssertionError("no isolated region on this page")


def ring(pixels: np.ndarray, left: int, top: int, right: int, bottom: int) -> np.ndarray:
    """The pixels of the 1-pixel rectangle (left, top)-(right, bottom), inclusive."""
    return np.concatenate(
        [
            pixels[top, left : right + 1],
            pixels[bottom, left : right + 1],
            pixels[top : bottom + 1, left],
            pixels[top : bottom + 1, right],
        ]
    )


def scaled(low: int, high: int, length: int, size: int) -> tuple[int, int]:
    """Panel pixels of source pixels low..high: zoomed by an integer, or max-pooled."""
    if size >= length:
        assert size % length == 0
        factor = size // length
        return low * factor, high * factor + factor - 1
    return low * size // length, high * size // length


@pytest.mark.parametrize(
    ("zoom", "max_width"), [(1, None), (2, None), (1, 400)], ids=["native", "zoom2", "shrunk"]
)
def test_boxes_sit_just_outside_the_scaled_region_box(run: Path, tmp_path, zoom, max_width):
    args = ["--top", "1", "--zoom", str(zoom)]
    args += ["--max-width", str(max_width)] if max_width else []
    (page_path,) = render(run, tmp_path / "with", *args)
    (plain_path,) = render(run, tmp_path / "plain", *args, "--regions", "0")
    image = image_of(page_path)
    page, plain = load(page_path), load(plain_path)
    shape = open_run(run).read("issues", image).shape
    boxes = panel_boxes(run, image, zoom=zoom, max_width=max_width)
    row = isolated(drawn_regions(run, image), shape)
    for panel in (boxes[0], boxes[-1]):  # photo + issues, and issues alone
        left, top, right, bottom = panel
        x0, x1 = scaled(row["x0"], row["x1"], shape[1], right - left)
        y0, y1 = scaled(row["y0"], row["y1"], shape[0], bottom - top)
        x0, x1, y0, y1 = x0 + left, x1 + left, y0 + top, y1 + top
        assert (ring(page, x0 - 1, y0 - 1, x1 + 1, y1 + 1) == BOX_COLOUR).all()
        assert (ring(page, x0 - 2, y0 - 2, x1 + 2, y1 + 2) == BOX_OUTLINE).all()
        inner = (slice(y0, y1 + 1), slice(x0, x1 + 1))
        assert np.array_equal(page[inner], plain[inner])  # the region's pixels untouched
        if zoom == 2:
            assert x1 - x0 + 1 == 2 * (row["x1"] - row["x0"] + 1)
    # outside the panels the top of the page is the plain page's
    height = boxes[0][3]
    assert np.array_equal(page[:, : boxes[0][0] - 1][:height], plain[:, : boxes[0][0] - 1][:height])


def test_crop_tiles_one_per_region_each_showing_its_outline(run: Path, tmp_path) -> None:
    (page_path,) = render(run, tmp_path / "with", "--top", "1", "--regions", "3")
    (plain_path,) = render(run, tmp_path / "plain", "--top", "1", "--regions", "0")
    page, plain = load(page_path), load(plain_path)
    assert page.shape[0] > plain.shape[0] + TILE
    strip = page[plain.shape[0] - MARGIN + 1 :]  # below the panels' frames
    # each tile is framed: its top frame row runs TILE + 2 pixels in the frame grey
    framed = (strip[:, MARGIN - 1 : MARGIN + TILE + 1] == FRAME_COLOUR).all(axis=(1, 2))
    rows = np.flatnonzero(framed).tolist()
    assert len(rows) == 2 and rows[1] - rows[0] == TILE + 1  # top and bottom of the tiles
    top = rows[0] + 1
    for index in range(3):
        left = MARGIN + index * (TILE + GAP)
        tile = strip[top : top + TILE, left : left + TILE]
        assert (strip[top - 1, left - 1 : left + TILE + 1] == FRAME_COLOUR).all()
        assert (tile == BOX_COLOUR).all(-1).sum() >= 8, f"tile {index + 1} shows no outline"
    assert not (strip[top : top + TILE, MARGIN + 3 * (TILE + GAP)] == FRAME_COLOUR).all()


def test_no_regions_renders_exactly_as_before(run: Path, tmp_path) -> None:
    bare = scan(tmp_path / "bare")
    (bare / "regions.csv").unlink()
    args = ["--top", "20", "--zoom", "2"]
    without = render(bare, tmp_path / "without", *args)
    off = render(run, tmp_path / "off", *args, "--regions", "0")
    on = render(run, tmp_path / "on", *args)
    assert [p.name for p in without] == [p.name for p in off] == [p.name for p in on]
    for a, b in zip(without, off, strict=True):
        assert a.read_bytes() == b.read_bytes()
    with_regions = {row["image"] for row in read_regions_table(run)}
    for a, b in zip(without, on, strict=True):
        same = a.read_bytes() == b.read_bytes()
        assert same == (image_of(a) not in with_regions), a.name


def test_regions_option_is_checked(run: Path, tmp_path) -> None:
    result = runner.invoke(
        app, ["render", str(run), "--out", str(tmp_path / "x"), "--regions", "-1"]
    )
    assert result.exit_code == 2 and "regions must be at least 0; got -1." in result.stderr


def test_captions_escape_untrusted_names() -> None:
    row = {
        "given_name": "road\x1b[31m\n",
        "predicted_name": "c" * 500,
        "pixels": 812,
        "kind": "missing",
        "score": 0.1234,
    }
    text = caption(1, row)
    assert text.startswith("1  given road") and text.endswith(", 812 px, missing, score 0.123")
    assert "\x1b" not in text and "\n" not in text and len(text) < 200


def test_tags_do_not_cover_each_other() -> None:
    taken: list[tuple[int, int, int, int]] = []
    for _ in range(4):  # four regions at one spot: each tag finds its own free side
        taken.append(tag_place((40, 40, 50, 50), (9, 12), (100, 100), taken))
    assert len(set(taken)) == 4
