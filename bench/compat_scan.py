"""segaudit's cleanlab-compatible layer on the benchmark's .npy files, as a cleanlab user
would call it after switching the import.

    python bench/compat_scan.py filter DATASET OUT_PREFIX
    python bench/compat_scan.py score  DATASET OUT_PREFIX

Both read a stacked dataset: labels and pred_probs are opened with
``np.load(..., mmap_mode="r")``, as a user would. ``filter`` runs
``segaudit.segmentation.filter.find_label_issues(..., n_jobs=1, verbose=False)`` and saves
the mask to OUT_PREFIX-mask.npy; ``score`` runs
``segaudit.segmentation.rank.get_label_quality_scores(..., method="softmin", n_jobs=1,
verbose=False)`` and saves OUT_PREFIX-image.npy and OUT_PREFIX-pixel.npy. One JSON line
on stdout with the seconds spent importing segaudit.segmentation, opening the arrays, in
the call itself, and saving the result — the same fields as ``bench/cleanlab_scan.py``,
so the two rows compare directly (and their masks with ``bench/compare.py``).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np


def main() -> None:
    if len(sys.argv) != 4 or sys.argv[1] not in ("filter", "score"):
        raise SystemExit("usage: compat_scan.py filter|score DATASET OUT_PREFIX")
    mode, dataset, prefix = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    t0 = time.perf_counter()
    import segaudit
    from segaudit.segmentation.filter import find_label_issues
    from segaudit.segmentation.rank import get_label_quality_scores

    t1 = time.perf_counter()
    labels = np.load(dataset / "labels.npy", mmap_mode="r", allow_pickle=False)
    pred_probs = np.load(dataset / "pred_probs.npy", mmap_mode="r", allow_pickle=False)
    t2 = time.perf_counter()
    extra: dict[str, float | int | str] = {}
    if mode == "filter":
        mask = find_label_issues(labels, pred_probs, n_jobs=1, verbose=False)
        t3 = time.perf_counter()
        np.save(f"{prefix}-mask.npy", np.asarray(mask, dtype=bool))
        extra["issue_pixels"] = int(np.count_nonzero(mask))
    else:
        image_scores, pixel_scores = get_label_quality_scores(
            labels, pred_probs, method="softmin", n_jobs=1, verbose=False
        )
        t3 = time.perf_counter()
        np.save(f"{prefix}-image.npy", np.asarray(image_scores, dtype=np.float64))
        np.save(f"{prefix}-pixel.npy", np.asarray(pixel_scores))
    t4 = time.perf_counter()
    print(
        json.dumps(
            {
                "seconds": t3 - t2,
                "import_s": t1 - t0,
                "open_s": t2 - t1,
                "save_s": t4 - t3,
                "segaudit_version": segaudit.__version__,
                **extra,
            }
        )
    )


if __name__ == "__main__":
    main()
