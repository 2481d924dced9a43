"""timm and Hugging Face models in the real window: picked from the model box, shown by name,
their prefix tokens listed and selectable by kind, an image encoder's missing classifier said."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtWidgets import QFileDialog, QInputDialog

from tests.conftest import tiny_hf_config
from vitexplorer.gui.controls import FAMILY_ITEM
from vitexplorer.gui.main_window import MainWindow

pytest.importorskip("timm")
transformers = pytest.importorskip("transformers")


def _random_weights(window: MainWindow) -> None:
    box = window.model_bar.weights_box
    box.setCurrentIndex(box.findData("none"))  # no download offer in a test


def _pick_family(qtbot, window: MainWindow, prefix: str) -> None:  # noqa: ANN001
    box = window.model_bar.model_box
    index = box.findData(FAMILY_ITEM + prefix)
    assert index >= 0, f"the model box offers no {prefix} entry"
    with qtbot.waitSignal(window.model_changed, timeout=120000):
        box.setCurrentIndex(index)
        box.activated.emit(index)


def test_a_timm_model_with_a_distillation_token(
    qtbot, window: MainWindow, photo: Path, monkeypatch
):  # noqa: ANN001
    monkeypatch.setattr(
        QInputDialog, "getText", lambda *a, **k: ("deit_tiny_distilled_patch16_224", True)
    )
    _random_weights(window)
    _pick_family(qtbot, window, "timm")
    box = window.model_bar.model_box
    assert box.currentText() == "timm: deit_tiny_distilled_patch16_224"
    spec = window.model.spec
    assert spec.prefix_kinds == ("cls", "dist") and spec.num_tokens == 2 + 196
    bar = window.view_bar
    assert [bar.prefix_box.itemText(i) for i in range(bar.prefix_box.count())] == [
        "CLS token",
        "distillation token",
    ]
    assert bar._prefix_action.isVisible() and not bar._cls_action.isVisible()

    with qtbot.waitSignal(window.analysis_shown, timeout=60000):
        window.add_images([str(photo)])
    bar.prefix_box.setCurrentIndex(1)
    bar.prefix_box.activated.emit(1)
    assert window.selection.token == 1
    assert "the distillation token (token 2)" in window.image_view.title.text  # from 1
    window.select_token(2 + 14 * 3 + 5)  # a patch: the grid keeps the prefix tokens out
    assert window.selection.patch(spec) == (3, 5)
    assert "patch row 4, col 6" in window.image_view.title.text  # rows and columns from 1


def test_a_hugging_face_image_encoder(
    qtbot, window: MainWindow, photo: Path, tmp_path: Path, monkeypatch
):  # noqa: ANN001
    config = tiny_hf_config("Dinov2WithRegistersConfig", num_register_tokens=2)
    folder = tmp_path / "dino"
    transformers.Dinov2WithRegistersModel(config).save_pretrained(folder)
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(folder))
    _pick_family(qtbot, window, "hf")
    spec = window.model.spec
    assert window.model_bar.model_box.currentText() == "hf: dino"
    assert not spec.has_classifier and spec.prefix_names() == ("CLS", "register 1", "register 2")
    assert "no classifier" in window.predictions.hint.text()
    relevance = window.explanations.method_bar.method_box
    assert not relevance.model().item(relevance.findData("relevance")).isEnabled()
    with qtbot.waitSignal(window.analysis_shown, timeout=60000):
        window.add_images([str(photo)])
    assert window.session.analysis.predictions == []
    assert window.predictions.values == []
    assert not window.notice.messages  # no "constant output" warning for an encoder
