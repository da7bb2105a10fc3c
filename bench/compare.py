"""Parity checks between segaudit's run directories and cleanlab's saved outputs (untimed).

    python bench/compare.py mask   RUN  CLEANLAB-mask.npy  DATASET
    python bench/compare.py scores RUN  CLEANLAB-image.npy [CLEANLAB-pixel.npy]
    python bench/compare.py flatmask RUN CLEANLAB-flat-mask.npy CLEANLAB-flat-ids.json DATASET

``mask`` compares RUN/issues.zarr with cleanlab's ``find_label_issues`` mask, image by
image, and counts the differing pixels; for up to 5 of them it prints what the inputs
hold there (to tell ties from real disagreements). ``scores`` compares the image scores
in RUN/image_scores.csv (``softmin_score`` or ``score``) and, when given, RUN's
pixel_scores.zarr with cleanlab's ``get_label_quality_scores`` outputs. ``flatmask``
compares a folder dataset's run (its per-image ``issues``, laid end to end in
images.csv order) with the flat mask of ``cleanlab_scan.py flat`` (all pixels end to
end, in the order of CLEANLAB-flat-ids.json: sorted ids), after checking that both list
the same images, of the same sizes, in the same order. One JSON line.
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


def compare_flat_mask(run_path: Path, mask_path: str, ids_path: str, dataset: Path) -> dict:
    from PIL import Image

    from segaudit.runs.run import open_run

    run = open_run(run_path)
    table = run.images
    ours_order = [[i, int(h), int(w)] for i, (h, w) in zip(table.ids, table.sizes, strict=True)]
    theirs_order = json.loads(Path(ids_path).read_text())
    if ours_order != theirs_order:
        first = next(
            (n for n, (a, b) in enumerate(zip(ours_order, theirs_order, strict=False)) if a != b),
            min(len(ours_order), len(theirs_order)),
        )
        return {
            "error": f"image order differs: segaudit images.csv has {len(ours_order)} images, "
            f"cleanlab {len(theirs_order)}; first difference at position {first}: "
            f"{ours_order[first : first + 1]} vs {theirs_order[first : first + 1]}"
        }
    theirs = np.load(mask_path, mmap_mode="r")
    total = sum(h * w for _, h, w in ours_order)
    if theirs.shape != (total,):
        return {"error": f"cleanlab's flat mask has shape {theirs.shape}, expected ({total},)"}
    differing = only_ours = only_theirs = n_ours = n_theirs = 0
    examples = []
    s_values: set[float] = set()  # the given label's probability at every differing pixel
    start = 0
    for i, (image_id, h, w) in enumerate(ours_order):
        a = np.asarray(run.read("issues", i), dtype=bool)
        if a.shape != (h, w):
            return {"error": f"issues of image {i} ({image_id}) are {a.shape}, not {(h, w)}"}
        b = np.asarray(theirs[start : start + h * w], dtype=bool).reshape(h, w)
        start += h * w
        n_ours += int(a.sum())
        n_theirs += int(b.sum())
        diff = a != b
        nd = int(diff.sum())
        if nd:
            differing += nd
            only_ours += int((a & ~b).sum())
            only_theirs += int((~a & b).sum())
            if len(examples) < 5:
                examples += [
                    (i, image_id, int(r), int(c), bool(a[r, c]), bool(b[r, c]))
                    for r, c in np.argwhere(diff)[: 5 - len(examples)]
                ]
            rows, cols = np.nonzero(diff)
            label = np.asarray(Image.open(dataset / "labels" / f"{image_id}.png"))[rows, cols]
            probs = np.load(dataset / "pred_probs" / f"{image_id}.npy", mmap_mode="r")
            inside = label.astype(np.int64) < probs.shape[0]
            s_values.update(
                float(v) for v in np.unique(probs[label[inside], rows[inside], cols[inside]])
            )
    details = []
    for i, image_id, r, c, ours_value, theirs_value in examples:
        label = int(np.asarray(Image.open(dataset / "labels" / f"{image_id}.png"))[r, c])
        probs = np.load(dataset / "pred_probs" / f"{image_id}.npy", mmap_mode="r")
        p = np.asarray(probs[:, r, c], dtype=np.float64)
        top = np.argsort(-p, kind="stable")[:2]
        details.append(
            {
                "pixel": [i, image_id, r, c],
                "label": label,
                "s": float(p[label]) if label < p.size else None,
                "top2": [[int(k), float(p[k])] for k in top],
                "segaudit": ours_value,
                "cleanlab": theirs_value,
            }
        )
    return {
        "images": len(ours_order),
        "pixels": total,
        "differing_pixels": differing,
        "only_segaudit": only_ours,
        "only_cleanlab": only_theirs,
        "segaudit_issue_pixels": n_ours,
        "cleanlab_issue_pixels": n_theirs,
        # One value here means the differing pixels are ties: they share the self-confidence
        # at which the ranking is cut.
        "s_distinct_at_differing": len(s_values),
        "s_at_differing": sorted(s_values)[:10],
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
    elif mode == "flatmask":
        result = compare_flat_mask(Path(sys.argv[2]), sys.argv[3], sys.argv[4], Path(sys.argv[5]))
    else:
        raise SystemExit(f"unknown mode {mode!r}: use mask, scores or flatmask")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
