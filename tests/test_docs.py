"""The README stays true: every command documented and helped, its figures computed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from segaudit.cli import app

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
COMMANDS = ["scan", "score", "swaps", "render", "export", "eval", "synth"]
runner = CliRunner()


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example_and_a_readme_entry(command):
    result = runner.invoke(app, [command, "--help"], terminal_width=200)
    assert result.exit_code == 0
    assert "Examples:" in result.output
    example = result.output.split("Examples:", 1)[1]
    assert f"segaudit {command} " in example
    assert f"`segaudit {command}" in README


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("segaudit ")


def test_readme_average_precision_is_the_one_the_demo_computes(tmp_path):
    sample = ROOT / "sample_data"
    run = tmp_path / "run"
    assert runner.invoke(app, ["scan", str(sample), "-o", str(run), "-q"]).exit_code == 0
    result = runner.invoke(app, ["eval", str(run), "--truth", str(sample), "--json"])
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    shown = re.search(r"softmin average precision on `sample_data/`: \*\*([0-9.]+)\*\*", README)
    assert shown, "README must show the demo's average precision"
    assert float(shown.group(1)) == pytest.approx(report["image"]["average_precision"], abs=5e-5)


def test_readme_embeds_committed_pictures():
    for picture in re.findall(r"\]\((docs/[^)]+\.png)\)", README):
        assert (ROOT / picture).is_file(), picture
