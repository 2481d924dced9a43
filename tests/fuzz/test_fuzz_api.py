"""The Python API as a door: every hostile image (tests/fuzz/hostile.py) through
``model.analyze``, every lying or hostile checkpoint (tests/core/test_checkpoint_hostile.py)
through ``vitexplorer.load_model``, and hostile arrays, PIL images and options through
``analyze`` and ``explain``: each analysed or refused with a :class:`VitexplorerError` of one
clear line (the core's expected words), nothing hung, nothing run."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import vitexplorer
from tests.core.test_checkpoint_hostile import EXPECTED, HOSTILE_CHECKPOINTS, WEIGHTS_FOR
from tests.core.test_checkpoint_hostile import MARKER as PICKLE_MARKER
from tests.fuzz.conftest import record
from tests.fuzz.hostile import MARKER, HostileImage, all_image_cases

pytestmark = pytest.mark.slow  # the whole file is left out of the quick suite (-m "not slow")

HANG_SECONDS = 20


def _with_deadline(call: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[str, Any]:
    """``call(*args, **kwargs)``: ("ok", value), ("refused", message), ("crash", exception) or
    ("hang", None)."""
    outcome: list[tuple[str, Any]] = []

    def run() -> None:
        try:
            outcome.append(("ok", call(*args, **kwargs)))
        except vitexplorer.VitexplorerError as exc:
            outcome.append(("refused", str(exc)))
        except BaseException as exc:  # anything else is the bug being looked for
            outcome.append(("crash", exc))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(HANG_SECONDS)
    return outcome[0] if outcome else ("hang", None)


def _unclear(message: str, words: str) -> bool:
    return "\n" in message or len(message) > 300 or words.lower() not in message.lower()


@pytest.fixture(scope="module")
def tiny(tiny_checkpoint: Path) -> vitexplorer.Model:
    return vitexplorer.load_model(tiny_checkpoint, device="cpu")


def test_every_hostile_image_through_model_analyze(
    tiny: vitexplorer.Model, tmp_path_factory: pytest.TempPathFactory
) -> None:
    cases: list[HostileImage] = all_image_cases(tmp_path_factory.mktemp("hostile-images"))
    failures = []
    for case in cases:
        kind, value = _with_deadline(tiny.analyze, case.path)
        record("the Python API: model.analyze(path)", case.case, crash=kind == "crash",
               hang=kind == "hang")  # fmt: skip
        if kind in ("crash", "hang"):
            failures.append(f"{case.case}: {kind} {value!r}")
        elif kind == "refused" and (case.expect == "shown" or _unclear(value, case.words)):
            failures.append(f"{case.case}: refused ({value!r})")
        elif kind == "ok":
            if case.expect == "refused":
                failures.append(f"{case.case}: analysed, but should have been refused")
            elif not np.isfinite(value.attention).all():
                failures.append(f"{case.case}: maps not finite")
    assert not failures, "\n".join(failures)
    assert not (cases[0].path.parent / MARKER).exists()


def test_every_hostile_checkpoint_through_load_model(tmp_path: Path) -> None:
    failures = []
    for n, (case, make) in enumerate(HOSTILE_CHECKPOINTS):
        folder = tmp_path / f"case{n}"
        folder.mkdir()
        path = make(folder)
        name, weights = (WEIGHTS_FOR[case], str(path)) if case in WEIGHTS_FOR else (path, "default")
        kind, value = _with_deadline(vitexplorer.load_model, name, weights, "cpu")
        code = bool(list(folder.rglob(PICKLE_MARKER)))
        record("checkpoints: vitexplorer.load_model", case, crash=kind == "crash",
               hang=kind == "hang", code=code)  # fmt: skip
        if kind != "refused" or code or _unclear(value, EXPECTED[case]):
            failures.append(f"{case}: {kind} {value!r}")
    assert not failures, "\n".join(failures)


def _arrays() -> list[tuple[str, object, str]]:
    """(case, image, what a refusal says; "" where it must be analysed)."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)
    cases: list[tuple[str, object, str]] = [
        ("uint8 RGB", rgb, ""),
        ("uint8 grey", rgb[:, :, 0], ""),
        ("uint8 one channel", rgb[:, :, :1], ""),
        ("uint8 RGBA, transparent", np.dstack([rgb, np.zeros((40, 30), np.uint8)]), ""),
        ("float16 0..1", (rgb / 255).astype(np.float16), ""),
        ("float64 0..1", rgb / 255.0, ""),
        ("int64 0..255", rgb.astype(np.int64), ""),
        ("uint16 0..255", rgb.astype(np.uint16), ""),
        ("one pixel", rgb[:1, :1], ""),
        ("a 1x5000 strip", np.zeros((1, 5000, 3), np.uint8), ""),
        ("Fortran order", np.asfortranarray(rgb), ""),
        ("reversed strides", rgb[::-1, ::-1], ""),
        ("read-only", np.frombuffer(rgb.tobytes(), np.uint8).reshape(rgb.shape), ""),
        ("channels first", np.zeros((3, 40, 30), np.uint8), "put the colour channels last"),
        ("two channels", np.zeros((40, 30, 2), np.uint8), "put the colour channels last"),
        ("four dimensions", np.zeros((1, 40, 30, 3), np.uint8), "put the colour channels last"),
        ("one dimension", np.zeros(100, np.uint8), "put the colour channels last"),
        ("zero dimensions", np.array(5, np.uint8), "put the colour channels last"),
        ("no rows", np.zeros((0, 30, 3), np.uint8), "no pixels"),
        ("no columns", np.zeros((40, 0), np.uint8), "no pixels"),
        ("400 megapixels, no memory", np.broadcast_to(np.uint8(0), (20000, 20000, 3)), "limit"),
        ("NaN", np.full((8, 8, 3), np.nan, np.float32), "from 0 to 1"),
        ("infinity", np.full((8, 8, 3), np.inf), "from 0 to 1"),
        ("negative floats", np.full((8, 8, 3), -0.5), "from 0 to 1"),
        ("floats 0..255", rgb.astype(np.float32), "from 0 to 1"),
        ("negative integers", np.full((8, 8), -1, np.int8), "from 0 to 255"),
        ("uint16 0..65535", np.full((8, 8), 65535, np.uint16), "from 0 to 255"),
        ("int64 huge", np.full((8, 8), 2**62, np.int64), "from 0 to 255"),
        ("bool", np.ones((8, 8, 3), bool), "not bool"),
        ("complex", np.ones((8, 8, 3), complex), "not complex128"),
        ("objects", np.full((8, 8, 3), None, object), "not object"),
        ("text", np.full((8, 8, 3), "x"), "not <U1"),
        ("datetime", np.zeros((8, 8, 3), "datetime64[s]"), "not datetime64[s]"),
        ("structured", np.zeros((8, 8), [("r", "u1"), ("g", "u1")]), "not [("),
        ("a list", rgb.tolist(), "an image is a path"),
        ("None", None, "an image is a path"),
        ("an int", 7, "an image is a path"),
        ("empty bytes", b"", "the file is empty"),
        ("random bytes", bytes(rng.integers(0, 256, 500, dtype=np.uint8)), "not an image format"),
        ("a folder", Path("/"), "folder"),
        ("empty path", "", ""),
    ]
    for mode in ("1", "L", "P", "LA", "PA", "RGBA", "CMYK", "YCbCr", "LAB", "HSV", "I", "F",
                 "I;16", "I;16B", "RGBX", "La", "RGBa"):  # fmt: skip
        try:
            picture = Image.new(mode, (20, 16))
        except ValueError:
            continue
        cases.append((f"PIL {mode}", picture, ""))
    nan = Image.fromarray(np.full((16, 20), np.nan, np.float32))
    cases += [("PIL F all NaN", nan, ""), ("PIL 0x0", Image.new("RGB", (0, 0)), "no pixels")]
    return cases


