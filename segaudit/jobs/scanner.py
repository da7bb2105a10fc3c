"""Audit while the model predicts: a run built batch by batch, predictions never stored.

:class:`Scanner` takes labels and probabilities straight from an inference loop. Each
image goes through the same kernel as ``segaudit scan`` the moment it is added; only
the compact per-pixel arrays (a few bytes a pixel) and the mispredicted pixels'
records are kept, written to the run being built. On leaving the ``with`` block the
cut is made, every output ``segaudit scan`` writes is written, and the run is
published atomically. The probabilities themselves (K values a pixel) are never
written anywhere.

::

    with segaudit.Scanner("runs/nightly", num_classes=19, class_names=names,
                          ignore_index=255) as scan:
        for ids, images, labels in loader:
            probs = model(images).softmax(1)
            scan.add(labels, probs, ids=ids, images=images)
    print(scan.summary["issue_pixels"])
"""

from __future__ import annotations

import dataclasses
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from segaudit.engine.learning import CLResult, flag_issues
from segaudit.engine.params import (
    HIST_BINS,
    Execution,
    Params,
    check_extent,
    pred_dtype,
    score_dtype,
)
from segaudit.engine.prepare import prepare_probs
from segaudit.engine.regions import DEFAULT_MIN_PIXELS
from segaudit.engine.stream import ImageResult, PassStats, Place, scan_prepared, stored_label_dtype
from segaudit.errors import InvalidInputError
from segaudit.jobs.scan import RegionOptions, build_summary, gate_results, write_scan_tables
from segaudit.report.regions import region_summary
from segaudit.runs import rundir
from segaudit.runs.images import ImageTable
from segaudit.runs.sink import RunSink
from segaudit.sources.dataset import Where
from segaudit.sources.ids import check_id

PHOTOS_FOLDER = "photos"


def as_numpy(value: Any, name: str) -> np.ndarray:
    """An array from numpy, PyTorch (any device), JAX, CuPy or anything with ``__array__``."""
    if isinstance(value, np.ndarray):
        return value
    for method in ("detach", "cpu"):  # a torch tensor: leave the graph and the device
        if hasattr(value, method) and callable(getattr(value, method)):
            value = getattr(value, method)()
    if hasattr(value, "numpy") and callable(value.numpy):
        return np.asarray(value.numpy())
    if hasattr(value, "get") and type(value).__module__.startswith("cupy"):
        return np.asarray(value.get())
    if value is None or isinstance(value, str | bytes | os.PathLike):
        raise TypeError(f"{name} must be an array, got {type(value).__name__}.")
    return np.asarray(value)


