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
import stat
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.fuzz.conftest import record
from tests.gui.conftest import running_window
from vitexplorer.cli import main
from vitexplorer.core.checkpoint import TIMELAPSE_KEY, TIMELAPSE_PREFIX, read_weights, save_weights
from vitexplorer.core.timelapse import Frame, TimeLapse
from vitexplorer.gui.workers import ModelRequest

CLI_DOOR = "time-lapse blocks: vitexplorer timelapse"
WINDOW_DOOR = "time-lapse blocks: the window's model switch"
PROBES, EPOCHS, LAYERS, HEADS, GRID, SIDE, CLASSES = 2, (0, 1), 2, 2, (4, 4), 32, 5
MISSING = object()  # a field left out of the description

Tensors = dict[str, torch.Tensor]
Change = Callable[[Tensors, dict[str, Any]], None]


@dataclass(frozen=True)
class Case:
    name: str
    change: Change
    good: bool = False  # the block still holds: written out, shown in the window
    classes: tuple[str, ...] | None = None  # other class names for the model


def good_block() -> tuple[Tensors, dict[str, Any]]:
    """A time-lapse of the fuzz suite's tiny model (2 probes, epochs 0 and 1) that holds: the
    tensors (names without the prefix) and the description, as the project's writer makes them."""
    rng = np.random.default_rng(7)
    patches = GRID[0] * GRID[1]

    def rows(*shape: int) -> np.ndarray:
        raw = rng.random((*shape, patches)).astype(np.float32)
        return raw / raw.sum(-1, keepdims=True)

    frames = []
    for epoch in EPOCHS:
        stats = (PROBES, LAYERS, HEADS)
        frames.append(
            Frame(
                epoch=epoch,
                predicted=rng.integers(0, CLASSES, PROBES),
                probability=rng.uniform(0.3, 0.9, PROBES).astype(np.float32),
                cls_attention=rows(*stats),
                rollout=rows(PROBES),
                distance=rng.uniform(4, 20, stats).astype(np.float32),
                entropy=rng.uniform(0.5, 2.7, stats).astype(np.float32),
                prefix_share=rng.uniform(0, 0.5, stats).astype(np.float32),
                runner_up=np.full(PROBES, 0.1, np.float32),
            )
        )
    timelapse = TimeLapse(
        grid=GRID,
        patch_size=8,
        num_prefix=1,
        num_classes=CLASSES,
        sources=["cat.png", "test #2"],
        images=rng.integers(0, 256, (PROBES, SIDE, SIDE, 3), dtype=np.uint8),
        labels=np.array([1, -1]),
        frames=frames,
        best_epoch=1,
    )
    tensors = {k.removeprefix(TIMELAPSE_PREFIX): v for k, v in timelapse.tensors().items()}
    return tensors, timelapse.metadata()


# --- the cases ----------------------------------------------------------------------------------


def _set(field: str, value: object) -> Change:
    def change(_: Tensors, meta: dict[str, Any]) -> None:
        if value is MISSING:
            meta.pop(field, None)
        else:
            meta[field] = value

    return change


def _tensor(name: str, make: Callable[[torch.Tensor], torch.Tensor | None]) -> Change:
    def change(tensors: Tensors, _: dict[str, Any]) -> None:
        made = make(tensors[name])
        if made is None:
            del tensors[name]
        else:
            tensors[name] = made

    return change


def _values(name: str, index: tuple, value: float) -> Change:
    def make(t: torch.Tensor) -> torch.Tensor:
        t = t.clone()
        t[index] = value
        return t

    return _tensor(name, make)


def _both(*changes: Change) -> Change:
    def change(tensors: Tensors, meta: dict[str, Any]) -> None:
        for one in changes:
            one(tensors, meta)

    return change


def _layers_heads(layers: int, heads: int) -> Change:
    """Every per-head tensor with ``layers`` layers and ``heads`` heads, consistently."""

    def change(tensors: Tensors, _: dict[str, Any]) -> None:
        for name in ("distance", "entropy", "prefix_share"):
            tensors[name] = torch.ones(len(EPOCHS), PROBES, layers, heads, dtype=torch.float16)
        patches = GRID[0] * GRID[1]
        shape = (len(EPOCHS), PROBES, layers, heads, patches)
        tensors["cls_attention"] = torch.full(shape, 1 / patches, dtype=torch.float16)

    return change


def _images(height: int, width: int, channels: int = 3) -> Change:
    return _tensor("images", lambda t: torch.zeros(PROBES, height, width, channels, dtype=t.dtype))


