"""``--layout nnunet``: an nnU-Net v2 raw dataset folder, with a folder of its predictions.

::

    DATASET/dataset.json             class names ("labels": name -> value; v1's and the
                                     Medical Segmentation Decathlon's value -> name), the ignore
                                     label (the label named "ignore"), the file ending,
                                     and the scan's modality ("channel_names")
    DATASET/labelsTr/CASE.nii.gz     label volumes (ids: CASE)
    DATASET/imagesTr/CASE_0000.nii.gz  the first channel of each scan, for the pictures
    PRED_DIR/CASE.npz                ``nnUNetv2_predict --save_probabilities`` output
                                     (key ``probabilities``, (K, z, y, x)); v1's
                                     ``softmax`` key and plain ``.npy`` are read too

Labels must be the consecutive values 0..K-1 that nnU-Net itself requires (region-based
labels, lists of values, are refused); the ignore label, when present, is stored as the
run's ignore value, so those voxels are left out as void. 2-D nnU-Net datasets
(``file_ending`` ``.png``, probabilities (K, 1, H, W)) read the same way.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from segaudit.errors import InputNotFoundError, InvalidInputError, reason
from segaudit.sources.dataset import Dataset
from segaudit.sources.files import MASK_SUFFIXES, PROBS_SUFFIXES
from segaudit.sources.folder import FolderMasks, FolderPhotos, FolderProbs, find_files

IGNORE_LABEL = "ignore"


def read_dataset_json(folder: Path) -> dict[str, Any]:
    """``dataset.json``, checked for what segaudit reads from it."""
    path = folder / "dataset.json"
    if not path.is_file():
        raise InputNotFoundError(
            f"{folder} is not an nnU-Net raw dataset: {path.name} not found (with --layout "
            "nnunet, DATASET is the folder holding dataset.json, labelsTr/ and imagesTr/)."
        )
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InvalidInputError(f"{path} is not readable JSON ({reason(error)}).") from None
    if not isinstance(found, dict) or not isinstance(found.get("labels"), dict):
        raise InvalidInputError(
            f'{path} has no "labels" mapping of class names to label values; nnU-Net\'s '
            'dataset.json lists them as "labels": {"background": 0, ...}.'
        )
    return found


def name_to_value(labels: dict[str, Any]) -> dict[str, Any]:
    """``labels`` as v2 writes them (name -> value). nnU-Net v1 and the Medical Segmentation
    Decathlon write value -> name (``{"0": "background", "1": "liver"}``): turned round."""
    v1 = bool(labels) and all(
        str(key).isascii() and str(key).isdigit() and isinstance(value, str)
        for key, value in labels.items()
    )
    if not v1:
        return labels
    names = list(labels.values())
    if len(set(names)) != len(names):
        return labels  # two values named alike: not v1's layout after all
    return {name: int(value) for value, name in labels.items()}


def class_labels(info: dict[str, Any], path: Path) -> tuple[list[str], int | None]:
    """Class names in label order, and the ignore label's value (None without one)."""
    values: dict[str, int] = {}
    for name, value in name_to_value(info["labels"]).items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidInputError(
                f"{path}: label {name!r} has the value {value!r}; segaudit reads labels that are "
                "single integers (region-based labels, lists of values, are not supported)."
            )
        values[str(name)] = value
    ignore = values.pop(IGNORE_LABEL, None)
    order = sorted(values, key=values.__getitem__)
    if [values[name] for name in order] != list(range(len(order))):
        shown = ", ".join(f"{name}={values[name]}" for name in order[:8])
        raise InvalidInputError(
            f"{path}: label values must be 0..K-1 without gaps, as nnU-Net requires; found "
            f"{shown}."
        )
    if ignore is not None and ignore < len(order):
        raise InvalidInputError(
            f'{path}: the "ignore" label has the value {ignore}, which is a class; nnU-Net '
            "gives it the highest value."
        )
    return order, ignore


def open_nnunet(
    folder: Path,
    pred_probs: str | None,
    *,
    ignore_index: int | None = None,
    skip_unmatched: bool = False,
    splits: tuple[str, ...] = (),
) -> Dataset:
    """The dataset of an nnU-Net raw dataset folder and its predictions folder."""
    if splits:
        raise InvalidInputError(
            "--layout nnunet reads labelsTr/, its one labelled split; drop --split."
        )
    info = read_dataset_json(folder)
    names, ignore = class_labels(info, folder / "dataset.json")
    if pred_probs is None:
        raise InvalidInputError(
            "--layout nnunet needs --pred-probs PRED_DIR holding CASE.npz for each case "
            "(nnUNetv2_predict --save_probabilities)."
        )
    if Path(pred_probs).is_file():
        raise InvalidInputError(
            f"--layout nnunet reads predictions per case: --pred-probs must be a folder of "
            f"CASE.npz files, not the file {pred_probs}."
        )
    labels_dir = folder / "labelsTr"
    if not labels_dir.is_dir():
        raise InputNotFoundError(
            f"{folder} is not an nnU-Net raw dataset: labelsTr/ not found."
        )
    ending = str(info.get("file_ending") or ".nii.gz")
    if ending.lower() not in MASK_SUFFIXES:
        raise InvalidInputError(
            f"{folder / 'dataset.json'}: file_ending {ending!r} is not read; segaudit reads "
            f"labels in {', '.join(MASK_SUFFIXES)}."
        )
    origin = f"{os.path.abspath(folder)} (nnunet layout)"
    masks = find_files(labels_dir, (ending,), "labels")
    void = ignore_index if ignore_index is not None else ignore
    labels = FolderMasks(masks, origin, None, void)
    probs = FolderProbs(
        find_files(Path(pred_probs), PROBS_SUFFIXES, "pred_probs"),
        os.path.abspath(pred_probs),
        channels_last=False,
    )
    photos = _first_channels(folder / "imagesTr", ending, set(masks), origin)
    dataset = Dataset(
        labels,
        probs,
        photos,
        class_names=names,
        ignore_index=void,
        skip_unmatched=skip_unmatched,
        layout="nnunet",
        class_names_path=folder / "dataset.json",
    )
    dataset.modality = _modality(info)
    return dataset


def _first_channels(folder: Path, ending: str, cases: set[str], origin: str) -> Any:
    """Each case's first channel (``CASE_0000``) in imagesTr/, if any."""
    if not folder.is_dir():
        return None
    found = {}
    for name, path in find_files(folder, (ending,), "images").items():
        case, _, channel = name.rpartition("_")
        if channel == "0000" and case in cases:
            found[case] = path
    return FolderPhotos(found, origin) if found else None


def _modality(info: dict[str, Any]) -> str | None:
    """The first channel's modality ("CT", "T2", ...), which sets how scans are drawn."""
    channels = info.get("channel_names") or info.get("modality") or {}
    if isinstance(channels, dict):
        first = channels.get("0", next(iter(channels.values()), None))
        return str(first) if first is not None else None
    return None
