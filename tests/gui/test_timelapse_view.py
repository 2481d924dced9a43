"""The time-lapse in the Train tab, driven as a person does: a run fills it frame by frame, the
strip, the slider, the play button and the map and statistics choices show exactly the engine's
frames, Save keeps it in the checkpoint and opening that checkpoint shows it again; a checkpoint
without one, or with a damaged one, says so and opens all the same."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PySide6.QtCore import QSettings, QSize, Qt
from PySide6.QtWidgets import QFileDialog

from tests.gui.conftest import GUI_CONFIG, make_window
from tests.gui.test_finetune import adopted_and_shown, colour_folder, panel_of
from tests.gui.test_train_scratch import SMALL, scratch_mode
from vitexplorer.core.models.loading import load_model, save_checkpoint
from vitexplorer.core.training.timelapse import TimeLapse, read_timelapse
from vitexplorer.core.training.timelapse_frames import Frame
from vitexplorer.gui.finetune_panel import WAITING_FOR_FRAME
from vitexplorer.gui.finetune_settings import FinetuneSettings
from vitexplorer.gui.main_window import MainWindow
from vitexplorer.gui.timelapse_view import CHOSEN_PROBE, MEAN_OF_HEADS
from vitexplorer.gui.workers import ModelRequest


def _train(qtbot, window: MainWindow, data: Path, epochs: int = 2, probes: int = 3):
    """A run from scratch of the tiny SMALL architecture (a 4x4 grid, 2 layers, 2 heads)."""
    panel = panel_of(window)
    form = scratch_mode(panel, qtbot, data)
    form.architecture.set_values(SMALL)
    form.per_class.setValue(8)
    form.epochs.setValue(epochs)
    form.probes.setValue(probes)
    qtbot.mouseClick(form.more_button, Qt.LeftButton)
    form.test_per_class.setValue(3)
    form.batch_size.setValue(8)
    shown: list[int] = []
    panel.timelapse.epoch_shown.connect(shown.append)
    with adopted_and_shown(qtbot, window, panel):
        qtbot.mouseClick(panel.start_button, Qt.LeftButton)
        assert panel.timelapse.message() == WAITING_FOR_FRAME  # the last run's is gone
    panel.timelapse.epoch_shown.disconnect(shown.append)
    return panel, shown


def _assert_same(shown: TimeLapse, saved: TimeLapse) -> None:
    """Equal as the checkpoint keeps them (float16)."""
    assert saved.epochs == shown.epochs and saved.sources == shown.sources
    assert saved.grid == shown.grid and saved.best_epoch == shown.best_epoch
    np.testing.assert_array_equal(saved.images, shown.images)
    np.testing.assert_array_equal(saved.labels, shown.labels)
    for a, b in zip(saved.frames, shown.frames, strict=True):
        np.testing.assert_array_equal(a.predicted, b.predicted)
        for name in ("probability", "cls_attention", "rollout", "distance", "entropy"):
            np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=2e-3, atol=1e-3)


def _click_probe(qtbot, view, probe: int) -> None:
    strip = view.strip
    rect = strip.visualItemRect(strip.item(probe))
    qtbot.mouseClick(strip.viewport(), Qt.LeftButton, pos=rect.center())
    assert view.probe == probe


@pytest.mark.slow
def test_a_run_fills_the_timelapse_the_views_show_its_frames_and_save_keeps_it(
    qtbot, window: MainWindow, tmp_path: Path, monkeypatch
) -> None:
    panel = panel_of(window)
    view = panel.timelapse
    # the window opened a checkpoint saved without a time-lapse: said plainly
    assert view.message() == (
        "tiny.safetensors holds no time-lapse: it was saved without probes, or by an older "
        "vitexplorer."
    )
    panel, shown = _train(qtbot, window, colour_folder(tmp_path / "colours", per_class=12))
    # it filled live, one frame at a time: the start, then each epoch as it ended
    assert [e for e in dict.fromkeys(shown) if e >= 0][:3] == [0, 1, 2]
    timelapse = panel.result.timelapse
    assert view.timelapse is timelapse and timelapse.epochs == [0, 1, 2]
    names = panel.result.model.spec.class_names
    assert view.header.text().startswith("Time-lapse of the run just trained (not saved): 2 epochs")
    assert "3 probes" in view.header.text()

    panel.results.pages.setCurrentWidget(view)
    assert view.strip.count() == 3 and view.strip.isVisible()
    assert (view.slider.minimum(), view.slider.maximum()) == (0, 2)
    grid = timelapse.grid
    assert grid == (4, 4)
    for index in (0, 2, 1):
        view.slider.setValue(index)
        frame = timelapse.frames[index]
        np.testing.assert_array_equal(view.image_view.heat.image, frame.rollout[0].reshape(grid))
        np.testing.assert_array_equal(view.image_view.photo.image, timelapse.images[0])
        assert panel.curves.marked_epoch() == (index or None)  # no line before training
    _click_probe(qtbot, view, 2)
    frame = timelapse.frames[1]
    np.testing.assert_array_equal(view.image_view.heat.image, frame.rollout[2].reshape(grid))
    # what the model predicted for it then, and the true class
    predicted, label = int(frame.predicted[2]), int(timelapse.labels[2])
    text = view.prediction_text()
    assert text.startswith(f"predicts {names[predicted]} ({100 * frame.probability[2]:.0f}%)")
    assert f"true class {names[label]}" in text
    assert text in view.image_view.title.text and "Probe 3, epoch 1" in view.image_view.title.text

    # one layer's CLS attention: a head, or the mean of the heads
    view.set_map("attention", layer=1, head=0)
    np.testing.assert_array_equal(
        view.image_view.heat.image, frame.cls_attention[2, 1, 0].reshape(grid)
    )
    assert view.stats_plot.ring.getData()[0].tolist() == [2.0]  # that head's point is ringed
    view.head_box.setCurrentIndex(view.head_box.findData(MEAN_OF_HEADS))
    np.testing.assert_allclose(
        view.image_view.heat.image, frame.cls_attention[2, 1].mean(0).reshape(grid)
    )
    layers = frame.distance.shape[1]  # the catalogue's title of the map
    assert f"attention · layer 2 of {layers}, mean of heads · the CLS token" in (
        view.image_view.toolTip()
    )
    view.set_map("rollout")
    assert "rollout of the CLS token: heads averaged" in view.image_view.toolTip()
    assert not view.layer_spin.isEnabled() and not view.head_box.isEnabled()

    # per-head statistics at the epoch: x the layer, y each head's distance, over the probes
    layers, heads = frame.distance.shape[1:]
    x, y = view.stats_plot.values()
    np.testing.assert_array_equal(x, np.repeat(np.arange(1, layers + 1), heads))
    np.testing.assert_allclose(y, frame.distance.mean(0).ravel())
    title = view.stats_plot.plotItem.titleLabel.text
    assert "Mean attention distance per head<br>epoch 1, mean of 3 probes" in title
    view.scope_box.setCurrentIndex(view.scope_box.findData(CHOSEN_PROBE))
    np.testing.assert_allclose(view.stats_plot.values()[1], frame.distance[2].ravel())
    assert "epoch 1, probe 3" in view.stats_plot.plotItem.titleLabel.text
    view.stat_box.setCurrentIndex(view.stat_box.findData("entropy"))
    np.testing.assert_allclose(view.stats_plot.values()[1], frame.entropy[2].ravel())
    view.slider.setValue(2)
    np.testing.assert_allclose(view.stats_plot.values()[1], timelapse.frames[2].entropy[2].ravel())

    # play steps through the epochs from the start and stops at the last
    view.slider.setValue(0)
    qtbot.mouseClick(view.play_button, Qt.LeftButton)
    assert view.playing()
    qtbot.waitUntil(lambda: view.slider.value() == 2, timeout=5000)
    qtbot.waitUntil(lambda: not view.playing(), timeout=5000)

    # Save keeps the time-lapse in the checkpoint
    saved = tmp_path / "scratch.safetensors"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(saved), ""))
    with qtbot.waitSignal(panel.saved, timeout=30000):
        window.save_model_action.trigger()
    _assert_same(view.timelapse, read_timelapse(saved))
    assert view.header.text().startswith("Time-lapse saved with scratch.safetensors: 2 epochs")

    # a new window that opens the checkpoint shows it again
    again = make_window(qtbot, tmp_path / "again.ini", ModelRequest(str(saved)))
    with qtbot.waitSignal(again.model_changed, timeout=30000):
        again.start()
    other = again.finetune.panel.timelapse
    assert other.message() is None
    assert (
        other.header.text()
        == "Time-lapse saved with scratch.safetensors: 2 epochs, 3 probes"
        + (
            ""
            if timelapse.best_epoch == 2
            else f"; the model kept holds epoch {timelapse.best_epoch}'s weights"
        )
    )
    _assert_same(other.timelapse, timelapse)
    assert other.class_names == names
    assert other.frame.epoch == timelapse.best_epoch  # it opens at the epoch the file holds
    assert again.finetune.panel.curves.marked_epoch() is None  # the curves are not its run's
    _assert_fits_in_1024_by_700(qtbot, again)
    again.close()

    # the explorer switching to a model not trained here leaves no time-lapse claiming it
    with qtbot.waitSignal(window.model_changed, timeout=30000):
        window.request_model(ModelRequest("small_vit", "none", "cpu"))
    assert view.timelapse is None and "was not trained in vitexplorer" in view.message()


def _assert_fits_in_1024_by_700(qtbot, window: MainWindow) -> None:
    """The README's smallest window: every part of the time-lapse page whole and inside it, and
    the page never widens the explorer's window (the tabs share one minimum)."""
    assert window.tabs.currentIndex() == 0
    window.resize(QSize(1024, 700))
    qtbot.waitUntil(lambda: window.size() == QSize(1024, 700))
    panel = panel_of(window)
    view = panel.timelapse
    panel.results.pages.setCurrentWidget(view)
    qtbot.waitUntil(lambda: view.stats_plot.isVisible())
    qtbot.wait(50)
    assert window.size() == QSize(1024, 700)
    bottom = window.statusBar().mapTo(window, window.statusBar().rect().topLeft()).y()
    parts = ("header", "slider", "epoch_label", "play_button", "strip", "map_box", "layer_spin",
             "head_box", "scale_box", "stat_box", "scope_box", "image_view",
             "stats_plot")  # fmt: skip
    for name in parts:
        widget = getattr(view, name)
        assert widget.isVisible(), name
        corner = widget.mapTo(window, widget.rect().bottomRight())
        assert corner.x() < window.width() and corner.y() <= bottom, name
        assert widget.width() >= widget.minimumSizeHint().width(), name
    assert view.image_view.width() >= 200 and view.image_view.height() >= 150
    assert view.stats_plot.width() >= 200 and view.stats_plot.height() >= 150


