"""The Train tab says only what is true: which model a run starts from, which head, whether the
dataset is there, and no earlier failure once a new run starts."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt

from tests.gui.conftest import make_window
from tests.gui.test_finetune import (
    adopted_and_shown,
    colour_folder,
    fake_cifar10,
    fill,
    panel_of,
)
from tests.gui.test_train_scratch import SMALL, scratch_mode
from vitexplorer.core.models.spec import DEMO, DEMO_LABEL, demo_path
from vitexplorer.gui.finetune_settings import FINETUNE
from vitexplorer.gui.main_window import MainWindow
from vitexplorer.gui.workers import ModelRequest

pytestmark = pytest.mark.slow  # the whole file is left out of the quick suite (-m "not slow")

SAMPLE = Path(__file__).parents[1] / "data" / "cifar10-test-sample"
KINDS = tuple(f"kind {i}" for i in range(7))  # the GUI checkpoint's classes, in its order


def kind_folder(root: Path, names=KINDS, per_class: int = 4) -> Path:
    """A folder of the GUI model's own classes (solid grey levels)."""
    for i, name in enumerate(names):
        (root / name).mkdir(parents=True)
        for j in range(per_class):
            level = 30 * i + 5 * j
            Image.fromarray(np.full((16, 16, 3), level, np.uint8)).save(root / name / f"{j}.png")
    return root


def test_the_head_row_says_which_head_the_run_starts_from(qtbot, window: MainWindow, tmp_path):
    panel = panel_of(window)
    form = panel.form
    fill(panel, qtbot, colour_folder(tmp_path / "colours", per_class=6), per_class=4, epochs=1)
    assert form.head_box.currentData() == "keep" and form.head_box.isVisible()
    text = form.head_label.text()
    assert "a new head" in text and "they are not the model's" in text and "kind 0" in text

    own = kind_folder(tmp_path / "kinds")
    fill(panel, qtbot, own, per_class=3, test_per_class=1, epochs=1)
    assert "the model's own head, kept: its 7 classes" in form.head_label.text()
    form.head_box.setCurrentIndex(form.head_box.findData("new"))
    assert "a new head" in form.head_label.text() and "as asked" in form.head_label.text()
    form.head_box.setCurrentIndex(form.head_box.findData("keep"))

    head = window.model.spec  # the explorer's model, before the run
    finished: list = []
    panel.finished.connect(finished.append)
    with adopted_and_shown(qtbot, window, panel):
        qtbot.mouseClick(panel.start_button, Qt.LeftButton)
    result = finished[0]
    assert result.head_kept and result.metadata()["finetune"]["head"] == "kept"
    assert result.model.spec.class_names == head.class_names

    scratch_mode(panel, qtbot)
    assert not form.head_box.isVisible() and not form.head_label.isVisible()
    assert "head" not in form.config()


def test_start_labels_name_the_model_the_run_starts_from(qtbot, window: MainWindow, tmp_path):
    """Each mode's label names what Start really starts from; after a run the explorer uses the
    trained model, and the next fine-tune starts from that model, not from the one before."""
    panel = panel_of(window)
    form = panel.form
    assert form.mode_box.currentData() == FINETUNE
    spec = window.model.spec
    assert panel.base_label.text() == (
        f"Starts from the explorer's model: {spec.display_name}, {spec.weights}."
    )
    data = colour_folder(tmp_path / "colours", per_class=6)
    scratch_mode(panel, qtbot, data)
    assert panel.base_label.text().startswith("Builds a new small ViT with random weights")
    assert spec.display_name not in panel.base_label.text()
    form.architecture.set_values(SMALL)
    form.per_class.setValue(4)
    form.epochs.setValue(1)
    qtbot.mouseClick(form.more_button, Qt.LeftButton)
    form.test_per_class.setValue(2)
    form.batch_size.setValue(8)
    with adopted_and_shown(qtbot, window, panel):
        qtbot.mouseClick(panel.start_button, Qt.LeftButton)
    trained = window.model.spec
    assert window.model.fine_tuned and trained.class_names == ("blue", "green", "red")

    # fine-tuning now starts from the model just trained (the explorer's), and says so
    form.mode_box.setCurrentIndex(form.mode_box.findData(FINETUNE))
    assert panel.base_label.text() == (
        f"Starts from the explorer's model: {trained.display_name}, {trained.weights} "
        f"(trained here, not saved)."
    )
    assert panel.start_button.isEnabled()
    assert "the model's own head, kept: its 3 classes" in form.head_label.text()
    fill(panel, qtbot, data, per_class=4, test_per_class=2, epochs=1)
    first = panel.result
    finished: list = []
    panel.finished.connect(finished.append)
    with adopted_and_shown(qtbot, window, panel):
        qtbot.mouseClick(panel.start_button, Qt.LeftButton)
    second = finished[0]
    assert second.base == f"{trained.display_name}, {trained.weights}"
    assert second.head_kept
    assert first.model.module is not second.model.module  # it trained a copy


