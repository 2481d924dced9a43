"""Saving a fine-tuned model when the disk says no, and settings the app cannot take.

A save that fails says why (notice bar, dialog, status), keeps the fine-tuned model in memory, and
File > Save model can then write it elsewhere. The settings widgets cannot hold a value that
``FinetuneConfig.check`` refuses: not at their ends, not NaN typed in, not NaN in the settings file.
"""

from __future__ import annotations

import errno
from pathlib import Path

import numpy as np
import pytest
import torch
from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import QFileDialog, QSpinBox

from tests.gui.test_finetune import colour_folder, fill, panel_of
from vitexplorer.core.models.loading import load_model
from vitexplorer.gui.finetune_settings import FinetuneSettings
from vitexplorer.gui.main_window import MainWindow


def _train(qtbot, window: MainWindow, tmp_path: Path):
    """A short real run; the explorer adopts its model. Returns the panel and the result."""
    panel = panel_of(window)
    fill(panel, qtbot, colour_folder(tmp_path / "colours", per_class=8), per_class=6,
         test_per_class=2, epochs=1, batch_size=8)  # fmt: skip
    finished: list = []
    panel.finished.connect(finished.append)
    with qtbot.waitSignal(window.model_changed, timeout=60000,
                          check_params_cb=lambda info: info.fine_tuned):  # fmt: skip
        qtbot.mouseClick(panel.start_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: bool(finished), timeout=30000)
    return panel, finished[0]


def _save_to(qtbot, window: MainWindow, monkeypatch, path: Path, signal):
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(path), ""))
    assert window.save_model_action.isEnabled()
    with qtbot.waitSignal(signal, timeout=30000) as blocker:
        window.save_model_action.trigger()
    return blocker.args


@pytest.mark.slow
@pytest.mark.parametrize("failure", ["full disk", "no room beforehand", "missing folder"])
def test_a_failed_save_keeps_the_model_and_a_second_save_works(
    failure: str, qtbot, window: MainWindow, tmp_path: Path, monkeypatch
) -> None:
    from vitexplorer.core.models import loading as models

    panel, result = _train(qtbot, window, tmp_path)
    good = tmp_path / "good"
    good.mkdir()
    target = tmp_path / "full" / "model.safetensors"
    target.parent.mkdir()
    with monkeypatch.context() as patch:
        if failure == "full disk":  # the writer fails as safetensors does on a full disk

            def full(path, model, extra=None, timelapse=None):
                raise OSError(errno.ENOSPC, "No space left on device", str(path))

            patch.setattr(models, "save_checkpoint", full)
            expected = f"cannot write {target}: No space left on device"
        elif failure == "no room beforehand":  # found out before writing a byte
            import shutil

            real = shutil.disk_usage

            def nearly_full(path):
                usage = real(path)
                return type(usage)(usage.total, usage.total - 500, 500)

            patch.setattr(shutil, "disk_usage", nearly_full)
            expected = f"not enough free space in {target.parent}"
        else:
            target = tmp_path / "gone" / "model.safetensors"
            expected = f"the folder {target.parent} does not exist"
        problem = _save_to(qtbot, window, patch, target, panel.problem)
    title, message = problem
    assert title == "Could not save the model" and expected in message
    assert "still in memory: File > Save model can save it somewhere else" in message
    assert expected in window.message_box.text()
    assert expected in window.notice.label.text()
    assert expected in panel.status.text()
    assert not target.exists()
    if target.parent.is_dir():
        assert list(target.parent.iterdir()) == []  # no temporary file left either
    # nothing is lost: the model is still the explorer's, and can be saved again
    assert panel.result is result and not panel.busy
    assert window.model.fine_tuned
    assert window.model_bar.weights_box.currentText() == "fine-tuned, not saved"

    saved = good / "model.safetensors"
    assert _save_to(qtbot, window, monkeypatch, saved, panel.saved) == [str(saved)]
    loaded = load_model(str(saved), device="cpu")
    assert loaded.spec.class_names == ("blue", "green", "red")
    x = torch.rand(2, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        np.testing.assert_allclose(loaded.module(x), result.model.module(x), atol=1e-6)
    assert not window.model.fine_tuned and window.model.request.name == str(saved)


@pytest.mark.slow
def test_nan_weights_are_never_saved(qtbot, window: MainWindow, tmp_path: Path, monkeypatch):
    panel, result = _train(qtbot, window, tmp_path)
    head = result.model.module.head
    with torch.no_grad():
        kept = head.bias.clone()
        head.bias[0] = float("nan")
    target = tmp_path / "nan.safetensors"
    title, message = _save_to(qtbot, window, monkeypatch, target, panel.problem)
    assert "1 NaN or infinite values" in message and "not saved" in message
    assert not target.exists()
    with torch.no_grad():
        head.bias.copy_(kept)
    assert _save_to(qtbot, window, monkeypatch, target, panel.saved) == [str(target)]


# ---------------------------------------------------------------------------------------------
# The settings widgets and FinetuneConfig.check agree


def _form(qtbot, tmp_path: Path) -> FinetuneSettings:
    form = FinetuneSettings(QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat))
    qtbot.addWidget(form)
    form.set_num_layers(3)
    return form


