"""Fine-tuning in the real main window, driven as a person does: fill the panel, press Start,
watch the curves, read the results, open a test image, save and reopen the model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
import pytest
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog

from tests.conftest import TV_DOWNLOAD
from tests.gui.test_main_window import drop_and_wait
from vitexplorer.core.explain.analysis import analyze_image
from vitexplorer.core.io.images import load_image
from vitexplorer.core.models.loading import load_model
from vitexplorer.gui.finetune_panel import FinetunePanel
from vitexplorer.gui.main_window import MainWindow
from vitexplorer.gui.views.training_views import TrainingCurves

pytestmark = pytest.mark.slow  # the whole file is left out of the quick suite (-m "not slow")

COLOURS = {"blue": (40, 40, 220), "green": (40, 200, 40), "red": (220, 40, 40)}


def colour_folder(root: Path, per_class: int = 16, size: int = 16, seed: int = 0) -> Path:
    """Three classes of noisy solid colours: easy to learn, distinguishable at a glance."""
    rng = np.random.default_rng(seed)
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            noise = rng.normal(0, 25, (size, size, 3))
            pixels = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{name}{i:02d}.png")
    return root


def fill(
    panel: FinetunePanel,
    qtbot,
    folder: Path,
    *,
    per_class: int = 10,
    test_per_class: int = 4,
    epochs: int = 3,
    batch_size: int = 8,
    freeze: str = "head",
    lr: float = 0.01,
) -> None:
    """Type the settings into the panel's widgets."""
    form = panel.form
    form.source_box.setCurrentIndex(form.source_box.findData("folder"))
    form.folder_edit.clear()
    qtbot.keyClicks(form.folder_edit, str(folder))
    qtbot.keyClick(form.folder_edit, Qt.Key_Return)
    form.per_class.setValue(per_class)
    form.freeze_box.setCurrentIndex(form.freeze_box.findData(freeze))
    form.epochs.setValue(epochs)
    form.lr.setValue(lr)
    qtbot.mouseClick(form.more_button, Qt.LeftButton)
    form.test_per_class.setValue(test_per_class)
    form.batch_size.setValue(batch_size)


def panel_of(window: MainWindow) -> FinetunePanel:
    window.tabs.setCurrentIndex(1)
    return window.finetune.panel


