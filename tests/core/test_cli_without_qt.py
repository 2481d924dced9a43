"""Every command of the command line runs without importing Qt (issue 14: PySide6 and pyqtgraph
cost +0.45 s and +55 MiB a command, and a server may lack Qt's system libraries).

One subprocess runs each command for real on tiny inputs, in turn, and reports after each the
Qt modules that were imported while it ran; a test per command reads its line. ``train`` goes
first: the checkpoint it writes (with a time-lapse) feeds the others.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write_colour_splits
from vitexplorer.cli import COMMANDS

pytestmark = pytest.mark.slow  # the whole file is left out of the quick suite (-m "not slow")

SAMPLE = Path(__file__).parents[2] / "vitexplorer" / "resources" / "sample.png"
GUI_PACKAGES = ("PySide6", "shiboken6", "pyqtgraph")

RUNNER = f"""
import contextlib, io, json, sys
from vitexplorer.cli import main

GUI = {GUI_PACKAGES!r}
def loaded():
    return {{m for m in sys.modules if m.split(".")[0] in GUI}}

for argv in json.loads(sys.argv[1]):
    before = loaded()
    with contextlib.redirect_stdout(io.StringIO()), \\
            contextlib.redirect_stderr(io.StringIO()) as err:
        status = main(argv)
    record = {{"command": argv[0], "status": status, "qt": sorted(loaded() - before),
              "err": err.getvalue()[-2000:]}}
    print(json.dumps(record), flush=True)
"""


def _commands(root: Path) -> list[list[str]]:
    data = write_colour_splits(root / "colours")
    model = str(root / "scratch.safetensors")
    photo, cpu, quick = str(SAMPLE), ["--device", "cpu"], ["--no-mixed-precision", "--epochs", "1"]
    return [
        ["train", "--data", str(data), "--out", model, "--width", "16", "--depth", "2",
         "--heads", "2", "--patch-size", "8", "--per-class", "8", "--test-per-class", "4",
         "--batch-size", "8", "--probes", "2", *quick, *cpu],  # curves PNG and a time-lapse
        ["timelapse", model, "--out", str(root / "timelapse")],  # GIFs and per-epoch figures
        ["analyze", photo, "--model", model, "--out", str(root / "analyze"),
         "--method", "rollout", *cpu],
        ["stats", photo, "--model", model, "--out", str(root / "stats"), *cpu],
        ["sanity", photo, "--model", model, "--out", str(root / "sanity"),
         "--method", "rollout", *cpu],
        ["faithfulness", photo, "--model", model, "--out", str(root / "faithfulness"),
         "--method", "rollout", "--steps", "3", *cpu],
        ["compare", photo, "--model", model, "--model", "demo", "--out", str(root / "compare"),
         *cpu],
        ["finetune", "--model", model, "--data", str(data), "--out",
         str(root / "finetuned.safetensors"), "--per-class", "4", "--test-per-class", "2",
         "--batch-size", "8", *quick, *cpu],
        ["methods"],  # the catalogue's table: descriptions only
    ]  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    root = tmp_path_factory.mktemp("no-qt")
    commands = _commands(root)
    result = subprocess.run(
        [sys.executable, "-c", RUNNER, json.dumps(commands)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [r["command"] for r in records] == [c[0] for c in commands]
    return {r["command"]: {**r, "root": root} for r in records}


def test_every_command_is_run_here(runs: dict[str, dict]) -> None:
    assert sorted(runs) == sorted(COMMANDS)  # a new command: add it to _commands


@pytest.mark.parametrize("command", COMMANDS)
def test_the_command_imports_no_qt(runs: dict[str, dict], command: str) -> None:
    record = runs[command]
    assert record["status"] == 0, record["err"]
    assert record["qt"] == [], f"{command} imported {record['qt'][:5]}"


def test_the_commands_wrote_their_pictures(runs: dict[str, dict]) -> None:
    root = runs["stats"]["root"]
    assert (root / "scratch.curves.png").is_file()  # train's curves (core.curves)
    assert list((root / "timelapse").glob("*.gif"))  # timelapse's frames (core.figure)
    assert list((root / "analyze").glob("*.png"))
    assert (root / "stats" / "distance_vs_depth.png").is_file()  # core.plots
    assert list((root / "compare").glob("*.png"))
