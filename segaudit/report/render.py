"""``segaudit render`` and ``swaps`` on a run, and the reference-compatible
``display_issues``: which images are shown, the review page (``index.html``, written by
:mod:`segaudit.report.page`), the PNG pages and legend beside it when asked for, the heat
map, and the folder they are published in (whole, or not at all).

The panels are drawn by :mod:`segaudit.report.panels`, the legend and heat map by
:mod:`segaudit.report.heatmap`, each page's regions by
:mod:`segaudit.report.region_pictures`.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segaudit.errors import (
    InvalidInputError,
    RunDirectoryError,
    SegauditError,
)
from segaudit.progress import NullProgress, Progress
from segaudit.report.colors import distinct_colors
from segaudit.report.heatmap import _save_png, heatmap_pixels, legend_pixels
from segaudit.report.page import PageImage, write_review_page
from segaudit.report.panels import Sources, build_panels, compose, image_arrays
from segaudit.report.photos import run_photos
from segaudit.report.swaps import (
    IssueTally,
    atomic_outputs,
    check_filters,
    check_same_run,
    run_swaps,
    write_failure,
    write_swap_rows,
    writing_into_run,
)
from segaudit.runs.durability import replace_by_renames
from segaudit.runs.rundir import RENDER_FILES, RENDER_MARKER, pid_alive
from segaudit.safetext import from_csv_cell, printable

MARKER = RENDER_MARKER
DEFAULT_REGIONS = 5
"""Issue regions boxed on each page of a run with ``regions.csv``."""
RENDER_ENTRY = RENDER_FILES
"""Every name :func:`write_pages` writes into its folder; nothing else may be replaced."""


@dataclass
class PageInfo:
    """What one page shows: an image and its numbers."""

    rank: int
    image: int
    image_id: str
    issue_pixels: int
    pixels: int
    score: float | None = None
    filename: str = ""

    @property
    def header(self) -> str:
        """The line above the panels."""
        parts = [f"#{self.rank}   image {self.image}"]
        if self.image_id != str(self.image):
            parts[0] += f" ({printable(self.image_id)})"
        fraction = self.issue_pixels / max(1, self.pixels)
        parts.append(f"{self.issue_pixels:,} issue pixels ({fraction:.2%})")
        if self.score is not None:
            parts.append(f"score {self.score:.4f}")
        return "   |   ".join(parts)


@dataclass
class RenderResult:
    """Files written by :func:`render_run` or :func:`display_issues`."""

    out: Path
    pages: list[PageInfo] = field(default_factory=list)
    """The PNG pages written (none without ``png_pages``)."""
    legend: Path | None = None
    index: Path | None = None
    images: list[PageInfo] = field(default_factory=list)
    """Every image on the review page, worst first."""

    @property
    def paths(self) -> list[Path]:
        return [self.out / page.filename for page in self.pages]


def worst_images(per_image: np.ndarray, top: int) -> np.ndarray:
    """Indices of the ``top`` images with the most issue pixels (ties by index), none empty."""
    order = np.lexsort((np.arange(len(per_image)), -per_image))
    return order[per_image[order] > 0][:top]


def safe_name(text: str, limit: int = 40) -> str:
    """``text`` reduced to characters safe in a file name (no separators, no leading dot)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")[:limit]


def page_filename(rank: int, image: int, image_id: str, top: int, num_images: int) -> str:
    """``rank003_image00017[_id].png``: zero-padded so names sort by rank."""
    name = f"rank{rank:0{max(3, len(str(top)))}d}_image{image:0{max(5, len(str(num_images - 1)))}d}"
    suffix = safe_name(image_id) if image_id != str(image) else ""
    return f"{name}_{suffix}.png" if suffix else f"{name}.png"


# --- the output directory ------------------------------------------------------------------


def check_render_folder(out: Path) -> None:
    """Refuse an ``out`` that is not render's to replace.

    ``out`` may be missing, empty, or a previous render: it holds render's marker and
    nothing but the files render writes (pages, legend, index). A folder holding
    anything else, marker or not, is refused, so segaudit never deletes files it did
    not write.
    """
    try:
        if out.is_symlink() or (out.exists() and not out.is_dir()):
            raise RunDirectoryError(
                f"{printable(out)} exists and is not a directory; choose another --out."
            )
        entries = list(os.scandir(out)) if out.is_dir() else []
        foreign = sorted(
            entry.name
            for entry in entries
            if not RENDER_ENTRY.fullmatch(entry.name) or not entry.is_file(follow_symlinks=False)
        )
    except OSError as error:
        raise write_failure(out, error, out) from None
    if entries and (foreign or not any(entry.name == MARKER for entry in entries)):
        held = f" (it holds '{printable(foreign[0])}')" if foreign else ""
        raise RunDirectoryError(
            f"{printable(out)} exists and is not a segaudit render{held}; choose another "
            "--out or empty it (segaudit never deletes files it did not write)."
        )