def test_finetune_shows_curves_results_and_the_explorer_uses_it(
    qtbot, window: MainWindow, tmp_path, monkeypatch
):
    data = colour_folder(tmp_path / "colours")
    (data / "green" / "broken.png").write_bytes(b"not a png at all")
    panel = panel_of(window)
    assert not window.head_grid.isVisible(), "the explorer's docks step aside"
    fill(panel, qtbot, data, per_class=10, test_per_class=4, epochs=3, batch_size=8)
    before = panel.form.params_label.text()
    assert "Trainable parameters: <b>147</b> of 96,147" in before  # 48 features x 3 + 3

    finished: list = []
    panel.finished.connect(finished.append)
    with adopted_and_shown(qtbot, window, panel):
        qtbot.mouseClick(panel.start_button, Qt.LeftButton)
        assert panel.busy and not panel.start_button.isEnabled()
    result = finished[0]

    # 10 training images per class, one in ten validates: 27 train, batches of 8 -> 4 steps
    assert not result.cancelled and result.steps == 3 * 4
    assert panel.curves.step_count() == result.steps
    assert panel.curves.epoch_count() == 3 == len(result.history)
    assert len(panel.curves.val_acc_curve.xData) == 3
    np.testing.assert_array_equal(panel.curves.raw_curve.xData, np.arange(1, 13))
    assert panel.results.confusion.matrix.sum() == 3 * 4 == result.confusion.sum()
    assert panel.results.confusion.class_names == ("blue", "green", "red")
    assert panel.results.gallery.count() == 12
    assert f"{100 * result.test_acc:.1f}%" in panel.results.summary.text()
    assert panel.form.params_label.text().startswith("Trainable parameters: <b>147</b>")
    assert "broken.png" in window.notice.label.text(), "the unreadable image is reported"
    assert window.model.fine_tuned and window.model.spec.class_names == ("blue", "green", "red")
    # the panel and the status bar say that the explorer uses it in the same turn
    assert "The explorer now uses the fine-tuned model" in panel.status.text()
    assert window.statusBar().currentMessage().startswith("The explorer now uses the model")
    assert window.model_bar.weights_box.currentText() == "fine-tuned, not saved"

    # the explorer predicts with the dataset's classes
    red = tmp_path / "red.png"
    Image.fromarray(np.full((40, 40, 3), COLOURS["red"], np.uint8)).save(red)
    drop_and_wait(qtbot, window, red)
    assert window.tabs.currentIndex() == 0 and window.head_grid.isVisible()
    assert {name for name, _ in window.predictions.values} == {"blue", "green", "red"}
    shown_logits = window.analysis.logits.copy()

    # File > Save model, then load it back: same classes, same logits
    saved = tmp_path / "out" / "colours.safetensors"
    saved.parent.mkdir()
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(saved), ""))
    assert window.save_model_action.isEnabled()
    with qtbot.waitSignal(panel.saved, timeout=30000):
        window.save_model_action.trigger()
    assert [p.name for p in saved.parent.iterdir()] == ["colours.safetensors"]
    loaded = load_model(str(saved), device="cpu")
    assert loaded.spec.class_names == ("blue", "green", "red")
    logits = analyze_image(loaded, load_image(red)).logits
    np.testing.assert_allclose(logits, shown_logits, rtol=1e-5, atol=1e-5)
    assert not window.model.fine_tuned and window.model.request.name == str(saved)

    # File > Open model reads it back into the explorer
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(saved), ""))
    with qtbot.waitSignal(window.analysis_shown, timeout=30000):
        _menu_action(window, "Open &model").trigger()
    assert window.model.spec.class_names == ("blue", "green", "red")
    np.testing.assert_allclose(window.analysis.logits, shown_logits, rtol=1e-5, atol=1e-5)

    # a test image clicked in the gallery opens in the explorer
    panel_of(window)
    item = panel.results.gallery.item(2)
    sample = result.samples[2]
    with qtbot.waitSignal(window.analysis_shown, timeout=30000):
        rect = panel.results.gallery.visualItemRect(item)
        qtbot.mouseClick(panel.results.gallery.viewport(), Qt.LeftButton, pos=rect.center())
    assert window.session.current.source == sample.source
    assert window.tabs.currentIndex() == 0


def ragged_csv(path: Path) -> Path:
    path.write_text("label,pixel0,pixel1,pixel2,pixel3\n1,0,0,0,0\n0,0,0\n")
    return path


def test_finetune_from_a_pixel_csv_chosen_with_its_button(
    qtbot, window: MainWindow, tmp_path, monkeypatch
):
    rng = np.random.default_rng(2)
    rows = ["label," + ",".join(f"pixel{i}" for i in range(64))]
    for i in range(24):  # dark 0s and bright 1s, 8x8
        low, high = (0, 60) if i % 2 == 0 else (190, 256)
        rows.append(",".join([str(i % 2), *map(str, rng.integers(low, high, 64))]))
    data = tmp_path / "digits.csv"
    data.write_text("\n".join(rows) + "\n")
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(data), ""))
    panel = panel_of(window)
    form = panel.form
    form.source_box.setCurrentIndex(form.source_box.findData("cifar10"))
    qtbot.mouseClick(form.csv_button, Qt.LeftButton)
    assert form.source() == str(data) and form.source_box.currentData() == "folder"
    assert "pixel CSV" in form.dataset_label.text()
    form.per_class.setValue(6)
    form.epochs.setValue(1)
    form.test_per_class.setValue(3)
    with adopted_and_shown(qtbot, window, panel):
        qtbot.mouseClick(panel.start_button, Qt.LeftButton)
    assert window.model.spec.class_names == ("0", "1")
    assert panel.results.confusion.matrix.sum() == 6


def _fine_tuned(info) -> bool:
    return info.fine_tuned


