"""Per-file inputs: a folder (or glob, or manifest) holding one file per image.

Finding files: every file under a folder with a known extension, hidden files and
folders skipped; its id is its path under the folder without the extension
(:mod:`segaudit.sources.ids`). A glob (``masks/**/*.png``) works the same from the
part of the pattern before its first wildcard. A manifest CSV (columns ``id``,
``labels``, ``pred_probs`` and optionally ``image``; paths relative to the manifest)
names the files of each image explicitly.

Reading: :class:`FolderMasks`, :class:`FolderProbs` and :class:`FolderPhotos` read one
image's file by id. Masks' headers are read when the dataset is opened (sizes are
needed to plan the work); pixels only when the engine asks for an image.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from segaudit.errors import InputChangedError, InputNotFoundError, InvalidInputError, reason
from segaudit.safetext import printable
from segaudit.sources import files, volumes
from segaudit.sources.ids import check_id, check_unique, id_from_path
from segaudit.sources.labelmap import LabelMap, identity_needed
from segaudit.sources.remote import is_url, urls_fingerprint

_WILDCARDS = set("*?[")


def find_files(spec: Path, suffixes: Sequence[str], what: str, strip: str = "") -> dict[str, Path]:
    """Files of one input by id, from a folder or a glob pattern."""
    text = str(spec)
    if any(char in _WILDCARDS for char in text):
        base, paths = _glob(text)
    else:
        if not spec.is_dir():
            raise InputNotFoundError(f"{what} folder {spec} does not exist; check the path.")
        base, paths = spec, _walk(spec)
    found = [p for p in paths if p.name.lower().endswith(tuple(suffixes))]
    if not found:
        raise InputNotFoundError(
            f"{what} {spec} holds no {', '.join(suffixes)} files; check the path."
        )
    ids = [id_from_path(PurePosixPath(p.relative_to(base).as_posix()), strip) for p in found]
    for image_id in ids:
        check_id(image_id, f"{what} {spec}")
    check_unique(ids, f"{what} {spec}")
    return dict(sorted(zip(ids, found, strict=True)))


def listed_folder(spec: Path) -> Path:
    """The folder :func:`find_files` lists for ``spec`` (a glob's folder before its first
    wildcard), made absolute: a run written inside it would join the input's files."""
    text = str(spec)
    folder = _glob_base(text) if any(char in _WILDCARDS for char in text) else spec
    return Path(os.path.abspath(folder))


def _walk(folder: Path) -> list[Path]:
    """Every file under ``folder``, hidden files and folders skipped, sorted.

    Symbolic links to folders are followed (datasets are often assembled from links),
    each real folder once, so a link cycle cannot loop forever.
    """
    found = []
    seen: set[str] = set()
    for root, dirs, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(root) / n for n in sorted(names) if not n.startswith(".")]
    return found


def _glob(pattern: str) -> tuple[Path, list[Path]]:
    """The folder before the first wildcard, and the files the pattern matches."""
    matches = sorted(Path(p) for p in glob.glob(pattern, recursive=True))
    return _glob_base(pattern), [p for p in matches if p.is_file()]


