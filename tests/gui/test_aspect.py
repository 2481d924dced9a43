"""The whole image at its own aspect ratio in the real window: a rectangular grid everywhere
(views, clicks, relevance), and back to the centre crop."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtWidgets import QFileDialog

from tests.gui.test_main_window import click_patch, drop_and_wait
from tests.gui.test_methods import choose
from vitexplorer.core.models.preprocessing import aspect_grid
from vitexplorer.gui.main_window import MainWindow

pytestmark = pytest.mark.slow  # the whole file is left out of the quick suite (-m "not slow")


def test_whole_image_gives_a_rectangular_grid(
    qtbot, window: MainWindow, photo: Path, tmp_path: Path, monkeypatch
) -> None:
    drop_and_wait(qtbot, window, photo)  # 80x60: a 4:3 landscape
    assert window.analysis.spec.grid == (6, 6)
    expected = aspect_grid(80, 60, window.model.spec)
    assert expected == (5, 7)
    with qtbot.waitSignal(window.analysis_shown, timeout=30000):
        window.view_bar.aspect_box.setChecked(True)
    analysis = window.analysis
    assert analysis.spec.grid == expected and window.image_view.grid == expected
    assert analysis.attention.shape[-1] == 1 + 5 * 7
    assert np.allclose(analysis.attention.sum(-1), 1.0, atol=1e-4)
    rows, cols, _ = analysis.display.shape
    assert rows * 7 == cols * 5  # the picture in the grid's proportions, not the square crop
    assert window.model.spec.grid == (6, 6)  # the model itself is unchanged

    click_patch(qtbot, window, 4, 6)  # the bottom-right patch exists only in the rectangle
    assert window.selection.patch(analysis.spec) == (4, 6)
    assert window.image_view.heat_values.shape == (5, 7)

    bar = window.explanations.method_bar
    with qtbot.waitSignal(window.worker.map_ready, timeout=30000) as ready:
        choose(bar.method_box, "relevance")
    assert ready.args[0].matrix.shape == (1 + 5 * 7, 1 + 5 * 7) and ready.args[0].feed.whole
    qtbot.waitUntil(lambda: window.image_view.heat_values.shape == (5, 7), timeout=10000)

    # the export records how the input was made, and its map has the rectangular grid
    target = tmp_path / "photo.relevance.png"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), ""))
    window.export_action.trigger()
    card = json.loads((tmp_path / "photo.relevance.json").read_text())
    assert card["input"] == {"aspect": "keep", "grid": [5, 7]}
    assert np.load(tmp_path / "photo.relevance.npy").shape == (5, 7)

    with qtbot.waitSignal(window.analysis_shown, timeout=30000):
        window.view_bar.aspect_box.setChecked(False)
    assert window.analysis.spec.grid == (6, 6) and window.image_view.grid == (6, 6)
