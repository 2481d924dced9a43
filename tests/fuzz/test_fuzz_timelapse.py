"""Tampered time-lapse blocks (the ``timelapse`` description and ``timelapse.*`` tensors that a
trained checkpoint carries) through ``vitexplorer timelapse`` and through the window's model
switch: every field of the block of a wrong type, empty, huge, out of range or not finite; names
with NUL, lone surrogates and escape sequences; images of 0x0, 1 or 7 channels; layers and heads
that are not the model's. A damaged block is one line naming the checkpoint (exit 2, nothing
written) and the window switches to the model fully, its time-lapse tab saying why there is
none; a block that holds (odd names included) is written out, its names escaped on the terminal.
And a write that fails (read-only folder, full disk) is one line, exit 2, the folder as it was.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.fuzz.cli_run import run_cli
from tests.fuzz.conftest import record
from tests.fuzz.timelapse_blocks import GOOD, PROBES, Tensors, all_cases, write_block
from tests.gui.conftest import running_window
from vitexplorer.core.models.checkpoint import read_weights
from vitexplorer.gui.workers import ModelRequest

pytestmark = pytest.mark.slow  # the whole file is left out of the quick suite (-m "not slow")

CLI_DOOR = "time-lapse blocks: vitexplorer timelapse"
WINDOW_DOOR = "time-lapse blocks: the window's model switch"


# --- running and running ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_parts(tiny_checkpoint: Path) -> tuple[Tensors, dict[str, Any]]:
    return read_weights(tiny_checkpoint)


@pytest.mark.timeout(300)
def test_every_tampered_block_through_timelapse(
    model_parts: tuple[Tensors, dict[str, Any]],
    tmp_path: Path,
    capsys,
) -> None:
    cases = all_cases()
    assert len({c.name for c in cases}) == len(cases)
    problems = []
    for n, case in enumerate(cases):
        folder = tmp_path / f"case{n}"
        folder.mkdir()
        checkpoint = write_block(folder / "run.safetensors", case, model_parts)
        before = checkpoint.read_bytes()
        out = folder / "out"
        status, stdout, lines, crashed = run_cli(
            ["timelapse", str(checkpoint), "--out", str(out), "--format", "png", "--format",
             "npy"], capsys  # GIFs take Pillow 0.5 s to quantise: one test writes them
        )  # fmt: skip
        lost = checkpoint.read_bytes() != before
        record(CLI_DOOR, case.name, crash=crashed, lost=lost)
        if crashed or lost:
            problems.append(f"{case.name}: crashed {crashed}, lost {lost}: {lines[-3:]}")
        elif case.good:
            written = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
            if status != 0 or len(written) != 3 * PROBES + 1 or lines:  # PNGs, npy, json; csv
                problems.append(f"{case.name}: status {status}, {written}, {lines}")
            if "\x1b" in stdout or "\x07" in stdout or len(stdout.splitlines()) != 3 * PROBES + 1:
                problems.append(f"{case.name}: stdout {stdout!r}")
            outside = [p for p in out.parent.rglob("*") if p.is_relative_to(out) is False]
            if any(p.name not in ("out", "run.safetensors") for p in outside):
                problems.append(f"{case.name}: wrote outside {out}")
        else:
            one_line = len(lines) == 1 and "run.safetensors" in lines[0] and "\x1b" not in lines[0]
            if status != 2 or not one_line or "time-lapse" not in lines[0]:
                problems.append(f"{case.name}: status {status}, {lines}")
            if out.exists():
                problems.append(f"{case.name}: made {out}")
    assert not problems, "\n".join(problems)


def test_the_messages_name_the_field(
    model_parts: tuple[Tensors, dict[str, Any]],
    tmp_path: Path,
    capsys,
) -> None:
    """A few refusals word for word: the field, the numbers, and what to do."""
    expected = {
        "predicted: class 5": "epoch 0 names class 5 for probe 1 but the model has 5 classes",
        "labels: class 5": "probe 1's true class is 5 but the model has 5 classes",
        "images: 7 channels": "its probe images have 7 channels, not 3 (red, green, blue)",
        "images: 0x0": "its probe images are 0x0 pixels, not 1 to 4096 a side",
        "layers: 3, beyond the model's 2": "its number of layers is 3 but the model's is 2",
        "epochs: empty list": "its list of epochs is a list, not a list of epochs",
        "epochs: out of order": "its epochs are out of order: 0 comes after 1",
        "probe name: NUL": "probe 2's name is the text 'a\\x00b.png', not a file's name",
        "num_classes: 10, not the model's 5": "it was recorded with 10 classes but the model has 5",
    }
    cases = {c.name: c for c in all_cases()}
    for name, words in expected.items():
        checkpoint = write_block(tmp_path / "run.safetensors", cases[name], model_parts)
        status, _, lines, _ = run_cli(["timelapse", str(checkpoint), "--out", str(tmp_path / "o")],
                                       capsys)  # fmt: skip
        assert status == 2 and len(lines) == 1, (name, lines)
        assert lines[0].startswith(
            f"vitexplorer: the time-lapse in {checkpoint.name} is damaged: {words}"
        ), lines[0]
        assert lines[0].endswith("the model itself loads; train again to record a new time-lapse")


# --- the window ---------------------------------------------------------------------------------


@pytest.fixture
def window(qtbot, tmp_path: Path, tiny_checkpoint: Path):
    yield from running_window(qtbot, tmp_path / "settings.ini", tiny_checkpoint)


@pytest.mark.timeout(600)
def test_every_tampered_block_through_the_window(
    qtbot,
    window,
    model_parts: tuple[Tensors, dict[str, Any]],
    tmp_path: Path,
) -> None:
    cases = all_cases()
    view = window.finetune.panel.timelapse
    problems = []
    for n, case in enumerate(cases):
        path = write_block(tmp_path / f"case{n}.safetensors", case, model_parts)
        failed: list[str] = []
        window.model_failed.connect(failed.append)
        try:
            with qtbot.waitSignal(window.model_changed, timeout=60000):
                window.request_model(ModelRequest(str(path)))
        except Exception as exc:  # a switch that never finished
            failed.append(f"no switch: {exc}")
        finally:
            window.model_failed.disconnect(failed.append)
        switched = window.model is not None and window.model.request.name == str(path)
        message = view.message()
        record(WINDOW_DOOR, case.name, crash=bool(failed) or not switched)
        if failed or not switched:
            problems.append(f"{case.name}: switched {switched}, {failed}")
        elif case.good:
            if (
                message is not None
                or view.timelapse is None
                or len(view.timelapse.sources) != PROBES
            ):
                problems.append(f"{case.name}: not shown: {message!r}")
        elif message is None or "\n" in message or f"{path.name} is damaged" not in message:
            problems.append(f"{case.name}: {message!r}")
        if window.finetune.panel.model_info is not window.model:  # the training tab too
            problems.append(f"{case.name}: the training tab kept the model it had")
    assert not problems, "\n".join(problems)


# --- writes that fail -----------------------------------------------------------------------------


def _fail(monkeypatch, where: str, number: int, out: Path) -> None:
    """A write of ``timelapse`` into ``out`` failing with the system error ``number`` at
    ``where``."""
    import tempfile

    import vitexplorer.core.render.figure as figure

    failure = OSError(number, os.strerror(number))
    if where == "creating a file":  # what a read-only folder refuses first: the staging entry
        for name in ("mkstemp", "mkdtemp"):
            original = getattr(tempfile, name)

            def refused(*args, original=original, **kwargs):
                if Path(kwargs.get("dir", "")).is_relative_to(out):
                    raise failure
                return original(*args, **kwargs)

            monkeypatch.setattr(tempfile, name, refused)
    elif where == "the maps":
        monkeypatch.setattr(np, "save", lambda *a, **k: (_ for _ in ()).throw(failure))
    elif where == "the third PNG":
        calls = iter(range(100))
        original_png = figure.save_png

        def third(image, handle):
            if next(calls) == 2:
                raise failure
            return original_png(image, handle)

        monkeypatch.setattr(figure, "save_png", third)


WRITE_FAILURES = [
    ("read-only folder", "creating a file", errno.EROFS, "Read-only file system"),
    ("full disk at the maps", "the maps", errno.ENOSPC, "No space left on device"),
    ("full disk at the third PNG", "the third PNG", errno.ENOSPC, "No space left on device"),
    ("input/output error", "the maps", errno.EIO, "Input/output error"),
    ("quota exceeded", "the third PNG", errno.EDQUOT, "Disk quota exceeded"),
]


@pytest.mark.parametrize(("case", "where", "number", "words"), WRITE_FAILURES)
def test_a_write_that_fails_is_one_line_and_the_folder_is_as_it_was(
    model_parts: tuple[Tensors, dict[str, Any]],
    tmp_path: Path,
    capsys,
    monkeypatch,
    case: str,
    where: str,
    number: int,
    words: str,
) -> None:
    checkpoint = write_block(tmp_path / "run.safetensors", GOOD, model_parts)
    out = tmp_path / "out"
    out.mkdir()
    old = out / "probe-01-cat.rollout.gif"  # an earlier run's output, under a name this one uses
    old.write_bytes(b"GIF89a earlier run")
    mine = out / "notes.txt"
    mine.write_text("the user's own file")
    _fail(monkeypatch, where, number, out)
    status, stdout, lines, crashed = run_cli(
        ["timelapse", str(checkpoint), "--out", str(out)], capsys
    )
    monkeypatch.undo()
    after = sorted(p.name for p in out.iterdir())
    lost = (
        old.read_bytes() != b"GIF89a earlier run"
        or not stat.S_ISREG(old.stat().st_mode)
        or mine.read_text() != "the user's own file"
        or after != ["notes.txt", "probe-01-cat.rollout.gif"]
    )
    record(CLI_DOOR, f"write fails: {case}", crash=crashed, lost=lost)
    assert not crashed and not lost, (lines, after)
    assert status == 2 and stdout == "" and len(lines) == 1, lines
    assert lines[0].startswith(f"vitexplorer: cannot write to {out}: {words}; nothing was written")


def test_a_write_that_fails_into_a_new_folder_leaves_no_folder(
    model_parts: tuple[Tensors, dict[str, Any]],
    tmp_path: Path,
    capsys,
    monkeypatch,
) -> None:
    checkpoint = write_block(tmp_path / "run.safetensors", GOOD, model_parts)
    out = tmp_path / "new" / "out"
    _fail(monkeypatch, "the third PNG", errno.ENOSPC, out)
    status, _, lines, crashed = run_cli(["timelapse", str(checkpoint), "--out", str(out)], capsys)
    monkeypatch.undo()
    record(CLI_DOOR, "write fails: into a new folder", crash=crashed, lost=out.exists())
    assert status == 2 and len(lines) == 1 and not crashed
    assert not out.exists()


def test_ctrl_c_while_writing_leaves_the_folder_as_it_was(
    model_parts: tuple[Tensors, dict[str, Any]],
    tmp_path: Path,
    capsys,
    monkeypatch,
) -> None:
    import vitexplorer.core.render.figure as figure

    checkpoint = write_block(tmp_path / "run.safetensors", GOOD, model_parts)
    out = tmp_path / "made" / "out"
    calls = iter(range(100))
    original = figure.save_png

    def interrupted(image, handle):
        if next(calls) == 2:
            raise KeyboardInterrupt
        return original(image, handle)

    monkeypatch.setattr(figure, "save_png", interrupted)
    status, stdout, lines, crashed = run_cli(
        ["timelapse", str(checkpoint), "--out", str(out)], capsys
    )
    monkeypatch.undo()
    left = sorted(p.name for p in tmp_path.iterdir())
    record(CLI_DOOR, "write interrupted: Ctrl-C", crash=crashed, lost=left != ["run.safetensors"])
    assert status == 130 and lines == ["vitexplorer: interrupted"] and stdout == ""
    assert left == ["run.safetensors"]  # neither a file nor the folders it made