# ``.OUT.segaudit-tmp-PPPPPPPPNNNNNNNN``: the folder being written (``old``: the previous
# render being replaced) beside OUT; P is the writer's pid in hex, N a random nonce.
_STAGE = re.compile(
    r"\.(?P<name>.*)\.segaudit-(?P<kind>tmp|old)-(?P<pid>[0-9a-f]{8})[0-9a-f]{8}", re.DOTALL
)


def _stage_name(out: Path, kind: str) -> Path:
    nonce = uuid.uuid4().hex[:8]
    return out.parent / f".{out.name}.segaudit-{kind}-{os.getpid():08x}{nonce}"


def clean_stale_stages(out: Path) -> None:
    """Remove what killed renders into ``out`` left beside it; bring back a lost previous one."""
    stale: list[tuple[Path, str]] = []
    with contextlib.suppress(OSError), os.scandir(out.parent) as entries:
        stale = [
            (Path(entry.path), match["kind"])
            for entry in entries
            if (match := _STAGE.fullmatch(entry.name))
            and match["name"] == out.name
            and not pid_alive(int(match["pid"], 16))
        ]
    for path, kind in sorted(stale, key=lambda item: item[1] == "tmp"):
        if kind == "old" and not os.path.lexists(out) and (path / MARKER).is_file():
            with contextlib.suppress(OSError):  # killed between the two renames
                os.rename(path, out)  # the previous render comes back
            continue
        shutil.rmtree(path, ignore_errors=True)


def _replace(stage: Path, out: Path) -> None:
    """Put the finished ``stage`` in place of ``out``; on failure ``out`` stays as it was."""
    if not os.path.lexists(out):
        os.rename(stage, out)
        return
    old = _stage_name(out, "old")
    replace_by_renames(stage, out, old)  # a kill between: clean_stale_stages restores it
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def staging_directory(
    out: Path, *, before_publish: Callable[[], None] | None = None
) -> Iterator[Path]:
    """Yield a fresh directory that replaces ``out`` as a whole on success.

    ``out`` must pass :func:`check_render_folder`, before and again just before it is
    replaced. ``before_publish`` runs last of all, to refuse when what was rendered is
    no longer current. A failed write (a full disk, a read-only folder) is one sentence
    and leaves ``out`` as it was.
    """
    out = Path(os.path.abspath(out))  # "." has no name to stage beside
    check_render_folder(out)
    stage = _stage_name(out, "tmp")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        clean_stale_stages(out)
        stage.mkdir()
        yield stage
        (stage / MARKER).write_text("written by segaudit render; safe to replace\n")
        check_render_folder(out)
        if before_publish is not None:
            before_publish()
        _replace(stage, out)
    except SegauditError:
        raise
    except OSError as error:
        where = str(error.filename or out).replace(str(stage), str(out))
        raise write_failure(where, error, out) from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def write_pages(
    out: Path,
    sources: Sources,
    pages: Sequence[PageInfo],
    names: Sequence[str],
    *,
    title: str,
    notes: Sequence[str] = (),
    max_width: int | None = None,
    zoom: int = 1,
    progress: Progress | None = None,
    before_publish: Callable[[], None] | None = None,
    png_pages: bool = True,
    region_rows: Sequence[dict[str, Any]] | None = None,
    fingerprint: str | None = None,
) -> RenderResult:
    """Write the review page (``index.html``, :mod:`segaudit.report.page`) and, with
    ``png_pages``, a PNG page per image and the legend into ``out``, replacing it whole.

    The folder is written whole and then swapped in (see :func:`staging_directory`),
    so its files are written directly, without temporary files of their own.
    """
    progress = progress or NullProgress()
    colors = distinct_colors(sources.num_classes)
    progress.start("Rendering pages", len(pages) * (2 if png_pages else 1))
    legend = png_pages and (sources.labels is not None or sources.predicted is not None)
    with staging_directory(out, before_publish=before_publish) as stage:
        if png_pages:
            for page in pages:
                _write_png_page(stage / page.filename, sources, page, colors, max_width, zoom)
                progress.advance()
        if legend:
            pixels, _ = legend_pixels(colors, names, ignore_index=sources.ignore_index)
            _save_png(pixels, stage / "legend.png")
        shown = [PageImage(p.image, p.image_id, p.issue_pixels, p.pixels, p.score) for p in pages]
        write_review_page(
            stage, sources, shown, names, colors=colors, title=title, notes=notes,
            region_rows=region_rows, fingerprint=fingerprint, max_width=max_width,
            advance=progress.advance,
        )  # fmt: skip
    progress.finish()
    written = list(pages) if png_pages else []
    return RenderResult(
        out, written, out / "legend.png" if legend else None, out / "index.html", list(pages)
    )


