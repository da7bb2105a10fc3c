"""Sources: public layouts, mask folders, globs, manifests and stacked stores all open into
one Dataset with the right ids, labels, predictions and photos; bad input is one sentence.

The public datasets are built by `layout_fixtures.py` exactly as their maintainers
distribute them (side files included), with expected labels computed from each dataset's
own documentation. Every refusal is checked to write and change nothing.
"""

from __future__ import annotations

import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from layout_fixtures import (
    FOLDER_CLASSES,
    FOLDER_IMAGES,
    PROBS_KINDS,
    Built,
    build_ade20k,
    build_camvid,
    build_cityscapes,
    build_folder,
    build_half_stacked,
    build_voc,
    label_map_text,
    save_folder_probs,
    save_mask,
)
from PIL import Image

from segaudit.errors import (
    InputNotFoundError,
    InvalidInputError,
    SegauditError,
    UnreadableStoreError,
)
from segaudit.sources import DatasetSpec, open_dataset

# name: builder, class count, first and last class names, default splits, the one split
# selected, and the folder without which the layout is not recognised.
LAYOUTS = {
    "cityscapes": (build_cityscapes, 19, ("road", "bicycle"), ("train", "val"), "val", "gtFine"),
    "voc": (
        build_voc,
        21,
        ("background", "tvmonitor"),
        ("train", "val"),
        "val",
        "VOCdevkit/VOC2012/ImageSets/Segmentation",
    ),
    "ade20k": (
        build_ade20k,
        150,
        ("wall", "flag"),
        ("training", "validation"),
        "validation",
        "ADEChallengeData2016/annotations",
    ),
    "camvid": (build_camvid, 11, ("sky", "bicyclist"), ("test", "train", "val"), "val", None),
}
# What stored mask values mean, from each dataset's documentation (255: void).
VALUE_MEANINGS = {
    "cityscapes": {
        **{void: 255 for void in (0, 1, 4, 9, 14, 29)},  # unlabeled, ego vehicle, ...
        **{7: 0, 8: 1, 11: 2, 21: 8, 23: 10, 24: 11, 26: 13, 33: 18},
    },
    "voc": {0: 0, 1: 1, 7: 7, 12: 12, 15: 15, 19: 19, 20: 20, 255: 255},
    "ade20k": {0: 255, 1: 0, 2: 1, 3: 2, 150: 149},
    "camvid": {0: 0, 3: 3, 10: 10, 11: 255},
}