def _number_boxes(form: FinetuneSettings) -> list:
    fields = form._fields()
    return [w for k, w in fields.items() if hasattr(w, "maximum") and k != "blocks"]


@pytest.mark.slow
@pytest.mark.parametrize("end", ["minimum", "maximum"])
def test_every_setting_at_its_ends_passes_the_engines_check(qtbot, tmp_path: Path, end: str):
    from vitexplorer.core.training.config import FinetuneConfig

    form = _form(qtbot, tmp_path)
    form.optimizer_box.setCurrentIndex(form.optimizer_box.findData("sgd"))
    boxes = _number_boxes(form)
    assert len(boxes) == 12
    for box in boxes:
        box.setValue(getattr(box, end)())
    config = FinetuneConfig(**form.config())
    if end == "maximum":  # each at its largest; the product of two is a rule of its own
        with pytest.raises(ValueError, match="the learning rate times the weight decay"):
            config.check(3)
        form.weight_decay.setValue(0.09)
        config = FinetuneConfig(**form.config())
    config.check(3)
    assert form.warmup.value() <= form.epochs.value()


def test_warm_up_follows_the_epochs(qtbot, tmp_path: Path) -> None:
    form = _form(qtbot, tmp_path)
    form.epochs.setValue(8)
    form.warmup.setValue(7.5)
    form.epochs.setValue(3)
    assert form.warmup.maximum() == 3 and form.warmup.value() == 3


@pytest.mark.slow
@pytest.mark.parametrize("typed", ["nan", "inf", "-inf", "1e400", "NaN"])
def test_nan_cannot_be_typed_into_the_learning_rate(qtbot, tmp_path: Path, typed: str):
    form = _form(qtbot, tmp_path)
    form.lr.setValue(0.003)
    edit = form.lr.lineEdit()
    edit.selectAll()
    qtbot.keyClicks(edit, typed)
    qtbot.keyClick(edit, Qt.Key_Return)
    form.lr.interpretText()
    assert form.lr.value() == pytest.approx(0.003)  # Qt would have made NaN the maximum, 10


def test_nan_in_the_settings_file_is_ignored(qtbot, tmp_path: Path) -> None:
    store = QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat)
    for key in ("lr", "momentum", "warmup", "weight_decay", "smoothing"):
        store.setValue(f"finetune/{key}", "nan")
    store.setValue("finetune/epochs", "inf")
    store.sync()
    form = FinetuneSettings(store)
    qtbot.addWidget(form)
    config = form.config()
    assert config["lr"] == 1e-3 and config["momentum"] == 0.9 and config["epochs"] == 5
    assert config["warmup_epochs"] == 0 and config["weight_decay"] == 1e-4
    assert all(isinstance(w, QSpinBox) or np.isfinite(w.value()) for w in _number_boxes(form))
