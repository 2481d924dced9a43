"""The training commands' refusals, each one line naming the file, the cause and what to do,
before any work; a file named like an option; model problems as exit 2; and Ctrl-C pressed
again while the interrupted run saves and exits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write_colour_splits

ROOT = Path(__file__).resolve().parents[2]
TINY_TRAIN = ["--width", "16", "--depth", "1", "--heads", "2", "--patch-size", "8",
              "--per-class", "6", "--test-per-class", "2", "--batch-size", "4",
              "--probes", "0", "--device", "cpu"]  # fmt: skip


@pytest.fixture(scope="module")
def colours(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_colour_splits(tmp_path_factory.mktemp("colours"))


@pytest.mark.timeout(300)
def test_a_second_ctrl_c_after_the_save_is_absorbed(colours: Path, tmp_path: Path) -> None:
    """Ctrl-C after the first epoch, then again right after the "saved" line: exit 130, one
    "interrupted" line, no traceback, and the checkpoint whole."""
    from vitexplorer.core.models import load_model

    out = tmp_path / "m.safetensors"
    command = [sys.executable, "-m", "vitexplorer", "train", "--data", str(colours),
               "--out", str(out), "--epochs", "500", *TINY_TRAIN]  # fmt: skip
    child = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert child.stdout is not None and child.stderr is not None
        first = child.stdout.readline()
        assert '"epoch": 1' in first, first
        child.send_signal(signal.SIGINT)
        err = []
        for line in child.stderr:
            err.append(line)
            if "was saved to" in line:
                child.send_signal(signal.SIGINT)  # at once, while the program exits
                break
        rest_out, rest_err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    text = "".join(err) + rest_err
    assert child.returncode == 130, text
    assert "Traceback" not in text and "Exception ignored" not in text, text
    assert sum("interrupted" in line for line in text.splitlines()) == 1, text
    model = load_model(str(out), "default", "cpu")  # whole: it loads, with the dataset's classes
    assert model.spec.class_names == ("blue", "red")