def adopted_and_shown(qtbot, window: MainWindow, panel):
    """Waits until the explorer uses the trained model and the panel shows its results: two
    threads' doings, in either order."""
    return qtbot.waitSignals(
        [window.model_changed, panel.finished],
        timeout=60000,
        check_params_cbs=[_fine_tuned, None],
    )


def _menu_action(window: MainWindow, prefix: str):
    for menu in window.menuBar().actions():
        for action in menu.menu().actions():
            if action.text().startswith(prefix):
                return action
    raise AssertionError(f"no menu entry {prefix}")


def test_cancel_mid_run_keeps_the_app_working(qtbot, window: MainWindow, tmp_path, photo):
    data = colour_folder(tmp_path / "colours", per_class=12)
    panel = panel_of(window)
    fill(panel, qtbot, data, per_class=8, epochs=500, batch_size=1)
    finished: list = []
    panel.finished.connect(finished.append)
    qtbot.mouseClick(panel.start_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: panel.curves.raw.n >= 3, timeout=30000)
    with qtbot.waitSignal(panel.finished, timeout=30000):
        qtbot.mouseClick(panel.cancel_button, Qt.LeftButton)
    result = finished[0]
    assert result.cancelled and 0 < result.steps < 500 * 22
    assert panel.curves.step_count() == result.steps
    assert not panel.busy and panel.start_button.isEnabled()
    assert "Cancelled after" in panel.status.text()
    # the partly trained model is the explorer's now, and it works
    qtbot.waitUntil(lambda: window.model.fine_tuned, timeout=30000)
    drop_and_wait(qtbot, window, photo)
    assert {name for name, _ in window.predictions.values} == {"blue", "green", "red"}
    thread = panel.thread
    window.close()
    assert thread.isFinished(), "the fine-tune thread outlived the window"


def test_closing_during_training_cancels_and_waits(qtbot, window: MainWindow, tmp_path):
    data = colour_folder(tmp_path / "colours", per_class=12)
    panel = panel_of(window)
    fill(panel, qtbot, data, per_class=8, epochs=500, batch_size=1, freeze="none")
    generation = window.model.generation
    qtbot.mouseClick(panel.start_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: panel.curves.raw.n >= 2, timeout=30000)
    thread = panel.thread
    window.close()
    assert thread.isFinished(), "closing waits for the training thread"
    qtbot.wait(100)  # anything the thread sent on its way out must not be taken up
    assert window.model.generation == generation and not window.model.fine_tuned
    assert sorted(p.name for p in tmp_path.iterdir()) == ["colours", "settings.ini"]


def test_bad_datasets_get_clear_messages_and_the_app_goes_on(
    qtbot, window: MainWindow, tmp_path, photo
):
    panel = panel_of(window)
    one_class = tmp_path / "one"
    (one_class / "cats").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(one_class / "cats" / "a.png")
    empty_class = colour_folder(tmp_path / "empty_class", per_class=4)
    (empty_class / "yellow").mkdir()
    # a folder that is not there: said beside the field, and Start waits for a real one
    fill(panel, qtbot, tmp_path / "missing", per_class=4, test_per_class=2)
    assert not panel.start_button.isEnabled()
    assert "missing does not exist" in panel.form.dataset_label.text()
    assert "does not exist" in panel.start_button.toolTip()
    cases = [
        (one_class, 4, "needs one subfolder per class"),
        (empty_class, 2, "no images in the class folder(s) yellow"),
        (colour_folder(tmp_path / "few", per_class=6), 20, "not enough"),
        (ragged_csv(tmp_path / "ragged.csv"), 4, "ragged.csv: row 3 (counting the header as row"),
    ]
    for folder, per_class, expected in cases:
        fill(panel, qtbot, folder, per_class=per_class, test_per_class=2)
        with qtbot.waitSignal(panel.failed, timeout=30000) as failed:
            qtbot.mouseClick(panel.start_button, Qt.LeftButton)
        assert expected in failed.args[0]
        assert expected in window.message_box.text()
        assert expected in window.notice.label.text()
        assert not panel.busy and panel.start_button.isEnabled()
        assert not window.model.fine_tuned
    drop_and_wait(qtbot, window, photo)
    assert window.model.spec.class_names[0] == "kind 0" and len(window.predictions.values) == 5