def _damaged_checkpoint(path: Path) -> Path:
    """A checkpoint whose time-lapse predicts a class the model does not have."""
    torch.manual_seed(0)
    model = load_model("small_vit", "none", "cpu", small_config=GUI_CONFIG)
    probes, layers, heads, patches = 2, GUI_CONFIG.depth, GUI_CONFIG.heads, 36
    zeros = np.zeros((probes, layers, heads), np.float32)
    frame = Frame(
        epoch=0,
        predicted=np.array([1, 9], np.int64),  # 9: the model has seven classes
        probability=np.full(probes, 0.5, np.float32),
        cls_attention=np.full((probes, layers, heads, patches), 1 / 36, np.float32),
        rollout=np.full((probes, patches), 1 / 36, np.float32),
        distance=zeros,
        entropy=zeros,
        prefix_share=zeros,
    )
    timelapse = TimeLapse(
        grid=(6, 6),
        patch_size=8,
        num_prefix=1,
        num_classes=7,
        sources=["a", "b"],
        images=np.zeros((probes, 48, 48, 3), np.uint8),
        labels=np.array([1, 2]),
        frames=[frame],
    )
    save_checkpoint(path, model, {"class_names": [f"kind {i}" for i in range(7)]}, timelapse)
    return path


@pytest.mark.slow
def test_a_damaged_timelapse_is_said_in_one_line_and_the_model_opens(qtbot, tmp_path: Path):
    path = _damaged_checkpoint(tmp_path / "lying.safetensors")
    window = make_window(qtbot, tmp_path / "s.ini", ModelRequest(str(path)))
    with qtbot.waitSignal(window.model_changed, timeout=30000):
        window.start()
    assert window.model.spec.class_names[0] == "kind 0"  # the model opened
    message = window.finetune.panel.timelapse.message()
    assert message == (
        "The time-lapse in lying.safetensors is damaged: epoch 0 names class 9 for probe 2 but "
        "the model has 7 classes. The model itself opened normally; train again to record a new "
        "time-lapse."
    )
    window.close()


