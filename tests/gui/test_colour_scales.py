"""Colour scales in the app that compare and say what they are: the uniform level 1/N on every
attention and rollout colour bar (not on relevance), "Lock scale" in the explorer keeping one
scale across layers and images, the time-lapse on one scale across its epochs (or each its own),
and a tie of the top probabilities shown as undecided, never "right" in green."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PySide6.QtCore import Qt

from tests.gui.conftest import GUI_CONFIG, make_window
from tests.gui.test_main_window import drop_and_wait
from vitexplorer.core.models.loading import load_model, save_checkpoint
from vitexplorer.core.training.timelapse import TimeLapse
from vitexplorer.core.training.timelapse_frames import Frame
from vitexplorer.gui.main_window import MainWindow
from vitexplorer.gui.timelapse_view import ACROSS_EPOCHS, PER_FRAME, RIGHT, TEXT, WRONG
from vitexplorer.gui.views.common import BAR_STEPS, heat_levels
from vitexplorer.gui.workers import ModelRequest

pytestmark = pytest.mark.slow  # the whole file is left out of the quick suite (-m "not slow")

TOKENS = 1 + 6 * 6  # CLS and a 6x6 grid (GUI_CONFIG)


def _ticks(view) -> list[tuple[float, str]]:
    return list(view.colorbar.axis._tickLevels[0])


def _assert_uniform_marked(view) -> None:
    """The bar's line at 1/37 in its own coordinates, and a tick at 1/37 that says so."""
    low, high = view.colorbar.levels()
    assert view.uniform[0] == pytest.approx(1 / TOKENS)
    assert low < 1 / TOKENS < high, (low, high)
    assert view.uniform_line.isVisible()
    assert view.uniform_line.value() == pytest.approx(BAR_STEPS * (1 / TOKENS - low) / (high - low))
    assert (pytest.approx(1 / TOKENS), f"uniform\n1/{TOKENS}") in _ticks(view)


def _choose(box, value) -> None:
    box.setCurrentIndex(box.findData(value))


def test_explorer_bars_mark_uniform_and_lock_scale_keeps_one_scale(
    qtbot, window: MainWindow, photo: Path, tmp_path: Path
) -> None:
    drop_and_wait(qtbot, window, photo)
    view = window.image_view
    assert window.explanations.method_bar.choice().method == "attention"
    _assert_uniform_marked(view)
    np.testing.assert_allclose(view.heat.levels, heat_levels(view.heat_values))

    # rollout rows sum to 1 too: marked; here every patch gets less than 1/37 (the CLS token
    # keeps the rest), so the mark sits at the bar's top and says the level lies above it
    _choose(window.explanations.method_bar.method_box, "rollout")
    low, high = view.colorbar.levels()
    assert view.uniform[0] == pytest.approx(1 / TOKENS) and high < 1 / TOKENS
    assert not view.uniform_line.isVisible()
    at = dict((text, value) for value, text in _ticks(view))[f"uniform\n1/{TOKENS} ▲"]
    assert high - 0.1 * (high - low) < at < high  # at the top, just inside so that it shows
    with qtbot.waitSignal(window.worker.map_ready, timeout=30000):
        _choose(window.explanations.method_bar.method_box, "relevance")
    qtbot.waitUntil(lambda: view.heat_values.size > 0, timeout=10000)
    assert view.uniform is None and not view.uniform_line.isVisible()
    assert not any("uniform" in text for _, text in _ticks(view))
    _choose(window.explanations.method_bar.method_box, "attention")

    # Lock scale: the present levels kept for other layers and other images
    window.view_bar.layer_spin.setValue(1)
    locked = tuple(view.colorbar.levels())
    qtbot.mouseClick(window.view_bar.lock_box, Qt.LeftButton)
    assert window.view_bar.lock_box.isChecked()
    window.view_bar.layer_spin.setValue(3)
    own = heat_levels(view.heat_values)
    assert not np.allclose(own, locked)  # layer 3's own range differs from layer 1's
    np.testing.assert_allclose(view.heat.levels, locked)
    np.testing.assert_allclose(view.colorbar.levels(), locked)  # the bar shows what is used
    # values beyond the locked scale take its end colours, and the bar says so at that end
    texts = " ".join(text for _, text in _ticks(view))
    assert "clipped" in texts  # layer 3 reaches beyond layer 1's range here
    assert ("clipped ▲" in texts) == bool(view.heat_values.max() > locked[1])
    assert ("clipped ▼" in texts) == bool(view.heat_values.min() < locked[0])
    other = tmp_path / "other.png"
    rng = np.random.default_rng(1)
    from PIL import Image

    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(other)
    drop_and_wait(qtbot, window, other)
    np.testing.assert_allclose(view.heat.levels, locked)
    # unlocked: each map on its own range again
    qtbot.mouseClick(window.view_bar.lock_box, Qt.LeftButton)
    np.testing.assert_allclose(view.heat.levels, heat_levels(view.heat_values))
    np.testing.assert_allclose(view.colorbar.levels(), heat_levels(view.heat_values))
    assert not any("clipped" in text for _, text in _ticks(view))