def test_a_training_error_is_shown_and_nothing_is_adopted(
    qtbot, window: MainWindow, tmp_path, monkeypatch
):
    from vitexplorer.core.training import engine as training
    from vitexplorer.core.training.events import TrainingError

    def diverging(base, dataset, config, cancelled=None, gallery_size=40):
        raise TrainingError(
            "the loss became nan at step 3 (epoch 1); the learning rate 10 is probably too "
            "high: try a tenth of it. Nothing was saved and the explorer keeps its model."
        )
        yield  # a generator, as the engine is

    monkeypatch.setattr(training, "finetune", diverging)
    panel = panel_of(window)
    fill(panel, qtbot, colour_folder(tmp_path / "colours", per_class=6), per_class=4)
    generation = window.model.generation
    with qtbot.waitSignal(panel.failed, timeout=30000):
        qtbot.mouseClick(panel.start_button, Qt.LeftButton)
    assert "the loss became nan" in window.message_box.text()
    assert "try a tenth" in panel.status.text()
    qtbot.wait(50)
    assert window.model.generation == generation
    assert not window.save_model_action.isEnabled()


def test_cifar10_download_without_network_says_what_to_do(
    qtbot, window: MainWindow, tmp_path, monkeypatch
):
    import urllib.error

    from vitexplorer.core.models import download

    def offline(url, timeout):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(download.urllib.request, "urlopen", offline)
    panel = panel_of(window)
    form = panel.form
    form.set_data_root(tmp_path / "datasets")
    form.source_box.setCurrentIndex(form.source_box.findData("cifar10"))
    assert form.download_button.isVisible()
    assert "not on this computer" in form.dataset_label.text()
    assert not panel.start_button.isEnabled(), "Start waits for the download"
    assert "download it" in panel.start_button.toolTip()
    with qtbot.waitSignal(panel.failed, timeout=30000) as failed:
        qtbot.mouseClick(form.download_button, Qt.LeftButton)
    assert "could not download CIFAR-10" in failed.args[0]
    assert "Without a network" in failed.args[0]
    assert window.message_box.windowTitle() == "Could not download CIFAR-10"
    leftovers = list((tmp_path / "datasets").glob("*")) if (tmp_path / "datasets").exists() else []
    assert leftovers == [], "no partial download is left behind"


def test_parameter_count_follows_the_freeze_policy(qtbot, window: MainWindow, tmp_path, checkpoint):
    module = load_model(str(checkpoint), device="cpu").module
    blocks = [sum(p.numel() for p in block.parameters()) for block in module.blocks]
    norm = sum(p.numel() for p in module.norm.parameters())
    new_head = 48 * 3 + 3
    total = sum(p.numel() for p in module.parameters()) - (48 * 7 + 7) + new_head
    panel = panel_of(window)
    fill(panel, qtbot, colour_folder(tmp_path / "c", per_class=2), freeze="last")
    panel.form.blocks.setValue(2)
    expected = blocks[-1] + blocks[-2] + norm + new_head
    assert f"<b>{expected:,}</b> of {total:,}" in panel.form.params_label.text()
    panel.form.freeze_box.setCurrentIndex(panel.form.freeze_box.findData("none"))
    assert f"<b>{total:,}</b> of {total:,} (100%)" in panel.form.params_label.text()


def fake_cifar10(root: Path, per_class: int = 6) -> Path:
    """CIFAR-10's python batches in the official layout, tiny: colours per class."""
    import pickle

    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship"]
    names.append("truck")
    rng = np.random.default_rng(0)

    def batch(n_per_class: int) -> dict:
        labels = [c for c in range(10) for _ in range(n_per_class)]
        base = np.array([[25 * c, 255 - 25 * c, (80 * c) % 256] for c in labels], np.float64)
        pixels = base[:, :, None, None] + rng.normal(0, 20, (len(labels), 3, 32, 32))
        data = np.clip(pixels, 0, 255).astype(np.uint8).reshape(len(labels), 3072)
        return {"data": data, "labels": labels}

    for i in range(1, 6):
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batch(per_class)))
    (folder / "test_batch").write_bytes(pickle.dumps(batch(per_class)))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": names}))
    return root


