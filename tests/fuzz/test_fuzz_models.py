"""Every lying or hostile checkpoint (tests/core/test_checkpoint_hostile.py) through the command
line and through the real window, and every hostile training setting
(tests/core/test_training_hostile.py) through the command line: one clear line, exit 2, no file
written, no code run; the window keeps the model it had."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.core.test_checkpoint_hostile import HOSTILE_CHECKPOINTS, MARKER, WEIGHTS_FOR
from tests.core.test_training_hostile import HOSTILE_TRAINING_SETTINGS
from tests.fuzz.cli_run import run_cli
from tests.fuzz.conftest import record
from tests.gui.conftest import running_window
from vitexplorer.gui.workers import ModelRequest

pytestmark = pytest.mark.slow  # the whole file is left out of the quick suite (-m "not slow")


def test_every_hostile_checkpoint_through_analyze(tmp_path: Path, capsys) -> None:
    image = tmp_path / "image.png"
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(image)
    problems = []
    for n, (case, make) in enumerate(HOSTILE_CHECKPOINTS):
        folder = tmp_path / f"case{n}"
        folder.mkdir()
        path = make(folder)
        name, weights = (
            (WEIGHTS_FOR[case], str(path)) if case in WEIGHTS_FOR else (str(path), "default")
        )
        out = folder / "out"
        status, _, lines, crashed = run_cli(
            ["analyze", str(image), "--model", name, "--weights", weights, "--out", str(out)],
            capsys,
            drop_notes=True,
        )
        code = bool(list(folder.rglob(MARKER)))
        record("checkpoints: vitexplorer analyze", case, crash=crashed, code=code)
        if crashed or code or status != 2 or len(lines) != 1 or len(lines[0]) > 300:
            problems.append(f"{case}: status {status}, {lines}")
        if out.exists() and any(out.iterdir()):
            problems.append(f"{case}: wrote {sorted(p.name for p in out.iterdir())}")
    assert not problems, "\n".join(problems)


def test_every_hostile_setting_through_finetune(tmp_path: Path, capsys) -> None:
    problems = []
    for case, fragment in HOSTILE_TRAINING_SETTINGS:
        out = tmp_path / f"{case}.safetensors"
        args = ["finetune", "--model", "small_vit", "--data", str(tmp_path / "no-data")]
        status, _, lines, crashed = run_cli(
            [*args, "--out", str(out), *fragment], capsys, drop_notes=True
        )
        record("settings: vitexplorer finetune", case, crash=crashed, lost=False)
        if crashed or status != 2 or len(lines) != 1 or out.exists():
            problems.append(f"{case}: status {status}, {lines}")
    assert not problems, "\n".join(problems)


@pytest.fixture
def window(qtbot, tmp_path: Path, tiny_checkpoint: Path):
    yield from running_window(qtbot, tmp_path / "settings.ini", tiny_checkpoint)


def test_every_hostile_checkpoint_opened_in_the_window(
    qtbot,
    window,
    tmp_path: Path,
    tiny_checkpoint: Path,
) -> None:
    before = window.model.spec
    problems = []
    for n, (case, make) in enumerate(HOSTILE_CHECKPOINTS):
        folder = tmp_path / f"case{n}"
        folder.mkdir()
        path = make(folder)
        if case in WEIGHTS_FOR:
            request = ModelRequest(WEIGHTS_FOR[case], str(path), "cpu")
        else:
            request = ModelRequest(str(path))
        with qtbot.waitSignal(window.model_failed, timeout=60000) as failed:
            window.request_model(request)
        message = failed.args[0]
        code = bool(list(folder.rglob(MARKER)))
        record("checkpoints: the window", case, crash="Traceback" in message, code=code)
        if "\n" in message or len(message) > 300 or "Traceback" in message or code:
            problems.append(f"{case}: {message!r}")
        if window.message_box is not None:
            window.message_box.close()
    assert not problems, "\n".join(problems)
    assert window.model.spec == before  # the model in use stayed the one that worked
    assert window.model.request.name == str(tiny_checkpoint)


def _hostile_names(root: Path) -> list[tuple[str, str]]:
    """(case, --model) pairs: family names and folders that cannot work, made under ``root``."""
    (root / "bad-json").mkdir()
    (root / "bad-json" / "config.json").write_text("{not json")
    (root / "huge").mkdir()
    (root / "huge" / "config.json").write_text(
        '{"model_type": "vit", "architectures": ["ViTForImageClassification"], '
        '"hidden_size": 1000000000, "num_hidden_layers": 1000, "num_attention_heads": 1, '
        '"image_size": 224, "patch_size": 16}'
    )
    (root / "swin").mkdir()
    (root / "swin" / "config.json").write_text(
        '{"model_type": "swin", "architectures": ["SwinForImageClassification"]}'
    )
    (root / "empty").mkdir()
    return [
        ("timm: no name", "timm:"),
        ("timm: unknown name", "timm:nope_model"),
        ("timm: unknown tag", "timm:vit_tiny_patch16_224.bad_tag"),
        ("timm: windowed attention", "timm:swin_tiny_patch4_window7_224"),
        ("hf: no name", "hf:"),
        ("hf: missing folder", f"hf:{root / 'nothere'}"),
        ("hf: config not JSON", f"hf:{root / 'bad-json'}"),
        ("hf: config of absurd size", f"hf:{root / 'huge'}"),
        ("hf: windowed attention", f"hf:{root / 'swin'}"),
        ("hf: folder without config", f"hf:{root / 'empty'}"),
        ("unknown built-in", "vit_b_61"),
    ]


def test_every_hostile_model_name_through_analyze(tmp_path: Path, capsys) -> None:
    image = tmp_path / "image.png"
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(image)
    problems = []
    for case, name in _hostile_names(tmp_path):
        out = tmp_path / "out"
        args = ["analyze", str(image), "--model", name, "--weights", "none", "--out", str(out)]
        status, _, lines, crashed = run_cli([*args, "--device", "cpu"], capsys, drop_notes=True)
        record("model names: vitexplorer analyze", case, crash=crashed)
        if crashed or status != 2 or len(lines) != 1 or len(lines[0]) > 300:
            problems.append(f"{case}: status {status}, {lines}")
    assert not problems, "\n".join(problems)
