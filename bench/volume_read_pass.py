"""The floor for volume datasets: read every label volume and load every prediction once.

    python bench/volume_read_pass.py DATASET

DATASET is in nnU-Net's layout: ``labelsTr/CASE.nii.gz`` and ``predictions/CASE.npz``
(key ``probabilities``, (K, Z, Y, X)). In one plain, single-threaded loop over the
sorted cases: ``np.asarray(nibabel.load(label).dataobj)`` (the whole volume decompressed)
and ``np.load(pred)["probabilities"]`` (the whole array decompressed), nothing else —
what any program that reads such a dataset must do. Prints one JSON line with the
seconds the loop took. numpy + nibabel only.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import nibabel
import numpy as np


def main() -> None:
    dataset = Path(sys.argv[1])
    t0 = time.perf_counter()
    labels = sorted((dataset / "labelsTr").glob("*.nii.gz"))
    label_bytes = pred_bytes = voxels = 0
    for path in labels:
        mask = np.asarray(nibabel.load(path).dataobj)
        case = path.name.removesuffix(".nii.gz")
        with np.load(dataset / "predictions" / f"{case}.npz") as archive:
            probs = archive["probabilities"]
        label_bytes += mask.nbytes
        pred_bytes += probs.nbytes
        voxels += mask.size
    seconds = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "seconds": seconds,
                "volumes": len(labels),
                "voxels": voxels,
                "bytes": pred_bytes,
                "label_bytes": label_bytes,
                "gb_per_s": pred_bytes / seconds / 1e9,
            }
        )
    )


if __name__ == "__main__":
    main()