def test_cifar10_run_and_its_test_images_open_in_the_explorer(
    qtbot, window: MainWindow, tmp_path, monkeypatch
):
    from torchvision.datasets import cifar

    # batches of our own cannot match the official md5 sums
    monkeypatch.setattr(cifar.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(cifar, "check_integrity", lambda *args, **kwargs: True)
    panel = panel_of(window)
    form = panel.form
    form.set_data_root(fake_cifar10(tmp_path / "datasets"))
    form.source_box.setCurrentIndex(form.source_box.findData("cifar10"))
    assert not form.download_button.isVisible() and "CIFAR-10 is in" in form.dataset_label.text()
    form.per_class.setValue(10)
    form.epochs.setValue(1)
    form.test_per_class.setValue(2)
    with adopted_and_shown(qtbot, window, panel):
        qtbot.mouseClick(panel.start_button, Qt.LeftButton)
    assert window.model.spec.class_names[:2] == ("airplane", "automobile")
    assert panel.results.confusion.matrix.sum() == 20
    sample = panel.result.samples[3]
    assert sample.source.startswith("test #")
    with qtbot.waitSignal(window.analysis_shown, timeout=30000):
        panel.results.gallery.itemClicked.emit(panel.results.gallery.item(3))
    entry = window.session.current
    truth = window.model.spec.class_names[sample.true]
    assert entry.name == f"CIFAR-10 {sample.source} ({truth})"
    np.testing.assert_array_equal(load_image(entry.source), sample.image)

    # the fine-tuned model lives in memory only: another device is refused, nothing reloads
    box = window.model_bar.device_box
    index = box.findData("cpu")
    box.setCurrentIndex(index)
    box.activated.emit(index)
    assert "exists only in memory" in window.statusBar().currentMessage()
    assert window.model_bar.weights_box.currentText() == "fine-tuned, not saved"
    qtbot.wait(50)
    assert window.model.fine_tuned


def test_base_weights_missing_says_to_load_them_in_the_explorer(
    qtbot, window: MainWindow, tmp_path, monkeypatch
):
    from dataclasses import replace

    from vitexplorer.core.models.download import WeightsDownload
    from vitexplorer.gui.workers import ModelRequest

    missing = WeightsDownload(
        "vit_b_32", "http://127.0.0.1:9/w.pth", tmp_path / "w.pth", 336.6, "ViT-B/32 weights"
    )
    monkeypatch.setattr(TV_DOWNLOAD, lambda name: missing)
    panel = panel_of(window)
    panel.set_model(replace(window.model, request=ModelRequest("vit_b_32", "default", "cpu")))
    fill(panel, qtbot, colour_folder(tmp_path / "colours", per_class=4), per_class=2)
    with qtbot.waitSignal(panel.failed, timeout=30000) as failed:
        qtbot.mouseClick(panel.start_button, Qt.LeftButton)
    assert "ViT-B/32 weights are not downloaded" in failed.args[0]
    assert "load the model in the explorer first" in failed.args[0]
    assert not missing.path.exists()


def test_training_curves_draw_only_opaque_lines(qtbot):
    """Qt's raster engine draws a translucent line about 35 times slower than an opaque one: a
    translucent grid made each repaint of the curves cost 20 to 30 ms while training ran."""
    curves = TrainingCurves()
    qtbot.addWidget(curves)
    for plot in (curves.step_plot, curves.loss_plot, curves.acc_plot):
        for side in ("left", "bottom"):
            axis = plot.getAxis(side)
            assert axis.grid is not False  # the grid is shown...
            assert axis.style["tickAlpha"] == 255  # ...drawn with opaque ticks
            assert axis.tickPen().color().alpha() == 255
        for item in plot.listDataItems():
            assert pg.mkPen(item.opts["pen"]).color().alpha() == 255