def _checkpoint_with_timelapse(path: Path) -> tuple[Path, TimeLapse]:
    """GUI_CONFIG's model with a time-lapse of one probe: before training every class at 1/7 and
    a near-uniform map (within 6 % of 1/37); after, class 2 at 80 % and a structured map."""
    torch.manual_seed(0)
    model = load_model("small_vit", "none", "cpu", small_config=GUI_CONFIG)
    layers, heads, patches = GUI_CONFIG.depth, GUI_CONFIG.heads, 36
    rng = np.random.default_rng(0)
    near = (1 / TOKENS) * (1 + rng.uniform(-0.06, 0.06, (1, layers, heads, patches)))
    far = rng.dirichlet(np.ones(TOKENS) * 0.3, (1, layers, heads))[..., 1:]
    zeros = np.zeros((1, layers, heads), np.float32)

    def frame(epoch: int, cls: np.ndarray, top: float, second: float) -> Frame:
        return Frame(
            epoch=epoch,
            predicted=np.array([2], np.int64),
            probability=np.array([top], np.float32),
            cls_attention=cls.astype(np.float32),
            rollout=cls[:, -1].mean(1).astype(np.float32),
            distance=zeros,
            entropy=zeros,
            prefix_share=zeros,
            runner_up=np.array([second], np.float32),
        )

    timelapse = TimeLapse(
        grid=(6, 6),
        patch_size=8,
        num_prefix=1,
        num_classes=7,
        sources=["probe.png"],
        images=np.full((1, 48, 48, 3), 90, np.uint8),
        labels=np.array([2], np.int64),  # the class argmax picks from the tie: not "right"
        frames=[frame(0, near, 1 / 7, 1 / 7), frame(1, far, 0.8, 0.1)],
        best_epoch=1,
    )
    save_checkpoint(path, model, {"class_names": [f"kind {i}" for i in range(7)]}, timelapse)
    return path, timelapse


def test_timelapse_one_scale_across_epochs_uniform_mark_and_a_tie(qtbot, tmp_path: Path) -> None:
    path, _ = _checkpoint_with_timelapse(tmp_path / "run.safetensors")
    window = make_window(qtbot, tmp_path / "s.ini", ModelRequest(str(path)))
    with qtbot.waitSignal(window.model_changed, timeout=30000):
        window.start()
    view = window.finetune.panel.timelapse
    assert view.message() is None and view.scale_box.currentData() == ACROSS_EPOCHS
    timelapse = view.timelapse  # as the checkpoint keeps it: float16
    maps = np.stack([f.rollout[0] for f in timelapse.frames])
    both = (float(maps.min()), float(maps.max()))
    for index in (0, 1):  # the rollout, on one scale: the range over both epochs
        view.set_epoch_index(index)
        np.testing.assert_array_equal(view.image_view.heat.image, maps[index].reshape(6, 6))
        np.testing.assert_allclose(view.image_view.heat.levels, both, rtol=1e-6)
        np.testing.assert_allclose(view.image_view.colorbar.levels(), both, rtol=1e-6)
        _assert_uniform_marked(view.image_view)
    # one head's CLS attention in layer 2: its own range over the epochs
    view.set_map("attention", layer=1, head=0)
    cls = np.stack([f.cls_attention[0, 1, 0] for f in timelapse.frames])
    np.testing.assert_allclose(view.image_view.heat.levels, (cls.min(), cls.max()), rtol=1e-6)
    _assert_uniform_marked(view.image_view)
    # each epoch its own scale: today's per-frame range
    _choose(view.scale_box, PER_FRAME)
    np.testing.assert_allclose(view.image_view.heat.levels, heat_levels(cls[1].reshape(6, 6)))
    view.set_epoch_index(0)
    near = heat_levels(cls[0].reshape(6, 6))
    np.testing.assert_allclose(view.image_view.heat.levels, near)
    assert near[1] - near[0] < 0.15 / TOKENS  # the near-uniform map, stretched over the bar

    # before training every class ties at 1/7: undecided, not "right" in green
    assert view.verdict() == "tie"
    text = view.prediction_text()
    assert text == "undecided: the top classes tie at 14%, true class kind 2: a tie"
    title = view.image_view.title.text
    assert f"color: {TEXT}'>{text}" in title and RIGHT not in title and WRONG not in title
    view.set_epoch_index(1)
    assert view.verdict() == "right"
    assert view.prediction_text() == "predicts kind 2 (80%), true class kind 2: right"
    assert f"color: {RIGHT}'" in view.image_view.title.text
    window.close()
