"""Synthetic segmentation datasets with known annotation errors.

:func:`generate` writes a dataset folder in the layout segaudit reads: noisy
``labels``, model ``pred_probs``, ``images``, plus the ground truth (``true_labels``,
``is_corrupted``, ``synth.json``) so tests and benchmarks can check what was found.

Everything is a deterministic function of the seed and the options: each image draws from
its own random streams (scene, annotation errors, model, photo), so changing the corrupt
fraction changes only the noisy labels. Images are generated and written one at a time,
so a multi-GB dataset never sits in memory. Only vectorised numpy is used.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segaudit import __version__
from segaudit.errors import OutputWriteError, SegauditError
from segaudit.progress import NullProgress, Progress

# fmt: off
DEFAULT_CLASS_NAMES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)
# fmt: on
DTYPES = ("float16", "float32")
FORMATS = ("npy", "zarr")
ERROR_KINDS = ("object_dropped", "class_swapped", "boundary_shifted", "spurious_object")
ARRAY_NAMES = ("labels", "pred_probs", "images", "true_labels", "is_corrupted")
_WORKERS = min(4, os.cpu_count() or 1)  # threads making images ahead of the writer
_PROBS_BAND_BYTES = 256 * 2**20  # pred_probs rows computed (and zarr-chunked) per step

# Random-stream tags: every (seed, tag, image) triple gets an independent generator.
_WORLD, _CHOICE, _SCENE, _ERRORS, _MODEL, _PHOTO = range(6)

# Name-based hints that make default street scenes look right; other names get defaults.
_STUFF_NAMES = ("building", "vegetation", "wall", "fence", "terrain")
# fmt: off
_PARTNER_NAMES = {
    "road": "sidewalk", "sidewalk": "road", "building": "wall", "wall": "fence",
    "fence": "wall", "vegetation": "terrain", "terrain": "vegetation", "sky": "building",
    "person": "rider", "rider": "person", "car": "truck", "truck": "bus", "bus": "train",
    "train": "bus", "motorcycle": "bicycle", "bicycle": "motorcycle", "pole": "traffic sign",
    "traffic light": "traffic sign", "traffic sign": "pole",
}
_BASE_COLOURS = {
    "road": (88, 86, 92), "sidewalk": (172, 162, 150), "building": (142, 112, 92),
    "wall": (168, 150, 120), "fence": (120, 104, 80), "pole": (70, 70, 74),
    "traffic light": (40, 44, 40), "traffic sign": (210, 190, 40), "vegetation": (62, 118, 48),
    "terrain": (150, 142, 92), "sky": (138, 182, 230), "person": (196, 128, 104),
    "rider": (160, 70, 120), "car": (40, 60, 140), "truck": (160, 40, 40),
    "bus": (220, 150, 30), "train": (110, 110, 130), "motorcycle": (30, 30, 30),
    "bicycle": (40, 150, 150),
}
# (shape, aspect = height/width range): shapes are "ellipse", "rect", "blob" or "any".
_SHAPES = {
    "person": ("blob", 1.8, 3.0), "rider": ("blob", 1.4, 2.2), "pole": ("rect", 6.0, 12.0),
    "traffic light": ("rect", 1.8, 3.0), "traffic sign": ("rect", 0.8, 1.3),
    "car": ("rect", 0.45, 0.7), "truck": ("rect", 0.55, 0.9), "bus": ("rect", 0.45, 0.65),
    "train": ("rect", 0.3, 0.5), "motorcycle": ("ellipse", 0.6, 0.9),
    "bicycle": ("ellipse", 0.55, 0.8),
}
# fmt: on


class SynthOptionError(SegauditError):
    """An option of the synthetic-data generator is out of range."""


class OutputNotEmptyError(SegauditError, FileExistsError):
    """The output folder already holds files and ``force`` was not given."""


def generate(
    out: str | Path,
    *,
    images: int,
    height: int,
    width: int,
    classes: int,
    seed: int,
    dtype: str = "float32",
    fmt: str = "npy",
    corrupt_fraction: float = 0.3,
    class_names: Sequence[str] | None = None,
    force: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Write a synthetic dataset with injected annotation errors into ``out``.

    ``out`` gets ``labels`` (noisy, what annotators drew), ``pred_probs`` (N, K, H, W) of
    ``dtype``, ``images`` (N, H, W, 3) uint8, ``true_labels``, ``is_corrupted`` (N,) as
    ``.npy`` files or ``.zarr`` stores, plus ``classes.txt`` and ``synth.json`` (written
    last). Exactly ``round(corrupt_fraction * images)`` images get annotation errors; for
    each, ``synth.json`` lists the events: kind, class, changed pixels and the affected box
    ``[y0, x0, y1, x1]`` (end-exclusive). Returns what ``synth.json`` holds.
    """
    progress = progress or NullProgress()
    names = _validate(
        images, height, width, classes, seed, dtype, fmt, corrupt_fraction, class_names
    )
    out = Path(out)
    n_corrupt = round(corrupt_fraction * images)
    chosen = _rng(seed, _CHOICE).choice(images, size=n_corrupt, replace=False)
    is_corrupted = np.zeros(images, dtype=bool)
    is_corrupted[chosen] = True

    world = _World.build(seed, names)
    label_dtype = np.uint8 if classes <= 256 else np.uint16
    band = _band_rows(classes, height, width)
    specs = {
        "labels": ((images, height, width), label_dtype, (1, height, width)),
        "pred_probs": (
            (images, classes, height, width),
            np.dtype(dtype),
            (1, classes, band, width),
        ),
        "images": ((images, height, width, 3), np.uint8, (1, height, width, 3)),
        "true_labels": ((images, height, width), label_dtype, (1, height, width)),
        "is_corrupted": ((images,), np.bool_, (images,)),
    }
    created = _prepare_out(out, force, _npy_bytes(specs) if fmt == "npy" else 0)
    report: dict[str, Any] = {
        "generator": f"segaudit {__version__} synth",
        "parameters": {
            "images": images,
            "height": height,
            "width": width,
            "classes": classes,
            "seed": seed,
            "dtype": dtype,
            "format": fmt,
            "corrupt_fraction": corrupt_fraction,
            "class_names": list(names),
        },
        "files": {
            name: {"shape": list(s[0]), "dtype": np.dtype(s[1]).name} for name, s in specs.items()
        },
        "corrupted_images": [int(i) for i in np.flatnonzero(is_corrupted)],
        "corruptions": [],
        "noisy_pixels": 0,
    }
    try:
        _write_dataset(out, fmt, specs, world, is_corrupted, band, report, progress)
    except OSError as error:
        _cleanup(out, created)
        raise OutputWriteError(f"could not write the dataset to {out}: {error}") from None
    except BaseException:
        _cleanup(out, created)
        raise
    return report


