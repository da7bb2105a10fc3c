"""A damaged run is named in one sentence by every command that reads it, exit 2."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from segaudit.cli import app

runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def scanned(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("scanned")
    made = invoke("synth", root / "data", "--layout", "folder", "--images", "4", "--classes",
                  "5", "--sizes", "32x48,40x40", "--seed", "0", "--quiet")  # fmt: skip
    assert made.exit_code == 0, made.output
    done = invoke("scan", root / "data", "-o", root / "run", "--quiet")
    assert done.exit_code == 0, done.output
    return root / "data", root / "run"


def _truncate_half(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DAMAGE = {
    "issues chunk truncated": (lambda run: (run / "issues.zarr/0/c.0.0").write_bytes(
        (run / "issues.zarr/0/c.0.0").read_bytes()[:20]), "issues.zarr is damaged at image 0"),
    "pred_labels chunk truncated": (lambda run: (run / "pred_labels.zarr/0/c.0.0").write_bytes(
        (run / "pred_labels.zarr/0/c.0.0").read_bytes()[:20]), "pred_labels.zarr is damaged"),
    "regions.csv cut in half": (lambda run: _truncate_half(run / "regions.csv"),
                                "regions.csv is "),
    "images.csv cut in half": (lambda run: _truncate_half(run / "images.csv"),
                               "images.csv is malformed"),
    "summary.json a list": (lambda run: (run / "summary.json").write_text("[]"),
                            "is not a segaudit run's summary"),
}  # fmt: skip
COMMANDS = {
    "swaps": lambda data, run, out: ["swaps", run],
    "render": lambda data, run, out: ["render", run, "-o", out],
    "export": lambda data, run, out: ["export", run, "-o", out / "issues.json"],
    "eval": lambda data, run, out: ["eval", run, "--truth", data],
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_reader_names_the_damage_in_one_sentence(scanned, tmp_path, damage, command):
    data, good = scanned
    run = tmp_path / "run"
    shutil.copytree(good, run)
    harm, phrase = DAMAGE[damage]
    harm(run)
    (tmp_path / "out").mkdir()
    done = invoke(*COMMANDS[command](data, run, tmp_path / "out"), "--quiet")
    message = done.output.strip()
    if done.exit_code == 0:  # a command that never reads the damaged part
        assert damage.startswith(("issues chunk", "pred_labels", "regions")), (command, damage)
        return
    assert done.exit_code == 2, (command, damage, message)
    assert "Traceback" not in message and len(message.splitlines()) == 1, message
    assert phrase in message, message
