"""An inference loop in memory, run three ways: alone, feeding a Scanner, or saving files.

    python bench/scanner_loop.py produce          [--images N --height H --width W ...]
    python bench/scanner_loop.py scanner RUN      [--workers W] [...]
    python bench/scanner_loop.py files OUT        [...]

The "model" is synth's simulator (``segaudit synth``'s scenes, annotation errors and
simulated model, without the photos): image ``i`` of seed ``S`` gets the same noisy
labels and the same float32 probabilities as image ``i`` of ``segaudit synth --seed S``.
Images come in batches of ``--batch`` (default 4) as a model gives them: labels
(B, H, W) uint8 and probabilities (B, K, H, W) float32, made one image at a time on the
main thread into one pair of batch arrays, reused from batch to batch (as a model
writing into its output buffer; nothing holds a batch once the next one is made).

- ``produce``: the loop alone: the baseline cost of "running the model";
- ``scanner RUN``: every batch goes to ``segaudit.Scanner(RUN, num_classes=K,
  workers=W)``; the run is published when the ``with`` block ends (the probabilities
  are never written);
- ``files OUT``: every image is saved as a folder dataset (``OUT/labels/ID.png`` with
  Pillow, ``OUT/pred_probs/ID.npy`` float32 with ``np.save``), what a user does today
  before ``segaudit scan OUT``; the files are then flushed to disk (``syncfs``), as a
  run is before it is published.

Prints one JSON line: ``seconds`` (the whole loop, from before the first image to the
published run or the flushed files), ``images``, ``model_seconds`` (making the batches),
and for ``scanner``/``files`` ``bytes_written`` (the sizes of the files under RUN/OUT);
``scanner_seconds`` (inside ``Scanner`` calls: entering, ``add``, leaving the block)
or ``write_seconds``/``sync_seconds`` and the bytes of each kind of file.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from segaudit.synth.annotation_errors import corrupt
from segaudit.synth.image import band_rows, probability_bands
from segaudit.synth.model import Model
from segaudit.synth.options import DEFAULT_CLASS_NAMES
from segaudit.synth.scene import make_scene
from segaudit.synth.world import CHOICE, ERRORS, MODEL, SCENE, World, rng

CORRUPT_FRACTION = 0.3  # as `segaudit synth`'s default


def class_names(k: int) -> list[str]:
    return [
        DEFAULT_CLASS_NAMES[c] if c < len(DEFAULT_CLASS_NAMES) else f"class_{c}" for c in range(k)
    ]


def image_id(i: int, n: int) -> str:
    return f"img_{i:0{max(5, len(str(n)))}d}"


def model_batches(
    n: int, k: int, h: int, w: int, seed: int, batch: int
) -> Iterator[tuple[list[str], np.ndarray, np.ndarray]]:
    """(ids, labels (B, H, W) uint8, probs (B, K, H, W) float32) batch after batch.

    The arrays are views of two buffers reused by the next batch."""
    if k > 256:
        raise SystemExit("scanner_loop: at most 256 classes (labels are uint8)")
    world = World.build(seed, class_names(k))
    chosen = rng(seed, CHOICE).choice(n, size=round(CORRUPT_FRACTION * n), replace=False)
    corrupted = np.zeros(n, dtype=bool)
    corrupted[chosen] = True
    labels = np.empty((batch, h, w), dtype=np.uint8)
    probs = np.empty((batch, k, h, w), dtype=np.float32)
    band = band_rows(k, h, w)
    scratch = np.empty(k * band * w, np.float32) if band < h else None  # bands: copied
    for first in range(0, n, batch):
        count = min(batch, n - first)
        for row, i in enumerate(range(first, first + count)):
            # synth.image.make_image without the photo (streams are independent per tag)
            scene = make_scene(rng(seed, SCENE, i), h, w, world)
            noisy = scene.truth
            if corrupted[i]:
                noisy, _ = corrupt(rng(seed, ERRORS, i), scene, world)
            model = Model.build(rng(seed, MODEL, i), scene, world)
            labels[row] = noisy
            if band == h:  # the whole image in one step: straight into the batch array
                buffer = probs[row].reshape(-1)
                for _r0, _p in probability_bands(model, band, buffer):
                    pass
            else:
                assert scratch is not None
                for r0, p in probability_bands(model, band, scratch):
                    probs[row, :, r0 : r0 + p.shape[1]] = p
        ids = [image_id(i, n) for i in range(first, first + count)]
        yield ids, labels[:count], probs[:count]


def tree_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def sync_folder(path: Path) -> None:
    """Flush the file system holding ``path`` (syncfs), else everything (sync)."""
    libc = ctypes.CDLL(None, use_errno=True)
    syncfs = getattr(libc, "syncfs", None)
    if syncfs is not None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            if syncfs(fd) == 0:
                return
        finally:
            os.close(fd)
    os.sync()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("produce", "scanner", "files"))
    parser.add_argument("dest", nargs="?", help="RUN (scanner) or OUT (files)")
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--classes", type=int, default=19)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--workers", type=int, default=1, help="Scanner workers (scanner mode)")
    args = parser.parse_args()
    if (args.mode == "produce") != (args.dest is None):
        parser.error("scanner needs RUN, files needs OUT, produce takes neither")
    n, k, h, w = args.images, args.classes, args.height, args.width
    if min(n, k, h, w, args.batch) < 1:
        parser.error("--images, --classes, --height, --width and --batch must be positive")
    batches = model_batches(n, k, h, w, args.seed, args.batch)
    out: dict = {"mode": args.mode, "images": n, "shape": [n, k, h, w], "batch": args.batch}
    consumer = 0.0  # seconds spent outside the model

    if args.mode == "scanner":  # imported before the clock starts, as scan's work excludes it
        import segaudit

        scanner_class = segaudit.Scanner
    elif args.mode == "files":
        from PIL import Image

    t0 = time.perf_counter()
    if args.mode == "produce":
        for _ids, _labels, _probs in batches:
            pass
    elif args.mode == "scanner":
        clock = time.perf_counter()
        with scanner_class(Path(args.dest), num_classes=k, workers=args.workers) as scan:
            consumer += time.perf_counter() - clock
            for ids, labels, probs in batches:
                clock = time.perf_counter()
                scan.add(labels, probs, ids=ids)
                consumer += time.perf_counter() - clock
            clock = time.perf_counter()  # leaving the block: the cut, the outputs, publishing
        consumer += time.perf_counter() - clock
        summary = scan.summary or {}
        out.update(
            workers=args.workers,
            scanner_seconds=consumer,
            issue_pixels=summary.get("issue_pixels"),
        )
    else:
        root = Path(args.dest)
        (root / "labels").mkdir(parents=True, exist_ok=True)
        (root / "pred_probs").mkdir(parents=True, exist_ok=True)
        for ids, labels, probs in batches:
            clock = time.perf_counter()
            for name, lab, prob in zip(ids, labels, probs, strict=True):
                Image.fromarray(lab).save(root / "labels" / f"{name}.png")
                np.save(root / "pred_probs" / f"{name}.npy", prob)
            consumer += time.perf_counter() - clock
        clock = time.perf_counter()
        sync_folder(root)
        sync = time.perf_counter() - clock
        consumer += sync
        out.update(write_seconds=consumer - sync, sync_seconds=sync)
    seconds = time.perf_counter() - t0

    out.update(seconds=seconds, model_seconds=seconds - consumer)
    if args.mode != "produce":
        dest = Path(args.dest)
        out["bytes_written"] = tree_bytes(dest)
        if args.mode == "files":
            out["labels_bytes"] = tree_bytes(dest / "labels")
            out["pred_probs_bytes"] = tree_bytes(dest / "pred_probs")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
