"""The floor for folder datasets: decode every mask PNG and load every prediction once.

    python bench/decode_pass.py DATASET [--mmap-touch]

DATASET holds ``labels/ID.png`` and ``pred_probs/ID.npy`` (K,H,W). In one plain,
single-threaded loop over the sorted ids: ``np.asarray(PIL.Image.open(mask))`` and
``np.load(pred)`` — every mask decoded and every prediction loaded into memory once,
nothing else: what any program that reads such a dataset must do.

``--mmap-touch`` is a stricter floor: the prediction is memory-mapped
(``np.load(pred, mmap_mode="r")``) and every byte touched once by
``p.view(uintN).max(axis=0)`` (viewed as unsigned integers of the same width because
numpy's float16 ``max`` is not vectorised, about 0.6 GB/s), so no copy is made.
Prints one JSON line with the seconds the loop took. numpy + Pillow only.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image


def main() -> None:
    dataset = Path(sys.argv[1])
    mmap_touch = "--mmap-touch" in sys.argv[2:]
    t0 = time.perf_counter()
    masks = sorted((dataset / "labels").glob("*.png"))
    mask_bytes = pred_bytes = pixels = 0
    for mask_path in masks:
        mask = np.asarray(Image.open(mask_path))
        path = dataset / "pred_probs" / f"{mask_path.stem}.npy"
        if mmap_touch:
            p = np.load(path, mmap_mode="r")
            p.view(f"u{p.dtype.itemsize}").max(axis=0)
        else:
            p = np.load(path, allow_pickle=False)
        mask_bytes += mask.nbytes
        pred_bytes += p.nbytes
        pixels += mask.size
    seconds = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "seconds": seconds,
                "images": len(masks),
                "pixels": pixels,
                "bytes": pred_bytes,
                "mask_bytes": mask_bytes,
                "gb_per_s": pred_bytes / seconds / 1e9,
                "touch": "mmap, unsigned-int view max" if mmap_touch else "np.load",
            }
        )
    )


if __name__ == "__main__":
    main()
