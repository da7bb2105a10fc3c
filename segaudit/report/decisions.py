"""A reviewer's decisions (``decisions.csv``, exported by the review page), read back.

One row per reviewed item: ``id, region, decision, note, time`` (``region`` empty for
an image), then what the page knew of the item — ``image, given_class,
predicted_class, given_name, predicted_name, x0, y0, x1, y1`` (the region's inclusive
box in full-resolution pixels), ``score`` — and ``run``, the fingerprint of the run
it was reviewed on. ``decision`` is ``real_error``, ``false_alarm`` or ``unsure``.
Only ``id``, ``region`` and ``decision`` are required; an item decided twice counts
by its latest ``time`` (then its last row).

Two commands use them:

- ``segaudit eval RUN --decisions FILE``: the precision of the flags the reviewer saw
  (real errors / (real errors + false alarms)), per score band (:data:`BANDS`);
- ``segaudit scan ... --reviewed FILE``: the **rule** of :func:`suppress_reviewed`: a
  region of the new run is not flagged when a ``false_alarm`` decision names the same
  image id and the same (given, predicted) class pair and its box overlaps the new
  region's box (they share at least one pixel). Such regions are left out of
  ``regions.csv`` (so of the review page, export and ``region_score``) and listed
  under ``reviewed`` in ``summary.json``; issue pixels are kept as Confident
  Learning found them.
"""

from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segaudit.errors import InputNotFoundError, InvalidInputError, RunDirectoryError
from segaudit.safetext import from_csv_cell, printable

DECISIONS = ("real_error", "false_alarm", "unsure")
REQUIRED = ("id", "region", "decision")
COLUMNS = (
    "id", "region", "decision", "note", "time", "image", "given_class", "predicted_class",
    "given_name", "predicted_name", "x0", "y0", "x1", "y1", "score", "run",
)  # fmt: skip
BANDS = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)
"""Score bands of ``eval --decisions``: [0, 0.1), [0.1, 0.25), ... [0.75, 1.0]."""
RULE = (
    "a region is not flagged when a false_alarm decision names the same image id and the "
    "same (given, predicted) class pair and its box overlaps the region's box"
)
MAX_ROWS = 1_000_000


@dataclass(frozen=True)
class Decision:
    """One reviewed item."""

    id: str
    region: int | None
    decision: str
    note: str = ""
    time: str = ""
    given_class: int | None = None
    predicted_class: int | None = None
    box: tuple[int, int, int, int] | None = None
    score: float | None = None
    run: str = ""

    @property
    def key(self) -> tuple[str, int | None]:
        return self.id, self.region