def test_hostile_arrays_and_pil_images_through_model_analyze(tiny: vitexplorer.Model) -> None:
    failures = []
    for case, image, words in _arrays():
        kind, value = _with_deadline(tiny.analyze, image)
        record("the Python API: arrays, PIL images and options", case, crash=kind == "crash",
               hang=kind == "hang")  # fmt: skip
        if kind in ("crash", "hang"):
            failures.append(f"{case}: {kind} {value!r}")
        elif case == "empty path":  # "" is the current folder: a folder, refused
            if kind != "refused" or "\n" in value:
                failures.append(f"{case}: {kind} {value!r}")
        elif words and (kind != "refused" or _unclear(value, words)):
            failures.append(f"{case}: {kind} {value!r}")
        elif not words and kind != "ok":
            failures.append(f"{case}: {kind} {value!r}")
    assert not failures, "\n".join(failures)


OPTIONS: list[tuple[str, dict[str, Any], str]] = [
    ("attention", {"layer": 10**30}, "layers are numbered from 1"),
    ("attention", {"layer": -(10**30)}, "layers are numbered from 1"),
    ("attention", {"layer": np.int64(1)}, ""),
    ("attention", {"layer": "1"}, "layer must be a whole number"),
    ("attention", {"layer": float("nan")}, "layer must be a whole number"),
    ("attention", {"head": 0}, "heads are numbered from 1"),
    ("attention", {"head": -1}, "heads are numbered from 1"),
    ("attention", {"token": 0}, "tokens are numbered from 1"),
    ("attention", {"token": 10**9}, "tokens are numbered from 1"),
    ("attention", {"head_fusion": "max"}, "attention reads layer, head, token"),
    ("rollout", {"discard_ratio": -0.1}, "must be at least 0 and below 1"),
    ("rollout", {"discard_ratio": float("inf")}, "must be at least 0 and below 1"),
    ("rollout", {"discard_ratio": "0.5"}, "discard ratio must be a number"),
    ("rollout", {"discard_ratio": 0.999999}, ""),
    ("rollout", {"head_fusion": ""}, "unknown head fusion"),
    ("rollout", {"head_fusion": 3}, "unknown head fusion"),
    ("rollout", {"start_layer": 3}, "layers are numbered from 1"),
    ("rollout", {"start_layer": -1}, "layers are numbered from 1"),
    ("rollout", {"layer": 1}, "rollout reads token, head_fusion"),
    ("relevance", {"target_class": -1}, "is outside 0..4"),
    ("relevance", {"target_class": 2**63}, "is outside 0..4"),
    ("relevance", {"target_class": ""}, "is not one of the model's 5 class names"),
    ("relevance", {"target_class": " KIND 3 "}, ""),
    ("relevance", {"target_class": [1]}, "must be a class index or name"),
    ("relevance", {"target_class": True}, "must be a class index or name"),
    ("", {}, "unknown method ''"),
    ("ATTENTION", {}, "unknown method 'ATTENTION'"),
    ("gradcam\n", {}, "unknown method"),
]


def test_hostile_options_through_explain(tiny: vitexplorer.Model) -> None:
    analysis = tiny.analyze(np.full((32, 32, 3), 90, np.uint8))
    failures = []
    for method, options, words in OPTIONS:
        case = f"explain {method!r} {options!r}"
        kind, value = _with_deadline(vitexplorer.explain, analysis, method, **options)
        record("the Python API: arrays, PIL images and options", case, crash=kind == "crash",
               hang=kind == "hang")  # fmt: skip
        if words and (kind != "refused" or _unclear(value, words)):
            failures.append(f"{case}: {kind} {value!r}")
        elif not words and (kind != "ok" or not np.isfinite(value.map).all()):
            failures.append(f"{case}: {kind} {value!r}")
    assert not failures, "\n".join(failures)
