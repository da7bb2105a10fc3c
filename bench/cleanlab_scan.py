"""The reference: cleanlab 2.9's segmentation functions on the benchmark's .npy files.

    python bench/cleanlab_scan.py filter DATASET OUT_PREFIX
    python bench/cleanlab_scan.py score  DATASET OUT_PREFIX
    python bench/cleanlab_scan.py flat   FOLDER_DATASET OUT_PREFIX
    python bench/cleanlab_scan.py volumes NNUNET_DATASET OUT_PREFIX

``filter`` and ``score`` read a stacked dataset: labels and pred_probs are opened with
``np.load(..., mmap_mode="r")``, as a user would. ``filter`` runs
``cleanlab.segmentation.filter.find_label_issues(..., n_jobs=1)`` and saves the mask to
OUT_PREFIX-mask.npy; ``score`` runs
``cleanlab.segmentation.rank.get_label_quality_scores(..., method="softmin", n_jobs=1)``
and saves OUT_PREFIX-image.npy and OUT_PREFIX-pixel.npy. One JSON line on stdout with
the seconds spent importing cleanlab, in the call itself, and saving the result.

``flat`` is what a cleanlab user must do today with a folder dataset
(``labels/ID.png`` masks, ``pred_probs/ID.npy`` (K,H,W) predictions) whose images have
different sizes: they cannot be stacked into (N,K,H,W), so every mask and prediction is
decoded into memory, in sorted id order, and all pixels are laid end to end as one
1×P image — labels (1, 1, P), pred_probs (1, K, 1, P) — for
``find_label_issues(..., n_jobs=1, verbose=False)``. Exact Confident Learning (downsample
1) does not depend on image boundaries, so the result is the per-image result laid end
to end. Saves the flat (P,) mask to OUT_PREFIX-flat-mask.npy and the ids and sizes, in
that order, to OUT_PREFIX-flat-ids.json. Its "seconds" (the work) = decoding + the call.

``volumes`` is what a cleanlab user must do with 3-D volumes in nnU-Net's layout
(``labelsTr/CASE.nii.gz`` and ``predictions/CASE.npz`` with ``probabilities`` (K, Z, Y, X)):
cleanlab's segmentation functions take 2-D images, so every volume is read (nibabel,
transposed to (Z, Y, X) as nnU-Net reads it) and cut into its slices, in sorted case
order: labels (sum Z, Y, X) and pred_probs (sum Z, K, Y, X) float32, all in memory, for
``find_label_issues(..., n_jobs=1, verbose=False)``. Every volume needs the same
in-plane size. Saves the (sum Z, Y, X) mask to OUT_PREFIX-volumes-mask.npy and the cases
and depths to OUT_PREFIX-volumes-cases.json. "seconds" = decoding + the call.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image


def decode_end_to_end(dataset: Path) -> tuple[np.ndarray, np.ndarray, list[list]]:
    """Every mask and prediction of a folder dataset, in memory, pixels end to end:
    labels (1, 1, P) and pred_probs (1, K, 1, P), in sorted id order; and [id, H, W] of
    each image."""
    ids = sorted(p.stem for p in (dataset / "labels").glob("*.png"))
    masks = [np.asarray(Image.open(dataset / "labels" / f"{i}.png")) for i in ids]
    sizes = [[i, int(m.shape[0]), int(m.shape[1])] for i, m in zip(ids, masks, strict=True)]
    total = sum(m.size for m in masks)
    labels = np.empty((1, 1, total), dtype=masks[0].dtype)
    pred_probs = None
    start = 0
    for i, mask in zip(ids, masks, strict=True):
        probs = np.load(dataset / "pred_probs" / f"{i}.npy", allow_pickle=False)
        k, h, w = probs.shape
        if (h, w) != mask.shape:
            raise SystemExit(f"{i}: mask {mask.shape}, prediction {probs.shape}")
        if pred_probs is None:
            pred_probs = np.empty((1, k, 1, total), dtype=probs.dtype)
        stop = start + mask.size
        labels[0, 0, start:stop] = mask.reshape(-1)
        pred_probs[0, :, 0, start:stop] = probs.reshape(k, -1)
        start = stop
    if pred_probs is None:
        raise SystemExit(f"no masks in {dataset / 'labels'}")
    return labels, pred_probs, sizes


def decoded_call(dataset: Path, decode: Callable, written: Callable) -> None:
    """What a cleanlab user does with files: ``decode`` them into arrays, then
    ``find_label_issues``; ``written(mask, labels, listing)`` saves the mask and returns
    its counts. Prints one JSON line of the timings (import, decode, call, save)."""
    t0 = time.perf_counter()
    import cleanlab
    from cleanlab.segmentation.filter import find_label_issues

    t1 = time.perf_counter()
    labels, pred_probs, listing = decode(dataset)
    t2 = time.perf_counter()
    mask = find_label_issues(labels, pred_probs, n_jobs=1, verbose=False)
    t3 = time.perf_counter()
    counts = written(np.asarray(mask, dtype=bool), labels, listing)
    t4 = time.perf_counter()
    print(
        json.dumps(
            {
                "seconds": t3 - t1,
                "decode_s": t2 - t1,
                "call_s": t3 - t2,
                "import_s": t1 - t0,
                "save_s": t4 - t3,
                **counts,
                "pred_probs_bytes": int(pred_probs.nbytes),
                "cleanlab_version": cleanlab.__version__,
            }
        )
    )


def flat(dataset: Path, prefix: str) -> None:
    def written(mask: np.ndarray, labels: np.ndarray, sizes: list) -> dict[str, int]:
        np.save(f"{prefix}-flat-mask.npy", mask.reshape(-1))
        Path(f"{prefix}-flat-ids.json").write_text(json.dumps(sizes) + "\n")
        return {"images": len(sizes), "pixels": int(labels.size),
                "issue_pixels": int(np.count_nonzero(mask))}  # fmt: skip

    decoded_call(dataset, decode_end_to_end, written)


def decode_volumes(dataset: Path) -> tuple[np.ndarray, np.ndarray, list[list]]:
    """Every volume of an nnU-Net dataset cut into slices, in sorted case order: labels
    (sum Z, Y, X) and pred_probs (sum Z, K, Y, X) float32; and [case, Z] of each volume."""
    import nibabel

    paths = sorted((dataset / "labelsTr").glob("*.nii.gz"))
    if not paths:
        raise SystemExit(f"no volumes in {dataset / 'labelsTr'}")
    masks = [np.asarray(nibabel.load(p).dataobj).T for p in paths]  # (Z, Y, X)
    if len({m.shape[1:] for m in masks}) != 1:
        raise SystemExit("cleanlab needs slices of one size: the volumes differ in-plane")
    names = [p.name.removesuffix(".nii.gz") for p in paths]
    cases = [[name, int(m.shape[0])] for name, m in zip(names, masks, strict=True)]
    labels = np.concatenate(masks)
    del masks
    pred_probs = None
    start = 0
    for case, depth in cases:
        with np.load(dataset / "predictions" / f"{case}.npz") as archive:
            probs = archive["probabilities"]  # (K, Z, Y, X)
        if pred_probs is None:
            pred_probs = np.empty((len(labels), probs.shape[0], *labels.shape[1:]), np.float32)
        pred_probs[start : start + depth] = probs.transpose(1, 0, 2, 3)
        start += depth
    assert pred_probs is not None
    return labels, pred_probs, cases


def volumes(dataset: Path, prefix: str) -> None:
    def written(mask: np.ndarray, labels: np.ndarray, cases: list) -> dict[str, int]:
        np.save(f"{prefix}-volumes-mask.npy", mask)
        Path(f"{prefix}-volumes-cases.json").write_text(json.dumps(cases) + "\n")
        return {"volumes": len(cases), "slices": int(labels.shape[0]), "voxels": int(labels.size),
                "issue_voxels": int(np.count_nonzero(mask))}  # fmt: skip

    decoded_call(dataset, decode_volumes, written)


def main() -> None:
    mode, dataset, prefix = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    if mode == "flat":
        flat(dataset, prefix)
        return
    if mode == "volumes":
        volumes(dataset, prefix)
        return
    t0 = time.perf_counter()
    import cleanlab
    from cleanlab.segmentation.filter import find_label_issues
    from cleanlab.segmentation.rank import get_label_quality_scores

    t1 = time.perf_counter()
    labels = np.load(dataset / "labels.npy", mmap_mode="r", allow_pickle=False)
    pred_probs = np.load(dataset / "pred_probs.npy", mmap_mode="r", allow_pickle=False)
    t2 = time.perf_counter()
    extra: dict[str, float | int] = {}
    if mode == "filter":
        mask = find_label_issues(labels, pred_probs, n_jobs=1, verbose=False)
        t3 = time.perf_counter()
        np.save(f"{prefix}-mask.npy", np.asarray(mask, dtype=bool))
        extra["issue_pixels"] = int(np.count_nonzero(mask))
    elif mode == "score":
        image_scores, pixel_scores = get_label_quality_scores(
            labels, pred_probs, method="softmin", n_jobs=1, verbose=False
        )
        t3 = time.perf_counter()
        np.save(f"{prefix}-image.npy", np.asarray(image_scores, dtype=np.float64))
        np.save(f"{prefix}-pixel.npy", np.asarray(pixel_scores))
    else:
        raise SystemExit(f"unknown mode {mode!r}: use filter, score, flat or volumes")
    t4 = time.perf_counter()
    print(
        json.dumps(
            {
                "seconds": t3 - t2,
                "import_s": t1 - t0,
                "open_s": t2 - t1,
                "save_s": t4 - t3,
                "cleanlab_version": cleanlab.__version__,
                **extra,
            }
        )
    )


if __name__ == "__main__":
    main()
