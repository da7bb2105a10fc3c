"""Synthetic segmentation datasets with known annotation errors.

:func:`generate` writes a dataset in a layout segaudit reads: noisy ``labels``, model
``pred_probs``, ``images``, plus the ground truth (``true_labels``, ``is_corrupted``,
``synth.json``, and ``errors``: which injected error changed each pixel) so tests and
benchmarks can check what was found. The stacked layout holds
one array per kind; the folder layout one file per image and kind, in several sizes.

Everything is a deterministic function of the seed and the options: each image draws from
its own random streams (scene, annotation errors, model, photo), so changing the corrupt
fraction changes only the noisy labels. Images are generated and written one at a time,
so a multi-GB dataset never sits in memory. Only vectorised numpy is used.

Modules, in the order data flows: :mod:`~segaudit.synth.options` (checks),
:mod:`~segaudit.synth.world` (random streams, class roles, colours),
:mod:`~segaudit.synth.scene` (true maps), :mod:`~segaudit.synth.annotation_errors`,
:mod:`~segaudit.synth.model` (probabilities), :mod:`~segaudit.synth.photo`,
:mod:`~segaudit.synth.image` (one image, and the worker threads),
:mod:`~segaudit.synth.stacked` and :mod:`~segaudit.synth.folder` (the layouts, through
:mod:`~segaudit.synth.writers`), :mod:`~segaudit.synth.output` (the folder, ``synth.json``)
and :mod:`~segaudit.synth.dataset` (:func:`generate`).

:func:`generate_volumes` (:mod:`~segaudit.synth.volumes`) writes 3-D volumes in nnU-Net's
raw layout instead, through :mod:`~segaudit.synth.volume_options`,
:mod:`~segaudit.synth.volume_scene`, :mod:`~segaudit.synth.volume_errors`,
:mod:`~segaudit.synth.volume_model` and :mod:`~segaudit.synth.volume_files` (NIfTI files
need the optional nibabel).
"""

from __future__ import annotations

from segaudit.synth.annotation_errors import ERROR_KINDS
from segaudit.synth.dataset import generate
from segaudit.synth.options import (
    DEFAULT_CLASS_NAMES,
    DTYPES,
    FORMATS,
    LAYOUTS,
    OutputNotEmptyError,
    SynthOptionError,
    parse_sizes,
)
from segaudit.synth.output import ARRAY_NAMES
from segaudit.synth.volume_errors import VOLUME_ERROR_KINDS
from segaudit.synth.volumes import generate_volumes

__all__ = [
    "ARRAY_NAMES",
    "DEFAULT_CLASS_NAMES",
    "DTYPES",
    "ERROR_KINDS",
    "FORMATS",
    "LAYOUTS",
    "OutputNotEmptyError",
    "SynthOptionError",
    "VOLUME_ERROR_KINDS",
    "generate",
    "generate_volumes",
    "parse_sizes",
]