def _validate(
    images: int,
    height: int,
    width: int,
    classes: int,
    seed: int,
    dtype: str,
    fmt: str,
    corrupt_fraction: float,
    class_names: Sequence[str] | None,
) -> list[str]:
    """Check every option; return the class names (given or default)."""
    for name, value in (("images", images), ("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise SynthOptionError(f"--{name} must be a positive integer, got {value!r}.")
    if (
        isinstance(classes, bool)
        or not isinstance(classes, (int, np.integer))
        or not (2 <= classes <= 65535)
    ):
        raise SynthOptionError(f"--classes must be an integer from 2 to 65535, got {classes!r}.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise SynthOptionError(f"--seed must be a non-negative integer, got {seed!r}.")
    if dtype not in DTYPES:
        raise SynthOptionError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}.")
    if fmt not in FORMATS:
        raise SynthOptionError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}.")
    if not (isinstance(corrupt_fraction, (int, float)) and 0 <= corrupt_fraction <= 1):
        raise SynthOptionError(
            f"--corrupt-fraction must be a number from 0 to 1, got {corrupt_fraction!r}."
        )
    if class_names is None:
        return [
            DEFAULT_CLASS_NAMES[k] if k < len(DEFAULT_CLASS_NAMES) else f"class_{k}"
            for k in range(classes)
        ]
    names = [str(n).strip() for n in class_names]
    if len(names) != classes:
        raise SynthOptionError(
            f"--class-names gives {len(names)} names but --classes is {classes}; "
            "pass one name per class."
        )
    if any(not n or "\n" in n or "\r" in n for n in names):
        raise SynthOptionError("--class-names must not contain empty names or line breaks.")
    if len(set(names)) != len(names):
        raise SynthOptionError("--class-names must not repeat a name.")
    return names


# --- output folder and stores ------------------------------------------------------------


def _output_names(fmt: str) -> list[str]:
    return [f"{name}.{fmt}" for name in ARRAY_NAMES] + ["classes.txt", "synth.json"]


def _prepare_out(out: Path, force: bool, needed_bytes: int) -> list[Path]:
    """Create ``out`` (or clear our files from it under ``force``); return what to undo."""
    if out.exists() and not out.is_dir():
        raise OutputNotEmptyError(f"{out} is a file; choose a folder for the dataset.")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise OutputNotEmptyError(
            f"{out} is not empty; choose a new folder or pass --force to overwrite."
        )
    created = [] if out.exists() else [out]
    try:
        if force:  # a stale store of the other format would make the folder ambiguous
            for name in [*_output_names("npy"), *_output_names("zarr")]:
                _remove(out / name)
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputWriteError(f"could not prepare {out}: {error}") from None
    free = shutil.disk_usage(out).free
    if needed_bytes > free:
        _cleanup(out, created)
        raise OutputWriteError(
            f"the dataset needs {needed_bytes / 1e9:.2f} GB but {out} has only "
            f"{free / 1e9:.2f} GB free; use fewer or smaller images."
        )
    return created


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _cleanup(out: Path, created: list[Path]) -> None:
    """Remove a half-written dataset: our files, and ``out`` itself if we created it."""
    for fmt in FORMATS:
        for name in _output_names(fmt):
            _remove(out / name)
    for path in created:
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def _npy_bytes(specs: dict[str, tuple]) -> int:
    return sum(math.prod(shape) * np.dtype(dt).itemsize for shape, dt, _ in specs.values())


def _band_rows(classes: int, height: int, width: int) -> int:
    """Rows of pred_probs computed per step: the whole image unless K·H·W is huge."""
    return int(max(1, min(height, _PROBS_BAND_BYTES // (4 * classes * width))))


class _NpyWriter:
    """Writes one ``.npy`` file image by image.

    ``open_memmap`` lays out the header and the full-size file; the data then go through
    plain positioned writes, so no mapping of the whole (possibly multi-GB) file builds up
    in the process's memory and no page faults are paid per written page.
    """

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: np.dtype) -> None:
        array = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
        self.offset = array.offset
        del array
        self.shape, self.dtype = shape, np.dtype(dtype)
        self.file = open(path, "r+b")

    def put(self, i: int, data: np.ndarray, r0: int = 0) -> None:
        """Store image ``i``, or rows ``r0:`` of it for (N, K, H, W) arrays."""
        data = np.ascontiguousarray(data, dtype=self.dtype)
        item = math.prod(self.shape[1:]) * self.dtype.itemsize
        if data.shape == self.shape[1:]:
            self._write(self.offset + i * item, data)
            return
        k, h, w = self.shape[1:]
        for plane, rows in enumerate(data):  # a band of rows: one write per class plane
            self._write(self.offset + i * item + ((plane * h + r0) * w) * self.dtype.itemsize, rows)

    def put_all(self, data: np.ndarray) -> None:
        self._write(self.offset, np.ascontiguousarray(data, dtype=self.dtype))

    def _write(self, position: int, data: np.ndarray) -> None:
        self.file.seek(position)
        self.file.write(memoryview(data).cast("B"))

    def close(self) -> None:
        self.file.close()


class _ZarrWriter:
    """Writes one Zarr v3 store image by image (one image, or band of rows, per chunk)."""

    def __init__(
        self, path: Path, shape: tuple[int, ...], dtype: np.dtype, chunks: tuple[int, ...]
    ) -> None:
        import zarr
        from zarr.codecs import BloscCodec

        extra: dict[str, Any] = {}
        if path.stem == "pred_probs":  # probabilities barely compress; lz4 decodes fastest
            extra["compressors"] = BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")
        self.array = zarr.create_array(
            store=str(path),
            shape=shape,
            chunks=chunks,
            dtype=dtype,
            fill_value=0,
            zarr_format=3,
            overwrite=True,
            **extra,
        )

    def put(self, i: int, data: np.ndarray, r0: int = 0) -> None:
        if data.shape == self.array.shape[1:]:
            self.array[i] = data
        else:
            self.array[i, :, r0 : r0 + data.shape[1]] = data

    def put_all(self, data: np.ndarray) -> None:
        self.array[...] = data

    def close(self) -> None:
        pass


def _open_writers(out: Path, fmt: str, specs: dict[str, tuple]) -> dict[str, Any]:
    """Create every output array (empty, full size) and return a writer for each."""
    writers: dict[str, Any] = {}
    try:
        for name, (shape, dtype, chunks) in specs.items():
            if fmt == "npy":
                writers[name] = _NpyWriter(out / f"{name}.npy", shape, dtype)
            else:
                writers[name] = _ZarrWriter(out / f"{name}.zarr", shape, dtype, chunks)
    except BaseException:
        _close_writers(writers)
        raise
    return writers


def _close_writers(writers: dict[str, Any]) -> None:
    for writer in writers.values():
        writer.close()


@dataclass
class _Image:
    """Everything of one image except its probabilities, which are made band by band."""

    truth: np.ndarray
    noisy: np.ndarray
    events: list[dict[str, Any]]
    photo: np.ndarray
    model: _Model


def _make_image(world: _World, i: int, corrupted: bool, h: int, w: int) -> _Image:
    """Image ``i``, from its own random streams (so any thread may make it)."""
    scene = _scene(_rng(world.seed, _SCENE, i), h, w, world)
    noisy, events = scene.truth, []
    if corrupted:
        noisy, events = _corrupt(_rng(world.seed, _ERRORS, i), scene, world)
    photo = _photo(_rng(world.seed, _PHOTO, i), scene, world)
    return _Image(
        scene.truth, noisy, events, photo, _Model.build(_rng(world.seed, _MODEL, i), scene, world)
    )


def _images_in_order(world: _World, is_corrupted: np.ndarray, h: int, w: int) -> Iterator[_Image]:
    """Make images on worker threads (numpy releases the GIL), a few ahead, yield in order."""
    ahead = 2 * _WORKERS
    with ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="synth") as pool:
        pending: deque[Future[_Image]] = deque()
        try:
            for i in range(len(is_corrupted)):
                pending.append(pool.submit(_make_image, world, i, bool(is_corrupted[i]), h, w))
                if len(pending) > ahead:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def _write_dataset(
    out: Path,
    fmt: str,
    specs: dict[str, tuple],
    world: _World,
    is_corrupted: np.ndarray,
    band: int,
    report: dict[str, Any],
    progress: Progress,
) -> None:
    """Generate image after image into the stores, then the small files, synth.json last."""
    n, k, h, w = specs["pred_probs"][0]
    dtype = specs["pred_probs"][1]
    buffer = np.empty(k * band * w, dtype=np.float32)  # reused: first touch is slow
    writers = _open_writers(out, fmt, specs)
    progress.start("Generating synthetic dataset", n)
    try:
        for i, image in enumerate(_images_in_order(world, is_corrupted, h, w)):
            if is_corrupted[i]:
                entry = {"image": i, "kinds": _kinds(image.events), "events": image.events}
                report["corruptions"].append(entry)
                report["noisy_pixels"] += int(np.count_nonzero(image.noisy != image.truth))
            writers["true_labels"].put(i, image.truth)
            writers["labels"].put(i, image.noisy)
            writers["images"].put(i, image.photo)
            for r0 in range(0, h, band):
                r1 = min(h, r0 + band)
                probs = image.model.probs(r0, r1, buffer[: k * (r1 - r0) * w].reshape(k, -1, w))
                writers["pred_probs"].put(i, probs.astype(dtype, copy=False), r0)
            progress.advance(1)
        writers["is_corrupted"].put_all(is_corrupted)
    finally:
        progress.finish()
        _close_writers(writers)
    (out / "classes.txt").write_text("".join(f"{n}\n" for n in world.names), encoding="utf-8")
    tmp = out / "synth.json.tmp"
    tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    tmp.replace(out / "synth.json")


def _kinds(events: list[dict[str, Any]]) -> list[str]:
    return [kind for kind in ERROR_KINDS if any(e["kind"] == kind for e in events)]


# --- the world: per-dataset constants ----------------------------------------------------


def _rng(seed: int, tag: int, index: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, tag, index])


@dataclass
class _World:
    """What every image of one dataset shares: class roles, confusions, colours."""

    seed: int
    names: list[str]
    road: int
    sidewalk: int | None
    sky: int
    stuff: list[int]
    things: list[int]
    partner: np.ndarray  # (K,) the class a model or annotator confuses each class with
    palette: np.ndarray  # (K, 3) float32 base colours

    @classmethod
    def build(cls, seed: int, names: list[str]) -> _World:
        rng = _rng(seed, _WORLD)
        k = len(names)
        index = {n.lower(): i for i, n in enumerate(names)}
        road, sidewalk, sky = index.get("road"), index.get("sidewalk"), index.get("sky")
        stuff = [index[n] for n in _STUFF_NAMES if n in index]
        taken = {road, sidewalk, sky, *stuff}
        things = [i for i in range(k) if i not in taken] or list(range(k))
        road = things[0] if road is None else road
        sky = (things[-1] if things[-1] != road else (road + 1) % k) if sky is None else sky
        if not stuff:
            stuff = [c for c in things if c not in (road, sky)][:3] or [sky]
        partner = cls._partners(rng, names, index, [things, stuff, [road, sky]])
        palette = rng.uniform(40, 220, size=(k, 3))
        for name, colour in _BASE_COLOURS.items():
            if name in index:
                palette[index[name]] = colour
        palette = np.clip(palette + rng.uniform(-12, 12, size=(k, 3)), 0, 255)
        return cls(
            seed, names, road, sidewalk, sky, stuff, things, partner, palette.astype(np.float32)
        )

    @staticmethod
    def _partners(
        rng: np.random.Generator, names: list[str], index: dict[str, int], groups: list[list[int]]
    ) -> np.ndarray:
        """A confusable class for each class: a named partner, else one of its group."""
        k = len(names)
        partner = (np.arange(k) + 1 + rng.integers(0, k - 1, size=k)) % k  # never itself
        for group in groups:
            if len(group) > 1:
                for pos, c in enumerate(group):
                    partner[c] = group[(pos + 1 + rng.integers(0, len(group) - 1)) % len(group)]
        for i, name in enumerate(names):
            other = index.get(_PARTNER_NAMES.get(name.lower(), ""))
            if other is not None and other != i:
                partner[i] = other
        return partner

    def thing_classes(self, avoid: int) -> list[int]:
        return [c for c in self.things if c != avoid] or [
            c for c in range(len(self.names)) if c != avoid
        ]


# --- scenes ------------------------------------------------------------------------------


@dataclass
class _Object:
    """One painted object: its class, bounding box and the labels it was painted over."""

    cls: int
    box: tuple[int, int, int, int]  # y0, y1, x0, x1
    under: np.ndarray


@dataclass
class _Scene:
    truth: np.ndarray  # (H, W) int32 class map
    inst: np.ndarray  # (H, W) int32: 0 background, j + 1 object j
    objects: list[_Object] = field(default_factory=list)
    horizon: float = 0.0

    def visible(self, j: int) -> tuple[tuple[slice, slice], np.ndarray]:
        y0, y1, x0, x1 = self.objects[j].box
        region = (slice(y0, y1), slice(x0, x1))
        return region, self.inst[region] == j + 1


def _interp_matrix(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) linear-interpolation weights spreading n_in knots over n_out samples."""
    pos = (np.arange(n_out) + 0.5) * ((n_in - 1) / n_out)
    i0 = np.minimum(pos.astype(np.int64), n_in - 2)
    frac = (pos - i0).astype(np.float32)
    m = np.zeros((n_out, n_in), dtype=np.float32)
    m[np.arange(n_out), i0] = 1 - frac
    m[np.arange(n_out), i0 + 1] = frac
    return m


def _smooth(rng: np.random.Generator, n: int, h: int, w: int, cells: float) -> np.ndarray:
    """(n, H, W) smooth random fields in [0, 1]: a coarse random grid, bilinearly upsampled.

    ``cells`` is the number of grid cells along the shorter side.
    """
    scale = cells / min(h, w)
    gh, gw = max(2, round(h * scale) + 1), max(2, round(w * scale) + 1)
    grid = rng.random((n, gh, gw), dtype=np.float32)
    rows = _interp_matrix(h, gh) @ grid  # (n, h, gw)
    return (rows.reshape(n * h, gw) @ _interp_matrix(w, gw).T).reshape(n, h, w)


def _scene(rng: np.random.Generator, h: int, w: int, world: _World) -> _Scene:
    """A street-like class map: sky, buildings and vegetation, road, then objects on top."""
    truth, horizon = _background(rng, h, w, world)
    scene = _Scene(truth=truth, inst=np.zeros((h, w), dtype=np.int32), horizon=horizon)
    base = 4 + int(10 * min(1.0, math.sqrt(h * w) / 700))
    count = int(rng.integers(base, 2 * base + 1))
    short = min(h, w)
    smallest = max(1.5, 0.01 * short)
    radii = np.exp(rng.uniform(math.log(smallest), math.log(max(smallest, 0.3 * short)), count))
    for j, radius in enumerate(np.sort(radii)[::-1]):  # large first so small ones stay visible
        cy = rng.uniform(max(0.0, horizon - 0.15 * h), h)
        cx = rng.uniform(0, w)
        centre = truth[min(h - 1, int(cy)), min(w - 1, int(cx))]
        choices = world.thing_classes(avoid=int(centre))
        cls = int(choices[rng.integers(len(choices))])
        box, mask = _shape_mask(rng, h, w, cy, cx, float(radius), world.names[cls].lower())
        region = (slice(box[0], box[1]), slice(box[2], box[3]))
        scene.objects.append(_Object(cls, box, truth[region].copy()))
        truth[region][mask] = cls
        scene.inst[region][mask] = j + 1
    return scene


def _background(
    rng: np.random.Generator, h: int, w: int, world: _World
) -> tuple[np.ndarray, float]:
    """Stuff regions with irregular borders under a skyline, a road in perspective below."""
    yy = np.arange(h, dtype=np.float32)[:, None]
    xx = np.arange(w, dtype=np.float32)[None, :]
    horizon = float(h * rng.uniform(0.3, 0.5))
    fields = _smooth(rng, len(world.stuff) + 2, h, w, cells=4)
    fine = _smooth(rng, len(world.stuff), h, w, cells=12)
    # stuff: whichever smooth field is largest, so borders wander
    stuff = np.asarray(world.stuff)[np.argmax(fields[2:] + 0.35 * fine, axis=0)]
    # skyline: flat roofs of random widths plus bumps, above the horizon
    edges = np.sort(rng.uniform(0, w, size=max(1, w // 48)))
    roofs = rng.uniform(0.05, 0.3, size=edges.size + 1)[np.searchsorted(edges, xx[0])]
    skyline = horizon - h * (roofs * (0.6 + 0.8 * fields[0, 0]) + 0.04 * fine[0, 0])
    truth = np.where(yy < skyline[None, :], world.sky, stuff).astype(np.int32)
    # ground: a road widening towards the bottom, sidewalks on both sides
    ground = horizon + h * 0.06 * (fields[1, :, :].mean(axis=0) - 0.5)
    depth = np.clip((yy - horizon) / max(1.0, h - horizon), 0, 1)
    off = np.abs(xx - w * rng.uniform(0.35, 0.65))
    half_road = depth * w * rng.uniform(0.3, 0.6) + 1
    on_ground = yy > ground[None, :]
    if world.sidewalk is not None:
        side = on_ground & (off < half_road + depth * w * rng.uniform(0.1, 0.25) + 1)
        truth[side] = world.sidewalk
    truth[on_ground & (off < half_road)] = world.road
    return truth, horizon


def _shape_mask(
    rng: np.random.Generator, h: int, w: int, cy: float, cx: float, radius: float, name: str
) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """An ellipse, rectangle or wobbly blob around (cy, cx), clipped to the image."""
    kind, lo, hi = _SHAPES.get(name, ("any", 0.4, 2.5))
    if kind == "any":
        kind = ("ellipse", "rect", "blob")[rng.integers(3)]
    aspect = math.exp(rng.uniform(math.log(lo), math.log(hi)))
    ry, rx = radius * math.sqrt(aspect), radius / math.sqrt(aspect)
    ry, rx = max(ry, 0.75), max(rx, 0.75)
    angle = rng.normal(0, 0.08) if name in _SHAPES else rng.uniform(0, math.pi)
    reach = 1.5 * max(ry, rx) + 1
    y0, y1 = max(0, int(cy - reach)), min(h, int(cy + reach) + 1)
    x0, x1 = max(0, int(cx - reach)), min(w, int(cx + reach) + 1)
    dy = np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5 - cy
    dx = np.arange(x0, x1, dtype=np.float32)[None, :] + 0.5 - cx
    cos, sin = math.cos(angle), math.sin(angle)
    u, v = (dx * cos + dy * sin) / rx, (dy * cos - dx * sin) / ry
    if kind == "rect":
        mask = (np.abs(u) <= 1) & (np.abs(v) <= 1)
    elif kind == "ellipse":
        mask = u * u + v * v <= 1
    else:
        theta = np.arctan2(v, u)
        wobble = np.ones_like(theta)
        for order in (2, 3, 5):
            wobble += rng.uniform(0, 0.15) * np.cos(order * theta + rng.uniform(0, 2 * math.pi))
        mask = np.sqrt(u * u + v * v) <= wobble
    mask[min(int(cy), y1 - 1) - y0, min(int(cx), x1 - 1) - x0] = True  # never empty
    return (y0, y1, x0, x1), mask


# --- annotation errors -------------------------------------------------------------------


def _corrupt(
    rng: np.random.Generator, scene: _Scene, world: _World
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Copy the true map and inject 1-3 kinds of annotation error; return it and the log."""
    noisy = scene.truth.copy()
    h, w = noisy.shape
    min_area = max(12, 0.004 * h * w)
    areas = np.bincount(scene.inst.ravel(), minlength=len(scene.objects) + 1)[1:]
    eligible = list(np.flatnonzero(areas >= min_area))
    rng.shuffle(eligible)
    kinds = list(rng.choice(ERROR_KINDS, size=int(rng.integers(1, 4)), replace=False))
    events = []
    for kind in kinds:
        if kind == "spurious_object":
            event = _add_spurious(rng, noisy, scene, world)
        elif eligible:
            event = _OBJECT_ERRORS[kind](rng, noisy, scene, world, int(eligible.pop()))
        else:
            event = None
        if event is not None and event["pixels"] > 0:  # 0: e.g. same class as an earlier error
            events.append(event)
    if not np.any(noisy != scene.truth):  # nothing took: a spurious object always does
        events.append(_add_spurious(rng, noisy, scene, world))
    return noisy, events


def _event(
    kind: str, world: _World, cls: int, region: tuple[slice, slice], changed: int, **extra: Any
) -> dict[str, Any]:
    ys, xs = region
    return {
        "kind": kind,
        "class": world.names[cls],
        "pixels": int(changed),
        "box": [ys.start, xs.start, ys.stop, xs.stop],
        **extra,
    }


def _drop_object(
    rng: np.random.Generator, noisy: np.ndarray, scene: _Scene, world: _World, j: int
) -> dict[str, Any]:
    """The annotator missed the object: it is painted with what surrounds it."""
    region, vis = scene.visible(j)
    before = noisy[region].copy()
    noisy[region][vis] = scene.objects[j].under[vis]
    changed = np.count_nonzero(noisy[region] != before)
    return _event("object_dropped", world, scene.objects[j].cls, region, changed)


def _swap_class(
    rng: np.random.Generator, noisy: np.ndarray, scene: _Scene, world: _World, j: int
) -> dict[str, Any]:
    """The annotator picked the wrong class for the whole object (often a confusable one)."""
    cls = scene.objects[j].cls
    others = world.thing_classes(avoid=cls)
    new = int(world.partner[cls]) if rng.random() < 0.7 else int(others[rng.integers(len(others))])
    region, vis = scene.visible(j)
    before = noisy[region].copy()
    noisy[region][vis] = new
    changed = np.count_nonzero(noisy[region] != before)
    return _event("class_swapped", world, cls, region, changed, new_class=world.names[new])


def _shift_boundary(
    rng: np.random.Generator, noisy: np.ndarray, scene: _Scene, world: _World, j: int
) -> dict[str, Any]:
    """The annotator traced the object a few pixels too wide or too tight."""
    h, w = noisy.shape
    obj = scene.objects[j]
    radius = int(rng.integers(2, max(3, round(0.012 * min(h, w))) + 1))
    y0, y1, x0, x1 = obj.box
    ys = slice(max(0, y0 - radius), min(h, y1 + radius))
    xs = slice(max(0, x0 - radius), min(w, x1 + radius))
    vis = scene.inst[ys, xs] == j + 1
    before = noisy[ys, xs].copy()
    eroded = ~_dilate(~vis, radius)  # the image edge does not erode the object
    mode = "dilated" if rng.random() < 0.5 or not eroded.any() else "eroded"
    if mode == "dilated":
        noisy[ys, xs][_dilate(vis, radius) & ~vis] = obj.cls
    else:
        under = np.full(vis.shape, -1, dtype=np.int32)  # what lies under the object
        under[y0 - ys.start : y1 - ys.start, x0 - xs.start : x1 - xs.start] = obj.under
        ring = vis & ~eroded
        noisy[ys, xs][ring] = under[ring]
    changed = np.count_nonzero(noisy[ys, xs] != before)
    return _event("boundary_shifted", world, obj.cls, (ys, xs), changed, mode=mode, radius=radius)


def _add_spurious(
    rng: np.random.Generator, noisy: np.ndarray, scene: _Scene, world: _World
) -> dict[str, Any]:
    """The annotator drew an object that is not there, of a class absent from the image."""
    h, w = noisy.shape
    present = np.zeros(len(world.names), dtype=bool)
    present[np.unique(scene.truth)] = True
    absent = [c for c in world.things if not present[c]] or list(np.flatnonzero(~present))
    cy, cx = rng.uniform(0, h), rng.uniform(0, w)
    if not absent:
        absent = world.thing_classes(avoid=int(scene.truth[int(cy), int(cx)]))
    cls = int(absent[rng.integers(len(absent))])
    radius = max(2.0, rng.uniform(0.05, 0.12) * min(h, w))
    box, mask = _shape_mask(rng, h, w, cy, cx, radius, "")
    region = (slice(box[0], box[1]), slice(box[2], box[3]))
    before = noisy[region].copy()
    noisy[region][mask] = cls
    changed = np.count_nonzero(noisy[region] != before)
    return _event("spurious_object", world, cls, region, changed)


_OBJECT_ERRORS = {
    "object_dropped": _drop_object,
    "class_swapped": _swap_class,
    "boundary_shifted": _shift_boundary,
}


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation by a (2r+1)² square, done separably; nothing lies past the edges."""
    h, w = mask.shape
    padded = np.pad(mask, radius)
    rows = np.zeros((h + 2 * radius, w), dtype=bool)
    for d in range(2 * radius + 1):
        rows |= padded[:, d : d + w]
    result = np.zeros((h, w), dtype=bool)
    for d in range(2 * radius + 1):
        result |= rows[d : d + h]
    return result


# --- the simulated model -----------------------------------------------------------------


def _box_mean(a: np.ndarray, radius: int) -> np.ndarray:
    """Mean over a (2r+1)² window with edge replication, by cumulative sums (float32 out)."""
    size = 2 * radius + 1
    for axis in (0, 1):
        padded = np.pad(
            a, [(radius, radius) if ax == axis else (0, 0) for ax in (0, 1)], mode="edge"
        )
        c = np.cumsum(padded, axis=axis, dtype=np.float64)
        c = np.concatenate([np.zeros_like(c.take([0], axis=axis)), c], axis=axis)
        n = a.shape[axis]
        a = c.take(np.arange(size, size + n), axis=axis) - c.take(np.arange(n), axis=axis)
    return (a / (size * size)).astype(np.float32)


@dataclass
class _Model:
    """Per-pixel fields of a simulated model, from which pred_probs rows are produced.

    The model believes the true class (except in a few small confidently-wrong regions)
    with confidence ``conf``, gives the rest of the top mass to ``other`` (the class across
    the nearest boundary, else a confusable class) and spreads ``spread`` over all classes.
    """

    belief: np.ndarray  # (H, W) int64
    other: np.ndarray  # (H, W) int64
    p_belief: np.ndarray  # (H, W) float32 probability added to the believed class
    p_other: np.ndarray  # (H, W) float32 probability added to the other class
    scale: np.ndarray  # (H, W) float32: spread mass / sum over K of the smooth noise
    noise: np.ndarray  # (K, gh, gw) coarse per-class noise
    cols: np.ndarray  # (gw, W) column interpolation
    rows: np.ndarray  # (H, gh) row interpolation

    @classmethod
    def build(cls, rng: np.random.Generator, scene: _Scene, world: _World) -> _Model:
        h, w = scene.truth.shape
        short = min(h, w)
        belief, inst, wrong = _belief(rng, scene, world)
        reach = max(2, round(short / 96))
        near = _nearness(belief, reach) ** 2
        other = _nearest_other(belief, reach, near > 0)
        far = other == belief
        other[far] = world.partner[belief[far]]
        fields = _smooth(rng, 3, h, w, cells=6)
        # confident inside regions, unsure (but still right) near boundaries
        conf = 0.95 + 0.045 * fields[0] - near * (0.15 + 0.2 * fields[1])
        conf += rng.normal(0, 0.015, size=(h, w)).astype(np.float32)
        areas = np.bincount(scene.inst.ravel(), minlength=len(scene.objects) + 1)
        grow = np.log(np.maximum(areas, 1) / 8) / math.log(max(2.0, 0.01 * h * w / 8))
        cap = (0.45 + 0.5 * np.clip(grow, 0, 1)).astype(np.float32)  # small objects: unsure
        cap[0] = 1.0
        conf = np.where(wrong, np.maximum(conf, 0.85), np.minimum(conf, cap[inst]))
        conf = np.clip(conf, 0.05, 0.995)
        spread = 0.005 + 0.03 * fields[2] + 0.04 * near  # mass spread over all classes
        cells = 5 / short
        gh, gw = max(2, round(h * cells) + 1), max(2, round(w * cells) + 1)
        noise = rng.random((len(world.names), gh, gw), dtype=np.float32) ** 3 + 0.02
        rows, cols = _interp_matrix(h, gh), _interp_matrix(w, gw).T.copy()
        # interpolation is linear, so the noise sums over K without making all K planes
        total = rows @ noise.sum(axis=0, dtype=np.float64).astype(np.float32) @ cols
        return cls(
            belief=belief.astype(np.int64),
            other=other.astype(np.int64),
            p_belief=((1 - spread) * conf).astype(np.float32),
            p_other=((1 - spread) * (1 - conf)).astype(np.float32),
            scale=(spread / total).astype(np.float32),
            noise=noise,
            cols=cols,
            rows=rows,
        )

    def probs(self, r0: int, r1: int, out: np.ndarray) -> np.ndarray:
        """pred_probs rows r0:r1 into ``out`` (K, r1 - r0, W) float32; sums to 1 over K."""
        k, gh, gw = self.noise.shape
        rows, w = r1 - r0, self.cols.shape[1]
        coarse = self.rows[r0:r1] @ self.noise  # (K, rows, gw)
        np.matmul(coarse.reshape(k * rows, gw), self.cols, out=out.reshape(k * rows, w))
        out *= self.scale[r0:r1]
        flat = out.reshape(k, -1)
        pixels = np.arange(rows * w)
        flat[self.belief[r0:r1].ravel(), pixels] += self.p_belief[r0:r1].ravel()
        flat[self.other[r0:r1].ravel(), pixels] += self.p_other[r0:r1].ravel()
        return out


def _belief(
    rng: np.random.Generator, scene: _Scene, world: _World
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What the model sees: the true map with wobbly boundaries and a few small regions
    confidently taken for a confusable class. Returns it, the matching instance map and
    the mask of those wrong regions."""
    h, w = scene.truth.shape
    short = min(h, w)
    shift = max(1.0, short / 80)  # boundary wobble in pixels
    moves = np.rint(np.clip((_smooth(rng, 2, h, w, cells=6) - 0.5) * 4, -1, 1) * shift)
    rows = np.clip(np.arange(h)[:, None] + moves[0].astype(np.intp), 0, h - 1)
    cols = np.clip(np.arange(w)[None, :] + moves[1].astype(np.intp), 0, w - 1)
    belief, inst = scene.truth[rows, cols], scene.inst[rows, cols]
    wrong = np.zeros((h, w), dtype=bool)
    for _ in range(int(rng.integers(0, 3))):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        radius = max(1.5, rng.uniform(0.015, 0.04) * short)
        box, mask = _shape_mask(rng, h, w, cy, cx, radius, "")
        region = (slice(box[0], box[1]), slice(box[2], box[3]))
        belief[region][mask] = world.partner[belief[int(cy), int(cx)]]
        wrong[region] |= mask
    return belief, inst, wrong


def _nearness(labels: np.ndarray, reach: int) -> np.ndarray:
    """How near each pixel is to a class boundary: 1 on it, falling to 0 at ``reach``."""
    edge = np.zeros(labels.shape, dtype=bool)
    edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edge[1:] |= labels[1:] != labels[:-1]
    edge[:-1] |= labels[:-1] != labels[1:]
    return np.minimum(1.0, _box_mean(edge, reach) * ((2 * reach + 1) / 2)).astype(np.float32)


def _nearest_other(labels: np.ndarray, reach: int, where: np.ndarray) -> np.ndarray:
    """The nearest different class within ``reach`` of each pixel in ``where`` (elsewhere,
    and where there is none, the pixel's own class)."""
    h, w = labels.shape
    ys, xs = np.nonzero(where)
    own = labels[ys, xs]
    found = own.copy()
    steps = sorted({*(2**e for e in range(reach.bit_length())), reach})
    for step in steps:  # nearest first, so the closest different class wins
        for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0), (1, 1), (1, -1), (-1, 1), (-1, -1)):
            moved = labels[np.clip(ys + dy * step, 0, h - 1), np.clip(xs + dx * step, 0, w - 1)]
            take = (found == own) & (moved != own)
            found[take] = moved[take]
    other = labels.copy()
    other[ys, xs] = found
    return other