def _write_png_page(
    path: Path,
    sources: Sources,
    page: PageInfo,
    colors: np.ndarray,
    max_width: int | None,
    zoom: int,
) -> None:
    """One image's PNG page: its panels side by side, its regions boxed."""
    arrays = image_arrays(sources, page.image)
    panels = build_panels(
        sources, page.image, colors, max_width=max_width, zoom=zoom, arrays=arrays
    )
    image, boxes = compose(panels, page.header, max_width=max_width)
    if sources.regions is not None:
        drawn = (page.image, arrays, colors, sources.ignore_index)
        image = sources.regions.decorate(image, panels, boxes, *drawn, max_width=max_width)
    image.save(path, format="PNG")


# --- run directories -------------------------------------------------------------------------


def read_image_scores(run_path: Path) -> dict[int, tuple[str, float | None]]:
    """Image id and softmin score per image index, from the run's ``image_scores.csv``."""
    path = run_path / "image_scores.csv"
    if not path.is_file():
        return {}
    scores: dict[int, tuple[str, float | None]] = {}
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            score = row.get("softmin_score") or row.get("score") or ""
            image_id = from_csv_cell(row.get("id") or row["image"])
            scores[int(row["image"])] = (image_id, float(score) if score else None)
    return scores


def filter_note(names: Sequence[str], classes: Sequence[int], exclude: Sequence[int]) -> str:
    """A human sentence for the active class filters ('' when none)."""
    parts = []
    if classes:
        parts.append("only issues involving " + ", ".join(names[i] for i in classes))
    if exclude:
        parts.append("excluding " + ", ".join(names[i] for i in exclude))
    return "; ".join(parts)


def _inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies under it (links resolved)."""
    path, folder = Path(os.path.realpath(path)), Path(os.path.realpath(folder))
    return path == folder or folder in path.parents


def render_run(
    run: Any,
    *,
    top: int | None = None,
    classes: Sequence[int] = (),
    exclude: Sequence[int] = (),
    images: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    max_width: int | None = None,
    zoom: int = 1,
    regions: int = DEFAULT_REGIONS,
    progress: Progress | None = None,
    png_pages: bool = False,
) -> RenderResult:
    """The review page of the ``top`` images of a run with the most issue pixels after
    the filters (None: every image with one), and their regions from ``regions.csv``.

    Pages go to ``out`` (default RUN/render); ``png_pages`` adds a PNG page per image.
    Writing inside the run holds its writer lock from the first read to the last write,
    as a scan does, so the pages always come from the run they are written into;
    writing elsewhere only reads the run and refuses to publish pages of a run replaced
    meanwhile. The photos are the ``images``
    given, or those the run recorded, which must still be the same file. Each page
    boxes its image's ``regions`` worst issue regions (from ``regions.csv``, if any).
    """
    from segaudit.report.region_pictures import run_regions
    from segaudit.report.volume_views import LAYOUT_NOTE, VolumeViews, has_volumes

    if top is not None and top < 1:
        raise InvalidInputError(f"top must be at least 1; got {top}.")
    if zoom < 1:
        raise InvalidInputError(f"zoom must be at least 1; got {zoom}.")
    if max_width is not None and max_width < 64:
        raise InvalidInputError(f"max width must be at least 64 pixels; got {max_width}.")
    if regions < 0:
        raise InvalidInputError(f"regions must be at least 0; got {regions}.")
    check_filters(run.num_classes, classes, exclude)
    target = Path(out) if out is not None else run.path / "render"
    with contextlib.ExitStack() as stack:
        before_publish = None
        if _inside(target, run.path):
            stack.enter_context(writing_into_run(run, "render", elsewhere="--out DIR"))
        else:
            before_publish = functools.partial(check_same_run, run, "render")
        sources, tally = _render_sources(run, classes, exclude, images, progress)
        sources.regions = run_regions(run, regions, classes, exclude)
        region_rows = _region_rows(run, classes, exclude)
        pages = _pages(run, tally, top)
        note = filter_note(run.class_names, classes, exclude)
        affected = np.count_nonzero(tally.per_image)
        notes = [f"run: {printable(run.location)}"]
        notes += [f"{tally.total:,} issue pixels in {affected} images"]
        notes += [f"filters: {printable(note)}"] if note else []
        if has_volumes(run):  # each volume drawn as its worst slices and views
            views = VolumeViews(run, sources, region_rows)
            sources, region_rows = views.sources_view(), views.page_regions(region_rows)
            notes.append(LAYOUT_NOTE)
        result = write_pages(
            target,
            sources,
            pages,
            run.class_names,
            title=f"segaudit review: {len(pages)} images with issue pixels",
            notes=notes,
            max_width=max_width,
            zoom=zoom,
            progress=progress,
            before_publish=before_publish,
            png_pages=png_pages,
            region_rows=region_rows,
            fingerprint=run_fingerprint(run),
        )
        if _inside(target, run.path):
            run.publish(["render"], "render")  # a run on an object store: uploaded there
        return result


def run_fingerprint(run: Any) -> str:
    """The name a run's decisions are kept under (:func:`decisions.run_fingerprint`)."""
    from segaudit.report.decisions import run_fingerprint as fingerprint

    return fingerprint(run.path)


