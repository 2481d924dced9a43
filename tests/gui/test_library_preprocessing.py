"""A Hugging Face model whose image processor squashes the whole image (size as height and
width, no crop) in the real window: the picture shown is the whole image, as the model saw it,
not a centre crop; the status bar names the defaults a folder without its processor used."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.gui.conftest import running_window
from tests.gui.test_main_window import drop_and_wait
from vitexplorer.gui.main_window import MainWindow

pytestmark = pytest.mark.slow  # the whole file is left out of the quick suite (-m "not slow")

transformers = pytest.importorskip("transformers")


def _folder(path: Path, processor: bool) -> Path:
    torch.manual_seed(0)
    config = transformers.ViTConfig(
        image_size=32, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        patch_size=8, intermediate_size=64, num_labels=3,
    )  # fmt: skip
    transformers.ViTForImageClassification(config).save_pretrained(path)
    if processor:
        transformers.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(path)
    return path


@pytest.fixture
def hf_window(qtbot, tmp_path: Path) -> Iterator[MainWindow]:
    folder = _folder(tmp_path / "vit", processor=True)
    yield from running_window(qtbot, tmp_path / "settings.ini", Path(f"hf:{folder}"))


def test_the_picture_is_the_whole_image_squashed(qtbot, hf_window: MainWindow, tmp_path) -> None:
    # 96x48: green edges (12 px each side) around red and blue halves; a centre crop (the
    # middle 48 px) would show no green at all
    rgb = np.zeros((48, 96, 3), dtype=np.uint8)
    rgb[:, 12:48, 0] = 255
    rgb[:, 48:84, 2] = 255
    rgb[:, :12, 1] = rgb[:, 84:, 1] = 255
    path = tmp_path / "wide.png"
    Image.fromarray(rgb).save(path)
    drop_and_wait(qtbot, hf_window, path)
    spec = hf_window.analysis.spec
    assert (spec.crop_mode, spec.resize_size, spec.image_size) == ("squash", 32, 32)
    display = hf_window.analysis.display.astype(int)
    rows, cols, _ = display.shape
    assert rows == cols  # the model's square input
    # the whole width is there, squashed: green at both edges, red then blue between
    for edge in (display[:, :2], display[:, -2:]):
        assert (edge[..., 1] > 200).all() and (edge[..., 0] < 60).all()
    quarter, three_quarters = display[:, cols // 4 + 2], display[:, 3 * cols // 4 - 2]
    assert (quarter[:, 0] > 200).all() and (three_quarters[:, 2] > 200).all()


def test_the_status_bar_names_the_defaults_used(qtbot, tmp_path: Path) -> None:
    folder = _folder(tmp_path / "bare", processor=False)
    runner = running_window(qtbot, tmp_path / "settings.ini", Path(f"hf:{folder}"))
    window = next(runner)
    message = window.statusBar().currentMessage()
    assert "no preprocessor_config.json" in message
    assert (
        "resize to 32x32, no crop, bilinear, mean (0.5, 0.5, 0.5), std (0.5, 0.5, 0.5)" in message
    )
    next(runner, None)
