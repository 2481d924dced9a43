"""File > Export view: a figure at the chosen resolution, titled as the command line's figures
(method, layer, head, token, model and image), SVG where the toolkit can draw one, and a card
without exception text."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from PySide6.QtWidgets import QFileDialog

from tests.gui.test_main_window import click_patch, drop_and_wait
from tests.gui.test_methods import choose
from vitexplorer.gui.export import SCALES
from vitexplorer.gui.main_window import MainWindow

pytestmark = pytest.mark.slow  # the whole file is left out of the quick suite (-m "not slow")


def export(window: MainWindow, monkeypatch, target) -> dict:
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), ""))
    window.export_action.trigger()
    return json.loads(target.with_suffix(".json").read_text())


def test_the_exported_figure_is_titled_and_larger_than_the_view(
    qtbot, window: MainWindow, photo, tmp_path, monkeypatch
):
    drop_and_wait(qtbot, window, photo)
    window.select_layer(1)
    window.select_head(2)
    click_patch(qtbot, window, 2, 3)  # token 1 + 2 * 6 + 3 = 16, numbered 17
    on_screen = window.image_view.title.text
    view_size = window.image_view.size()

    card = export(window, monkeypatch, tmp_path / "photo.attention.png")
    title = card["title"]
    assert title == "attention · layer 2 of 3, head 3 of 3 · patch row 3, col 4", title
    assert card["subtitle"] == f"{window.model.spec.display_name} · photo.png"
    assert window.image_view.title.text == on_screen  # the screen's title comes back
    with Image.open(tmp_path / "photo.attention.png") as png:
        assert png.width >= 2 * view_size.width() and png.height >= 2 * view_size.height()
        assert card["files"]["picture_size"] == [png.width, png.height]
    svg = (tmp_path / "photo.attention.svg").read_text()
    assert "<svg" in svg[:500]
    assert "layer 2 of 3, head 3 of 3" in svg and "photo.png" in svg  # the title, as text
    text = json.dumps(card)
    assert "Traceback" not in text and "Error" not in text and "exception" not in text.lower()
    np.testing.assert_array_equal(
        np.load(tmp_path / "photo.attention.npy"), window.image_view.heat_values
    )

    # a larger resolution chosen in File > Export resolution
    four = next(a for a in window.export_scale_menu.actions() if a.data() == 4)
    four.trigger()
    assert window.settings.value("export/scale") in (4, "4")
    choose(window.method_bar.method_box, "rollout")
    card = export(window, monkeypatch, tmp_path / "photo.rollout.png")
    assert card["title"] == "rollout · mean of heads, layers 1 to 3 · patch row 3, col 4"
    with Image.open(tmp_path / "photo.rollout.png") as png:
        assert png.width >= 4 * view_size.width()
    assert card["files"]["picture_scale"] == 4
    assert SCALES[0] >= 2


def test_no_svg_is_said_in_one_plain_line(qtbot, window: MainWindow, photo, tmp_path, monkeypatch):
    """Where neither pyqtgraph nor Qt can draw an SVG the card says so without exception text."""
    import sys

    import pyqtgraph.exporters

    class Broken:  # as pyqtgraph 0.14's exporter fails with Qt 6.10+ (its issue #3485)
        def __init__(self, scene) -> None:
            raise ValueError("not enough values to unpack (expected 2, got 1)")

    drop_and_wait(qtbot, window, photo)
    monkeypatch.setattr(pyqtgraph.exporters, "SVGExporter", Broken)
    monkeypatch.setitem(sys.modules, "PySide6.QtSvg", None)  # no QtSvg: its import fails
    card = export(window, monkeypatch, tmp_path / "photo.attention.png")
    assert card["files"]["vector"] is None
    note = card["files"]["vector_note"]
    assert note.startswith("no SVG: ") and "\n" not in note
    assert "unpack" not in note and "Error" not in note
    assert not (tmp_path / "photo.attention.svg").exists()
    assert (tmp_path / "photo.attention.png").exists()
