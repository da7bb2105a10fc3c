"""Parity checks between segaudit's run directories and cleanlab's saved outputs (untimed).

    python bench/compare.py mask   RUN  CLEANLAB-mask.npy  DATASET
    python bench/compare.py scores RUN  CLEANLAB-image.npy [CLEANLAB-pixel.npy]

``mask`` compares RUN/issues.zarr with cleanlab's ``find_label_issues`` mask, image by
image, and counts the differing pixels; for up to 5 of them it prints what the inputs
hold there (to tell ties from real disagreements). ``scores`` compares the image scores
in RUN/image_scores.csv (``softmin_score`` or ``score``) and, when given, RUN's
pixel_scores.zarr with cleanlab's ``get_label_quality_scores`` outputs. One JSON line.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import zarr


def compare_mask(run: Path, mask_path: str, dataset: Path) -> dict:
    ours = zarr.open_array(str(run / "issues.zarr"), mode="r")
    theirs = np.load(mask_path, mmap_mode="r")
    if tuple(ours.shape) != tuple(theirs.shape):
        return {"error": f"shapes differ: segaudit {ours.shape}, cleanlab {theirs.shape}"}
    differing = only_ours = only_theirs = n_ours = n_theirs = 0
    examples = []
    for i in range(ours.shape[0]):
        a = np.asarray(ours[i], dtype=bool)
        b = np.asarray(theirs[i], dtype=bool)
        n_ours += int(a.sum())
        n_theirs += int(b.sum())
        diff = a != b
        nd = int(diff.sum())
        if nd:
            differing += nd
            only_ours += int((a & ~b).sum())
            only_theirs += int((~a & b).sum())
            if len(examples) < 5:
                examples += [(i, int(r), int(c)) for r, c in np.argwhere(diff)[: 5 - len(examples)]]
    details = []
    if examples:
        labels = np.load(dataset / "labels.npy", mmap_mode="r")
        probs = np.load(dataset / "pred_probs.npy", mmap_mode="r")
        for i, r, c in examples:
            p = np.asarray(probs[i, :, r, c], dtype=np.float64)
            top = np.argsort(-p, kind="stable")[:2]
            details.append(
                {
                    "pixel": [i, r, c],
                    "label": int(labels[i, r, c]),
                    "s": float(p[int(labels[i, r, c])]),
                    "top2": [[int(k), float(p[k])] for k in top],
                    "segaudit": bool(ours[i, r, c]),
                    "cleanlab": bool(theirs[i, r, c]),
                }
            )
    return {
        "differing_pixels": differing,
        "only_segaudit": only_ours,
        "only_cleanlab": only_theirs,
        "segaudit_issue_pixels": n_ours,
        "cleanlab_issue_pixels": n_theirs,
        "examples": details,
    }


def read_image_scores(run: Path) -> np.ndarray:
    with open(run / "image_scores.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    column = "softmin_score" if rows and "softmin_score" in rows[0] else "score"
    scores = np.full(len(rows), np.nan)
    for row in rows:
        scores[int(row["image"])] = float(row[column])
    return scores


def compare_scores(run: Path, image_path: str, pixel_path: str | None) -> dict:
    ours = read_image_scores(run)
    theirs = np.load(image_path)
    out: dict = {}
    if ours.shape != theirs.shape:
        out["image_error"] = (
            f"{ours.shape[0]} image scores in segaudit, {theirs.shape[0]} in cleanlab"
        )
    else:
        out["image_max_abs_diff"] = float(np.max(np.abs(ours - theirs)))
        order_ours = np.lexsort((np.arange(ours.size), ours))
        order_theirs = np.lexsort((np.arange(theirs.size), theirs))
        out["image_same_ranking"] = bool(np.array_equal(order_ours, order_theirs))
    if pixel_path:
        zpath = run / "pixel_scores.zarr"
        if not zpath.exists():
            out["pixel_error"] = "no pixel_scores.zarr in the run"
        else:
            ours_px = zarr.open_array(str(zpath), mode="r")
            theirs_px = np.load(pixel_path, mmap_mode="r")
            if tuple(ours_px.shape) != tuple(theirs_px.shape):
                out["pixel_error"] = f"shapes differ: {ours_px.shape} vs {theirs_px.shape}"
            else:
                worst = 0.0
                for i in range(ours_px.shape[0]):
                    a = np.asarray(ours_px[i], dtype=np.float64)
                    b = np.asarray(theirs_px[i], dtype=np.float64)
                    worst = max(worst, float(np.max(np.abs(a - b))))
                out["pixel_max_abs_diff"] = worst
    return out


def main() -> None:
    mode = sys.argv[1]
    if mode == "mask":
        result = compare_mask(Path(sys.argv[2]), sys.argv[3], Path(sys.argv[4]))
    elif mode == "scores":
        pixel = sys.argv[4] if len(sys.argv) > 4 else None
        result = compare_scores(Path(sys.argv[2]), sys.argv[3], pixel)
    else:
        raise SystemExit(f"unknown mode {mode!r}: use mask or scores")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
