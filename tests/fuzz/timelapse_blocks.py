"""Time-lapse blocks for the fuzz suite: a good one for its tiny model (32 px images, 8 px
patches, 2 layers, 2 heads, 5 classes) and every way of tampering with it, each a :class:`Case`
that says whether the block should still hold. :func:`write_block` writes the model's checkpoint
with a tampered block through the project's own writer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vitexplorer.core.models.checkpoint import TIMELAPSE_KEY, TIMELAPSE_PREFIX, save_weights
from vitexplorer.core.training.timelapse import TimeLapse
from vitexplorer.core.training.timelapse_frames import Frame

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


GOOD = Case("untouched", lambda tensors, meta: None, good=True)


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


def regrid(rows: int, cols: int) -> Change:
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
            good = field == "best_epoch" and words in ("missing", "null", "zero")
            cases.append(Case(f"{field}: {words}", _set(field, value), good=good))
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
        Case("best epoch: without a frame", _set("best_epoch", 2), good=True),
        Case("best epoch: beyond any run", _set("best_epoch", 10_001)),
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
    cases.append(GOOD)
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
        Case("images: 16x16, a dataset's own size", _images(16, 16), good=True),
        Case("images: 64x64, larger than the model's 32", _images(64, 64)),
        Case("images: 33x32", _images(33, SIDE)),
        Case("images: 5000 rows", _images(5000, 1)),
        Case("layers: 0", _layers_heads(0, HEADS)),
        Case("layers: 3, beyond the model's 2", _layers_heads(3, HEADS)),
        Case("heads: 0", _layers_heads(LAYERS, 0)),
        Case("heads: 3, beyond the model's 2", _layers_heads(LAYERS, 3)),
        Case("layers and heads: 1 and 1", _layers_heads(1, 1)),
        Case("grid: 2x8, not the model's 4x4", regrid(2, 8)),
        Case("grid: 1x1", regrid(1, 1)),
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


# --- writing ------------------------------------------------------------------------------------


def write_block(path: Path, case: Case, parts: tuple[Tensors, dict[str, Any]]) -> Path:
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