class Scanner:
    """A run written from batches of (labels, probabilities), as ``segaudit scan`` would.

    Options are ``scan``'s: ``num_classes`` (checked on every batch), ``class_names``,
    ``ignore_index``, ``downsample`` and ``label_pooling``, ``temperature``, ``workers``
    (images of one batch scanned at once), ``min_region_pixels`` and ``background``
    (class ids or names) for the regions, and the gates ``max_issue_fraction`` and
    ``max_images_with_issues``, reported in the summary (``summary["gates"]``). The run
    is published when the ``with`` block ends without an error; on an error nothing is
    published and a previous run at ``run`` is left as it was. After an error the
    scanner cannot be used again.
    """

    def __init__(
        self,
        run: str | os.PathLike[str],
        *,
        num_classes: int,
        class_names: list[str] | None = None,
        ignore_index: int | None = None,
        downsample: int = 1,
        label_pooling: str = "mode",
        temperature: float = 0.1,
        workers: int = 1,
        max_issue_fraction: float | None = None,
        max_images_with_issues: int | None = None,
        min_region_pixels: int = DEFAULT_MIN_PIXELS,
        background: list[int | str] | None = None,
    ) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int | np.integer):
            raise TypeError(f"num_classes must be an integer, got {num_classes!r}.")
        if class_names is not None and len(class_names) != num_classes:
            raise InvalidInputError(
                f"class_names lists {len(class_names)} names for {num_classes} classes; "
                "give one name per class."
            )
        self.run = Path(run)
        self.num_classes = int(num_classes)
        self.class_names = list(class_names) if class_names is not None else None
        self.params = Params(
            ignore_index=ignore_index,
            downsample=downsample,
            label_pooling=label_pooling,
            temperature=temperature,
        )
        self.execution = Execution(workers=max(1, int(workers)))
        self.gates = (max_issue_fraction, max_images_with_issues)
        self.regions = RegionOptions(
            min_region_pixels, tuple(background) if background is not None else None
        )
        self._background = self.regions.background_of(None, self._names())
        self.summary: dict[str, Any] | None = None
        self._state = "new"
        self._building: Any = None
        self._tmp: Path | None = None
        self._sink: RunSink | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._images = _Accumulator(self.num_classes)
        self._started = 0.0
        self._busy = 0.0  # seconds spent scanning batches, inside add()

    # -- the with block ------------------------------------------------------------------

    def __enter__(self) -> Scanner:
        if self._state != "new":
            raise RuntimeError("a Scanner writes one run; make a new one for another run.")
        self._started = time.perf_counter()
        self._building = rundir.building_run(self.run)
        self._tmp = self._building.__enter__()
        self._sink = RunSink(self._tmp, self._images.ids)
        self._pool = ThreadPoolExecutor(max_workers=self.execution.workers)
        self._state = "open"
        return self

    def __exit__(self, kind: Any, error: Any, trace: Any) -> bool:
        assert self._building is not None and self._pool is not None
        self._pool.shutdown(wait=True)
        if kind is None and self._state == "open":
            try:
                summary = self._finish()
                self.summary = {**summary, **summary["totals"]}
            except BaseException as failure:
                self._state = "failed"
                self._building.__exit__(type(failure), failure, failure.__traceback__)
                raise
            self._building.__exit__(None, None, None)
            self._state = "published"
            return False
        stopped = kind is None  # an add() failed and its error was caught in the block
        self._state = "failed"
        failure = RuntimeError(_STATE_ERRORS["stopped"]) if stopped else error
        self._building.__exit__(type(failure), failure, trace)
        if stopped:
            raise failure
        return False

    # -- adding batches --------------------------------------------------------------------

    def add(
        self,
        labels: Any,
        probs: Any,
        *,
        ids: Any = None,
        images: Any = None,
        channels_last: bool = False,
        logits: bool = False,
        normalize: bool = False,
        resize_probs: str | None = None,
    ) -> None:
        """Scan one image ((H, W) labels, (K, H, W) probabilities) or a batch ((B, H, W),
        (B, K, H, W); (…, H, W, K) with ``channels_last``); images may change size from
        call to call. ``ids`` default to a running index; ``images`` (photos, (B, H, W, 3)
        uint8) are kept in the run for the pictures. A bad batch raises one ValueError
        naming it and the image, and the scanner stops."""
        if self._state != "open":
            raise RuntimeError(_STATE_ERRORS.get(self._state, "use the Scanner in a with block."))
        clock = time.perf_counter()
        try:
            self._add(labels, probs, ids, images, channels_last, logits, normalize, resize_probs)
        except BaseException:
            self._state = "stopped"
            raise
        self._busy += time.perf_counter() - clock

    def _add(
        self,
        labels: Any,
        probs: Any,
        ids: Any,
        images: Any,
        channels_last: bool,
        logits: bool,
        normalize: bool,
        resize_probs: str | None,
    ) -> None:
        batch = self._images.batches
        labels, probs = _batch_arrays(labels, probs, channels_last, batch, self.num_classes)
        count = len(labels)
        names = _batch_ids(ids, count, len(self._images.ids), batch)
        photos = _batch_photos(images, labels, batch)
        params = dataclasses.replace(
            self.params,
            channels_last=channels_last,
            logits=logits,
            normalize=normalize,
            resize_probs=resize_probs,
        )
        start = self._images.begin_batch(names, [lab.shape for lab in labels], probs, batch)
        labels_dtype = self._images.labels_dtype(labels, self.params.ignore_index)
        if start == 0:
            self._create_outputs(labels_dtype)
        jobs = []
        for row in range(count):
            # Each image keeps its own records (the batch's images run on several threads).
            place = Place(start + row, 0, 0)
            where = Where(f"labels of batch {batch}", f"pred_probs of batch {batch}",
                          f"image {row}, ", f"image {row}, ")  # fmt: skip
            jobs.append((start + row, labels[row], probs[row], params, labels_dtype, where, place))
        assert self._pool is not None
        results = list(self._pool.map(lambda job: self._scan_one(*job), jobs))
        for row, result in enumerate(results):
            self._images.add_result(start + row, result)
            if photos is not None:
                self._write_photo(start + row, names[row], photos[row])
        for index in range(start, start + count):
            self._images.end_batch(index, index + 1)

    def _create_outputs(self, labels_dtype: np.dtype) -> None:
        """The run's per-pixel arrays, as a scan creates them (sizes come as images do)."""
        assert self._sink is not None and self._images.probs_dtype is not None
        scores = score_dtype(self._images.probs_dtype)
        self._sink.create("labels", None, labels_dtype)
        self._sink.create("pred_labels", None, pred_dtype(self.num_classes))
        self._sink.create("pixel_scores", None, scores)
        if self.params.downsample != 1:
            self._sink.create("cl_scores", None, scores, scratch=True)

    def _scan_one(
        self,
        index: int,
        labels: np.ndarray,
        raw: np.ndarray,
        params: Params,
        labels_dtype: np.dtype,
        where: Where,
        place: Place,
    ) -> ImageResult:
        assert self._sink is not None
        probs = prepare_probs(
            raw,
            labels.shape,
            channels_last=params.channels_last,
            logits=params.logits,
            normalize=params.normalize,
            resize=params.resize_probs,
            where=where.probs_image,
        )
        if params.downsample != 1:
            check_extent(self.num_classes, probs.dtype, np.array([labels.shape]), params,
                         where=lambda _: where.probs_image)  # fmt: skip
        return scan_prepared(
            index, labels, probs, params, self.num_classes, self._sink, labels_dtype, where, place
        )

    def _write_photo(self, index: int, image_id: str, photo: np.ndarray) -> None:
        """Keep a photo in the run (``photos/ID.png``) for its pictures."""
        from PIL import Image

        assert self._tmp is not None
        path = self._tmp / PHOTOS_FOLDER / f"{image_id}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.ascontiguousarray(photo)).save(path, format="PNG", compress_level=1)
        self._images.photos[index] = f"{PHOTOS_FOLDER}/{image_id}.png"

    # -- the end ---------------------------------------------------------------------------

    def _names(self) -> list[str]:
        return self.class_names or [f"class_{k}" for k in range(self.num_classes)]

    def _finish(self) -> dict[str, Any]:
        assert self._sink is not None and self._tmp is not None
        if not self._images.ids:
            raise InvalidInputError("the Scanner was given no images; nothing to scan.")
        stats = self._images.stats(self.params)
        self._sink.pass_written()
        result: CLResult = flag_issues(
            stats, self.params, self._sink, self.execution,
            min_region_pixels=self.regions.min_pixels,
        )  # fmt: skip
        self._sink.finish()
        self._sink.discard_scratch()
        names = self._names()
        background = self._background
        region_table = write_scan_tables(self._tmp, result, self._images.table(), names, background)
        timing = {
            "seconds": round(time.perf_counter() - self._started, 3),
            "add_batches": round(self._busy, 3),
            **result.stages,
        }
        summary = build_summary(result, _StreamedInputs(self._images), self.params, names,
                                timing, self.execution)  # fmt: skip
        summary["regions"] = region_summary(region_table, self.regions.min_pixels, background)
        summary["gates"] = gate_results(summary, *self.gates)
        rundir.write_json_atomic(self._tmp / rundir.SUMMARY, summary)
        return summary


