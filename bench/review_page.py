"""The review page at scale: how soon it is usable, and how big its folder is.

    .venv/bin/python bench/review_page.py                   # 2,000 images of 128×256, 8 classes
    .venv/bin/python bench/review_page.py --images 200 --repeat 1      # a quick look

Makes (once, reused from ``bench/data/``) a ``segaudit synth`` set, scans it, renders
its review page with the defaults (every flagged image), then opens the page from
``file://`` in headless Chromium (Debian's ``chromium``, driven by Playwright) ``--repeat``
times, each in a fresh browser context (nothing cached), and reads the browser's own
clock: ``window.reviewReady``, the page's ``performance.now()`` when its list is drawn and
takes input, counted from the start of navigation; and the load event's end. Then it
opens the worst item (``j``) and times its detail view the same way.

Targets: usable in under 2 s; under 5 MB of folder per 100 images. Prints a table
and one JSON line; writes ``bench/results/review_page.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEGAUDIT = [sys.executable, "-m", "segaudit"]
TARGET_MS = 2000.0
TARGET_MB_PER_100 = 5.0


def run(*args: object) -> float:
    """Run segaudit with ``args``; its wall time in seconds."""
    started = time.perf_counter()
    subprocess.run([*SEGAUDIT, *(str(a) for a in args)], check=True, cwd=ROOT)
    return time.perf_counter() - started


def prepare(options: argparse.Namespace) -> tuple[Path, dict[str, float]]:
    """The synth set and its scan (made once), and the page rendered afresh."""
    name = f"review-n{options.images}-k{options.classes}-{options.height}x{options.width}"
    folder = ROOT / "bench" / "data" / f"{name}-s{options.seed}"
    data, scanned = folder / "data", folder / "run"
    seconds: dict[str, float] = {}
    if not (data / "synth.json").is_file():
        shutil.rmtree(data, ignore_errors=True)
        seconds["synth"] = run(
            "synth", data, "--images", options.images, "--height", options.height,
            "--width", options.width, "--classes", options.classes, "--seed", options.seed,
            "--dtype", "float16",
        )  # fmt: skip
    if not (scanned / "summary.json").is_file():
        seconds["scan"] = run("scan", data, "-o", scanned, "--quiet")
    seconds["render"] = run("render", scanned, "--quiet")
    return scanned / "render", seconds


def folder_bytes(folder: Path) -> dict[str, int]:
    """Bytes of the page's files, by kind (photos, thumbnails, maps, the rest)."""
    kinds = {"p": "photos", "t": "thumbnails", "m": "maps"}
    sizes: dict[str, int] = {}
    for path in folder.iterdir():
        kind = kinds.get(path.name[0], "page") if path.name[1:2].isdigit() else "page"
        sizes[kind] = sizes.get(kind, 0) + path.stat().st_size
    return sizes


def open_page(browser, url: str) -> dict[str, float]:
    """One visit in a fresh context: the browser's own times, in milliseconds."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.goto(url)
    page.wait_for_function("() => window.reviewReady !== undefined")
    timing = page.evaluate(
        """() => {
            const nav = performance.getEntriesByType('navigation')[0];
            return {usable_ms: window.reviewReady, load_ms: nav.loadEventEnd,
                    dom_ms: nav.domContentLoadedEventEnd};
        }"""
    )
    if timing["load_ms"] == 0:  # the load event may end after reviewReady
        page.wait_for_function(
            "() => performance.getEntriesByType('navigation')[0].loadEventEnd > 0"
        )
        timing["load_ms"] = page.evaluate(
            "() => performance.getEntriesByType('navigation')[0].loadEventEnd"
        )
    start = page.evaluate("() => performance.now()")
    page.keyboard.press("j")
    page.wait_for_function("() => document.documentElement.dataset.detail !== undefined")
    timing["detail_ms"] = page.evaluate("() => performance.now()") - start
    rows = "() => document.querySelectorAll('#rows .row').length"
    timing["rows_in_document"] = page.evaluate(rows)
    context.close()
    return timing


def measure(folder: Path, repeat: int) -> list[dict[str, float]]:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("needs the chromium browser: apt-get install chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium)
        visits = [open_page(browser, (folder / "index.html").as_uri()) for _ in range(repeat)]
        browser.close()
    return visits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--classes", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args()
    folder, seconds = prepare(options)
    data = json.loads((folder / "data.js").read_text().split(" = ", 1)[1].rstrip(";\n"))
    shown = len(data["images"]["rows"])
    regions = len((data.get("regions") or {}).get("rows") or [])
    sizes = folder_bytes(folder)
    per_100 = sum(sizes.values()) / 1e6 / shown * 100 if shown else 0.0
    visits = measure(folder, options.repeat)
    best = min(visits, key=lambda v: v["usable_ms"])
    result = {
        "images": options.images, "size": f"{options.height}x{options.width}",
        "classes": options.classes, "images_on_page": shown, "regions_on_page": regions,
        "usable_ms_best": round(best["usable_ms"], 1),
        "usable_ms_all": [round(v["usable_ms"], 1) for v in visits],
        "load_ms_best": round(min(v["load_ms"] for v in visits), 1),
        "detail_ms_best": round(min(v["detail_ms"] for v in visits), 1),
        "rows_in_document": best["rows_in_document"],
        "folder_mb": round(sum(sizes.values()) / 1e6, 2),
        "mb_per_100_images": round(per_100, 3),
        "bytes_by_kind": sizes, "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "targets": {"usable_ms": TARGET_MS, "mb_per_100_images": TARGET_MB_PER_100},
    }  # fmt: skip
    lines = [
        f"review page: {options.images} images of {result['size']}, {options.classes} classes; "
        f"{shown} images and {regions} regions on the page",
        "",
        "| measure | value | target |",
        "|---|---:|---:|",
        f"| usable (window.reviewReady, best of {options.repeat}) | "
        f"{result['usable_ms_best']:.0f} ms | < {TARGET_MS:.0f} ms |",
        f"| load event end | {result['load_ms_best']:.0f} ms | |",
        f"| first detail view (j) | {result['detail_ms_best']:.0f} ms | |",
        f"| folder | {result['folder_mb']:.1f} MB | |",
        f"| folder per 100 images | {per_100:.2f} MB | < {TARGET_MB_PER_100:.0f} MB |",
        f"| render (wall) | {seconds['render']:.1f} s | |",
    ]
    print("\n".join(lines))
    print(json.dumps(result))
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "review_page.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "review_page.md").write_text("\n".join(lines) + "\n")
    if result["usable_ms_best"] >= TARGET_MS or per_100 >= TARGET_MB_PER_100:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
