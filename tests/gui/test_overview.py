"""The Overview dock: every layer x head for the selected token, one method over every open
image, one stated colour scale, exported as one figure."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from PySide6.QtWidgets import QApplication, QFileDialog

from tests.gui.test_main_window import click_patch, drop_and_wait
from tests.gui.test_methods import choose
from vitexplorer.core.explain.method import MethodOptions
from vitexplorer.core.explain.rollout import rollout_map
from vitexplorer.gui.main_window import MainWindow
from vitexplorer.gui.overview import IMAGES, LAYERS_HEADS

pytestmark = pytest.mark.slow  # the whole file is left out of the quick suite (-m "not slow")


def show_overview(window: MainWindow, mode: str):
    dock = next(d for d in window.docks if d.objectName() == "overview")
    dock.raise_()
    window.overview.set_mode(mode)
    QApplication.processEvents()
    assert window.overview.on_screen
    return window.overview


def test_every_layer_and_head_for_the_selected_token(qtbot, window: MainWindow, photo):
    drop_and_wait(qtbot, window, photo)
    overview = show_overview(window, LAYERS_HEADS)
    click_patch(qtbot, window, 4, 1)  # token 1 + 4 * 6 + 1 = 26
    token = 26
    attention = window.analysis.attention  # (layers, heads, tokens, tokens)
    layers, heads = attention.shape[:2]
    values = overview.view.values()
    assert values.shape == (layers, heads, 6, 6)
    for layer in range(layers):
        for head in range(heads):
            np.testing.assert_allclose(
                values[layer, head], attention[layer, head, token, 1:].reshape(6, 6), rtol=1e-6
            )
    low, high = attention[:, :, token, 1:].min(), attention[:, :, token, 1:].max()
    assert overview.view.levels == (float(low), float(high))
    assert tuple(overview.view.colorbar.levels()) == (float(low), float(high))
    title = overview.view.title.text
    assert "patch row 5, col 2 (token 27)" in title and "every layer × head" in title
    assert f"one colour scale for all {layers * heads} maps: {low:.3g} to {high:.3g}" in title
    labels = [item.text for item in overview.view.cells.items if hasattr(item, "text")]
    assert labels == [
        *(f"head {h}" for h in range(1, heads + 1)),
        *(f"layer {layer}" for layer in range(1, layers + 1)),
    ]
    boxes = list(overview.view.boxes)
    window.select_token(0)  # the grid follows the selection, its tiles drawn again in place
    np.testing.assert_allclose(
        overview.view.values()[2, 1], attention[2, 1, 0, 1:].reshape(6, 6), rtol=1e-6
    )
    heat = overview.view._items[2 * heads + 1][1]  # layer 3, head 2: what the tile draws
    np.testing.assert_allclose(heat.image, attention[2, 1, 0, 1:].reshape(6, 6), rtol=1e-6)
    low, high = attention[:, :, 0, 1:].min(), attention[:, :, 0, 1:].max()
    np.testing.assert_allclose(heat.levels, (low, high), rtol=1e-6)
    assert all(a is b for a, b in zip(boxes, overview.view.boxes, strict=True))


def test_one_method_over_every_open_image(qtbot, window: MainWindow, photo, tmp_path):
    other = tmp_path / "other.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (50, 70, 3), np.uint8)).save(other)
    drop_and_wait(qtbot, window, photo)
    drop_and_wait(qtbot, window, other)
    choose(window.method_bar.method_box, "rollout")
    overview = show_overview(window, IMAGES)
    click_patch(qtbot, window, 1, 2)
    token = 1 + 6 + 2
    entries = list(window.session.entries.values())
    assert [e.name for e in entries] == ["photo.png", "other.png"]
    values = overview.view.values()
    assert values.shape == (1, 2, 6, 6)  # side by side
    for index, entry in enumerate(entries):
        expected = rollout_map(entry.analysis.attention, token, (6, 6), 1)
        np.testing.assert_allclose(values[0, index], expected, rtol=1e-5)
    assert not np.allclose(values[0, 0], values[0, 1])
    assert overview.view.levels == (float(values.min()), float(values.max()))
    assert "Rollout" in overview.view.title.text and "every open image" in overview.view.title.text
    captions = [t.caption for row in overview.view.tiles for t in row]
    assert captions == ["photo.png", "other.png"]


def test_the_overview_exports_as_one_figure(
    qtbot, window: MainWindow, photo, tmp_path, monkeypatch
):
    drop_and_wait(qtbot, window, photo)
    overview = show_overview(window, LAYERS_HEADS)
    target = tmp_path / "grid.png"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), ""))
    size = overview.view.size()
    on_screen = overview.view.title.text
    overview.export_button.click()
    names = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("grid"))
    assert names == ["grid.json", "grid.npy", "grid.png", "grid.svg"]
    with Image.open(target) as png:
        assert png.width >= 2 * size.width() and png.height >= 2 * size.height()
    np.testing.assert_array_equal(np.load(tmp_path / "grid.npy"), overview.view.values())
    card = json.loads((tmp_path / "grid.json").read_text())
    assert card["title"] == "Raw attention of the CLS token (token 1) · every layer × head"
    assert card["subtitle"] == f"{window.model.spec.display_name} · photo.png"
    assert card["colour_scale"] == list(overview.view.levels)
    assert card["map"]["axes"][:2] == ["axis 0: layers 1..3", "axis 1: heads 1..3"]
    svg = (tmp_path / "grid.svg").read_text()
    assert "every layer × head" in svg and "photo.png" in svg
    assert overview.view.title.text == on_screen
    assert "Exported 4 files" in window.statusBar().currentMessage()


def test_relevance_over_every_image_names_each_image_class(
    qtbot, window: MainWindow, photo, tmp_path
):
    other = tmp_path / "other.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (48, 48, 3), np.uint8)).save(other)
    drop_and_wait(qtbot, window, other)
    drop_and_wait(qtbot, window, photo)  # the current image; other.png's map is asked by the grid
    choose(window.method_bar.method_box, "relevance")
    overview = show_overview(window, IMAGES)
    qtbot.waitUntil(
        lambda: all(t.heat is not None for row in overview.view.tiles for t in row), timeout=30000
    )
    maps = window.explanations.maps
    captions = []
    for index, (key, entry) in enumerate(window.session.entries.items()):
        predicted = entry.analysis.predictions[0]
        options = MethodOptions(target_class=predicted.index, token=window.selection.token)
        expected = maps.map(key, entry.analysis, "relevance", options)
        assert expected is not None and expected.shape == (6, 6)
        np.testing.assert_array_equal(overview.view.values()[0, index], expected)
        captions.append(f"{entry.name} · {predicted.name}")
    assert [t.caption for row in overview.view.tiles for t in row] == captions
    assert "Relevance for each image's predicted class" in overview.view.title.text
