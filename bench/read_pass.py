"""The read floor: one plain streaming pass over a memory-mapped pred_probs.npy.

    python bench/read_pass.py PRED_PROBS.npy

Touches every byte once (``p[i:i+1].max(axis=1)`` per image) and prints one JSON line
with the seconds the loop took. numpy only. Peak RSS of this process includes the
mapped file pages it touched (that is the page cache, not its own memory).
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np


def main() -> None:
    path = sys.argv[1]
    t0 = time.perf_counter()
    p = np.load(path, mmap_mode="r", allow_pickle=False)
    for i in range(p.shape[0]):
        p[i : i + 1].max(axis=1)
    seconds = time.perf_counter() - t0
    print(
        json.dumps(
            {"seconds": seconds, "bytes": int(p.nbytes), "gb_per_s": p.nbytes / seconds / 1e9}
        )
    )


if __name__ == "__main__":
    main()
