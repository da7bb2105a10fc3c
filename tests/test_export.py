"""``segaudit export``: regions as COCO annotations (read back with pycocotools) and CSV."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from typer.testing import CliRunner

from segaudit.cli import app
from segaudit.runs.run import open_run

# pycocotools' decoder predates numpy 2's copy keyword; the masks are right regardless
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
runner = CliRunner()
SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("export")
    made = {}
    for name, dataset in (("stacked", SAMPLE), ("folder", SAMPLE / "folder")):
        made[name] = root / name
        result = invoke("scan", dataset, "-o", made[name], "-q", "--min-region-pixels", 1)
        assert result.exit_code == 0, result.output
    return made


def regions_of(run: Path) -> list[dict]:
    with open(run / "regions.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("kind", ["stacked", "folder"])
def test_coco_export_loads_and_every_mask_is_its_regions_pixels(tmp_path, runs, kind):
    run = runs[kind]
    out = tmp_path / "issues.json"
    result = invoke("export", run, "--format", "coco", "-o", out)
    assert result.exit_code == 0, result.output
    coco = COCO(str(out))
    rows = regions_of(run)
    assert len(coco.anns) == len(rows) > 0
    opened = open_run(run)
    names = opened.class_names
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == names
    for number, row in enumerate(rows, start=1):  # worst first, ids in that order
        ann = coco.anns[number]
        image = int(row["image"])
        assert ann["image_id"] == image + 1
        expected = opened.read("regions", image) == int(row["region"])
        np.testing.assert_array_equal(coco.annToMask(ann).astype(bool), expected)
        assert ann["area"] == int(row["pixels"]) == expected.sum()
        ys, xs = np.nonzero(expected)
        assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        assert ann["category_id"] == int(row["predicted_class"]) + 1
        attributes = ann["attributes"]
        assert attributes["region"] == int(row["region"])
        assert attributes["score"] == float(row["score"])
        assert attributes["kind"] == row["kind"]
        assert (attributes["given_class"], attributes["predicted_class"]) == (
            int(row["given_class"]), int(row["predicted_class"])
        )  # fmt: skip
        info = coco.imgs[ann["image_id"]]
        assert (info["height"], info["width"]) == expected.shape
        assert info["segaudit_id"] == row["id"]


def test_file_names_are_the_photos_where_there_are_photo_files(tmp_path, runs):
    for kind, expected in (("folder", "{id}.png"), ("stacked", "{id}")):
        out = tmp_path / f"{kind}.json"
        assert invoke("export", runs[kind], "-o", out, "-q").exit_code == 0
        images = json.loads(out.read_text())["images"]
        assert images
        for image in images:
            assert image["file_name"] == expected.format(id=image["segaudit_id"])
            if kind == "folder":
                assert (SAMPLE / "folder" / "images" / image["file_name"]).is_file()


def test_filters_keep_the_worst_regions_of_the_chosen_kinds_and_classes(tmp_path, runs):
    run = runs["stacked"]
    rows = regions_of(run)
    names = open_run(run).class_names
    kind = rows[0]["kind"]
    cls = rows[0]["given_name"]
    out = tmp_path / "some.json"
    result = invoke("export", run, "-o", out, "--kind", kind, "--class", cls, "--top", 2)
    assert result.exit_code == 0, result.output
    chosen = [
        r for r in rows if r["kind"] == kind and cls in (r["given_name"], r["predicted_name"])
    ]
    anns = json.loads(out.read_text())["annotations"]
    assert [a["attributes"]["rank"] for a in anns] == [int(r["rank"]) for r in chosen[:2]]
    assert all(names[a["attributes"]["given_class"]] == cls or
               names[a["attributes"]["predicted_class"]] == cls for a in anns)  # fmt: skip


def test_csv_export_is_regions_csv_with_the_image_files(tmp_path, runs):
    run = runs["folder"]
    out = tmp_path / "regions.csv"
    result = invoke("export", run, "--format", "csv", "-o", out, "--kind", "boundary")
    assert result.exit_code == 0, result.output
    with open(out, newline="") as handle:
        exported = list(csv.DictReader(handle))
    expected = [r for r in regions_of(run) if r["kind"] == "boundary"]
    assert len(exported) == len(expected) > 0
    table = open_run(run).images
    for got, want in zip(exported, expected, strict=True):
        image = int(want["image"])
        assert {k: got[k] for k in want} == want
        assert got["labels_file"] == table.files[image]["labels"]
        assert got["photo_file"] == table.files[image]["photo"]
        assert Path(got["photo_file"]).is_file()


def test_filters_matching_no_region_export_an_empty_document(tmp_path, runs):
    out = tmp_path / "none.json"
    result = invoke("export", runs["stacked"], "-o", out, "--kind", "missing", "--class", "sky")
    assert result.exit_code == 0, result.output
    document = json.loads(out.read_text())
    assert document["annotations"] == [] and document["images"] == []
    assert len(COCO(str(out)).cats) == 8


def test_an_earlier_export_is_replaced_but_other_files_need_force(tmp_path, runs):
    out = tmp_path / "issues.json"
    assert invoke("export", runs["stacked"], "-o", out, "--top", 1, "-q").exit_code == 0
    assert invoke("export", runs["stacked"], "-o", out, "--top", 3, "-q").exit_code == 0
    assert len(json.loads(out.read_text())["annotations"]) == 3
    precious = tmp_path / "notes.json"
    precious.write_text('{"mine": true}')
    result = invoke("export", runs["stacked"], "-o", precious)
    assert result.exit_code == 2
    assert "is not a segaudit export" in result.output and "--force" in result.output
    assert precious.read_text() == '{"mine": true}'
    assert invoke("export", runs["stacked"], "-o", precious, "--force", "-q").exit_code == 0
    assert json.loads(precious.read_text())["info"]["contributor"] == "segaudit"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("-o", "{tmp}"), "is a folder"),
        (("-o", "{tmp}/missing/issues.json"), "does not exist"),
        (("-o", "{tmp}/x.json", "--class", "tree"), "unknown class 'tree'"),
        (("-o", "{tmp}/x.json", "--top", 0), "--top must be at least 1"),
        (("-o", "{tmp}/x.json", "--kind", "blurry"), "blurry"),
    ],
)
def test_bad_export_arguments_are_one_sentence_and_write_nothing(tmp_path, runs, args, message):
    before = sorted(tmp_path.rglob("*"))
    result = invoke("export", runs["stacked"], *[str(a).format(tmp=tmp_path) for a in args])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert sorted(tmp_path.rglob("*")) == before


def test_a_run_without_a_region_table_is_refused(tmp_path, runs):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(runs["stacked"], run)
    (run / "regions.csv").unlink()
    result = invoke("export", run, "-o", tmp_path / "x.json")
    assert result.exit_code == 2
    assert "regions.csv is missing" in result.output
    assert not (tmp_path / "x.json").exists()


@pytest.mark.parametrize("inside", ["summary.json", "regions.csv", "issues/x.json"])
def test_an_export_into_the_run_is_refused_even_with_force(tmp_path, runs, inside):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(runs["folder"], run)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    result = invoke("export", run, "-o", run / inside, "--force", "--format", "csv")
    assert result.exit_code == 2 and "is inside the run" in result.output, result.output
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_an_export_over_an_input_of_the_run_is_refused_even_with_force(tmp_path, runs):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(SAMPLE / "folder", data)
    run = tmp_path / "run"
    assert invoke("scan", data, "-o", run, "-q").exit_code == 0
    mask = next((data / "labels").rglob("*.png"))
    before = mask.read_bytes()
    result = invoke("export", run, "-o", mask, "--force")
    assert result.exit_code == 2 and "is inside the run's input labels" in result.output
    assert mask.read_bytes() == before


def test_an_output_ending_in_csv_is_written_as_csv_unless_told(tmp_path, runs):
    assert invoke("export", runs["folder"], "-o", tmp_path / "r.csv", "-q").exit_code == 0
    told = tmp_path / "told.txt"
    assert invoke("export", runs["folder"], "-o", told, "--format", "csv", "-q").exit_code == 0
    assert (tmp_path / "r.csv").read_text() == told.read_text()
    done = invoke("export", runs["folder"], "-o", tmp_path / "c.csv", "--format", "coco", "-q")
    assert done.exit_code == 0 and json.loads((tmp_path / "c.csv").read_text())["images"]