def _grid(rows: int, cols: int) -> Change:
    """A grid of ``rows`` x ``cols`` patches, every map resized to it (the model's is 4x4)."""

    def change(tensors: Tensors, meta: dict[str, Any]) -> None:
        meta["grid"] = [rows, cols]
        n = rows * cols
        tensors["rollout"] = torch.full((len(EPOCHS), PROBES, n), 1 / n, dtype=torch.float16)
        shape = (len(EPOCHS), PROBES, LAYERS, HEADS, n)
        tensors["cls_attention"] = torch.full(shape, 1 / n, dtype=torch.float16)

    return change


WRONG_VALUES: list[tuple[str, object]] = [
    ("missing", MISSING),
    ("null", None),
    ("true", True),
    ("text", "3"),
    ("fraction", 3.5),
    ("NaN", float("nan")),
    ("negative", -1),
    ("zero", 0),
    ("10^30", 10**30),
    ("empty list", []),
    ("object", {}),
    ("list of three", [1, 2, 3]),
]
FIELDS = ("version", "epochs", "sources", "grid", "patch_size", "num_prefix", "num_classes",
          "best_epoch")  # fmt: skip
FLOAT_ARRAYS = ("probability", "cls_attention", "rollout", "distance", "entropy", "prefix_share",
                "runner_up")  # fmt: skip
ARRAYS = ("images", "labels", "predicted", *FLOAT_ARRAYS)
OTHER_KIND = {"images": torch.float32, "labels": torch.float32, "predicted": torch.float16}
ESCAPES = "\x1b]52;c;aGVsbG8=\x07\x1b[31mred\x1b[0m"


def description_cases() -> list[Case]:
    cases = []
    for field in FIELDS:
        for words, value in WRONG_VALUES:
            # the kept epoch may be left out, null or an epoch the block has
            good = field == "best_epoch" and (value is MISSING or value is None or value == 0)
            cases.append(
                Case(f"{field}: {words}", _set(field, value), good=good and value is not True)
            )
    for words, value in [("null", None), ("list", []), ("text", "x"), ("number", 7), ("empty", {})]:
        cases.append(Case(f"description: {words}", lambda _, m, v=value: _whole_block(m, v)))
    cases += [
        Case("epochs: out of order", _set("epochs", [1, 0])),
        Case("epochs: repeated", _set("epochs", [1, 1])),
        Case("epochs: a negative one", _set("epochs", [-1, 0])),
        Case("epochs: beyond any run", _set("epochs", [0, 10_001])),
        Case("epochs: 2^63", _set("epochs", [0, 2**63])),
        Case("epochs: a gap", _both(_set("epochs", [3, 7]), _set("best_epoch", 7)), good=True),
        Case("epochs: one more than the frames", _set("epochs", [0, 1, 2])),
        Case("best epoch: not among them", _set("best_epoch", 2)),
        Case("version: 1.0", _set("version", 1.0)),
        Case("65 probes", _set("sources", ["p"] * 65)),
    ]
    return cases


def _whole_block(meta: dict[str, Any], value: object) -> None:
    meta.clear()
    meta["replaced"] = value  # read by _write: the whole description replaced


def name_cases() -> list[Case]:
    """Probe names: NUL is never a file's name; the others can be (a path that is not UTF-8 is
    a lone surrogate to Python) and are written out, escaped on the terminal."""
    names = [
        ("NUL", "a\x00b.png", False),
        ("empty", "", False),
        ("10,000 characters", "n" * 10_000, False),
        ("lone surrogate", "caf\udce9.png", True),
        ("escape sequences", f"{ESCAPES}.png", True),
        ("line break", "two\nlines.png", True),
        ("4,000 characters", "n" * 4000 + ".png", True),
        ("a path out of the folder", "../../../etc/passwd", True),
        ("the root", "/", True),
        ("same stem twice", "cat.jpg", True),
    ]
    cases = [
        Case(f"probe name: {words}", _set("sources", ["cat.png", name]), good=good)
        for words, name, good in names
    ]
    names = tuple(f"{ESCAPES} {i}" for i in range(CLASSES))
    cases.append(Case("class names: escape sequences", lambda t, m: None, good=True, classes=names))
    cases.append(Case("untouched", lambda t, m: None, good=True))
    return cases