def test_missing_cifar10_holds_start_until_it_is_there(
    qtbot, window: MainWindow, tmp_path, monkeypatch
):
    panel = panel_of(window)
    form = panel.form
    form.set_data_root(tmp_path / "datasets")
    form.source_box.setCurrentIndex(form.source_box.findData("cifar10"))
    assert form.download_button.isVisible() and not panel.start_button.isEnabled()
    assert "not on this computer yet" in form.dataset_label.text()
    fake_cifar10(tmp_path / "datasets")
    form.refresh_dataset_status()  # what the download's end does
    assert panel.start_button.isEnabled() and not form.download_button.isVisible()
    assert panel.start_button.toolTip() == ""
    # a folder that goes missing holds Start again; one that exists frees it
    form.source_box.setCurrentIndex(form.source_box.findData("folder"))
    form.folder_edit.setText(str(tmp_path / "nowhere"))
    form.refresh_dataset_status()
    assert not panel.start_button.isEnabled()
    form.folder_edit.setText(str(colour_folder(tmp_path / "colours", per_class=4)))
    form.refresh_dataset_status()
    assert panel.start_button.isEnabled()


def test_a_failure_is_withdrawn_when_the_next_run_starts(qtbot, window: MainWindow, tmp_path):
    panel = panel_of(window)
    empty_class = colour_folder(tmp_path / "empty_class", per_class=4)
    (empty_class / "yellow").mkdir()
    fill(panel, qtbot, empty_class, per_class=2, test_per_class=1, epochs=1)
    with qtbot.waitSignal(panel.failed, timeout=30000):
        qtbot.mouseClick(panel.start_button, Qt.LeftButton)
    assert "Fine-tuning failed" in window.notice.label.text() and window.notice.isVisible()
    window.message_box.close()

    good = colour_folder(tmp_path / "good", per_class=6)
    fill(panel, qtbot, good, per_class=4, test_per_class=2, epochs=1)
    with adopted_and_shown(qtbot, window, panel):
        qtbot.mouseClick(panel.start_button, Qt.LeftButton)
        assert "Fine-tuning failed" not in window.notice.label.text()
    assert "failed" not in window.notice.label.text()
    assert "failed" not in window.statusBar().currentMessage()
    assert "failed" not in panel.status.text()


def test_a_long_dataset_path_is_elided_in_the_middle_at_1024x700(qtbot, window: MainWindow):
    panel = panel_of(window)
    form = panel.form
    window.resize(1024, 700)
    form.source_box.setCurrentIndex(form.source_box.findData("folder"))
    path = "/home/someone/datasets/" + "very-long-folder-name/" * 6 + "flowers-photos"
    form.folder_edit.setText(path)
    qtbot.waitUntil(lambda: form.folder_edit.isVisible(), timeout=5000)
    qtbot.wait(50)
    edit = form.folder_edit
    assert edit.width() >= edit.MINIMUM_WIDTH
    shown = edit.shown_text()
    assert "…" in shown and shown != path
    head, tail = shown.split("…")
    assert path.startswith(head) and path.endswith(tail) and len(tail) > 4
    assert edit.toolTip() == path and form.source() == path
    window.activateWindow()
    edit.setFocus()
    qtbot.waitUntil(edit.hasFocus, timeout=5000)
    assert edit.shown_text() == path  # editing: the whole path


