"""Synthetic 3-D datasets in nnU-Net v2's raw layout, with known annotation errors.

:func:`generate_volumes` writes, for each case ``case_000``, ``case_001``, ...::

    OUT/dataset.json                 channel_names, labels, numTraining, file_ending, name
    OUT/imagesTr/CASE_0000.nii.gz    int16 CT-like image (Hounsfield units)
    OUT/labelsTr/CASE.nii.gz         uint8 given labels, with the injected errors
    OUT/predictions/CASE.npz         key "probabilities": (K, Z, Y, X) of the chosen dtype
    OUT/true_labels/CASE.nii.gz      uint8 true labels, and OUT/is_corrupted.csv (id,
                                     is_corrupted): what `segaudit eval --truth` reads
    OUT/errors.json                  the options, the affine and every injected error (last)

Arrays are indexed (z, y, x); the NIfTI files hold their transpose (x, y, z) with a
non-identity affine (see :mod:`~segaudit.synth.volume_files`). With a void fraction, a
share of each volume's slices is labelled ``ignore`` (label K) in labels and truth alike.
Each volume is made slab by slab from its own random streams, on worker threads, so the
same seed and options give byte-identical files.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from segaudit import __version__
from segaudit.progress import NullProgress, Progress
from segaudit.synth.folder import assign_sizes
from segaudit.synth.image import ThreadBuffers, map_in_order
from segaudit.synth.output import prepare_out, removed_on_failure
from segaudit.synth.volume_errors import EventTally, PlannedError, apply_errors, plan_errors
from segaudit.synth.volume_files import (
    ProbabilityWriter,
    dataset_json,
    nibabel,
    volume_affine,
    write_json,
    write_nifti,
)
from segaudit.synth.volume_model import Photographer, VolumeModel
from segaudit.synth.volume_options import Shape3, VolumeOptions, check_volume_options
from segaudit.synth.volume_scene import make_volume_scene
from segaudit.synth.world import (
    VOLUME_ERRORS,
    VOLUME_MODEL,
    VOLUME_PHOTO,
    VOLUME_SCENE,
    VOLUME_VOID,
    choose_corrupted,
    rng,
)

SLAB_BYTES = 32 * 2**20  # float32 probabilities computed per step
VOLUME_FOLDERS = ("imagesTr", "labelsTr", "predictions", "true_labels")


def generate_volumes(
    out: str | Path,
    *,
    volumes: int,
    classes: int,
    seed: int,
    shapes: str | Sequence[Any] | None = None,
    dtype: str = "float32",
    corrupt_fraction: float = 0.3,
    void_fraction: float = 0.0,
    class_names: Sequence[str] | None = None,
    force: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Write a synthetic nnU-Net-style volume dataset into ``out``; return ``errors.json``.

    ``shapes`` (``"32x64x64,16x48x48"``, strings or (Z, Y, X) triples; default 32x64x64)
    are dealt out to the volumes by the seed. Exactly ``round(corrupt_fraction * volumes)``
    volumes get 1-3 annotation errors (see :mod:`~segaudit.synth.volume_errors`).
    """
    progress = progress or NullProgress()
    options = check_volume_options(
        volumes=volumes,
        shapes=shapes,
        classes=classes,
        seed=seed,
        dtype=dtype,
        corrupt_fraction=corrupt_fraction,
        void_fraction=void_fraction,
        class_names=class_names,
    )
    nibabel()  # before anything is written
    out = Path(out)
    writer = VolumeWriter(out, options)
    created = prepare_out(out, force, writer.needed_bytes())
    with removed_on_failure(out, created):
        report = writer.write(progress)
    return report


