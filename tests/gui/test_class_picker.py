"""The class picker of class-specific methods: every class of the model, the top predictions
first and marked, typing filters by any part of a name, and the class picked is the one the
map explains."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PySide6.QtCore import Qt

from tests.gui.conftest import GUI_CONFIG, running_window
from tests.gui.test_main_window import drop_and_wait
from vitexplorer.core.explain.analysis import Prediction
from vitexplorer.core.explain.maps import explanation_map
from vitexplorer.core.explain.method import MethodOptions
from vitexplorer.core.io.images import load_image
from vitexplorer.core.models.loading import load_model, save_checkpoint
from vitexplorer.core.models.preprocessing import preprocess
from vitexplorer.gui.main_window import MainWindow
from vitexplorer.gui.method_bar import ClassPicker

NAMES = ("tench", "goldfish", "great white shark", "crane", "golden retriever", "crane", "ox")
GOLDFISH = 1


def pick_typed(qtbot, picker: ClassPicker, typed: str, wanted: str) -> list[str]:
    """Type ``typed`` into the picker as a person does, then pick ``wanted`` from the list the
    typing filtered (arrow keys and Enter in the popup); returns that list."""
    picker.setFocus()
    picker.edit.selectAll()
    qtbot.keyClicks(picker.edit, typed)
    completer = picker.completer()
    popup = completer.popup()
    qtbot.waitUntil(popup.isVisible, timeout=3000)
    model = completer.completionModel()
    shown = [model.index(row, 0).data() for row in range(model.rowCount())]
    for _ in range(shown.index(wanted) + 1):
        qtbot.keyClick(popup, Qt.Key_Down)
    qtbot.keyClick(popup, Qt.Key_Return)
    return shown


def test_the_picker_lists_every_class_with_the_predictions_first(qtbot):
    picker = ClassPicker()
    qtbot.addWidget(picker)
    picker.set_classes(NAMES)
    picker.set_predictions([Prediction(4, "golden retriever", 0.92), Prediction(0, "tench", 0.05)])
    entries = [(picker.itemText(i), picker.itemData(i)) for i in range(picker.count())]
    assert entries[:3] == [
        ("the predicted class", None),
        ("golden retriever (predicted, 92.0%)", 4),
        ("tench (5.0%)", 0),
    ]
    rest = entries[3:]
    assert [index for _, index in rest] == [1, 2, 3, 5, 6]  # every other class, once, in order
    assert ("crane (class 3)", 3) in rest and ("crane (class 5)", 5) in rest  # told apart

    picker.setCurrentIndex(picker.findData(GOLDFISH))  # a choice survives another image's
    picker.set_predictions([Prediction(6, "ox", 0.6)])
    assert picker.currentData() == GOLDFISH and picker.currentText() == "goldfish"
    picker.set_classes(("a", "b"))  # another model: its own classes, the predicted one chosen
    assert picker.currentData() is None and picker.count() == 3


def test_typing_filters_by_any_part_of_a_name_and_the_pick_is_the_choice(qtbot):
    picker = ClassPicker()
    qtbot.addWidget(picker)
    picker.show()
    picker.set_classes(NAMES)
    picker.set_predictions([Prediction(4, "golden retriever", 0.92)])
    with qtbot.waitSignal(picker.currentIndexChanged):
        shown = pick_typed(qtbot, picker, "GOLD", "goldfish")
    assert shown == ["golden retriever (predicted, 92.0%)", "goldfish"]  # case ignored
    assert picker.currentData() == GOLDFISH

    shown = pick_typed(qtbot, picker, "ane", "crane (class 5)")  # inside a name, too
    assert shown == ["crane (class 3)", "crane (class 5)"]
    assert picker.currentData() == 5

    picker.edit.selectAll()  # words that name no class choose nothing, add nothing
    qtbot.keyClicks(picker.edit, "zebra")
    qtbot.keyClick(picker.edit, Qt.Key_Escape)
    picker.edit.editingFinished.emit()
    assert picker.currentData() == 5 and picker.currentText() == "crane (class 5)"
    assert picker.count() == 1 + len(NAMES)


@pytest.fixture
def named_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(1)
    model = load_model("small_vit", "none", "cpu", small_config=GUI_CONFIG)
    path = tmp_path_factory.mktemp("models") / "named.safetensors"
    save_checkpoint(path, model, {"class_names": list(NAMES)})
    return path


@pytest.fixture
def named_window(qtbot, tmp_path: Path, named_checkpoint: Path) -> Iterator[MainWindow]:
    yield from running_window(qtbot, tmp_path / "settings.ini", named_checkpoint)


def test_the_class_picked_by_typing_is_the_class_the_worker_explains(
    qtbot, named_window: MainWindow, photo: Path, named_checkpoint: Path
):
    window = named_window
    drop_and_wait(qtbot, window, photo)
    bar = window.method_bar
    picker = bar.target_box
    assert picker.count() == 1 + len(NAMES)  # every class of the model, not the top five
    top = window.analysis.predictions[0]
    assert picker.itemText(1) == f"{NAMES[top.index]} (predicted, {100 * top.probability:.1f}%)"
    session = window.model_session
    asked: list = []
    original = session.ask_map
    session.ask_map = lambda key, source, job: asked.append(job) or original(key, source, job)
    with qtbot.waitSignal(session.map_arrived, timeout=30000):
        bar.set_method("grad-attention")
    qtbot.wait(50)  # the predicted class's map drawn before the picker is used
    target = "goldfish" if top.index != GOLDFISH else "tench"
    wanted = GOLDFISH if top.index != GOLDFISH else 0
    entry = picker.itemText(picker.findData(wanted))
    with qtbot.waitSignal(session.map_arrived, timeout=30000):
        pick_typed(qtbot, picker, target[:4], entry)
    assert bar.choice().options.target_class == wanted
    assert asked[-1].method == "grad-attention"
    assert asked[-1].options.target_class == wanted  # the job asked explains the class picked
    qtbot.waitUntil(lambda: window.image_view.heat_values.size > 0, timeout=5000)
    model = load_model(str(named_checkpoint), device="cpu")
    batch = preprocess(load_image(photo), model.spec).unsqueeze(0)
    expected = explanation_map(
        "grad-attention", MethodOptions(target_class=wanted), model=model, batch=batch
    )
    predicted = explanation_map("grad-attention", MethodOptions(), model=model, batch=batch)
    assert not np.allclose(expected, predicted)  # the class changes the map: a real check
    np.testing.assert_allclose(window.image_view.heat_values, expected, rtol=1e-4, atol=1e-7)
    assert f"'{target}'" in window.image_view.title.text
