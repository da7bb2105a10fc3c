"""The review page in a real browser: headless Chromium driven by Playwright.

The page is opened from ``file://`` as a reviewer would open it from disk. Skipped only
where no ``chromium`` is installed (CI installs it, see ``.ci/run``).
"""

from __future__ import annotations

import csv
import json
import shutil
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from segaudit.cli import app
from segaudit.report.decisions import run_fingerprint
from segaudit.report.regions import read_regions_table
from segaudit.safetext import from_csv_cell

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs the chromium browser (apt-get install chromium)"
)
SAMPLE = Path(__file__).resolve().parent.parent / "sample_data"
EVIL = "<img src=x onerror=alert(1)>"


def invoke(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory) -> Path:
    """sample_data scanned and rendered with the defaults."""
    run = tmp_path_factory.mktemp("review") / "run"
    assert invoke("scan", SAMPLE, "-o", run, "--quiet").exit_code == 0
    result = invoke("render", run, "--quiet")
    assert result.exit_code == 0, result.output
    return run


class Page:
    """A page opened from disk, with every console message, error and request seen."""

    def __init__(self, context, path: Path) -> None:
        self.page = context.new_page()
        self.problems: list[str] = []
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        self.page.on(
            "console",
            lambda m: self.problems.append(f"{m.type}: {m.text}")
            if m.type in ("error", "warning")
            else None,
        )
        self.page.on("pageerror", lambda e: self.problems.append(f"pageerror: {e}"))
        self.page.on("requestfailed", lambda r: self.problems.append(f"failed: {r.url}"))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.url = path.resolve().as_uri()
        self.open()

    def open(self) -> None:
        self.page.goto(self.url)
        self.page.wait_for_function("() => window.reviewReady !== undefined")

    def rows(self) -> list[dict[str, str]]:
        """The list's rendered rows, top to bottom."""
        return self.page.eval_on_selector_all(
            "#rows .row",
            """rows => rows
                .sort((a, b) => a.dataset.index - b.dataset.index)
                .map(r => ({index: r.dataset.index, key: r.dataset.key,
                            current: r.classList.contains('current'),
                            ...Object.fromEntries(Array.from(r.children).slice(1)
                                .map(c => [c.className.split(' ')[0], c.textContent]))}))""",
        )

    def wait_detail(self, key: str) -> None:
        self.page.wait_for_function(
            "key => document.documentElement.dataset.detail === key", arg=key
        )

    def broken_images(self) -> list[str]:
        self.page.wait_for_function(
            "() => Array.from(document.images).every(i => !i.src || i.complete)"
        )
        return self.page.eval_on_selector_all(
            "img", "imgs => imgs.filter(i => i.src && !i.naturalWidth).map(i => i.src)"
        )


@pytest.fixture
def context(browser):
    made = browser.new_context(viewport={"width": 1400, "height": 900}, accept_downloads=True)
    yield made
    made.close()


def region_key(row: dict) -> str:
    return json.dumps([row["id"], str(row["region"])], separators=(",", ":"))


def test_page_opens_from_disk_with_no_errors_no_broken_images_no_network(
    context, sample_run: Path
) -> None:
    page = Page(context, sample_run / "render" / "index.html")
    regions = read_regions_table(sample_run)
    counts = page.page.text_content("#counts")
    assert counts == f"{len(regions)} regions flagged, 0 reviewed, 0 confirmed"
    page.page.keyboard.press("j")
    page.wait_detail(region_key(regions[0]))
    assert page.broken_images() == []
    assert page.page.eval_on_selector("#photo", "i => i.naturalWidth") == 128
    assert page.problems == []
    assert all(url.startswith(("file://", "data:", "blob:")) for url in page.requests)
    folder = (sample_run / "render").resolve().as_uri()
    assert all(u.startswith(folder) for u in page.requests if u.startswith("file://"))


