"""timm and Hugging Face models in the real window: picked from the model box, shown by name,
their prefix tokens listed and selectable by kind, an image encoder's missing classifier said."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialogButtonBox, QFileDialog

from tests.conftest import tiny_hf_config
from vitexplorer.gui.controls import FAMILY_ITEM
from vitexplorer.gui.main_window import MainWindow

pytestmark = pytest.mark.slow  # the whole file is left out of the quick suite (-m "not slow")

pytest.importorskip("timm")
transformers = pytest.importorskip("transformers")


def _random_weights(window: MainWindow) -> None:
    box = window.model_bar.weights_box
    box.setCurrentIndex(box.findData("none"))  # no download offer in a test


def _open_picker(qtbot, window: MainWindow, prefix: str):
    """The model box's entry for ``prefix``, chosen as a person does: its list opens."""
    box = window.model_bar.model_box
    index = box.findData(FAMILY_ITEM + prefix)
    assert index >= 0, f"the model box offers no {prefix} entry"
    box.setCurrentIndex(index)
    box.activated.emit(index)
    picker = window.family_picker
    qtbot.waitUntil(picker.isVisible, timeout=5000)
    return picker


def test_the_timm_list_offers_the_vits_filters_and_loads_the_choice(
    qtbot, window: MainWindow, photo: Path
):
    _random_weights(window)
    picker = _open_picker(qtbot, window, "timm")
    names = picker.names()
    assert "vit_base_patch16_224" in names and "deit_small_distilled_patch16_224" in names
    assert "vit_small_patch14_reg4_dinov2" in names
    assert not [n for n in names if n.startswith(("swin", "eva", "test_", "resnet"))]
    assert f"{len(names)} ViT and DeiT models" in picker.note.text()
    qtbot.keyClicks(picker.filter, "deit TINY distilled")
    shown = picker.names(visible_only=True)
    assert "deit_tiny_distilled_patch16_224" in shown
    assert all("deit" in n and "tiny" in n and "distilled" in n for n in shown)
    assert len(shown) < len(names) / 10
    picker.select("deit_tiny_distilled_patch16_224")
    ok = picker.buttons.button(QDialogButtonBox.Ok)
    with qtbot.waitSignal(window.model_changed, timeout=120000):
        qtbot.mouseClick(ok, Qt.LeftButton)
    assert window.model.request.name == "timm:deit_tiny_distilled_patch16_224"
    assert window.model.request.weights == "none"
    assert window.settings.value("model/last_timm") == "deit_tiny_distilled_patch16_224"
    _check_distilled(qtbot, window, photo)


def test_a_filter_that_matches_nothing_chooses_nothing(qtbot, window: MainWindow):
    picker = _open_picker(qtbot, window, "timm")
    requested: list = []
    window.worker.model_loading.connect(requested.append)
    qtbot.keyClicks(picker.filter, "no such model")
    assert picker.names(visible_only=True) == []
    assert not picker.buttons.button(QDialogButtonBox.Ok).isEnabled()
    qtbot.keyClick(picker.filter, Qt.Key_Return)
    qtbot.wait(50)
    assert requested == [] and window.model.spec.name == "small_vit"
    picker.reject()


def _check_distilled(qtbot, window: MainWindow, photo: Path) -> None:
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
):
    config = tiny_hf_config("Dinov2WithRegistersConfig", num_register_tokens=2)
    folder = tmp_path / "dino"
    transformers.Dinov2WithRegistersModel(config).save_pretrained(folder)
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(folder))
    picker = _open_picker(qtbot, window, "hf")
    with qtbot.waitSignal(window.model_changed, timeout=120000):
        qtbot.mouseClick(picker.folder_button, Qt.LeftButton)
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


def _cache_repo(hub: Path, repo_id: str, model) -> None:
    """``model`` saved into a Hugging Face hub cache as the hub's download leaves it: the files
    in blobs, linked from a snapshot that refs/main names."""
    owner, name = repo_id.split("/")
    repo = hub / f"models--{owner}--{name}"
    snapshot = repo / "snapshots" / "0123abcd"
    model.save_pretrained(snapshot)
    (repo / "blobs").mkdir(parents=True)
    for file in list(snapshot.iterdir()):
        blob = repo / "blobs" / f"{name}-{file.name}"
        file.rename(blob)
        file.symlink_to(blob)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")


def test_the_hugging_face_list_offers_the_cached_vits(
    qtbot, window: MainWindow, tmp_path: Path, monkeypatch
):
    from huggingface_hub import constants

    hub = tmp_path / "hub"
    _cache_repo(hub, "someone/tiny-vit", transformers.ViTForImageClassification(tiny_hf_config()))
    bert = transformers.BertConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    )
    _cache_repo(hub, "someone/tiny-bert", transformers.BertModel(bert))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
    picker = _open_picker(qtbot, window, "hf")
    assert picker.names() == ["someone/tiny-vit"], "the BERT in the cache is no ViT"
    assert picker.note.text().startswith("1 ViT in the Hugging Face cache")
    asked: list[str] = []
    window.worker.model_loading.connect(asked.append)
    with qtbot.waitSignal(window.model_changed, timeout=60000):
        qtbot.keyClick(picker.filter, Qt.Key_Return)  # the one listed, selected
    assert asked == ["hf:someone/tiny-vit"]
    assert window.model.request.name == "hf:someone/tiny-vit"
    assert window.model_bar.model_box.currentText() == "hf: tiny-vit"