def fingerprint_of(*parts: bytes) -> str:
    """A short, stable digest of ``parts``: the name a run's decisions are kept under."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()[:16]


FINGERPRINTED = ("images.csv", "regions.csv")
"""What decisions refer to: the images (by id) and the regions (by number and box)."""


def run_fingerprint(run_path: str | os.PathLike[str]) -> str:
    """A run's fingerprint: the digest of the tables its decisions refer to, so a run
    whose items change gets a new one, while rewriting its ``summary.json`` (``score``
    reusing the scan) or rescanning the same data keeps it. Runs without ``images.csv``
    fall back on ``summary.json``."""
    run = Path(run_path)
    names = [n for n in FINGERPRINTED if (run / n).exists()] or ["summary.json"]
    parts = []
    for name in names:
        try:
            parts.append(name.encode() + b"\0" + (run / name).read_bytes())
        except OSError as error:
            raise RunDirectoryError(f"{printable(run / name)} cannot be read ({error}).") from None
    return fingerprint_of(*parts)


# --- reading ---------------------------------------------------------------------------------


def read_decisions(path: str | os.PathLike[str]) -> list[Decision]:
    """The decisions of ``path``, checked, one per item (its latest), in file order.

    Any problem is one sentence naming the file and the line.
    """
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(
            f"decisions file {printable(path)} does not exist; export it from the review page."
        )
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            _check_header(path, reader.fieldnames)
            rows = [(reader.line_num, row) for row in reader]
    except UnicodeDecodeError:
        raise InvalidInputError(
            f"decisions file {printable(path)} is not UTF-8 text; export it again from the "
            "review page."
        ) from None
    except csv.Error as error:
        raise InvalidInputError(
            f"decisions file {printable(path)} is not a readable CSV ({error})."
        ) from None
    except OSError as error:
        raise InvalidInputError(
            f"decisions file {printable(path)} cannot be read ({error})."
        ) from None
    if len(rows) > MAX_ROWS:
        raise InvalidInputError(f"decisions file {printable(path)} has over {MAX_ROWS} rows.")
    return latest([_decision(path, line, row) for line, row in rows])


def _check_header(path: Path, fields: Any) -> None:
    missing = [name for name in REQUIRED if name not in (fields or [])]
    if missing:
        raise InvalidInputError(
            f"decisions file {printable(path)} has no {', '.join(missing)} column; expected a "
            "decisions.csv exported by the review page (id, region, decision, note, time)."
        )


def _integer(path: Path, line: int, name: str, text: str | None) -> int | None:
    text = (text or "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        raise InvalidInputError(
            f"decisions file {printable(path)} line {line}: {name} {printable(text)!r} is "
            "not a whole number."
        ) from None
    if value < 0:
        raise InvalidInputError(
            f"decisions file {printable(path)} line {line}: {name} {value} is negative."
        )
    return value


def _decision(path: Path, line: int, row: dict[str, Any]) -> Decision:
    """One checked row."""
    if None in row:
        raise InvalidInputError(
            f"decisions file {printable(path)} line {line} has more cells than columns."
        )
    image_id = from_csv_cell(row.get("id") or "")
    if not image_id:
        raise InvalidInputError(f"decisions file {printable(path)} line {line} has no id.")
    decision = (row.get("decision") or "").strip()
    if decision not in DECISIONS:
        raise InvalidInputError(
            f"decisions file {printable(path)} line {line}: decision {printable(decision)!r} "
            f"is not one of {', '.join(DECISIONS)}."
        )
    region = _integer(path, line, "region", row.get("region"))
    corners = [_integer(path, line, name, row.get(name)) for name in ("x0", "y0", "x1", "y1")]
    box = None
    if all(value is not None for value in corners):
        x0, y0, x1, y1 = (int(v) for v in corners)  # type: ignore[arg-type]
        if x1 < x0 or y1 < y0:
            raise InvalidInputError(
                f"decisions file {printable(path)} line {line}: the box ({x0}, {y0}, {x1}, "
                f"{y1}) ends before it starts."
            )
        box = (x0, y0, x1, y1)
    return Decision(
        id=image_id,
        region=region,
        decision=decision,
        note=from_csv_cell(row.get("note") or ""),
        time=(row.get("time") or "").strip(),
        given_class=_integer(path, line, "given_class", row.get("given_class")),
        predicted_class=_integer(path, line, "predicted_class", row.get("predicted_class")),
        box=box,
        score=_score(path, line, row.get("score")),
        run=(row.get("run") or "").strip(),
    )


def _score(path: Path, line: int, text: str | None) -> float | None:
    text = (text or "").strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise InvalidInputError(
            f"decisions file {printable(path)} line {line}: score {printable(text)!r} is not "
            "a number."
        ) from None


def latest(decisions: list[Decision]) -> list[Decision]:
    """One decision per item: the latest by time, then the last in the file."""
    chosen: dict[tuple[str, int | None], tuple[str, int]] = {}
    for position, decision in enumerate(decisions):
        best = chosen.get(decision.key)
        if best is None or decision.time >= best[0]:
            chosen[decision.key] = (decision.time, position)
    keep = sorted(position for _, position in chosen.values())
    return [decisions[position] for position in keep]


# --- eval --decisions ------------------------------------------------------------------------


def check_same_run(decisions: list[Decision], fingerprint: str, path: Any) -> None:
    """Refuse decisions reviewed on another run (their ``run`` names another fingerprint)."""
    other = sorted({d.run for d in decisions if d.run and d.run != fingerprint})
    if other:
        raise InvalidInputError(
            f"decisions file {printable(path)} was reviewed on another run (fingerprint "
            f"{printable(other[0])}, this run's is {fingerprint}); pass the run it was "
            "exported from."
        )


def band_of(score: float) -> int:
    """The index of the band of :data:`BANDS` holding ``score`` (the last one is closed)."""
    clipped = min(max(score, BANDS[0]), BANDS[-1])
    return min(int(np.searchsorted(BANDS, clipped, side="right")) - 1, len(BANDS) - 2)


def _tally(scores: list[tuple[float | None, str]]) -> dict[str, Any]:
    """Counts and precision of a list of (score, decision)."""
    counts = {name: sum(1 for _, d in scores if d == name) for name in DECISIONS}
    decided = counts["real_error"] + counts["false_alarm"]
    return {
        "reviewed": len(scores),
        **counts,
        "precision": counts["real_error"] / decided if decided else None,
    }


def precision_by_band(scored: list[tuple[float | None, str]]) -> dict[str, Any]:
    """Precision of reviewed flags overall and per score band (lower score = worse)."""
    bands = []
    for index in range(len(BANDS) - 1):
        inside = [
            (s, d) for s, d in scored if s is not None and np.isfinite(s) and band_of(s) == index
        ]
        low, high = BANDS[index], BANDS[index + 1]
        closing = "]" if index == len(BANDS) - 2 else ")"
        bands.append({"band": f"[{low}, {high}{closing}", "low": low, "high": high,
                      **_tally(inside)})  # fmt: skip
    return {"bands": bands, "all": _tally(scored)}


def evaluate_decisions(run: Any, decisions: list[Decision], path: Any) -> dict[str, Any]:
    """``eval --decisions``: the reviewed flags of ``run`` matched to its scores."""
    from segaudit.report.regions import REGIONS_TABLE, read_regions_table
    from segaudit.report.tables import read_scores

    check_same_run(decisions, run_fingerprint(run.path), path)
    scores, ids, column = read_scores(run.path / "image_scores.csv", run.num_images)
    image_score = {image_id: float(scores[i]) for i, image_id in enumerate(ids)}
    region_score: dict[tuple[str, int | None], float] = {}
    if any(d.region is not None for d in decisions):
        if not (run.path / REGIONS_TABLE).is_file():
            raise InvalidInputError(
                f"decisions file {printable(path)} holds region decisions but "
                f"{printable(run.location)} has no {REGIONS_TABLE}; pass the run they came from."
            )
        region_score = {(r["id"], r["region"]): r["score"] for r in read_regions_table(run.path)}
    levels: dict[str, list[tuple[float | None, str]]] = {"image": [], "region": []}
    for decision in decisions:
        table = region_score if decision.region is not None else None
        if table is None:
            found = decision.id in image_score
            score = image_score.get(decision.id)
        else:
            found = decision.key in table
            score = table.get(decision.key)
        if not found:
            where = "" if decision.region is None else f" region {decision.region}"
            raise InvalidInputError(
                f"decisions file {printable(path)} names image {printable(decision.id)!r}"
                f"{where}, which {printable(run.location)} does not flag; pass the run it was "
                "exported from."
            )
        levels["image" if decision.region is None else "region"].append((score, decision.decision))
    return {
        "run": run.location,
        "decisions": str(path),
        "reviewed": len(decisions),
        "image_score_column": column,
        "region": precision_by_band(levels["region"]) if levels["region"] else None,
        "image": precision_by_band(levels["image"]) if levels["image"] else None,
    }


# --- scan --reviewed ---------------------------------------------------------------------------


def false_alarms(decisions: list[Decision]) -> list[Decision]:
    """The decisions the rule applies: region false alarms with a class pair and a box."""
    return [
        d
        for d in decisions
        if d.decision == "false_alarm"
        and d.region is not None
        and d.box is not None
        and d.given_class is not None
        and d.predicted_class is not None
    ]


def suppressed_regions(
    columns: dict[str, np.ndarray], ids: list[str], alarms: list[Decision]
) -> np.ndarray:
    """Which regions (rows of a region table's ``columns``) the rule leaves unflagged."""
    count = len(columns["region"])
    hit = np.zeros(count, bool)
    if not alarms or not count:
        return hit
    image_ids = np.asarray([ids[int(i)] for i in columns["image"]], dtype=object)
    for alarm in alarms:
        x0, y0, x1, y1 = alarm.box  # type: ignore[misc]
        hit |= (
            (image_ids == alarm.id)
            & (columns["given_class"] == alarm.given_class)
            & (columns["predicted_class"] == alarm.predicted_class)
            & (columns["x0"] <= x1)
            & (columns["x1"] >= x0)
            & (columns["y0"] <= y1)
            & (columns["y1"] >= y0)
        )
    return hit


def suppress_reviewed(
    table: Any, ids: list[str], decisions: list[Decision], path: Any
) -> tuple[Any, dict[str, Any]]:
    """``table`` (a :class:`segaudit.report.regions.RegionTable`) without the regions the
    rule suppresses, and the ``reviewed`` block of ``summary.json``."""
    from segaudit.report.regions import RegionTable

    alarms = false_alarms(decisions)
    hit = suppressed_regions(table.columns, ids, alarms)
    keep = ~hit
    kept = {name: values[keep] for name, values in table.columns.items()}
    order = np.lexsort((kept["region"], kept["image"], table.scores[keep]))
    result = RegionTable(kept, table.kinds[keep], table.shares[keep], table.scores[keep], order)
    suppressed = [
        {"id": ids[int(table.columns["image"][i])], "region": int(table.columns["region"][i]),
         "given_class": int(table.columns["given_class"][i]),
         "predicted_class": int(table.columns["predicted_class"][i]),
         "pixels": int(table.columns["pixels"][i])}
        for i in np.flatnonzero(hit)
    ]  # fmt: skip
    block = {
        "file": str(path),
        "decisions": len(decisions),
        "false_alarms": len(alarms),
        "rule": RULE,
        "suppressed_regions": len(suppressed),
        "suppressed_pixels": sum(row["pixels"] for row in suppressed),
        "suppressed": suppressed,
    }
    return result, block


class Reviewed:
    """``scan --reviewed FILE``: the decisions read (and checked) before a scan, applied
    to its region table; :attr:`summary` is then the ``reviewed`` block of summary.json."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.decisions = read_decisions(self.path)
        self.summary: dict[str, Any] | None = None

    def apply(self, table: Any, ids: list[str]) -> Any:
        """``table`` without the regions :data:`RULE` suppresses."""
        kept, self.summary = suppress_reviewed(table, list(ids), self.decisions, self.path)
        return kept
