"""decisions.csv read back: checked input, `eval --decisions`, `scan --reviewed` and its rule.

The browser test (test_review_page.py) runs both commands on a file the page exported;
these tests cover the rest without a browser.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import one_line_error
from typer.testing import CliRunner

from segaudit.cli import app
from segaudit.report.decisions import (
    COLUMNS,
    Decision,
    band_of,
    latest,
    precision_by_band,
    read_decisions,
    run_fingerprint,
    suppressed_regions,
)
from segaudit.report.regions import read_regions_table

SAMPLE = Path(__file__).resolve().parent.parent / "sample_data"


def invoke(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("decisions") / "run"
    assert invoke("scan", SAMPLE, "-o", out, "--quiet").exit_code == 0
    return out


def write(path: Path, rows: list[dict], columns=COLUMNS) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def row_of(region: dict, decision: str, run: Path, time: str = "2026-01-01T00:00:00Z") -> dict:
    """A decisions.csv row as the page exports it."""
    return {
        "id": region["id"], "region": region["region"], "decision": decision, "note": "",
        "time": time, "image": region["image"], "given_class": region["given_class"],
        "predicted_class": region["predicted_class"], "given_name": region["given_name"],
        "predicted_name": region["predicted_name"], "x0": region["x0"], "y0": region["y0"],
        "x1": region["x1"], "y1": region["y1"], "score": region["score"],
        "run": run_fingerprint(run),
    }  # fmt: skip


def test_the_latest_decision_of_an_item_counts(tmp_path: Path) -> None:
    rows = [
        {"id": "a", "region": "1", "decision": "false_alarm", "time": "2026-01-02T00:00:00Z"},
        {"id": "a", "region": "1", "decision": "real_error", "time": "2026-01-01T00:00:00Z"},
        {"id": "'=b", "region": "", "decision": "unsure", "note": "'+note"},
    ]
    read = read_decisions(write(tmp_path / "d.csv", rows, ("id", "region", "decision", "time",
                                                            "note")))  # fmt: skip
    assert [(d.id, d.region, d.decision, d.note) for d in read] == [
        ("a", 1, "false_alarm", ""), ("=b", None, "unsure", "+note")
    ]
    same_time = [Decision("x", 2, "unsure", time="t"), Decision("x", 2, "real_error", time="t")]
    assert latest(same_time) == same_time[1:]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("id,decision\n1,real_error\n", "has no region column"),
        ("id,region,decision\n1,2,maybe\n", "line 2: decision 'maybe' is not one of"),
        ("id,region,decision\n1,two,unsure\n", "line 2: region 'two' is not a whole number"),
        ("id,region,decision\n,1,unsure\n", "line 2 has no id"),
        ("id,region,decision\n1,1,unsure,extra\n", "line 2 has more cells than columns"),
        ("id,region,decision,x0,y0,x1,y1\n1,1,unsure,5,5,2,9\n", "ends before it starts"),
        (b"id,region,decision\n\xff\xfe,1,unsure\n", "is not UTF-8 text"),
    ],
)
def test_a_malformed_file_is_one_sentence_and_nothing_is_written(
    run: Path, tmp_path: Path, content, message
) -> None:
    path = tmp_path / "decisions.csv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert message in one_line_error(invoke("eval", run, "--decisions", path))
    out = tmp_path / "next"
    assert message in one_line_error(invoke("scan", SAMPLE, "-o", out, "--reviewed", path))
    assert not out.exists()


def test_eval_needs_truth_or_decisions_and_decisions_of_this_run(
    run: Path, tmp_path: Path
) -> None:
    assert "pass --truth DATASET, --decisions FILE" in one_line_error(invoke("eval", run))
    missing = one_line_error(invoke("eval", run, "--decisions", tmp_path / "none.csv"))
    assert "does not exist; export it from the review page" in missing
    region = read_regions_table(run)[0]
    other = write(tmp_path / "o.csv", [{**row_of(region, "unsure", run), "run": "0" * 16}])
    refused = one_line_error(invoke("eval", run, "-q", "--decisions", other))
    assert "was reviewed on another run" in refused
    unknown = write(tmp_path / "u.csv", [{**row_of(region, "unsure", run), "region": 999}])
    assert "region 999, which" in one_line_error(invoke("eval", run, "--decisions", unknown))


def test_eval_reports_precision_per_score_band(run: Path, tmp_path: Path) -> None:
    regions = read_regions_table(run)
    decided = ["real_error", "real_error", "false_alarm", "unsure", "false_alarm"]
    rows = [row_of(r, d, run) for r, d in zip(regions, decided, strict=False)]
    scores = read_scores(run)
    rows.append({"id": "7", "region": "", "decision": "real_error", "run": run_fingerprint(run)})
    result = invoke("eval", run, "--decisions", write(tmp_path / "d.csv", rows), "--json")
    assert result.exit_code == 0, result.output
    reviewed = json.loads(result.stdout)["decisions"]
    region = reviewed["region"]
    assert region["all"]["reviewed"] == 5 and region["all"]["precision"] == pytest.approx(0.5)
    for band in region["bands"]:
        inside = [d for r, d in zip(regions, decided, strict=False)
                  if band["low"] <= r["score"] < band["high"] or
                  (band["high"] == 1.0 and r["score"] == 1.0)]  # fmt: skip
        assert band["reviewed"] == len(inside)
        assert band["real_error"] == inside.count("real_error")
    image = reviewed["image"]
    assert image["all"] == {"reviewed": 1, "real_error": 1, "false_alarm": 0, "unsure": 0,
                            "precision": 1.0}  # fmt: skip
    assert image["bands"][band_of(scores["7"])]["reviewed"] == 1


def read_scores(run: Path) -> dict[str, float]:
    with open(run / "image_scores.csv", newline="") as handle:
        return {row["id"]: float(row["softmin_score"]) for row in csv.DictReader(handle)}


def test_bands_cover_zero_to_one() -> None:
    assert [band_of(s) for s in (0.0, 0.09, 0.1, 0.3, 0.5, 0.99, 1.0)] == [0, 0, 1, 2, 3, 4, 4]
    empty = precision_by_band([(0.05, "unsure")])
    assert empty["all"]["precision"] is None and empty["bands"][0]["unsure"] == 1


def test_the_rule_needs_same_id_same_pair_and_an_overlapping_box() -> None:
    columns = {
        "image": np.array([0, 0, 0, 1]),
        "region": np.array([1, 2, 3, 1]),
        "given_class": np.array([2, 2, 3, 2]),
        "predicted_class": np.array([5, 5, 5, 5]),
        "x0": np.array([10, 40, 10, 10]), "y0": np.array([10, 10, 10, 10]),
        "x1": np.array([20, 50, 20, 20]), "y1": np.array([20, 20, 20, 20]),
    }  # fmt: skip
    alarm = Decision("a", 7, "false_alarm", given_class=2, predicted_class=5, box=(20, 20, 30, 30))
    ids = ["a", "b"]
    # region 1: same id, pair, box touching at (20, 20); 2: no overlap; 3: other pair;
    # image b: other id.
    assert suppressed_regions(columns, ids, [alarm]).tolist() == [True, False, False, False]
    assert not suppressed_regions(columns, ids, []).any()


def test_scan_reviewed_keeps_real_errors_and_reports_the_suppressed(
    run: Path, tmp_path: Path
) -> None:
    regions = read_regions_table(run)
    rows = [row_of(regions[0], "false_alarm", run), row_of(regions[1], "real_error", run),
            {**row_of(regions[2], "false_alarm", run), "x0": ""}]  # no box: the rule needs one
    path = write(tmp_path / "d.csv", rows)
    out = tmp_path / "next"
    result = invoke("scan", SAMPLE, "-o", out, "--reviewed", path, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary == json.loads((out / "summary.json").read_text())
    reviewed = summary["reviewed"]
    assert reviewed["decisions"] == 3 and reviewed["false_alarms"] == 1
    assert reviewed["suppressed"] == [{
        "id": regions[0]["id"], "region": regions[0]["region"],
        "given_class": regions[0]["given_class"],
        "predicted_class": regions[0]["predicted_class"], "pixels": regions[0]["pixels"],
    }]  # fmt: skip
    assert reviewed["suppressed_pixels"] == regions[0]["pixels"]
    assert summary["regions"]["count"] == len(regions) - 1
    kept = read_regions_table(out)
    assert [(r["id"], r["region"]) for r in kept] == [(r["id"], r["region"]) for r in regions[1:]]
    assert [r["rank"] for r in kept] == list(range(1, len(kept) + 1))
    assert summary["totals"] == json.loads((run / "summary.json").read_text())["totals"]


def test_decisions_outlive_score_reusing_the_scan_but_not_a_scan_of_other_items(
    tmp_path: Path,
) -> None:
    """The fingerprint is the items' (images.csv, regions.csv), not summary.json's."""
    out = tmp_path / "run"
    assert invoke("scan", SAMPLE, "-o", out, "--quiet").exit_code == 0
    region = read_regions_table(out)[0]
    decisions = write(tmp_path / "d.csv", [row_of(region, "real_error", out)])
    before = (out / "summary.json").read_bytes()
    scored = invoke("score", SAMPLE, "-o", out, "--method", "num_pixel_issues", "--quiet")
    assert scored.exit_code == 0, scored.output
    assert (out / "summary.json").read_bytes() != before  # rewritten by score
    assert invoke("eval", out, "--decisions", decisions, "--quiet").exit_code == 0
    other = tmp_path / "other"
    rescan = invoke("scan", SAMPLE, "-o", other, "--min-region-pixels", 30, "--quiet")
    assert rescan.exit_code == 0
    assert "was reviewed on another run" in one_line_error(
        invoke("eval", other, "--decisions", decisions)
    )