def slab_slices(classes: int, shape: Shape3) -> int:
    """Slices made per step: depends on the volume's shape only, never on the machine."""
    depth, h, w = shape
    return int(max(1, min(depth, SLAB_BYTES // (4 * classes * h * w))))


class VolumeWriter:
    """Makes and writes the cases of one dataset, a few at a time on worker threads."""

    def __init__(self, out: Path, options: VolumeOptions) -> None:
        self.out, self.options = out, options
        self.shapes = assign_sizes(options.seed, options.volumes, options.shapes)
        self.digits = max(3, len(str(options.volumes - 1)))
        self.affine = volume_affine()
        self.corrupted = choose_corrupted(options.seed, options.volumes, options.corrupt_fraction)

    def case_id(self, i: int) -> str:
        return f"case_{i:0{self.digits}d}"

    def needed_bytes(self) -> int:
        """Bytes of every file as if nothing compressed."""
        per_voxel = self.options.classes * np.dtype(self.options.dtype).itemsize + 4
        return int(self.shapes.prod(axis=1).sum()) * per_voxel

    def write(self, progress: Progress) -> dict[str, Any]:
        """Every case, then ``dataset.json``, then ``errors.json`` last: the dataset is whole."""
        for name in VOLUME_FOLDERS:
            (self.out / name).mkdir()
        report = self._new_report()
        buffers = ThreadBuffers()
        progress.start("Generating synthetic volumes", self.options.volumes)
        try:
            for events, voxels in map_in_order(lambda i: self._case(i, buffers), len(self.shapes)):
                report["errors"] += events
                report["noisy_voxels"] += voxels
                progress.advance(1)
        finally:
            progress.finish()
        options = self.options
        ignore = options.void_fraction > 0
        name = f"segaudit synth volumes, seed {options.seed}"
        data = dataset_json(options.class_names, options.volumes, ignore, name)
        write_json(self.out / "dataset.json", data)
        self._write_flags()
        write_json(self.out / "errors.json", report)
        return report

    def _write_flags(self) -> None:
        """``is_corrupted.csv``: which cases have injected errors, by id."""
        rows = [f"{self.case_id(i)},{int(flag)}\n" for i, flag in enumerate(self.corrupted)]
        (self.out / "is_corrupted.csv").write_text("id,is_corrupted\n" + "".join(rows))

    def _new_report(self) -> dict[str, Any]:
        options = self.options
        return {
            "generator": f"segaudit {__version__} synth --volumes",
            "parameters": {
                "volumes": options.volumes,
                "shapes": [list(shape) for shape in options.shapes],
                "classes": options.classes,
                "seed": options.seed,
                "dtype": options.dtype,
                "corrupt_fraction": options.corrupt_fraction,
                "void_fraction": options.void_fraction,
                "class_names": list(options.class_names),
            },
            "axes": {"arrays": "zyx", "nifti": "xyz", "probabilities": "kzyx"},
            "affine": self.affine.tolist(),
            "cases": [
                {"case": self.case_id(i), "shape": [int(n) for n in shape]}
                for i, shape in enumerate(self.shapes)
            ],
            "corrupted_cases": [self.case_id(int(i)) for i in np.flatnonzero(self.corrupted)],
            "errors": [],
            "noisy_voxels": 0,
        }

    def _case(self, i: int, buffers: ThreadBuffers) -> tuple[list[dict[str, Any]], int]:
        """Make case ``i`` slab by slab and write its four files; return its errors."""
        options, seed, k = self.options, self.options.seed, self.options.classes
        shape = tuple(int(n) for n in self.shapes[i])
        depth, h, w = shape
        scene = make_volume_scene(rng(seed, VOLUME_SCENE, i), shape, k)
        plans = plan_errors(rng(seed, VOLUME_ERRORS, i), scene) if self.corrupted[i] else []
        model = VolumeModel.build(rng(seed, VOLUME_MODEL, i), scene, k)
        camera = Photographer.build(rng(seed, VOLUME_PHOTO, i), scene, k)
        void = _void_slices(rng(seed, VOLUME_VOID, i), depth, options.void_fraction)
        labels, truth = np.empty(shape, np.uint8), np.empty(shape, np.uint8)
        image = np.empty(shape, np.int16)
        case = self.case_id(i)
        probs = ProbabilityWriter(
            self.out / "predictions" / f"{case}.npz", (k, *shape), np.dtype(options.dtype)
        )
        tally = EventTally(len(plans))
        step = slab_slices(k, shape)
        scratch = buffers.get(k * step * h * w)
        for z0 in range(0, depth, step):
            z1 = min(depth, z0 + step)
            rings = scene.body.rings(z0, z1, shape)
            true = scene.truth(z0, z1, rings)
            image[z0:z1] = camera.slab(true, rings)
            noisy = true.copy()
            error_map = apply_errors_and_void(noisy, true, z0, plans, void[z0:z1], k)
            tally.add(error_map, z0)
            labels[z0:z1], truth[z0:z1] = noisy, true
            slab = scratch[: k * (z1 - z0) * h * w].reshape(k, z1 - z0, h, w)
            probs.put(z0, model.probs(z0, z1, slab))
        probs.close()
        write_nifti(self.out / "imagesTr" / f"{case}_0000.nii.gz", image, self.affine)
        write_nifti(self.out / "labelsTr" / f"{case}.nii.gz", labels, self.affine)
        write_nifti(self.out / "true_labels" / f"{case}.nii.gz", truth, self.affine)
        return tally.events(plans, list(options.class_names), case), int(tally.voxels[1:].sum())


def apply_errors_and_void(
    noisy: np.ndarray,
    truth: np.ndarray,
    z0: int,
    plans: list[PlannedError],
    void: np.ndarray,
    ignore: int,
) -> np.ndarray:
    """Inject the errors into the slab, then label its void slices ``ignore`` in both
    maps; return the error map (0 on void slices)."""
    error_map = apply_errors(noisy, truth, z0, plans)
    if void.any():
        noisy[void], truth[void], error_map[void] = ignore, ignore, 0
    return error_map


def _void_slices(stream: np.random.Generator, depth: int, fraction: float) -> np.ndarray:
    """(Z,) bool: ``round(fraction * Z)`` slices left unannotated, chosen by the stream."""
    void = np.zeros(depth, dtype=bool)
    if fraction > 0:
        void[stream.choice(depth, size=round(fraction * depth), replace=False)] = True
    return void