_STATE_ERRORS = {
    "new": "use the Scanner in a with block: `with Scanner(...) as scan: scan.add(...)`.",
    "stopped": "this Scanner stopped at an error in an earlier batch; nothing will be "
    "published. Start a new Scanner.",
    "failed": "this Scanner's with block ended with an error; nothing was published.",
    "published": "this Scanner's run is published; start a new Scanner for another run.",
}


def _batch_arrays(
    labels: Any, probs: Any, channels_last: bool, batch: int, num_classes: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """One image or a batch, as lists of per-image arrays (views, no copies)."""
    labels = as_numpy(labels, "labels")
    probs = as_numpy(probs, "probs")
    if labels.ndim == 2 and probs.ndim == 3:
        labels, probs = labels[None], probs[None]
    hint = "(B, H, W, K) with channels_last" if channels_last else "(B, K, H, W)"
    if labels.ndim != 3 or probs.ndim != 4:
        raise InvalidInputError(
            f"batch {batch}: labels {labels.shape} and probs {probs.shape} are neither one "
            f"image ((H, W) and (K, H, W)) nor a batch ((B, H, W) and {hint})."
        )
    if len(labels) != len(probs):
        raise InvalidInputError(
            f"batch {batch} has {len(labels)} label images but {len(probs)} probability images."
        )
    if labels.dtype.kind not in "iu":
        raise InvalidInputError(
            f"batch {batch}: labels hold {labels.dtype} values; labels must be integers."
        )
    classes = probs.shape[3] if channels_last else probs.shape[1]
    if classes != num_classes:
        raise InvalidInputError(
            f"pred_probs of batch {batch} has {classes} class(es) but the Scanner was made "
            f"for num_classes={num_classes}; pass every image's probabilities for all classes."
        )
    return list(labels), list(probs)


def _batch_ids(ids: Any, count: int, first: int, batch: int) -> list[str]:
    """The batch's ids (a running index by default), each safe as a file name."""
    if ids is None:
        return [str(first + row) for row in range(count)]
    if isinstance(ids, str | bytes):
        ids = [ids]
    names = [str(i.item() if hasattr(i, "item") else i) for i in ids]
    if len(names) != count:
        raise InvalidInputError(f"batch {batch} has {count} images but {len(names)} ids.")
    return [check_id(name, f"batch {batch}") for name in names]


def _batch_photos(images: Any, labels: list[np.ndarray], batch: int) -> list[np.ndarray] | None:
    if images is None:
        return None
    photos = as_numpy(images, "images")
    if photos.ndim == 3:
        photos = photos[None]
    for row, (photo, lab) in enumerate(zip(photos, labels, strict=False)):
        if photo.shape != (*lab.shape, 3) or photo.dtype != np.uint8:
            raise InvalidInputError(
                f"batch {batch}, image {row}: the photo is {photo.dtype} {photo.shape}; photos "
                f"must be uint8 (H, W, 3) matching the labels {lab.shape}."
            )
    if len(photos) != len(labels):
        raise InvalidInputError(f"batch {batch} has {len(labels)} images but {len(photos)} photos.")
    return list(photos)


class _Accumulator:
    """What the scanner keeps of every image: a few numbers, never pixels."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.ids: list[str] = []
        self.sizes: list[tuple[int, int]] = []
        self.photos: dict[int, str] = {}
        self.softmin: list[float] = []
        self.scored: list[int] = []
        self.class_sum = np.zeros(num_classes)
        self.class_count = np.zeros(num_classes, np.int64)
        self.s_hist = np.zeros(HIST_BINS, np.int64)
        self.ranges: list[tuple[int, int]] = []
        self.probs_dtype: np.dtype | None = None
        self._labels_dtype: np.dtype | None = None
        self.seen: set[str] = set()

    @property
    def batches(self) -> int:
        return len(self.ranges)

    def begin_batch(
        self, ids: list[str], shapes: list[tuple[int, ...]], probs: list[np.ndarray], batch: int
    ) -> int:
        """Check the batch against the run so far; return its first image's index."""
        for name in ids:
            if name in self.seen:
                raise InvalidInputError(f"batch {batch} repeats the image id {name!r}.")
        dtypes = {np.dtype(p.dtype) for p in probs}
        if self.probs_dtype is not None:
            dtypes.add(self.probs_dtype)
        if len(dtypes) > 1:
            raise InvalidInputError(
                f"batch {batch} holds {', '.join(sorted(str(d) for d in dtypes))} probabilities; "
                "give every batch the same dtype (the run's scores keep its precision)."
            )
        self.probs_dtype = dtypes.pop()
        start = len(self.ids)
        self.ids.extend(ids)
        self.seen.update(ids)
        self.sizes.extend((int(s[0]), int(s[1])) for s in shapes)
        return start

    def labels_dtype(self, labels: list[np.ndarray], ignore: int | None) -> np.dtype:
        """The run's label type, fixed by the first batch (as a scan of files fixes it)."""
        if self._labels_dtype is None:
            given = np.result_type(*[lab.dtype for lab in labels])
            self._labels_dtype = stored_label_dtype(given, self.num_classes, ignore)
        return self._labels_dtype

    def add_result(self, index: int, result: ImageResult) -> None:
        self.class_sum += result.class_sum
        self.class_count += result.class_count
        self.s_hist += result.hist
        self.softmin.append(result.softmin)
        self.scored.append(result.scored)

    def end_batch(self, start: int, stop: int) -> None:
        self.ranges.append((start, stop))

    def stats(self, params: Params) -> PassStats:
        assert self.probs_dtype is not None
        extent = check_extent(
            self.num_classes, self.probs_dtype, np.array(self.sizes, np.int64), params
        )
        return PassStats(
            extent,
            params.downsample,
            self.class_sum,
            self.class_count,
            self.s_hist,
            np.array(self.softmin),
            np.array(self.scored, np.int64),
            list(self.ranges),
        )

    def table(self) -> ImageTable:
        files = [
            {"labels": "", "pred_probs": "", "photo": self.photos.get(index, "")}
            for index in range(len(self.ids))
        ]
        return ImageTable(list(self.ids), np.array(self.sizes, np.int64).reshape(-1, 2), files)


class _StreamedInputs:
    """The ``inputs`` and ``dataset`` facts of a run fed by a Scanner (no input files)."""

    def __init__(self, images: _Accumulator) -> None:
        self.images = images
        self.layout = None
        self.skipped: dict[str, Any] = {}

    @property
    def ids(self) -> list[str]:
        return list(self.images.ids)

    def inputs(self) -> dict[str, Any]:
        block: dict[str, Any] = {
            "labels": {"path": None, "format": "streamed", "images": len(self.images.ids)},
            "pred_probs": {"path": None, "format": "streamed", "images": len(self.images.ids)},
        }
        if self.images.photos:
            block["images"] = {"path": PHOTOS_FOLDER, "format": "run"}
        return block