# --- photos ------------------------------------------------------------------------------


def _photo(rng: np.random.Generator, scene: _Scene, world: _World) -> np.ndarray:
    """A plausible (H, W, 3) uint8 photo of the true scene: class colours, shading, noise."""
    h, w = scene.truth.shape
    colour = world.palette[scene.truth]  # (H, W, 3)
    fields = _smooth(rng, 2, h, w, cells=5)
    light = 0.78 + 0.3 * fields[0] + 0.12 * (fields[1] - 0.5)  # soft shadows and lighting
    yy = np.arange(h, dtype=np.float32)[:, None]
    tops = np.array([0] + [o.box[0] for o in scene.objects], dtype=np.float32)
    heights = np.array([1] + [max(1, o.box[1] - o.box[0]) for o in scene.objects], dtype=np.float32)
    rel = np.clip((yy - tops[scene.inst]) / heights[scene.inst], 0, 1)
    light = np.where(scene.inst > 0, light * (1.15 - 0.35 * rel), light)  # lit from above
    sky = scene.truth == world.sky
    light = np.where(sky, 0.95 + 0.12 * (yy / max(1.0, scene.horizon)), light)
    light *= 1 - 0.25 * _nearness(scene.truth, 1)  # dark outlines where regions meet
    grain = rng.standard_normal((h, w, 3), dtype=np.float32) * 7
    return np.clip(colour * light[..., None] + grain, 0, 255).astype(np.uint8)
