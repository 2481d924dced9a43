"""The app asks each family how to ask for one of its models: the model box's entry, the
picker's title, filter hint, note and folder button are the family's, so a third library
family gets its own texts from its table entry (no branch on "timm" or "hf" in the GUI)."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QDialogButtonBox, QWidget

from vitexplorer.core.models.families import registry
from vitexplorer.core.models.families.family import Asking, FamilyInfo
from vitexplorer.gui import controls
from vitexplorer.gui.controls import FAMILY_ITEM, ModelBar, family_label
from vitexplorer.gui.dialogs import FamilyPicker
from vitexplorer.gui.main_window import MainWindow

# a third family that names its models, with texts of its own (and no folder)
FAKE = FamilyInfo(
    "fake",
    "nowhere:FakeFamily",
    prefix="fake",
    example="fake:one",
    asking=Asking(
        menu="Fake model…",
        title="Fake model",
        filter_hint="Find a fake",
        names=lambda: ["fake one", "fake two", "other"],
        note=lambda names: f"{len(names)} fakes here",
    ),
)


def test_today_s_families_keep_today_s_texts(qtbot) -> None:
    parent = QWidget()
    qtbot.addWidget(parent)
    timm = FamilyPicker(parent, registry.family_named("timm"), ["vit_a"], "a note")
    assert timm.windowTitle() == "timm model"
    assert timm.filter.placeholderText() == "Type to filter, e.g. deit small"
    assert timm.folder_button is None and timm.note.text() == "a note"
    hf = FamilyPicker(parent, registry.family_named("hf"), ["google/vit"], "another")
    assert hf.windowTitle() == "Hugging Face model" and hf.filter.placeholderText() == "Filter"
    assert hf.folder_button is not None
    assert hf.folder_button.toolTip() == "A folder that save_pretrained wrote"
    assert registry.family_named("hf").asking.note(["a/b"]) == (
        "1 ViT in the Hugging Face cache on this computer; or a folder that save_pretrained "
        "wrote (Folder…)"
    )
    assert registry.family_named("timm").asking.note(["a", "b"]) == (
        "2 ViT and DeiT models in timm's registry (timm.list_models)"
    )
    assert family_label("hf:/models/saved/my-vit/") == "hf: my-vit"
    assert family_label("hf:google/vit-base-patch16-224") == "hf: vit-base-patch16-224"
    assert family_label("timm:deit_tiny_patch16_224") == "timm: deit_tiny_patch16_224"


def test_a_third_family_is_offered_and_asked_for_in_its_own_words(qtbot, monkeypatch) -> None:
    monkeypatch.setattr(controls, "FAMILIES", (*registry.FAMILIES, FAKE))
    bar = ModelBar()
    qtbot.addWidget(bar)
    index = bar.model_box.findData(FAMILY_ITEM + "fake")
    assert index >= 0 and bar.model_box.itemText(index) == "Fake model…"
    shown = bar.model_box.currentIndex()
    bar.model_box.setCurrentIndex(index)
    with qtbot.waitSignal(bar.family_requested) as asked:
        bar.model_box.activated.emit(index)
    assert asked.args == ["fake"] and bar.model_box.currentIndex() == shown

    parent = QWidget()
    qtbot.addWidget(parent)
    picker = FamilyPicker(parent, FAKE, FAKE.asking.names(), "3 fakes here")
    assert picker.windowTitle() == "Fake model" and picker.folder_button is None
    assert picker.filter.placeholderText() == "Find a fake"
    qtbot.keyClicks(picker.filter, "two")
    assert picker.names(visible_only=True) == ["fake two"]
    with qtbot.waitSignal(picker.chosen) as chosen:
        picker.buttons.button(QDialogButtonBox.Ok).click()
    assert chosen.args == ["fake:fake two"]


@pytest.mark.slow
def test_the_window_asks_the_family_for_its_list(qtbot, monkeypatch, window: MainWindow) -> None:
    monkeypatch.setattr(registry, "FAMILIES", (*registry.FAMILIES, FAKE))
    window.settings.setValue("model/last_fake", "other")
    window.ask_family_model("fake")
    picker = window.family_picker
    qtbot.waitUntil(picker.isVisible, timeout=5000)
    assert picker.windowTitle() == "Fake model"
    assert picker.names() == ["fake one", "fake two", "other"]
    assert picker.note.text() == "3 fakes here"
    assert picker.list.currentItem().text() == "other"  # the last one chosen of this family
    picker.reject()