def tensor_cases() -> list[Case]:
    cases = []
    for name in ARRAYS:
        cases += [
            # a time-lapse saved before runner_up was recorded has none
            Case(f"{name}: missing", _tensor(name, lambda t: None), good=name == "runner_up"),
            Case(f"{name}: a scalar", _tensor(name, lambda t: torch.zeros((), dtype=t.dtype))),
            Case(f"{name}: one more axis", _tensor(name, lambda t: t.unsqueeze(-1))),
            Case(f"{name}: empty", _tensor(name, lambda t: t[:0])),
            Case(f"{name}: bfloat16", _tensor(name, lambda t: t.to(torch.bfloat16))),
            Case(f"{name}: booleans", _tensor(name, lambda t: t.to(torch.bool))),
            Case(
                f"{name}: another kind",
                _tensor(name, lambda t, n=name: t.to(OTHER_KIND.get(n, torch.int32))),
            ),
        ]
    for name in FLOAT_ARRAYS:
        first = (0,) * 2
        for words, value in [("NaN", float("nan")), ("infinite", float("inf")),
                             ("minus infinite", -float("inf"))]:  # fmt: skip
            cases.append(Case(f"{name}: {words}", _values(name, first, value)))
        probability = name in ("probability", "runner_up")
        cases.append(Case(f"{name}: 65504", _values(name, first, 65504), good=not probability))
        cases.append(Case(f"{name}: -0.5", _values(name, first, -0.5), good=not probability))
    for name in ("predicted", "labels"):
        index = (0, 0) if name == "predicted" else (0,)
        for value in (CLASSES, -2, 2**31 - 1):
            cases.append(Case(f"{name}: class {value}", _values(name, index, value)))
    cases.append(Case("labels: -1 (unknown)", _values("labels", (0,), -1), good=True))
    cases.append(Case("predicted: -1", _values("predicted", (0, 0), -1)))
    return cases


def shape_cases() -> list[Case]:
    return [
        Case("images: 1 channel", _images(SIDE, SIDE, 1)),
        Case("images: 2 channels", _images(SIDE, SIDE, 2)),
        Case("images: 4 channels", _images(SIDE, SIDE, 4)),
        Case("images: 7 channels", _images(SIDE, SIDE, 7)),
        Case("images: 0x0", _images(0, 0)),
        Case("images: 0 rows", _images(0, SIDE)),
        Case("images: 0 columns", _images(SIDE, 0)),
        Case("images: 16x16, not the model's 32", _images(16, 16)),
        Case("images: 33x32", _images(33, SIDE)),
        Case("images: 5000 rows", _images(5000, 1)),
        Case("layers: 0", _layers_heads(0, HEADS)),
        Case("layers: 3, beyond the model's 2", _layers_heads(3, HEADS)),
        Case("heads: 0", _layers_heads(LAYERS, 0)),
        Case("heads: 3, beyond the model's 2", _layers_heads(LAYERS, 3)),
        Case("layers and heads: 1 and 1", _layers_heads(1, 1)),
        Case("grid: 2x8, not the model's 4x4", _grid(2, 8)),
        Case("grid: 1x1", _grid(1, 1)),
        Case("num_classes: 10, not the model's 5", _set("num_classes", 10)),
        Case("num_prefix: 2, not the model's 1", _set("num_prefix", 2)),
        Case("patch_size: 16, not the model's 8", _set("patch_size", 16)),
        Case(
            "cls_attention: the layers of another model",
            _tensor("cls_attention", lambda t: torch.cat([t, t], dim=2)),
        ),
        Case("an extra tensor", _extra, good=True),
    ]


def _extra(tensors: Tensors, _: dict[str, Any]) -> None:
    tensors["unknown"] = torch.zeros(3)  # a name the reader does not know: left alone


def all_cases() -> list[Case]:
    return [*description_cases(), *name_cases(), *tensor_cases(), *shape_cases()]


# --- writing and running ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_parts(tiny_checkpoint: Path) -> tuple[Tensors, dict[str, Any]]:
    return read_weights(tiny_checkpoint)


def _write(path: Path, case: Case, parts: tuple[Tensors, dict[str, Any]]) -> Path:
    """The tiny model's checkpoint with the good block changed as ``case`` says, written by the
    project's own writer."""
    state, model_meta = parts
    tensors, description = good_block()
    case.change(tensors, description)
    block: object = description.get("replaced", description)
    meta = {**model_meta, TIMELAPSE_KEY: block}
    if case.classes is not None:
        meta["class_names"] = list(case.classes)
    stored = {TIMELAPSE_PREFIX + k: v for k, v in tensors.items()}
    save_weights(path, {**state, **stored}, meta)
    return path


def _run_cli(args: list[str], capsys) -> tuple[int | None, str, list[str], bool]:  # noqa: ANN001
    """(exit status, stdout, error lines, crashed): a crash is any exception out of main()."""
    try:
        status = main(args)
    except BaseException:  # noqa: BLE001  (what the suite looks for)
        traceback.print_exc()
        captured = capsys.readouterr()
        return None, captured.out, captured.err.splitlines(), True
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    return status, captured.out, lines, "Traceback" in captured.err


