"""Hostile names and paths in, plain text out: no command is tricked by what a name holds.

Class names (through classes.txt) and run paths are generated from Rich markup, matplotlib
mathtext, terminal control sequences, spreadsheet formula prefixes, line separators and
sheer length, then pushed through scan, swaps, render and score. Every command must
succeed (never exit 3, never a traceback), print the names as text (no raw control
character reaches the terminal), quote formula-like CSV cells and draw its pictures.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from pathlib import Path

import numpy as np
from helpers import make_probs
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from segaudit.cli import app
from segaudit.safetext import csv_cell, printable

runner = CliRunner()
K = 3
FUZZ = settings(
    max_examples=int(os.environ.get("SEGAUDIT_FUZZ_EXAMPLES", "4")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)

FRAGMENTS = [
    "[/x]",
    "[bold]",
    "[",
    "]",
    "$",
    "\\",
    "$\\undefinedmacro$",
    "$x^$",
    "\x1b[2J",
    "\x07",
    "=",
    "+",
    "-",
    "@",
    "\u2028",
    "<b>&amp;",
    "%s{0}",
    "é漢",
    "road",
    "x" * 300,
]
# A class name: one line of classes.txt (no line break; U+2028 is not one), as written.
NAMES = (
    st.lists(st.sampled_from([*FRAGMENTS, "\x00", "\t", " "]), min_size=1, max_size=4)
    .map("".join)
    .filter(lambda name: name == name.strip() and name != "")
)
# A folder name: what a file system allows (no "/", no NUL), within its length limit.
FOLDERS = (
    st.lists(st.sampled_from([*FRAGMENTS[:-1], "\r", "run"]), min_size=1, max_size=4)
    .map(lambda parts: "".join(parts).replace("/", "_"))
    .filter(lambda name: name not in (".", "..") and len(name.encode()) < 200)
)


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=True)


def succeeded(result, what: str) -> None:
    """Exit 0, no traceback, and no raw control character written to the terminal."""
    assert result.exit_code == 0, (what, result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output, what
    shown = result.output.replace("\n", "")
    assert printable(shown) == shown, (what, result.output)


def write_dataset(folder: Path, names: list[str]) -> Path:
    labels, probs = make_probs(np.random.default_rng(7), 3, K, 8, 8, "float32", noise=0.4)
    folder.mkdir(parents=True)
    np.save(folder / "labels.npy", labels.astype(np.uint8))
    np.save(folder / "pred_probs.npy", probs)
    (folder / "classes.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
    return folder


@FUZZ
@given(names=st.lists(NAMES, min_size=K, max_size=K), folder=FOLDERS)
@example(names=["[/x]", "$\\undefinedmacro$", "=1+2"], folder="run[/x]")
@example(names=["[/x]", "[/x]", "\\["], folder="[_x]")  # "\\[" is no tag, still shown
@example(names=["a\x1b[2Jb", "+cmd\u2028two", "@" + "y" * 300], folder="r\r\x1b[2J$x$")
def test_hostile_names_and_paths_are_plain_text_everywhere(names, folder):
    with tempfile.TemporaryDirectory() as tmp:
        data = write_dataset(Path(tmp) / "data", names)
        run = Path(tmp) / folder / "run"
        succeeded(invoke("scan", data, "-o", run), "scan")
        swaps = invoke("swaps", run, "--top", "50")
        succeeded(swaps, "swaps")
        with open(run / "swaps.csv", newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        assert rows, "the data has swaps"
        for row in rows:
            for side in ("given", "predicted"):
                assert row[f"{side}_name"] == csv_cell(names[int(row[f"{side}_id"])])
        for name in names:  # names short enough, once escaped, not to wrap in the table
            if len(printable(name)) <= 12 and any(name == row["given_name"] for row in rows):
                assert printable(name) in swaps.stdout, (name, swaps.stdout)
        succeeded(
            invoke("render", run, "--top", "1", "--out", Path(tmp) / folder / "pages"), "render"
        )
        page = (Path(tmp) / folder / "pages" / "data.js").read_text(encoding="ascii")
        assert json.loads(page.split(" = ", 1)[1].rstrip(";\n"))["classes"]["names"] == names
        succeeded(invoke("score", data, "-o", Path(tmp) / folder / "scores"), "score")