def test_sort_by_each_column_and_filter(context, sample_run: Path) -> None:
    page = Page(context, sample_run / "render" / "index.html")
    regions = read_regions_table(sample_run)
    shown = page.rows()
    assert [r["key"] for r in shown] == [region_key(r) for r in regions[: len(shown)]]
    page.page.click("#list-head button[data-sort='size']")
    sizes = [int(r["size"].replace(",", "")) for r in page.rows()]
    assert sizes == sorted(sizes) and sizes[0] == min(r["pixels"] for r in regions)
    page.page.click("#list-head button[data-sort='size']")
    sizes = [int(r["size"].replace(",", "")) for r in page.rows()]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] == max(r["pixels"] for r in regions)
    page.page.click("#list-head button[data-sort='kind']")
    kinds = [r["kind"] for r in page.rows()]
    assert kinds == sorted(kinds)
    page.page.select_option("#f-kind", "boundary")
    expected = [r for r in regions if r["kind"] == "boundary"]
    assert {r["kind"] for r in page.rows()} == {"boundary"}
    counts = page.page.text_content("#counts")
    assert counts.endswith(f"({len(expected)} shown)")
    page.page.select_option("#f-kind", "")
    car = regions[0]["predicted_name"]
    page.page.select_option("#f-class", label=car)
    with_car = [r for r in regions if car in (r["given_name"], r["predicted_name"])]
    assert len(page.rows()) == len(with_car)
    assert all(car in row["pair"] for row in page.rows())
    pair = f"{regions[0]['given_class']}:{regions[0]['predicted_class']}"
    page.page.select_option("#f-class", "")
    page.page.select_option("#f-pair", pair)
    same_pair = [r for r in regions if (r["given_class"], r["predicted_class"]) == (
        regions[0]["given_class"], regions[0]["predicted_class"])]
    assert len(page.rows()) == len(same_pair)
    page.page.select_option("#f-pair", "")
    page.page.select_option("#mode", "images")
    images = page.rows()
    assert page.page.text_content("#counts").startswith("10 images flagged")
    scores = [float(r["score"]) for r in images]
    assert scores == sorted(scores)
    assert page.problems == []


def test_detail_view_layers_zoom_and_classes_under_the_cursor(context, sample_run: Path) -> None:
    page = Page(context, sample_run / "render" / "index.html")
    region = read_regions_table(sample_run)[0]
    page.page.keyboard.press("j")
    page.wait_detail(region_key(region))
    opacity = "id => getComputedStyle(document.getElementById(id)).opacity"
    assert page.page.evaluate(opacity, "photo") == "1"
    assert page.page.evaluate(opacity, "c-issues") == "0.6"
    assert page.page.evaluate(opacity, "c-given") == "0"
    page.page.fill("#opacity", "30")
    page.page.dispatch_event("#opacity", "input")
    assert page.page.evaluate(opacity, "c-issues") == "0.3"
    page.page.click("#views button[data-view='given']")
    assert page.page.evaluate(opacity, "c-given") == "1"
    assert page.page.evaluate(opacity, "photo") == "0"
    page.page.check("#o-predicted")
    assert page.page.evaluate(opacity, "c-predicted") == "0.3"
    page.page.click("#views button[data-view='issues']")
    assert page.page.evaluate(opacity, "c-issues") == "1"
    # Zoomed in on the region: its box in the middle of the viewer, larger than at fit.
    box = page.page.locator("#box").bounding_box()
    viewer = page.page.locator("#viewer").bounding_box()
    for axis, side in (("x", "width"), ("y", "height")):
        middle = viewer[axis] + viewer[side] / 2
        assert abs(box[axis] + box[side] / 2 - middle) < 2
    page.page.click("#fit")
    fitted = page.page.locator("#box").bounding_box()
    assert box["width"] > 1.5 * fitted["width"]
    page.page.click("#to-region")
    box = page.page.locator("#box").bounding_box()
    # The class names under the cursor are the labels at that pixel.
    labels = np.load(SAMPLE / "labels.npy", mmap_mode="r")[region["image"]]
    names = (SAMPLE / "classes.txt").read_text().split("\n")
    stage = page.page.locator("#stage").bounding_box()
    x, y = region["x0"], region["y0"]
    scale = stage["width"] / labels.shape[1]
    page.page.mouse.move(stage["x"] + (x + 0.5) * scale, stage["y"] + (y + 0.5) * scale)
    hover = page.page.text_content("#hover")
    assert hover.startswith(f"x {x}, y {y} · given: {names[labels[y, x]]} · predicted: ")
    legend = page.page.eval_on_selector_all("#legend .entry", "es => es.map(e => e.textContent)")
    assert legend == [f"{k} {name}" for k, name in enumerate(names[:8])]
    assert page.problems == []