def listing(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``root`` with its size and modification time."""
    return {
        str(path.relative_to(root)): (path.lstat().st_size, path.lstat().st_mtime_ns)
        for path in sorted(root.rglob("*"))
    }


def refused(root: Path, error: type[SegauditError], *phrases: str, **spec: object) -> str:
    """Opening ``DatasetSpec(**spec)`` raises ``error``: one sentence holding ``phrases``,
    and nothing under ``root`` is written or changed."""
    before = listing(root)
    with pytest.raises(error) as caught:
        open_dataset(DatasetSpec(**spec))  # type: ignore[arg-type]
    message = str(caught.value)
    assert isinstance(caught.value, SegauditError)
    assert "\n" not in message and message.endswith(".") and len(message) < 500, message
    for phrase in phrases:
        assert phrase in message, message
    assert listing(root) == before
    return message


def check_images(dataset, built: Built, ids: list[str]) -> None:
    """Ids, sizes, labels, predictions and photos are what the fixture wrote."""
    assert dataset.ids == ids == sorted(ids)
    assert [tuple(size) for size in dataset.sizes.tolist()] == built.sizes(ids)
    for index, image_id in enumerate(ids):
        labels = dataset.read_labels(index).array
        assert labels.shape == built.labels[image_id].shape, image_id
        assert np.array_equal(labels, built.labels[image_id]), image_id
        probs = dataset.read_probs(index).array
        assert probs.dtype == np.float32, image_id
        assert np.array_equal(probs, built.probs[image_id]), image_id
        if built.photos:
            assert dataset.files_of(index)["image"] == str(built.photos[image_id])
            assert dataset.read_photo(index).shape == (*labels.shape, 3)
            assert dataset.read_photo(index).dtype == np.uint8


def build_layout(name: str, tmp_path: Path) -> Built:
    return LAYOUTS[name][0](tmp_path / name, tmp_path / f"{name}_pred")


def open_layout(built: Built, name: str, root: Path | None = None, **spec: object):
    """Open ``built`` (or the folder ``root`` inside it) with ``--layout name``."""
    return open_dataset(
        DatasetSpec(  # type: ignore[arg-type]
            dataset=root or built.root, layout=name, pred_probs=str(built.pred_dir), **spec
        )
    )


def corrupt_idat(path: Path) -> None:
    """Scramble a PNG's pixel data behind an intact header (with a valid CRC)."""
    data = path.read_bytes()
    at = data.index(b"IDAT")
    size = struct.unpack(">I", data[at - 4 : at])[0]
    payload = bytes(byte ^ 0x5A for byte in data[at + 4 : at + 4 + size])
    crc = struct.pack(">I", zlib.crc32(b"IDAT" + payload) & 0xFFFFFFFF)
    path.write_bytes(data[: at + 4] + payload + crc + data[at + 8 + size :])


# --- public layouts ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", LAYOUTS)
def test_layout_reads_every_image_of_its_default_splits(tmp_path, name):
    _, num_classes, (first, last), defaults, _, _ = LAYOUTS[name]
    built = build_layout(name, tmp_path)
    dataset = open_layout(built, name)
    assert dataset.layout == name and dataset.num_classes == num_classes
    assert len(dataset.class_names) == num_classes
    assert (dataset.class_names[0], dataset.class_names[-1]) == (first, last)
    assert dataset.ignore_index == 255 and dataset.has_photos
    check_images(dataset, built, built.split_ids(*defaults))
    assert dataset.skipped["masks_without_prediction"] == 0


@pytest.mark.parametrize("name", LAYOUTS)
def test_layout_mask_values_mean_what_the_dataset_documents(tmp_path, name):
    built = build_layout(name, tmp_path)
    dataset = open_layout(built, name)
    seen = set()
    for index, image_id in enumerate(dataset.ids):
        raw = np.asarray(Image.open(built.masks[image_id]))
        labels = dataset.read_labels(index).array
        for value, meaning in VALUE_MEANINGS[name].items():
            if (raw == value).any():
                seen.add(value)
                assert (labels[raw == value] == meaning).all(), (image_id, value)
    assert seen == set(VALUE_MEANINGS[name])  # the fixture holds every value checked


@pytest.mark.parametrize("name", LAYOUTS)
def test_layout_split_selection_ignores_other_splits_predictions(tmp_path, name):
    split = LAYOUTS[name][4]
    built = build_layout(name, tmp_path)
    dataset = open_layout(built, name, splits=(split,))
    check_images(dataset, built, built.split_ids(split))
    assert len(dataset.probs) == len(built.split_ids(split))  # PRED_DIR holds every split
    assert dataset.skipped["predictions_without_mask"] == 0


def test_voc_defaults_to_train_and_val_not_their_union_trainval(tmp_path):
    built = build_layout("voc", tmp_path)
    dataset = open_layout(built, "voc")
    assert dataset.ids == [
        "train/2007_000032",
        "train/2007_000039",
        "val/2007_000033",
        "val/2007_000042",
    ]
    assert dataset.sizes.tolist() == [[12, 16], [10, 14], [10, 14], [12, 16]]
    trainval = open_layout(built, "voc", splits=("trainval",))
    check_images(trainval, built, built.split_ids("trainval"))
    both = open_layout(built, "voc", splits=("val", "train", "val"))
    assert both.ids == dataset.ids
    # The detection-only image in JPEGImages and Annotations is not a segmentation image.
    assert not any("2008_000002" in image_id for image_id in trainval.ids)


def test_cityscapes_reads_only_label_ids_among_the_files_it_ships(tmp_path):
    built = build_layout("cityscapes", tmp_path)
    dataset = open_layout(built, "cityscapes")
    for index, image_id in enumerate(dataset.ids):
        mask = dataset.files_of(index)["labels"]
        assert mask.endswith("_gtFine_labelIds.png") and mask == str(built.masks[image_id])
        assert dataset.files_of(index)["image"].endswith("_leftImg8bit.png")
    assert dataset.ids[0] == "train/aachen/aachen_000000_000019"
    assert dataset.label_dtype == np.int64


def test_camvid_and_ade20k_accept_the_folder_inside_their_archive(tmp_path):
    camvid = build_layout("camvid", tmp_path)
    assert open_layout(camvid, "camvid", root=camvid.root / "CamVid").ids == camvid.ids
    ade = build_layout("ade20k", tmp_path)
    inner = open_layout(ade, "ade20k", root=ade.root / "ADEChallengeData2016")
    assert inner.ids == ade.ids
    voc = build_layout("voc", tmp_path)
    for root in (voc.root / "VOCdevkit", voc.root / "VOCdevkit" / "VOC2012"):
        assert open_layout(voc, "voc", root=root).ids == voc.split_ids("train", "val")


@pytest.mark.parametrize("name", LAYOUTS)
def test_layout_without_its_folders_is_one_sentence(tmp_path, name):
    folder = LAYOUTS[name][5]
    built = build_layout(name, tmp_path)
    if folder is None:  # camvid: the SPLITannot folders
        for annot in built.root.glob("CamVid/*annot"):
            shutil.rmtree(annot)
    else:
        shutil.rmtree(built.root / folder)
    pred = str(built.pred_dir)
    refused(
        tmp_path,
        InputNotFoundError,
        f"{built.root} is not a {name} dataset",
        "not found",
        dataset=built.root,
        layout=name,
        pred_probs=pred,
    )
    (tmp_path / "empty").mkdir()
    empty = tmp_path / "empty"
    refused(
        tmp_path,
        InputNotFoundError,
        f"{empty} is not a {name} dataset",
        dataset=empty,
        layout=name,
        pred_probs=pred,
    )


@pytest.mark.parametrize("name", LAYOUTS)
def test_layout_split_that_does_not_exist_is_one_sentence(tmp_path, name):
    defaults = LAYOUTS[name][3]
    built = build_layout(name, tmp_path)
    refused(
        tmp_path,
        InputNotFoundError,
        f"{built.root} has no {name} split 'nosuch'",
        *defaults,
        dataset=built.root,
        layout=name,
        pred_probs=str(built.pred_dir),
        splits=("nosuch",),
    )


def test_layout_needs_its_folder_predictions_and_a_known_name(tmp_path):
    built = build_layout("camvid", tmp_path)
    refused(
        tmp_path,
        InvalidInputError,
        "unknown layout 'kitti'",
        "cityscapes, voc",
        dataset=built.root,
        layout="kitti",
        pred_probs=str(built.pred_dir),
    )
    refused(
        tmp_path,
        InvalidInputError,
        "--layout camvid needs --pred-probs",
        dataset=built.root,
        layout="camvid",
    )
    refused(
        tmp_path,
        InvalidInputError,
        "needs the DATASET folder",
        layout="camvid",
        pred_probs=str(built.pred_dir),
    )
    missing = tmp_path / "no_predictions"
    refused(
        tmp_path,
        InputNotFoundError,
        f"{missing} does not exist",
        dataset=built.root,
        layout="camvid",
        pred_probs=str(missing),
    )


def test_layout_image_without_prediction_is_named_or_skipped(tmp_path):
    built = build_layout("cityscapes", tmp_path)
    (built.pred_dir / "val/lindau/lindau_000000_000019.npy").unlink()
    spec = {"dataset": built.root, "layout": "cityscapes", "pred_probs": str(built.pred_dir)}
    refused(
        tmp_path,
        InvalidInputError,
        "1 mask without a prediction: val/lindau/lindau_000000_000019",
        "--skip-unmatched",
        **spec,
    )
    dataset = open_dataset(DatasetSpec(**spec, skip_unmatched=True))
    assert dataset.ids == built.ids[:-1]
    assert dataset.skipped["masks_without_prediction"] == 1


def test_layout_predictions_only_for_other_splits_is_one_sentence(tmp_path):
    built = build_layout("ade20k", tmp_path)
    shutil.rmtree(built.pred_dir / "validation")
    refused(
        tmp_path,
        InputNotFoundError,
        f"{built.pred_dir} holds no predictions for the split(s) validation",
        dataset=built.root,
        layout="ade20k",
        pred_probs=str(built.pred_dir),
        splits=("validation",),
    )


def test_voc_list_naming_a_missing_mask_or_a_path_outside_is_refused(tmp_path):
    built = build_layout("voc", tmp_path)
    voc = built.root / "VOCdevkit" / "VOC2012"
    listing_file = voc / "ImageSets" / "Segmentation" / "val.txt"
    listing_file.write_text("2007_000033\n2007_999999\n")
    spec = {"dataset": built.root, "layout": "voc", "pred_probs": str(built.pred_dir)}
    refused(
        tmp_path,
        InputNotFoundError,
        f"{listing_file} lists '2007_999999'",
        "does not exist",
        **spec,
    )
    shutil.copy(voc / "SegmentationClass" / "2007_000033.png", voc / "outside.png")
    listing_file.write_text("2007_000033\n../outside\n")
    refused(tmp_path, InvalidInputError, "val/../outside", "'..' path component", **spec)


def test_voc_ignores_hidden_lists_and_refuses_an_unreadable_one(tmp_path):
    built = build_layout("voc", tmp_path)
    lists = built.root / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation"
    (lists / "._train.txt").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X\xff\xfe")
    assert open_layout(built, "voc").ids == built.split_ids("train", "val")
    (lists / "val.txt").write_bytes(b"2007_000033\n2007_00004\xe9\n")
    spec = {"dataset": built.root, "layout": "voc", "pred_probs": str(built.pred_dir)}
    refused(
        tmp_path, UnreadableStoreError, f"{lists / 'val.txt'} is not a readable text file", **spec
    )


# --- folders, globs and manifests --------------------------------------------------------------


def test_folder_dataset_ids_are_paths_under_the_folder(tmp_path):
    built = build_folder(tmp_path / "data")
    dataset = open_dataset(DatasetSpec(dataset=built.root))
    assert dataset.ids == [
        "frame_000",
        "scene1/frame_001",
        "scene1/frame_002",
        "scene2/left/frame_003",
    ]
    check_images(dataset, built, sorted(FOLDER_IMAGES))
    assert dataset.class_names == list(FOLDER_CLASSES)
    assert dataset.class_names_path == built.root / "classes.txt"
    assert not dataset.uniform and dataset.label_dtype == np.uint8
    assert dataset.ignore_index is None and dataset.layout is None


def test_globs_select_masks_and_predictions(tmp_path):
    built = build_folder(tmp_path / "data")
    root = built.root
    dataset = open_dataset(
        DatasetSpec(labels=f"{root}/labels/**/*.png", pred_probs=str(root / "pred_probs"))
    )
    assert dataset.ids == sorted(FOLDER_IMAGES) and not dataset.has_photos
    scene = open_dataset(
        DatasetSpec(
            labels=f"{root}/labels/scene1/*.png",
            pred_probs=f"{root}/pred_probs/scene1/*.npy",
            images=f"{root}/images/scene1/frame_00?.jpg",
        )
    )
    assert scene.ids == ["frame_001", "frame_002"]  # relative to the glob's fixed part
    assert np.array_equal(scene.read_labels(1).array, built.labels["scene1/frame_002"])
    assert scene.files_of(0)["image"] == str(built.photos["scene1/frame_001"])


def test_manifest_paths_are_relative_to_the_manifest(tmp_path):
    built = build_folder(tmp_path / "data")
    rows = ["id,labels,pred_probs,image"]
    for image_id in FOLDER_IMAGES:
        rows.append(
            f"{image_id},labels/{image_id}.png,pred_probs/{image_id}.npy,images/{image_id}.jpg"
        )
    manifest = built.root / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n")
    dataset = open_dataset(DatasetSpec(manifest=manifest, dataset=built.root))
    check_images(dataset, built, sorted(FOLDER_IMAGES))
    assert dataset.class_names == list(FOLDER_CLASSES)
    excel = built.root / "excel.csv"  # Excel's "CSV UTF-8" starts with a byte-order mark
    excel.write_text("\ufeff" + "\r\n".join(rows) + "\r\n", encoding="utf-8")
    assert open_dataset(DatasetSpec(manifest=excel)).ids == sorted(FOLDER_IMAGES)


@pytest.mark.parametrize("kind", PROBS_KINDS)
def test_prediction_file_formats(tmp_path, kind):
    built = build_folder(tmp_path / "data", probs=kind)
    dataset = open_dataset(DatasetSpec(dataset=built.root, channels_last=kind == "channels_last"))
    assert dataset.channels_last == (kind == "channels_last")
    assert dataset.num_classes == len(FOLDER_CLASSES)
    check_images(dataset, built, sorted(FOLDER_IMAGES))


def test_npz_with_several_arrays_and_no_known_key_is_one_sentence(tmp_path):
    built = build_folder(tmp_path / "data", probs="npz")
    for path in sorted(built.pred_dir.rglob("*.npz")):
        probs = built.probs[str(path.relative_to(built.pred_dir).with_suffix(""))]
        np.savez(path, scores=probs, logits=probs)
    refused(
        tmp_path,
        InvalidInputError,
        "hold several arrays (logits, scores)",
        "probabilities or softmax",
        dataset=built.root,
    )


@pytest.mark.parametrize(
    ("kind", "dtype"),
    [("png", np.uint8), ("png16", np.uint16), ("palette", np.uint8), ("tif", np.uint8)],
)
def test_mask_file_encodings(tmp_path, kind, dtype):
    built = build_folder(tmp_path / "data", masks=kind)
    dataset = open_dataset(DatasetSpec(dataset=built.root))
    assert dataset.label_dtype == dtype
    check_images(dataset, built, sorted(FOLDER_IMAGES))
    assert dataset.read_labels(0).array.dtype == dtype


def test_16_bit_masks_keep_values_above_255(tmp_path):
    labels = np.array([[0, 299, 65535, 7], [256, 1, 65535, 298]], np.uint16)
    save_mask(labels, tmp_path / "labels" / "a.png", "png16")
    probs = np.full((300, 2, 4), 1 / 300, np.float32)
    save_folder_probs(tmp_path / "pred_probs", "a", probs, "npy")
    dataset = open_dataset(DatasetSpec(dataset=tmp_path, ignore_index=65535))
    assert dataset.label_dtype == np.uint16 and dataset.ignore_index == 65535
    assert np.array_equal(dataset.read_labels(0).array, labels)


def test_rgb_masks_are_mapped_by_a_label_map(tmp_path):
    built = build_folder(tmp_path / "data", masks="rgb")
    label_map = tmp_path / "colours.txt"
    label_map.write_text(label_map_text())
    dataset = open_dataset(DatasetSpec(dataset=built.root, label_map=label_map))
    assert dataset.ignore_index == 255  # the label map has void colours
    check_images(dataset, built, sorted(FOLDER_IMAGES))


def test_rgb_mask_without_a_label_map_is_one_sentence(tmp_path):
    built = build_folder(tmp_path / "data", masks="rgb")
    refused(
        tmp_path,
        InvalidInputError,
        "frame_000.png is an RGB colour-coded image",
        "--label-map",
        dataset=built.root,
    )


def test_label_map_missing_a_value_fails_on_read_naming_it(tmp_path):
    built = build_folder(tmp_path / "data", masks="rgb")
    label_map = tmp_path / "colours.txt"
    label_map.write_text(label_map_text(void=False))
    dataset = open_dataset(DatasetSpec(dataset=built.root, label_map=label_map))
    before = listing(tmp_path)
    with pytest.raises(
        InvalidInputError, match=r"holds the value #ffffff at pixel \(\d+, \d+\)"
    ) as caught:
        dataset.read_labels(0)
    assert str(label_map) in str(caught.value) and "\n" not in str(caught.value)
    assert listing(tmp_path) == before


def test_integer_label_map_with_names_and_a_default(tmp_path):
    built = build_folder(tmp_path / "data")
    label_map = tmp_path / "map.txt"
    label_map.write_text("# raw, class\n0, background\n1, road\n2, 3\n*, void\n")
    dataset = open_dataset(DatasetSpec(dataset=built.root, label_map=label_map))
    for index, image_id in enumerate(dataset.ids):
        raw = built.labels[image_id]
        expected = np.select([raw == 0, raw == 1, raw == 2], [0, 1, 3], 255)
        assert np.array_equal(dataset.read_labels(index).array, expected), image_id


@pytest.mark.parametrize("stacked", ["pred_probs", "labels"])
def test_a_stacked_store_pairs_with_a_folder_in_sorted_id_order(tmp_path, stacked):
    built = build_half_stacked(tmp_path / "data", stacked)
    dataset = open_dataset(DatasetSpec(dataset=built.root))
    assert dataset.ids == ["a_first", "b_second", "c_third"]
    check_images(dataset, built, built.ids)


def test_a_stacked_store_of_another_length_is_one_sentence(tmp_path):
    built = build_half_stacked(tmp_path / "data", "pred_probs")
    (built.root / "labels" / "c_third.png").unlink()
    refused(tmp_path, InvalidInputError, "holds 2 images", "holds 3", dataset=built.root)


# --- bad input ------------------------------------------------------------------------------


def test_masks_without_predictions_name_the_first_few_and_the_count(tmp_path):
    built = build_folder(tmp_path / "data")
    for n in range(7):
        save_mask(np.zeros((4, 6), np.uint8), built.root / "labels" / "extra" / f"m{n}.png", "png")
    refused(
        tmp_path,
        InvalidInputError,
        "7 masks without a prediction: extra/m0, extra/m1, extra/m2, extra/m3, extra/m4, … "
        "(7 in all)",
        "--skip-unmatched",
        dataset=built.root,
    )
    dataset = open_dataset(DatasetSpec(dataset=built.root, skip_unmatched=True))
    assert dataset.ids == sorted(FOLDER_IMAGES)
    assert dataset.skipped["masks_without_prediction"] == 7
    assert dataset.skipped["predictions_without_mask"] == 0
    check_images(dataset, built, sorted(FOLDER_IMAGES))


def test_predictions_without_masks_are_named_or_skipped(tmp_path):
    built = build_folder(tmp_path / "data")
    for image_id in ("frame_000", "scene1/frame_002"):
        built.masks[image_id].unlink()
    refused(
        tmp_path,
        InvalidInputError,
        "2 predictions without a mask: frame_000, scene1/frame_002;",
        dataset=built.root,
    )
    dataset = open_dataset(DatasetSpec(dataset=built.root, skip_unmatched=True))
    assert dataset.ids == ["scene1/frame_001", "scene2/left/frame_003"]
    assert dataset.skipped["predictions_without_mask"] == 2
    assert dataset.skipped["examples"] == ["frame_000", "scene1/frame_002"]


def test_nothing_in_common_is_one_sentence_even_when_skipping(tmp_path):
    built = build_folder(tmp_path / "data")
    for path in built.masks.values():
        path.rename(path.with_name("renamed_" + path.name))
    refused(
        tmp_path,
        InvalidInputError,
        "no image has both a mask",
        dataset=built.root,
        skip_unmatched=True,
    )


def test_empty_and_missing_folders(tmp_path):
    built = build_folder(tmp_path / "data")
    for path in built.masks.values():
        path.unlink()
    labels = built.root / "labels"
    refused(
        tmp_path,
        InputNotFoundError,
        f"labels {labels} holds no .png, .tif, .tiff, .nii, .nii.gz files",
        dataset=built.root,
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    refused(
        tmp_path,
        InputNotFoundError,
        f"{empty} has no pred_probs.npy, pred_probs.zarr or pred_probs/ folder",
        dataset=empty,
    )
    refused(
        tmp_path,
        InputNotFoundError,
        f"dataset folder {tmp_path / 'nowhere'} does not exist",
        dataset=tmp_path / "nowhere",
    )
    refused(
        tmp_path,
        InputNotFoundError,
        "no_such/*.png",
        labels=str(tmp_path / "no_such/*.png"),
        pred_probs=str(built.pred_dir),
    )


def test_two_files_for_one_id_are_refused(tmp_path):
    built = build_folder(tmp_path / "data")
    save_mask(built.labels["frame_000"], built.root / "labels" / "frame_000.tif", "tif")
    refused(
        tmp_path,
        InvalidInputError,
        "several files for the image id(s) frame_000",
        dataset=built.root,
    )


def test_corrupt_and_truncated_masks_fail_when_read(tmp_path):
    built = build_folder(tmp_path / "data")
    corrupt_idat(built.masks["scene1/frame_001"])
    truncated = built.masks["scene1/frame_002"]
    truncated.write_bytes(truncated.read_bytes()[:-40])
    dataset = open_dataset(DatasetSpec(dataset=built.root))  # headers are intact
    before = listing(tmp_path)
    for index in (1, 2):
        with pytest.raises(UnreadableStoreError, match="is corrupt or truncated") as caught:
            dataset.read_labels(index)
        assert str(built.masks[dataset.ids[index]]) in str(caught.value)
    assert np.array_equal(dataset.read_labels(0).array, built.labels["frame_000"])
    assert listing(tmp_path) == before
    built.masks["frame_000"].write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 4)
    refused(
        tmp_path,
        UnreadableStoreError,
        f"mask {built.masks['frame_000']} is not a readable image",
        dataset=built.root,
    )


@pytest.mark.parametrize(
    ("image_id", "problem"),
    [
        ("../x", "has a '..' path component"),
        ("/abs", "is an absolute path"),
        ("a\x00b", "holds a control character"),
        ("a\x1b[2Jb", "holds a control character"),
        ("a/./b", "has a '.' path component"),
        ("a\\b", "holds a backslash"),
        ("a//b", "has an empty path component"),
    ],
)
def test_manifest_ids_that_would_escape_the_run_are_refused(tmp_path, image_id, problem):
    built = build_folder(tmp_path / "data")
    manifest = built.root / "manifest.csv"
    manifest.write_text(
        "id,labels,pred_probs\n"
        "frame_000,labels/frame_000.png,pred_probs/frame_000.npy\n"
        f'"{image_id}",labels/scene1/frame_001.png,pred_probs/scene1/frame_001.npy\n'
    )
    message = refused(
        tmp_path, InvalidInputError, f"manifest {manifest}, line 3", problem, manifest=manifest
    )
    assert "\x00" not in message and "\x1b" not in message


def test_predictions_whose_class_count_differs_from_the_first_fail_when_read(tmp_path):
    built = build_folder(tmp_path / "data")
    np.save(built.pred_dir / "scene1" / "frame_002.npy", np.full((3, 12, 16), 1 / 3, np.float32))
    dataset = open_dataset(DatasetSpec(dataset=built.root))
    assert dataset.num_classes == 4
    before = listing(tmp_path)
    with pytest.raises(
        InvalidInputError,
        match=r"have shape \(3, 12, 16\), but the dataset's first prediction has 4 classes",
    ) as caught:
        dataset.read_probs(2)
    assert str(built.pred_dir / "scene1" / "frame_002.npy") in str(caught.value)
    assert np.array_equal(dataset.read_probs(3).array, built.probs["scene2/left/frame_003"])
    assert listing(tmp_path) == before


def test_class_list_of_the_wrong_length_is_one_sentence(tmp_path):
    built = build_folder(tmp_path / "data")
    (built.root / "classes.txt").write_text("road\ncar\n")
    refused(
        tmp_path,
        InvalidInputError,
        "lists 2 class names but pred_probs has 4 classes",
        dataset=built.root,
    )


def test_masks_beyond_pillows_decompression_bomb_limit_are_read(tmp_path, monkeypatch):
    """Aerial tiles and slides pass Pillow's web limit (89 megapixels warns, 179 refuses):
    segaudit's own images are read whatever their size, without a warning."""
    import warnings

    from PIL import Image

    from segaudit.sources.files import mask_header

    Image.fromarray(np.zeros((30, 40), np.uint8)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 1,200 pixels: 12 times the limit
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        header = mask_header(tmp_path / "big.png")
    assert (header.height, header.width) == (30, 40)