@pytest.mark.timeout(300)
def test_every_tampered_block_through_timelapse(model_parts, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    cases = all_cases()
    assert len({c.name for c in cases}) == len(cases)
    problems = []
    for n, case in enumerate(cases):
        folder = tmp_path / f"case{n}"
        folder.mkdir()
        checkpoint = _write(folder / "run.safetensors", case, model_parts)
        before = checkpoint.read_bytes()
        out = folder / "out"
        status, stdout, lines, crashed = _run_cli(
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


def test_the_messages_name_the_field(model_parts, tmp_path: Path, capsys) -> None:  # noqa: ANN001
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
        checkpoint = _write(tmp_path / "run.safetensors", cases[name], model_parts)
        status, _, lines, _ = _run_cli(["timelapse", str(checkpoint), "--out", str(tmp_path / "o")],
                                       capsys)  # fmt: skip
        assert status == 2 and len(lines) == 1, (name, lines)
        assert lines[0].startswith(
            f"vitexplorer: the time-lapse in {checkpoint.name} is damaged: {words}"
        ), lines[0]
        assert lines[0].endswith("the model itself loads; train again to record a new time-lapse")


# --- the window ---------------------------------------------------------------------------------


@pytest.fixture
def window(qtbot, tmp_path: Path, tiny_checkpoint: Path):  # noqa: ANN001, ANN201
    yield from running_window(qtbot, tmp_path / "settings.ini", tiny_checkpoint)


WINDOW_EVERY = 3  # every third case, and every case the issue names, through the window
NAMED_BY_THE_ISSUE = ("epochs: empty list", "predicted: class 5", "labels: class 5",
                      "images: 1 channel", "images: 7 channels", "images: 0x0", "layers: 0",
                      "probe name: NUL", "probe name: lone surrogate", "untouched")  # fmt: skip


@pytest.mark.timeout(600)
def test_every_tampered_block_through_the_window(
    qtbot, window, model_parts, tmp_path: Path
) -> None:  # noqa: ANN001, E501
    cases = [
        c
        for i, c in enumerate(all_cases())
        if i % WINDOW_EVERY == 0 or c.name in NAMED_BY_THE_ISSUE
    ]
    view = window.finetune.panel.timelapse
    problems = []
    for n, case in enumerate(cases):
        path = _write(tmp_path / f"case{n}.safetensors", case, model_parts)
        failed: list[str] = []
        window.model_failed.connect(failed.append)
        try:
            with qtbot.waitSignal(window.model_changed, timeout=60000):
                window.request_model(ModelRequest(str(path)))
        except Exception as exc:  # noqa: BLE001  (a switch that never finished)
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


def _fail(monkeypatch, where: str, number: int) -> None:  # noqa: ANN001
    """A write of ``timelapse`` failing with the system error ``number`` at ``where``."""
    import tempfile

    import vitexplorer.core.figure as figure

    failure = OSError(number, __import__("os").strerror(number))
    if where == "creating a file":
        original = tempfile.mkstemp

        def refused(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            if "out" in str(kwargs.get("dir", "")):
                raise failure
            return original(*args, **kwargs)

        monkeypatch.setattr(tempfile, "mkstemp", refused)
    elif where == "the maps":
        monkeypatch.setattr(np, "save", lambda *a, **k: (_ for _ in ()).throw(failure))
    elif where == "the third PNG":
        calls = iter(range(100))
        original_png = figure.save_png

        def third(image, handle):  # noqa: ANN001, ANN202
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
    model_parts,
    tmp_path: Path,
    capsys,
    monkeypatch,
    case: str,
    where: str,
    number: int,
    words: str,  # noqa: ANN001, E501
) -> None:
    checkpoint = _write(tmp_path / "run.safetensors", Case("good", lambda t, m: None), model_parts)
    out = tmp_path / "out"
    out.mkdir()
    old = out / "probe-01-cat.rollout.gif"  # an earlier run's output, under a name this one uses
    old.write_bytes(b"GIF89a earlier run")
    mine = out / "notes.txt"
    mine.write_text("the user's own file")
    _fail(monkeypatch, where, number)
    status, stdout, lines, crashed = _run_cli(
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
    model_parts,
    tmp_path: Path,
    capsys,
    monkeypatch,  # noqa: ANN001
) -> None:
    checkpoint = _write(tmp_path / "run.safetensors", Case("good", lambda t, m: None), model_parts)
    out = tmp_path / "new" / "out"
    _fail(monkeypatch, "the third PNG", errno.ENOSPC)
    status, _, lines, crashed = _run_cli(["timelapse", str(checkpoint), "--out", str(out)], capsys)
    monkeypatch.undo()
    record(CLI_DOOR, "write fails: into a new folder", crash=crashed, lost=out.exists())
    assert status == 2 and len(lines) == 1 and not crashed
    assert not out.exists()
