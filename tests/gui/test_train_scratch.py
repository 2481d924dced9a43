"""Training a small ViT from scratch in the real main window: the mode, the architecture fields
with their messages, the parameter count, a run that the explorer adopts, and saving it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
from PySide6.QtCore import Qt

from tests.gui.conftest import make_window
from tests.gui.test_finetune import adopted_and_shown, colour_folder, panel_of
from vitexplorer.core.models import architecture
from vitexplorer.core.models.checkpoint import read_weights
from vitexplorer.core.models.loading import load_model
from vitexplorer.core.training.config import TrainConfig
from vitexplorer.core.training.engine import lr_schedule
from vitexplorer.gui.finetune_settings import SCRATCH
from vitexplorer.gui.main_window import MainWindow
from vitexplorer.gui.workers import ModelRequest

pytestmark = pytest.mark.slow  # the whole file is left out of the quick suite (-m "not slow")

SMALL = {"image_size": 16, "patch_size": 4, "width": 32, "depth": 2, "heads": 2}


def scratch_mode(panel, qtbot, folder: Path | None = None):
    form = panel.form
    form.mode_box.setCurrentIndex(form.mode_box.findData(SCRATCH))
    if folder is not None:
        form.source_box.setCurrentIndex(form.source_box.findData("folder"))
        form.folder_edit.clear()
        qtbot.keyClicks(form.folder_edit, str(folder))
        qtbot.keyClick(form.folder_edit, Qt.Key_Return)
    return form


def test_from_scratch_shows_the_architecture_and_counts_its_parameters(
    qtbot, window: MainWindow, tmp_path: Path
) -> None:
    panel = panel_of(window)
    form = panel.form
    assert not form.architecture.isVisible() and form.freeze_box.isVisible()
    form = scratch_mode(panel, qtbot, colour_folder(tmp_path / "colours", per_class=2))
    assert form.architecture.isVisible() and form.augment_box.isVisible()
    assert not form.freeze_box.isVisible()
    assert "random weights" in panel.base_label.text()
    # the defaults for 32 px images: 1.8 M parameters for CIFAR's 10 classes, here for 3
    values = form.architecture.values()
    assert values == architecture.ARCH_DEFAULTS
    expected = architecture.parameter_count(SimpleNamespace(**values, num_classes=3))
    assert f"Trainable parameters: <b>{expected / 1e6:.1f} M</b>, every one" in (
        form.params_label.text()
    )
    form.architecture.fields["width"].setValue(96)
    wider = SimpleNamespace(**{**values, "width": 96}, num_classes=3)
    expected = architecture.parameter_count(wider)
    assert f"<b>{expected:,}</b>" in form.params_label.text()
    assert panel.start_button.isEnabled()


@pytest.mark.parametrize(
    ("field", "value", "wrong", "message"),
    [
        ("image_size", 30, "patch_size", "The image size 30 is not a multiple of the patch size 4"),
        ("heads", 5, "heads", "The width 192 is not divisible by 5 heads: try 4 or 6."),
    ],
)
def test_an_impossible_architecture_is_said_beside_its_field_and_cannot_start(
    qtbot, window: MainWindow, field: str, value: int, wrong: str, message: str, tmp_path: Path
) -> None:
    panel = panel_of(window)
    form = scratch_mode(panel, qtbot, colour_folder(tmp_path / "colours", per_class=2))
    arch = form.architecture
    arch.fields[field].setValue(value)
    error = arch.errors[wrong]
    assert error.isVisible() and error.text().startswith(message)
    label = arch.form.labelForField(arch.fields[wrong])
    assert "b00020" in label.styleSheet()  # the field's label is marked
    others = [e for name, e in arch.errors.items() if name != wrong]
    assert not any(e.isVisible() for e in others)
    assert not panel.start_button.isEnabled()
    arch.fields[field].setValue(32 if field == "image_size" else 3)  # mended: all clear
    assert not error.isVisible() and label.styleSheet() == ""
    assert panel.start_button.isEnabled()


def test_each_mode_keeps_its_own_settings(qtbot, window: MainWindow, tmp_path: Path) -> None:
    panel = panel_of(window)
    form = panel.form
    form.per_class.setValue(12)
    form = scratch_mode(panel, qtbot)
    assert form.per_class.value() == 5000 and form.epochs.value() == 50  # TrainConfig's
    assert form.augment_box.currentData() == "crop-flip"
    form.per_class.setValue(300)
    form.augment_box.setCurrentIndex(form.augment_box.findData("crop-flip-rotate"))
    form.architecture.fields["depth"].setValue(4)
    # the app's defaults from scratch are TrainConfig's (the engine's and the command line's)
    chosen = replace(TrainConfig(), augment_policy="crop-flip-rotate", per_class=300)
    assert TrainConfig(**form.config()) == chosen
    form.mode_box.setCurrentIndex(form.mode_box.findData("finetune"))
    assert form.per_class.value() == 12 and not form.architecture.isVisible()
    form.mode_box.setCurrentIndex(form.mode_box.findData(SCRATCH))
    assert form.per_class.value() == 300
    form.remember()
    # a new window opens in the mode and with the values left
    again = make_window(qtbot, Path(window.settings.fileName()), ModelRequest("small_vit"))
    other = again.finetune.panel.form
    assert other.from_scratch() and other.per_class.value() == 300
    assert other.augment_box.currentData() == "crop-flip-rotate"
    assert other.architecture.values()["depth"] == 4
    assert other.config()["augment_policy"] == "crop-flip-rotate"
    assert "freeze" not in other.config()
    again.close()


def test_a_shorter_run_gets_a_shorter_warm_up_unless_the_user_chose_one(
    qtbot, window: MainWindow
) -> None:
    """A 5-epoch run with the recipe's 5 warm-up epochs would end at the peak learning rate: the
    warm-up follows the length (a tenth, at most 5 epochs, as 'vitexplorer train' does) until the
    user sets it."""
    form = scratch_mode(panel_of(window), qtbot)
    assert form.warmup.value() == 5.0 and form.epochs.value() == 50
    form.epochs.setValue(5)
    assert form.warmup.value() == 0.5 and TrainConfig(**form.config()).warmup_epochs == 0.5
    form.epochs.setValue(200)
    assert form.warmup.value() == 5.0
    form.warmup.setValue(2.0)  # the user's own: kept
    form.epochs.setValue(30)
    assert form.warmup.value() == 2.0
    form.mode_box.setCurrentIndex(form.mode_box.findData("finetune"))
    form.epochs.setValue(3)  # fine-tuning has no warm-up by default, and none is added
    assert form.warmup.value() == 0.0


def test_short_runs_keep_a_warm_up_of_a_tenth_and_their_schedule_decays(
    qtbot, window: MainWindow
) -> None:
    """Lowering the epochs below 5 used to clamp the warm-up to the whole run first (the
    learning rate never decayed): each length gets what 'vitexplorer train' gives it."""
    form = scratch_mode(panel_of(window), qtbot)
    assert form.epochs.value() == 50 and form.warmup.value() == 5.0
    steps_per_epoch = 10
    for epochs in (3, 2, 1, 10):
        form.epochs.setValue(epochs)
        config = TrainConfig(**form.config())
        assert config.warmup_epochs == pytest.approx(architecture.default_warmup(epochs))
        assert config.warmup_epochs < epochs
        factor = lr_schedule(config, steps_per_epoch)
        last = epochs * steps_per_epoch - 1
        warm = round(config.warmup_epochs * steps_per_epoch)
        assert factor(warm) == pytest.approx(1.0, abs=0.03)  # the peak, once warmed up
        assert factor(last) < 0.05  # decayed to almost nothing by the end


def test_train_from_scratch_the_explorer_adopts_and_saves_it(
    qtbot, window: MainWindow, tmp_path: Path
) -> None:
    data = colour_folder(tmp_path / "colours", per_class=14, size=16)
    panel = panel_of(window)
    form = scratch_mode(panel, qtbot, data)
    form.architecture.set_values(SMALL)
    form.per_class.setValue(10)
    form.epochs.setValue(3)
    form.lr.setValue(3e-3)
    qtbot.mouseClick(form.more_button, Qt.LeftButton)
    form.test_per_class.setValue(4)
    form.batch_size.setValue(9)
    form.warmup.setValue(0.5)
    with adopted_and_shown(qtbot, window, panel):
        qtbot.mouseClick(panel.start_button, Qt.LeftButton)
    result = panel.result
    assert result.config.from_scratch and not result.cancelled
    assert len(result.history) == 3 and result.best_epoch in (1, 2, 3)
    best = max(result.history, key=lambda e: e.val_acc)
    assert result.best_val_acc == best.val_acc
    assert f"Kept the best epoch, {result.best_epoch} of 3" in panel.status.text()
    spec = window.model.spec
    assert spec.class_names == ("blue", "green", "red") and spec.image_size == 16
    assert spec.grid == (4, 4) and spec.num_layers == 2
    assert window.model_bar.weights_box.currentText() == "trained here, not saved"
    assert "random weights" in panel.base_label.text()  # the next run from scratch
    form.mode_box.setCurrentIndex(form.mode_box.findData("finetune"))
    # fine-tuning starts from the model the explorer uses: this one, as its label says
    assert panel.base_label.text() == (
        f"Starts from the explorer's model: {spec.display_name}, {spec.weights} (trained here, "
        f"not saved)."
    )
    form.mode_box.setCurrentIndex(form.mode_box.findData(SCRATCH))
    # every weight trained: the parameter count is the architecture's
    shape = SimpleNamespace(**{**architecture.ARCH_DEFAULTS, **SMALL}, num_classes=3)
    assert result.trainable_params == architecture.parameter_count(shape)

    path = tmp_path / "scratch.safetensors"
    with qtbot.waitSignal(panel.saved, timeout=30000):
        assert panel.save(str(path))
    train = read_weights(path)[1]["train"]
    assert train["architecture"]["width"] == 32 and train["architecture"]["num_classes"] == 3
    assert train["settings"]["augment_policy"] == "crop-flip"
    assert train["metrics"]["best_epoch"] == result.best_epoch
    assert len(train["history"]) == 3
    reopened = load_model(str(path), "default", "cpu")
    assert reopened.spec.class_names == ("blue", "green", "red")
    assert reopened.spec.image_size == 16


def test_a_model_too_big_for_memory_is_refused_before_reading(
    qtbot, window: MainWindow, tmp_path: Path, monkeypatch
) -> None:
    data = colour_folder(tmp_path / "colours", per_class=2)
    monkeypatch.setattr(architecture, "available_bytes", lambda device: 10**6)
    monkeypatch.setattr(architecture, "free_ram", lambda: 10**6)
    shown: list = []
    monkeypatch.setattr(window, "show_message", lambda title, text: shown.append((title, text)))
    panel = panel_of(window)
    form = scratch_mode(panel, qtbot, data)
    assert "more than the 1 MB free" in form.params_label.text()  # the CPU's, said at once
    before = window.model
    with qtbot.waitSignal(panel.failed, timeout=30000) as failed:
        qtbot.mouseClick(panel.start_button, Qt.LeftButton)
    assert "needs about" in failed.args[0] and "more than the 1 MB free" in failed.args[0]
    assert shown and shown[0][0] == "Training failed"
    assert window.model is before and panel.result is None