def _glob_base(pattern: str) -> Path:
    """The folder of a glob pattern before its first wildcard."""
    fixed = []
    for part in PurePosixPath(pattern).parts:
        if any(char in _WILDCARDS for char in part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def read_manifest(path: Path) -> list[dict[str, str]]:
    """Rows of a manifest CSV (id, labels, pred_probs[, image]), paths made absolute."""
    files.check_regular_file(path, "manifest")
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:  # Excel writes a BOM
            reader = csv.DictReader(handle)
            columns = [c.strip() for c in reader.fieldnames or []]
            rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InvalidInputError(
            f"manifest {path} is not a readable UTF-8 CSV file ({reason(error)})."
        ) from None
    missing = [c for c in ("id", "labels", "pred_probs") if c not in columns]
    if missing:
        raise InvalidInputError(
            f"manifest {path} lacks the column(s) {', '.join(missing)}; its header must be "
            "id,labels,pred_probs[,image]."
        )
    if not rows:
        raise InvalidInputError(f"manifest {path} lists no images.")
    base = path.parent
    for number, row in enumerate(rows, start=2):
        check_id(row["id"], f"manifest {path}, line {number}")
        empty = [column for column in ("labels", "pred_probs") if not row.get(column)]
        if empty:
            raise InvalidInputError(
                f"manifest {path}, line {number} has no {' and no '.join(empty)} file; "
                "every row names its mask and its predictions."
            )
        for column in ("labels", "pred_probs", "image"):
            if row.get(column):
                row[column] = str(base / row[column])
        if row.get("image") and not Path(row["image"]).is_file():
            raise InputNotFoundError(
                f"manifest {path}, line {number} names the photo {row['image']}, which is "
                "not a file; fix the row or leave its image column empty."
            )
    check_unique((row["id"] for row in rows), f"manifest {path}", rows=True)
    return rows


def files_fingerprint(paths: Sequence[Path]) -> dict[str, Any]:
    """Identity of many files without reading them: size, times and inode of each.

    A file rewritten in place, even with its modification time restored, gets a new
    change time (ctime), so any rewrite, growth, replacement or removal changes this.
    Files behind URLs: their sizes and ETags, from one listing.
    """
    if paths and is_url(paths[0]):
        return urls_fingerprint([str(p) for p in paths])
    digest = hashlib.sha256()
    total = 0
    for path in paths:
        try:
            info = os.stat(path)
        except OSError as error:
            digest.update(f"{path}!{error.errno}\n".encode("utf-8", "surrogateescape"))
            continue
        total += info.st_size
        fields = (info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino, info.st_dev)
        digest.update(f"{path}|{fields}\n".encode("utf-8", "surrogateescape"))
    return {"files": len(paths), "bytes": total, "sha256_stat": digest.hexdigest()[:16]}


class FolderFiles:
    """One per-file input: a file per image, by id."""

    listed: Path | None = None  # the local folder its files were found by listing, if any

    def __init__(self, paths: Mapping[str, Path], what: str, origin: str) -> None:
        self.paths = {
            image_id: path if is_url(path) else Path(os.path.abspath(path))
            for image_id, path in paths.items()
        }
        self.ids: list[str] | None = list(self.paths)
        self.what = what
        self.origin = origin
        self.before = files_fingerprint(list(self.paths.values()))

    def __len__(self) -> int:
        return len(self.paths)

    def file_of(self, image_id: str) -> str:
        return str(self.paths[image_id])

    def describe(self) -> dict[str, Any]:
        return {"path": self.origin, "format": "files", **self.before}

    @property
    def absent(self) -> list[int]:
        return []

    def check_unchanged(self) -> None:
        if files_fingerprint(list(self.paths.values())) != self.before:
            raise InputChangedError(
                f"{self.what} files in {self.origin} changed while segaudit was reading them; "
                "its results would mix two versions, so nothing was written: rerun once the "
                "files are stable."
            )

    def restrict(self, ids: Sequence[str]) -> None:
        """Keep only ``ids`` (after pairing), and the identity of just those files."""
        self.paths = {image_id: self.paths[image_id] for image_id in ids}
        self.ids = list(self.paths)
        self.before = files_fingerprint(list(self.paths.values()))


class FolderMasks(FolderFiles):
    """Label masks, one file per image, mapped to class ids by an optional label map.

    A NIfTI mask (``.nii``, ``.nii.gz``) is a volume (:mod:`segaudit.sources.volumes`):
    its size is its sheet's, (Z·Y, X), and its labels are read a slab at a time.
    """

    def __init__(
        self,
        paths: Mapping[str, Path],
        origin: str,
        label_map: LabelMap | None = None,
        void_value: int | None = None,
    ) -> None:
        super().__init__(paths, "labels", origin)
        self.label_map = label_map
        self.void_value = void_value
        self.headers = {image_id: _mask_header(path) for image_id, path in self.paths.items()}
        if label_map is None:
            for image_id, header in self.headers.items():
                if isinstance(header, files.MaskHeader):
                    identity_needed(header.is_colour, self.paths[image_id])

    def size(self, image_id: str) -> tuple[int, int]:
        header = self.headers[image_id]
        if isinstance(header, volumes.VolumeHeader):
            depth, height, width = header.shape
            return depth * height, width
        return header.height, header.width

    def volume(self, image_id: str) -> volumes.VolumeHeader | None:
        """The NIfTI header of a volume's mask; None for a 2-D image."""
        header = self.headers[image_id]
        return header if isinstance(header, volumes.VolumeHeader) else None

    def read(self, image_id: str) -> files.Loaded:
        path = self.paths[image_id]
        volume = self.volume(image_id)
        if volume is not None:
            raw = volumes.integer_labels(volumes.read_volume(volume), path)
            return files.Loaded(self.mapped(raw.reshape(self.size(image_id)), path))
        raw = files.read_mask(path)
        header = self.headers[image_id]
        if raw.shape[:2] != (header.height, header.width):
            raise InputChangedError(f"mask {path} changed while segaudit was reading it.")
        return files.Loaded(self.mapped(raw, path))

    def mapped(self, raw: np.ndarray, path: Path) -> np.ndarray:
        """Raw mask values as class ids (through the label map, if any)."""
        if self.label_map is None:
            return raw
        assert self.void_value is not None
        return self.label_map.apply(raw, self.void_value, path)

    @property
    def dtype(self) -> np.dtype:
        """The integer type of the labels :meth:`read` returns."""
        if self.label_map is not None:
            return np.dtype(np.int64)
        found = [
            volumes.label_dtype(h) for h in self.headers.values()
            if isinstance(h, volumes.VolumeHeader)
        ]  # fmt: skip
        modes = {h.mode for h in self.headers.values() if isinstance(h, files.MaskHeader)}
        if "I" in modes:
            found.append(np.dtype(np.int32))
        elif modes & {"I;16", "I;16L", "I;16B"}:
            found.append(np.dtype(np.uint16))
        elif modes:
            found.append(np.dtype(np.uint8))
        return np.result_type(*found)


def _mask_header(path: Path) -> files.MaskHeader | volumes.VolumeHeader:
    if volumes.is_volume_file(path):
        if is_url(path):
            raise InvalidInputError(
                f"mask {path}: NIfTI volumes are read from local files; copy them down first."
            )
        return volumes.nifti_header(path)
    return files.mask_header(path)


class FolderProbs(FolderFiles):
    """Predictions, one ``.npy``/``.npz`` per image: (K, H, W), or (H, W, K) when
    ``channels_last``."""

    def __init__(self, paths: Mapping[str, Path], origin: str, channels_last: bool) -> None:
        super().__init__(paths, "pred_probs", origin)
        self.channels_last = channels_last
        first_id = next(iter(self.paths))
        header = files.probs_header(self.paths[first_id])
        self.num_classes, self.dtype = self._classes(header, self.paths[first_id]), header.dtype

    def _classes(self, header: files.ProbsHeader, path: Path) -> int:
        if len(header.shape) == 4 and header.shape[0] == 1:
            raise InvalidInputError(
                f"predictions {path} have shape {header.shape}: a leading axis of one, as a "
                "batch of one image; save that image's array (p[0]) instead."
            )
        if len(header.shape) == 4 and not self.channels_last:
            return header.shape[0]  # a volume's (K, Z, Y, X)
        if len(header.shape) != 3:
            hint = "(H, W, K) with --channels-last" if self.channels_last else "(K, H, W)"
            raise InvalidInputError(
                f"predictions {path} have shape {header.shape}; one image's predictions "
                f"must be {hint}, or (K, Z, Y, X) for a volume."
            )
        return header.shape[2] if self.channels_last else header.shape[0]

    def header(self, image_id: str) -> files.ProbsHeader:
        """Shape and dtype of one image's predictions, from the file's header."""
        return files.probs_header(self.paths[image_id])

    def read(self, image_id: str) -> files.Loaded:
        path = self.paths[image_id]
        loaded = files.read_probs(path)
        self._check(path, loaded.array.shape, loaded.array.dtype, loaded.release)
        return loaded

    def read_volume(self, image_id: str) -> volumes.ProbsVolume:
        """A volume's predictions (K, Z, Y, X), to be read by slabs."""
        path = self.paths[image_id]
        found = volumes.ProbsVolume.open(path)
        self._check(path, found.array.shape, found.array.dtype, found.close)
        return found

    def _check(self, path: Path, shape: tuple[int, ...], dtype: np.dtype, release: Any) -> None:
        """Every image has the first one's classes and dtype."""
        if len(shape) not in (3, 4) or self._classes(files.ProbsHeader(shape, dtype), path) != (
            self.num_classes
        ):
            release()
            raise InvalidInputError(
                f"predictions {path} have shape {shape}, but the dataset's first "
                f"prediction has {self.num_classes} classes; every image needs the same classes."
            )
        if dtype != self.dtype:
            release()
            raise InvalidInputError(
                f"predictions {path} hold {dtype} values but the dataset's first "
                f"prediction holds {self.dtype}; save every prediction in one dtype."
            )


class FolderPhotos(FolderFiles):
    """Photos (JPEG, PNG), one per image, for the pictures; a volume's scan (NIfTI) as
    its (Z, Y, X) values, windowed when drawn."""

    def __init__(self, paths: Mapping[str, Path], origin: str) -> None:
        super().__init__(paths, "images", origin)

    def read(self, image_id: str) -> files.Loaded:
        path = self.paths[image_id]
        if volumes.is_volume_file(path):
            return files.Loaded(volumes.read_scan(volumes.nifti_header(path, "image")))
        return files.Loaded(files.read_photo(path))


def describe_unmatched(missing: Sequence[str], what: str, other: str) -> str:
    """'3 masks have no prediction: a, b, c' for an error or a warning."""
    shown = ", ".join(printable(m) for m in missing[:5])
    more = f", … ({len(missing)} in all)" if len(missing) > 5 else ""
    noun = what if len(missing) != 1 else what.removesuffix("s")
    return f"{len(missing)} {noun} without {other}: {shown}{more}"