def test_keyboard_decisions_are_kept_and_exported(
    context, sample_run: Path, tmp_path: Path
) -> None:
    page = Page(context, sample_run / "render" / "index.html")
    regions = read_regions_table(sample_run)
    keys = [region_key(r) for r in regions[:3]]
    for key, press in zip(keys, "jjj", strict=True):
        page.page.keyboard.press(press)
        page.wait_detail(key)
    page.page.keyboard.press("k")
    page.page.keyboard.press("k")
    page.wait_detail(keys[0])
    page.page.keyboard.press("y")  # real error, then on to the next
    page.wait_detail(keys[1])
    page.page.fill("#note", "a shadow, not a car")
    page.page.keyboard.press("Escape")  # leave the note field: keys are the page's again
    page.page.keyboard.press("n")
    page.wait_detail(keys[2])
    page.page.keyboard.press("u")
    expected = {keys[0]: "real error", keys[1]: "false alarm", keys[2]: "unsure"}

    def decided() -> dict[str, str]:
        return {r["key"]: r["decision"] for r in page.rows() if r["decision"]}

    assert decided() == expected
    assert page.page.text_content("#counts").startswith(
        f"{len(regions)} regions flagged, 3 reviewed, 1 confirmed"
    )
    page.open()  # a reload loses nothing
    assert decided() == expected
    assert "3 reviewed, 1 confirmed" in page.page.text_content("#counts")
    page.page.select_option("#f-decision", "false_alarm")
    assert [r["key"] for r in page.rows()] == [keys[1]]
    page.page.select_option("#f-decision", "")
    with page.page.expect_download() as download:
        page.page.click("#export")
    assert download.value.suggested_filename == "decisions.csv"
    exported = tmp_path / "decisions.csv"
    download.value.save_as(exported)
    with open(exported, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["id"], r["region"], r["decision"]) for r in rows] == [
        (regions[i]["id"], str(regions[i]["region"]), decision)
        for i, decision in enumerate(["real_error", "false_alarm", "unsure"])
    ]
    fingerprint = run_fingerprint(sample_run)
    for row, region in zip(rows, regions, strict=False):
        assert datetime.fromisoformat(row["time"].replace("Z", "+00:00")).year >= 2024
        assert row["run"] == fingerprint
        assert (int(row["given_class"]), int(row["predicted_class"])) == (
            region["given_class"], region["predicted_class"])
        assert [int(row[c]) for c in ("x0", "y0", "x1", "y1")] == [
            region["x0"], region["y0"], region["x1"], region["y1"]]
        assert float(row["score"]) == pytest.approx(region["score"])
    assert [r["note"] for r in rows] == ["", "a shadow, not a car", ""]
    assert page.problems == []
    check_eval_and_scan_with(exported, sample_run, regions, tmp_path)


def check_eval_and_scan_with(exported: Path, run: Path, regions: list, tmp_path: Path) -> None:
    """``eval --decisions`` and ``scan --reviewed`` on the file the page exported."""
    result = invoke("eval", run, "--decisions", exported, "--json")
    assert result.exit_code == 0, result.output
    reviewed = json.loads(result.stdout)["decisions"]
    region = reviewed["region"]
    assert region["all"] == {"reviewed": 3, "real_error": 1, "false_alarm": 1, "unsure": 1,
                             "precision": 0.5}  # fmt: skip
    assert sum(band["reviewed"] for band in region["bands"]) == 3
    assert reviewed["image"] is None
    table = invoke("eval", run, "--decisions", exported)
    assert table.exit_code == 0 and "0.5000" in table.stdout
    again = tmp_path / "again"
    result = invoke("scan", SAMPLE, "-o", again, "--reviewed", exported, "--quiet")
    assert result.exit_code == 0, result.output
    summary = json.loads((again / "summary.json").read_text())["reviewed"]
    alarm = regions[1]
    assert summary["false_alarms"] == 1 and summary["suppressed_regions"] == 1
    assert summary["suppressed"][0]["id"] == alarm["id"]
    assert summary["suppressed"][0]["region"] == alarm["region"]
    assert "same (given, predicted) class pair" in summary["rule"]
    kept = read_regions_table(again)
    assert len(kept) == len(regions) - 1
    key = (alarm["id"], alarm["region"])
    assert key not in {(r["id"], r["region"]) for r in kept}
    before = {(r["id"], r["region"]) for r in regions}
    assert before - {key} == {(r["id"], r["region"]) for r in kept}