def test_the_time_estimate_is_measured_beside_the_memory(qtbot, window: MainWindow, tmp_path):
    """A few steps of the configured model are measured in the background; the run's time is
    that step times the run's steps, said as an estimate, and follows the epochs at once."""
    from vitexplorer.core.training.estimate import subset_sizes

    panel = panel_of(window)
    form = scratch_mode(panel, qtbot, colour_folder(tmp_path / "colours", per_class=2))
    form.architecture.set_values(SMALL)
    form.batch_size.setValue(8)
    form.per_class.setValue(40)
    form.epochs.setValue(4)
    qtbot.waitUntil(lambda: "Time: about" in form.params_label.text(), timeout=60000)
    measured = panel.estimator.current
    assert measured.batch_size == 8 and measured.seconds > 0 and measured.num_classes == 3
    assert dict(measured.architecture)["width"] == SMALL["width"]
    text = form.params_label.text()
    assert "of memory to train at batch size 8" in text and "an estimate" in text
    sizes = subset_sizes(3, 40, form.test_per_class.value(), form.val_percent.value() / 100)
    assert f"{4 * -(-sizes.train // 8):,} steps of batch 8" in text
    form.epochs.setValue(8)  # arithmetic only: no new measurement
    assert f"{8 * -(-sizes.train // 8):,} steps of batch 8" in form.params_label.text()
    assert panel.estimator.current is measured
    form.batch_size.setValue(16)  # another step: measured again
    assert "measuring" in form.params_label.text()
    qtbot.waitUntil(lambda: "steps of batch 16" in form.params_label.text(), timeout=60000)


@pytest.mark.skipif(not demo_path().is_file(), reason="the demo model is not here")
def test_fine_tuning_the_demo_on_its_own_classes_keeps_its_head(qtbot, tmp_path):
    """The demo fine-tuned on CIFAR-10 images starts from its own classifier: its first loss is
    far below chance (ln 10), and the toolbar names the demo, fine-tuned."""
    window = make_window(qtbot, tmp_path / "settings.ini", ModelRequest(DEMO, "default", "cpu"))
    with qtbot.waitSignal(window.model_changed, timeout=30000):
        window.start()
    panel = panel_of(window)
    form = panel.form
    fill(panel, qtbot, SAMPLE, per_class=2, test_per_class=1, epochs=1, batch_size=20)
    form.val_percent.setValue(0)
    assert "the model's own head, kept: its 10 classes" in form.head_label.text()
    with adopted_and_shown(qtbot, window, panel):
        qtbot.mouseClick(panel.start_button, Qt.LeftButton)
    result = panel.result
    assert result.head_kept and result.history[0].train_loss < 0.5 * math.log(10)
    assert window.model_bar.model_box.currentText() == DEMO_LABEL
    assert window.model_bar.weights_box.currentText() == "fine-tuned, not saved"
    window.close()


def test_a_measurement_that_fails_says_why_instead_of_a_time(
    qtbot, window: MainWindow, tmp_path, monkeypatch
):
    from vitexplorer.core.training import estimate

    def out_of_memory(*args, **kwargs):
        raise RuntimeError("not enough memory for batch 8")

    monkeypatch.setattr(estimate, "measure_step", out_of_memory)
    panel = panel_of(window)
    form = scratch_mode(panel, qtbot, colour_folder(tmp_path / "colours", per_class=2))
    form.architecture.set_values(SMALL)
    form.batch_size.setValue(8)
    qtbot.waitUntil(lambda: "no estimate" in form.params_label.text(), timeout=60000)
    assert "Time: no estimate (not enough memory for batch 8)." in form.params_label.text()
    assert "Time: about" not in form.params_label.text()
