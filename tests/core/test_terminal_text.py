"""Class and folder names reach the terminal escaped: no ESC or BEL byte (an OSC 52 sequence in a
class name could otherwise write the user's clipboard)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from tests.conftest import write_colour_splits
from vitexplorer.cli import main
from vitexplorer.cli.common import terminal_text

HOSTILE = "\x1b]52;c;ZXZpbA==\x07cat"
SHOWN = "\\x1b]52;c;ZXZpbA==\\x07cat"
SMALL = ["--width", "16", "--depth", "2", "--heads", "2", "--patch-size", "8"]
QUICK = ["--per-class", "8", "--test-per-class", "4", "--batch-size", "8", "--epochs", "1"]


def _run(args: list[str]) -> tuple[int, str, str]:
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        status = main(args)
    return status, out.getvalue(), err.getvalue()


def _clean(*texts: str) -> None:
    for text in texts:
        assert "\x1b" not in text and "\x07" not in text


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Colour splits whose red class folder is named with an OSC 52 sequence, and a small ViT
    trained on them (its class names the folders')."""
    root = write_colour_splits(tmp_path_factory.mktemp("hostile"))
    for split in ("train", "test"):
        (root / split / "red").rename(root / split / HOSTILE)
        (root / split / "blue").rename(root / split / f"{HOSTILE}blue")
    model = root.parent / "m.safetensors"
    args = ["train", "--data", str(root), "--out", str(model), "--device", "cpu"]
    status, out, err = _run([*args, *SMALL, *QUICK])
    assert status == 0, err
    _clean(out, err)
    assert HOSTILE in json.loads(out.splitlines()[-1])["class_names"]  # JSON escapes it itself
    return root, model


def test_terminal_text_escapes_what_does_not_print() -> None:
    assert terminal_text(HOSTILE) == SHOWN
    assert terminal_text("tabby cat, 12.5%") == "tabby cat, 12.5%"
    assert terminal_text("a\nb\udcff") == "a\\nb\\xff"  # a line break; a byte that was not UTF-8


@pytest.mark.parametrize("command", ["analyze", "compare"])
def test_stdout_names_the_class_escaped(hostile, tmp_path: Path, command: str) -> None:
    root, model = hostile
    image = str(root / "test" / HOSTILE / "00.png")
    pair = ["--model", "small_vit", "--weights", str(model)] * (2 if command == "compare" else 1)
    status, out, err = _run([command, image, *pair, "--out", str(tmp_path / "o")])
    assert status == 0, err
    _clean(out, err)
    line = next(line for line in out.splitlines() if line.startswith("00: "))
    assert SHOWN in line  # both classes are named with the sequence: the top one is, escaped


@pytest.mark.parametrize("command", ["train", "finetune"])
def test_folder_names_in_errors_are_escaped(hostile, tmp_path: Path, command: str) -> None:
    root, model = hostile
    (root / "train" / f"{HOSTILE}2").mkdir(exist_ok=True)  # train/ and test/ now disagree
    try:
        args = [command, "--data", str(root), "--out", str(tmp_path / "n.safetensors")]
        if command == "finetune":
            args += ["--model", "small_vit", "--weights", str(model)]
        status, out, err = _run([*args, "--device", "cpu"])
    finally:
        (root / "train" / f"{HOSTILE}2").rmdir()
    assert status == 2
    _clean(out, err)
    assert f"{SHOWN}2" in err and err.count("\n") == 1