@pytest.mark.slow
def test_a_cancelled_run_keeps_its_frames_and_a_new_run_clears_them(
    qtbot, window: MainWindow, tmp_path: Path
) -> None:
    data = colour_folder(tmp_path / "colours", per_class=34)
    panel = panel_of(window)
    view = panel.timelapse
    form = scratch_mode(panel, qtbot, data)
    form.architecture.set_values(SMALL)
    form.per_class.setValue(30)
    form.epochs.setValue(200)
    form.probes.setValue(2)
    qtbot.mouseClick(form.more_button, Qt.LeftButton)
    form.test_per_class.setValue(2)
    form.batch_size.setValue(4)
    qtbot.mouseClick(panel.start_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: view.timelapse is not None and len(view.timelapse.frames) >= 2,
                    timeout=60000)  # fmt: skip
    assert view.header.text().startswith("Time-lapse of the run under way")
    with adopted_and_shown(qtbot, window, panel):
        qtbot.mouseClick(panel.cancel_button, Qt.LeftButton)
    assert panel.result.cancelled
    kept = panel.result.timelapse
    assert view.timelapse is kept and len(kept.frames) >= 2 and view.strip.count() == 2
    assert view.header.text().startswith("Time-lapse of the cancelled run (not saved)")
    assert panel.results.pages.currentWidget() is view  # nothing tested: the frames stay shown

    # a new run without probes: the old frames go, and the view says why none come
    form.probes.setValue(0)
    form.epochs.setValue(1)
    with adopted_and_shown(qtbot, window, panel):
        qtbot.mouseClick(panel.start_button, Qt.LeftButton)
        assert view.timelapse is None
    assert panel.result.timelapse is None
    assert view.message().startswith("This run keeps no time-lapse")