def _region_rows(
    run: Any, classes: Sequence[int], exclude: Sequence[int]
) -> list[dict[str, Any]] | None:
    """The run's regions that pass the class filters, worst first (None without any table)."""
    from segaudit.report.region_pictures import passes_filters
    from segaudit.report.regions import REGIONS_TABLE, read_regions_table

    if not (Path(run.path) / REGIONS_TABLE).is_file():
        return None
    rows = read_regions_table(Path(run.path))
    return [row for row in rows if passes_filters(row, classes, exclude)]


class RunArray:
    """One of a run's per-pixel arrays, indexed by image (each at its own size)."""

    def __init__(self, run: Any, name: str) -> None:
        self.run, self.name = run, name

    def __getitem__(self, index: int) -> np.ndarray:
        return self.run.read(self.name, index)


def _render_sources(
    run: Any,
    classes: Sequence[int],
    exclude: Sequence[int],
    images: str | os.PathLike[str] | None,
    progress: Progress | None,
) -> tuple[Sources, IssueTally]:
    """The arrays a run's pages are drawn from, and the issue counts that rank them."""
    sources = Sources(
        RunArray(run, "issues"),
        RunArray(run, "labels"),
        RunArray(run, "pred_labels"),
        run_photos(run, images),
        run.num_classes,
        run.ignore_index,
        classes,
        exclude,
    )
    tally = run_swaps(run, classes=classes, exclude=exclude, progress=progress)
    return sources, tally


def _pages(run: Any, tally: IssueTally, top: int | None) -> list[PageInfo]:
    """The pages for the ``top`` images with the most (filtered) issue pixels, ranked."""
    scores = read_image_scores(run.path)
    top = top or len(tally.per_image)
    pages = []
    for rank, image in enumerate(worst_images(tally.per_image, top).tolist(), start=1):
        image_id, score = scores.get(image, (run.images.ids[image], None))
        pixels = run.images.pixels(image)
        page = PageInfo(rank, image, image_id, int(tally.per_image[image]), pixels, score)
        page.filename = page_filename(rank, image, image_id, top, len(tally.per_image))
        pages.append(page)
    return pages


# --- the swap table of a run ------------------------------------------------------------------


@dataclass
class SwapsResult:
    """What :func:`write_run_swaps` counted and wrote."""

    tally: IssueTally
    rows: list[dict[str, Any]]
    note: str
    csv: Path
    png: Path


def write_run_swaps(
    run: Any,
    *,
    classes: Sequence[int] = (),
    exclude: Sequence[int] = (),
    progress: Progress | None = None,
) -> SwapsResult:
    """Count a run's swaps and write RUN/swaps.csv and RUN/swaps.png, together or not at all.

    The run's writer lock is held from the first read to the last write, so the table
    is always computed from the run it is written into (a scan replacing the run waits
    for nobody: it is refused, and so is this while a scan runs).
    """
    names = run.class_names
    csv_path, png_path = run.path / "swaps.csv", run.path / "swaps.png"
    with writing_into_run(run, "swaps"):
        tally = run_swaps(run, classes=classes, exclude=exclude, progress=progress)
        rows = tally.rows(names)
        note = filter_note(names, classes, exclude)
        heatmap, _ = heatmap_pixels(tally.pixels, names, note=note)
        with atomic_outputs(csv_path, png_path) as (csv_tmp, png_tmp):
            write_swap_rows(csv_tmp, rows)
            _save_png(heatmap, png_tmp)
        run.publish(["swaps.csv", "swaps.png"], "swaps")  # a run on an object store
    return SwapsResult(tally, rows, note, csv_path, png_path)
