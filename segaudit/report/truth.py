"""The truth of a synthetic dataset (``segaudit synth``): which images are corrupted,
their true labels, and their error maps, in a run's image order."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from segaudit.errors import InputNotFoundError, InvalidInputError
from segaudit.safetext import from_csv_cell
from segaudit.sources.stores import ArraySource, open_store


def truth_store(folder: Path, name: str) -> ArraySource:
    """``folder/name.npy`` or ``folder/name.zarr``, of an integer type (bool too for flags).

    Truth is never a float: a 0.5 would be counted as corrupted (any non-zero value is
    True), and a float class id compares unequal to every label after rounding noise.
    """
    for suffix in (".npy", ".zarr"):
        if (folder / f"{name}{suffix}").exists():
            source = open_store(folder / f"{name}{suffix}", name)
            kinds, meaning = TRUTH_KINDS[name]
            if source.dtype.kind not in kinds:
                raise InvalidInputError(
                    f"{source.path} holds {source.dtype} values; {name} must be {meaning}."
                )
            return source
    raise InputNotFoundError(
        f"{folder} has no {name}.npy or {name}.zarr; --truth needs a dataset written by "
        "`segaudit synth`."
    )


# The dtype kinds each truth array may have, and what it must be, for the message.
TRUTH_KINDS = {
    "is_corrupted": ("biu", "bool flags (or integers 0 and 1), one per image"),
    "true_labels": ("iu", "integer class ids, like labels"),
    "errors": ("iu", "integer event numbers (uint16), one map per image"),
}


def corrupted_flags(flags: ArraySource, count: int) -> np.ndarray:
    """The truth's per-image flags as bools; any value other than 0 and 1 is refused."""
    values = np.asarray(flags.read(0, count))
    if values.dtype != bool and not np.isin(values, (0, 1)).all():
        bad = values[~np.isin(values, (0, 1))][0]
        raise InvalidInputError(
            f"{flags.path} holds the value {bad}; is_corrupted must be 0 or 1 (or bool) per image."
        )
    return values.astype(bool)


class Truth:
    """What a synthetic dataset knows about its errors, in a run's image order.

    A stacked dataset holds ``is_corrupted.{npy,zarr}`` (N,) and ``true_labels.{npy,zarr}``
    (N, H, W); a folder dataset (``segaudit synth --layout folder``) holds
    ``is_corrupted.csv`` (id, is_corrupted) and ``true_labels/ID.png``, matched to the
    run's images by id. Either may hold error maps (``errors.{npy,zarr}`` (N, H, W), or
    ``errors/ID.png``) and lists its events in ``synth.json``.
    """

    def __init__(self, folder: Path, ids: list[str]) -> None:
        self.folder, self.ids = folder, ids
        self.by_id = (folder / "is_corrupted.csv").is_file()

    def corrupted(self) -> np.ndarray:
        """(N,) bool: which of the run's images the truth calls corrupted."""
        if self.by_id:
            flags = read_flags_csv(self.folder / "is_corrupted.csv")
            missing = [image_id for image_id in self.ids if image_id not in flags]
            if missing:
                raise InvalidInputError(
                    f"{self.folder / 'is_corrupted.csv'} has no row for image {missing[0]!r} "
                    f"({len(missing)} of the run's images); --truth must be the dataset the "
                    "run scored."
                )
            return np.array([flags[image_id] for image_id in self.ids], bool)
        flags = truth_store(self.folder, "is_corrupted")
        if flags.shape != (len(self.ids),):
            raise InvalidInputError(
                f"{flags.path} has shape {flags.shape} but the run scored {len(self.ids)} "
                "images; --truth must be the dataset the run scored."
            )
        return corrupted_flags(flags, len(self.ids))

    def label_reader(self) -> Callable[[int], np.ndarray]:
        """``read(i)``: the true labels of the run's image i."""
        return self._reader("true_labels")

    def has_error_maps(self) -> bool:
        """Whether the dataset holds error maps (datasets from older generators do not)."""
        if self.by_id:
            return (self.folder / "errors").is_dir()
        return any((self.folder / f"errors{suffix}").exists() for suffix in (".npy", ".zarr"))

    def error_reader(self) -> Callable[[int], np.ndarray]:
        """``read(i)``: the error map of the run's image i (0 = untouched, e = event e)."""
        return self._reader("errors")

    def event_kinds(self) -> list[list[str]]:
        """Per run image, the kind of each event ``synth.json`` lists (event e is item e-1)."""
        path = self.folder / "synth.json"
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
            listed = {
                entry["id"] if self.by_id else int(entry["image"]): [
                    str(event["kind"]) for event in entry["events"]
                ]
                for entry in report["corruptions"]
            }
        except FileNotFoundError:
            raise InputNotFoundError(
                f"{self.folder} has error maps but no synth.json; region-level metrics need "
                "the events it lists."
            ) from None
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise InvalidInputError(
                f"{path} is not a synth.json as `segaudit synth` writes it ({error})."
            ) from None
        keys: Iterable[Any] = self.ids if self.by_id else range(len(self.ids))
        return [listed.get(key, []) for key in keys]

    def _reader(self, name: str) -> Callable[[int], np.ndarray]:
        """``read(i)``: image i (in run order) of the per-image truth ``name``."""
        if self.by_id:
            from segaudit.sources.files import MASK_SUFFIXES
            from segaudit.sources.folder import FolderMasks, find_files

            found = find_files(self.folder / name, MASK_SUFFIXES, name)
            missing = [image_id for image_id in self.ids if image_id not in found]
            if missing:
                raise InputNotFoundError(
                    f"{self.folder / name} has no mask for image {missing[0]!r}; "
                    "--truth must be the dataset the run scored."
                )
            masks = FolderMasks({i: found[i] for i in self.ids}, str(self.folder))
            return lambda index: masks.read(self.ids[index]).array
        store = truth_store(self.folder, name)
        if store.shape[0] != len(self.ids):
            raise InvalidInputError(
                f"{store.path} holds {store.shape[0]} images but the run has {len(self.ids)}; "
                "--truth must be the dataset the run scored."
            )
        return lambda index: np.array(store.read(index, index + 1)[0])


def read_flags_csv(path: Path) -> dict[str, bool]:
    """``is_corrupted.csv``: id -> flag (0 or 1)."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        flags = {}
        for row in rows:
            value = row["is_corrupted"].strip()
            if value not in ("0", "1"):
                raise ValueError(f"is_corrupted must be 0 or 1, got {value!r}")
            flags[from_csv_cell(row["id"])] = value == "1"
    except (OSError, KeyError, ValueError, csv.Error) as error:
        raise InvalidInputError(
            f"{path} is not a readable id,is_corrupted table ({error})."
        ) from None
    return flags
