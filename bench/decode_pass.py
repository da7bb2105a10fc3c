"""The floor for folder datasets: decode every mask PNG and read every prediction once.

    python bench/decode_pass.py DATASET [--float-max]

DATASET holds ``labels/ID.png`` and ``pred_probs/ID.npy`` (K,H,W). In one plain,
single-threaded loop over the sorted ids: ``np.asarray(PIL.Image.open(mask))``, then
``p = np.load(pred, mmap_mode="r")`` and ``p.view(uintN).max(axis=0)`` — every byte of
the prediction touched once, nothing else. The bytes are viewed as unsigned integers of
the same width because numpy's float16 ``max`` is not vectorised (about 0.6 GB/s, a
compute cost that is no part of reading the file); ``--float-max`` takes the max of the
floats instead, to see that cost. Prints one JSON line with the seconds the loop took.
numpy + Pillow only. Peak RSS of this process includes the mapped file pages it touched
(that is the page cache, not its own memory).
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
    float_max = "--float-max" in sys.argv[2:]
    t0 = time.perf_counter()
    masks = sorted((dataset / "labels").glob("*.png"))
    mask_bytes = pred_bytes = pixels = 0
    for mask_path in masks:
        mask = np.asarray(Image.open(mask_path))
        p = np.load(dataset / "pred_probs" / f"{mask_path.stem}.npy", mmap_mode="r")
        if float_max:
            p.max(axis=0)
        else:
            p.view(f"u{p.dtype.itemsize}").max(axis=0)
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
                "touch": "float max" if float_max else "unsigned-int view max",
            }
        )
    )


if __name__ == "__main__":
    main()