def test_a_class_named_like_markup_stays_text(context, make_run, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, size=(2, 12, 16)).astype(np.uint8)
    pred = labels.copy()
    issues = np.zeros(labels.shape, bool)
    issues[:, 2:6, 3:9] = True
    pred[issues] = (labels[issues] + 1) % 3
    names = [EVIL, "</script><script>alert(2)</script>", "road"]
    photos = rng.integers(0, 256, size=(2, 12, 16, 3), dtype=np.uint8)
    ids = ["<b id=bold>x</b>", "=cmd|' /C calc'!A0"]
    run = make_run(labels, pred, issues, num_classes=3, names=names, images=photos, ids=ids)
    assert invoke("render", run, "--quiet").exit_code == 0
    page = Page(context, run / "render" / "index.html")
    page.page.select_option("#f-class", label=EVIL)  # the option's text is the name itself
    page.page.keyboard.press("j")
    page.page.wait_for_function("() => document.documentElement.dataset.detail")
    legend = page.page.eval_on_selector_all("#legend .entry", "es => es.map(e => e.textContent)")
    assert legend[:2] == [f"0 {names[0]}", f"1 {names[1]}"]
    listed = page.page.eval_on_selector_all("#rows .row .id", "cs => cs.map(c => c.textContent)")
    assert set(listed) <= set(ids) and listed
    injected = "() => document.querySelectorAll('img[src=\"x\"], #bold').length"
    assert page.page.evaluate(injected) == 0
    assert page.page.evaluate("() => document.scripts.length") == 2  # data.js, review.js
    page.page.select_option("#f-class", "")
    page.page.keyboard.press("k")
    page.page.keyboard.press("y")
    page.page.keyboard.press("y")
    with page.page.expect_download() as download:
        page.page.click("#export")
    exported = tmp_path / "xss.csv"
    download.value.save_as(exported)
    text = exported.read_text(encoding="utf-8")
    assert "\n'=cmd|' /C calc'!A0," in text  # a spreadsheet shows it as text
    with open(exported, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(from_csv_cell(r["id"]) for r in rows) == sorted(ids)
    assert {r["given_name"] for r in rows} <= set(names)
    assert page.dialogs == [] and page.problems == []


def test_the_list_stays_small_in_the_document_for_many_rows(context, tmp_path: Path) -> None:
    """10,000 rows: only the visible ones are in the document, and it is ready fast."""
    from segaudit.report.page import asset_text, data_script, index_html, page_data

    rows = [[i, f"img{i}", i / 10_000, 10 + i, 4096, 0, 1, "", 0, 64, 64, 64, 64, 0]
            for i in range(10_000)]  # fmt: skip
    data = page_data(
        title="many", notes=[], fingerprint="f" * 16, names=["a", "b"],
        colors=np.array([[0, 0, 255], [0, 255, 0]], np.uint8), ignore_index=None,
        images=rows, regions=None,
    )  # fmt: skip
    (tmp_path / "data.js").write_text(data_script(data))
    (tmp_path / "index.html").write_text(index_html("many"))
    for name in ("review.js", "review.css"):
        (tmp_path / name).write_text(asset_text(name))
    page = Page(context, tmp_path / "index.html")
    assert page.page.evaluate("() => window.reviewReady") < 2000
    assert 5 < len(page.rows()) < 60
    page.page.evaluate("() => { document.getElementById('scroller').scrollTop = 60 * 9000; }")
    page.page.wait_for_function(
        "() => Array.from(document.querySelectorAll('#rows .row'))"
        ".some(r => r.dataset.index == 9005)"
    )
    assert len(page.rows()) < 60
    assert page.page.text_content("#counts") == "10000 images flagged, 0 reviewed, 0 confirmed"


def test_decisions_made_on_a_fuller_page_of_the_run_are_all_exported(
    context, tmp_path: Path
) -> None:
    """Decisions live with the run, not the page: rendered again with fewer images, the
    page still exports the decisions made on items it no longer lists."""
    run = tmp_path / "run"
    assert invoke("scan", SAMPLE, "-o", run, "--quiet").exit_code == 0
    assert invoke("render", run, "--quiet").exit_code == 0
    regions = read_regions_table(run)
    page = Page(context, run / "render" / "index.html")
    page.page.keyboard.press("j")
    page.wait_detail(region_key(regions[0]))
    for region in regions[:3]:
        page.wait_detail(region_key(region))
        page.page.keyboard.press("n")  # false alarm, then on to the next
    worst = regions[0]["image"]
    others = [r for r in regions[:3] if r["image"] != worst]
    assert others, "the three worst regions span more than one image"
    assert invoke("render", run, "--top", 1, "--quiet").exit_code == 0
    page.open()
    listed = {r["key"] for r in page.rows()}
    assert all(region_key(r) not in listed for r in others)  # not on this page
    with page.page.expect_download() as download:
        page.page.click("#export")
    exported = tmp_path / "decisions.csv"
    download.value.save_as(exported)
    with open(exported, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted((r["id"], int(r["region"]), r["decision"]) for r in rows) == sorted(
        (r["id"], r["region"], "false_alarm") for r in regions[:3]
    )
    by_key = {(r["id"], r["region"]): r for r in regions}
    for row in rows:
        region = by_key[(row["id"], int(row["region"]))]
        assert [int(row[c]) for c in ("x0", "y0", "x1", "y1")] == [
            region["x0"], region["y0"], region["x1"], region["y1"]]
    assert page.problems == []


def test_an_unreadable_map_file_is_reported_every_time_it_is_shown(
    context, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    assert invoke("scan", SAMPLE, "-o", run, "--quiet").exit_code == 0
    assert invoke("render", run, "--quiet").exit_code == 0
    regions = read_regions_table(run)
    (run / "render" / f"m{regions[0]['image']:05d}.js").unlink()
    page = Page(context, run / "render" / "index.html")
    other = next(i for i, r in enumerate(regions) if r["image"] != regions[0]["image"])
    failed = "() => document.getElementById('hover').textContent.startsWith('cannot read')"
    page.page.keyboard.press("j")
    page.page.wait_for_function(failed)
    for _ in range(other):
        page.page.keyboard.press("j")
    page.wait_detail(region_key(regions[other]))  # another image's maps load
    assert page.page.text_content("#hover") == ""
    for _ in range(other):  # back: the failure is said again, not waited on forever
        page.page.keyboard.press("k")
    page.page.wait_for_function(failed)


def test_a_volume_page_shows_each_volume_as_its_views_with_regions_boxed(
    context, tmp_path: Path
) -> None:
    pytest.importorskip("nibabel")
    from segaudit.report.panels import Sources
    from segaudit.report.render import RunArray
    from segaudit.report.volume_views import VolumeViews
    from segaudit.runs.run import open_run

    data, run = tmp_path / "ct", tmp_path / "run"
    made = invoke("synth", data, "--volumes", "--images", 2, "--classes", 4, "--seed", 3,
                  "--shape", "16x48x56", "--corrupt-fraction", 1)  # fmt: skip
    assert made.exit_code == 0, made.output
    scanned = invoke("scan", data, "--layout", "nnunet", "--pred-probs", data / "predictions",
                     "-o", run, "--quiet")  # fmt: skip
    assert scanned.exit_code == 0, scanned.output
    assert invoke("render", run, "--quiet").exit_code == 0
    page = Page(context, run / "render" / "index.html")
    regions = read_regions_table(run)
    page.page.keyboard.press("j")
    page.wait_detail(region_key(regions[0]))
    assert page.broken_images() == []
    opened = open_run(run)
    sources = Sources(RunArray(opened, "issues"), RunArray(opened, "labels"),
                      RunArray(opened, "pred_labels"), None, opened.num_classes)  # fmt: skip
    views = VolumeViews(opened, sources, regions)
    image = regions[0]["image"]
    shown = views.sources_view().labels[image]
    assert page.page.eval_on_selector("#photo", "i => i.naturalWidth") == shown.shape[1]
    box = views.page_regions([regions[0]])[0]
    stage = page.page.locator("#stage").bounding_box()
    scale = stage["width"] / shown.shape[1]
    x, y = box["x0"], box["y0"]
    page.page.mouse.move(stage["x"] + (x + 0.5) * scale, stage["y"] + (y + 0.5) * scale)
    names = json.loads((data / "dataset.json").read_text())["labels"]
    name_of = {value: name for name, value in names.items()}
    layout = views.layout(image)
    tile = next(t for t in layout.tiles
                if t.left <= x < t.left + t.width and t.top <= y < t.top + t.height)  # fmt: skip
    depth, height, width = layout.shape
    rows, cols = {"axial": (height, width), "coronal": (depth, width),
                  "sagittal": (depth, height)}[tile.view]  # fmt: skip
    row = int((y - tile.top + 0.5) * rows / tile.height)
    col = int((x - tile.left + 0.5) * cols / tile.width)
    voxel = {"axial": (col, row, tile.at), "coronal": (col, tile.at, row),
             "sagittal": (tile.at, col, row)}[tile.view]  # fmt: skip
    labels = opened.read("labels", image).reshape(layout.shape)
    assert labels[voxel[2], voxel[1], voxel[0]] == shown[y, x]  # the picture shows that voxel
    hover = page.page.text_content("#hover")
    assert hover.startswith(
        f"{tile.view} · voxel x {voxel[0]}, y {voxel[1]}, z {voxel[2]} · "
        f"given: {name_of[int(shown[y, x])]}"
    )
    shape = opened.images.volume_shape(image)
    assert f"volume {shape[0]}×{shape[1]}×{shape[2]} (z×y×x)" in page.page.text_content("#d-info")
    assert page.problems == []