def test_the_probe_settings_are_remembered_per_mode_and_reach_the_config(
    qtbot, tmp_path: Path, monkeypatch
) -> None:
    store = QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat)
    form = FinetuneSettings(store)
    qtbot.addWidget(form)
    form.show()
    assert form.probes.value() == 10 and form.config()["probes"] == 10
    assert (form.probes.minimum(), form.probes.maximum()) == (0, 64)
    assert form.config()["probe_files"] == () and not form.probe_clear.isVisible()
    form.probes.setValue(0)
    assert form.probes.text() == "off" and form.config()["probes"] == 0
    chosen = [str(tmp_path / "a.png"), str(tmp_path / "b.png")]
    monkeypatch.setattr(QFileDialog, "getOpenFileNames", lambda *a, **k: (chosen, ""))
    qtbot.mouseClick(form.probe_button, Qt.LeftButton)
    assert form.config()["probe_files"] == tuple(chosen)
    assert form.probe_label.isVisible() and "a.png, b.png" in form.probe_label.text()
    assert not form.probes.isEnabled() and form.probe_clear.isVisible()
    # from scratch keeps its own: the default, no files
    form.mode_box.setCurrentIndex(form.mode_box.findData("scratch"))
    assert form.config()["probes"] == 10 and form.config()["probe_files"] == ()
    form.probes.setValue(5)
    form.mode_box.setCurrentIndex(form.mode_box.findData("finetune"))
    assert form.config()["probes"] == 0 and form.config()["probe_files"] == tuple(chosen)
    form.remember()
    store.sync()
    again = FinetuneSettings(QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat))
    qtbot.addWidget(again)
    assert again.config()["probe_files"] == tuple(chosen) and again.config()["probes"] == 0
    again.mode_box.setCurrentIndex(again.mode_box.findData("scratch"))
    assert again.config()["probes"] == 5
    # the clear button goes back to test images
    qtbot.mouseClick(form.probe_clear, Qt.LeftButton)
    assert form.config()["probe_files"] == () and form.probes.isEnabled()
    assert not form.probe_label.isVisible()


@pytest.mark.slow
@pytest.mark.parametrize("count", [1, 3])
def test_probe_files_chosen_reach_the_engine_config(qtbot, tmp_path: Path, count: int) -> None:
    from vitexplorer.core.training.config import FinetuneConfig, TrainConfig

    form = FinetuneSettings(QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat))
    qtbot.addWidget(form)
    form.set_probe_files([f"/x/{i}.png" for i in range(count)])
    FinetuneConfig(**form.config()).check(1)
    form.mode_box.setCurrentIndex(form.mode_box.findData("scratch"))
    form.set_probe_files(["/x/y.png"])
    assert TrainConfig(**form.config()).probe_files == ("/x/y.png",)
