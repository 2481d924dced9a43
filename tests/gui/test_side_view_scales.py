"""The side views' colour bars say what they are (issue 21): the attention matrix and the
Overview mark the uniform level 1/N where their rows are distributions over N tokens (never for
relevance, and in words where images have different N), and Lock scale holds the compared
model's view and the difference as it holds the explorer's, on one scale when they share one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog

from tests.gui.test_colour_scales import TOKENS, _assert_uniform_marked, _ticks
from tests.gui.test_compare_models import compare_with, drawn, tiny_checkpoint
from tests.gui.test_main_window import drop_and_wait
from tests.gui.test_methods import choose
from tests.gui.test_overview import show_overview
from vitexplorer.core.explain.rollout import rollout_layers, rollout_matrix
from vitexplorer.gui.main_window import MainWindow
from vitexplorer.gui.overview import IMAGES, LAYERS_HEADS
from vitexplorer.gui.views.common import (
    END_INSET,
    heat_levels,
    new_colorbar,
    set_colorbar_levels,
)

pytestmark = pytest.mark.slow  # the whole file is left out of the quick suite (-m "not slow")


@pytest.fixture(scope="session")
def model_b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another model of the window's shape (6x6 grid, three layers of three heads)."""
    return tiny_checkpoint(tmp_path_factory.mktemp("model_b"), "b.safetensors", seed=1)


def _no_uniform(view) -> None:
    assert view.uniform is None and not view.uniform_line.isVisible()
    assert not any("uniform" in text for _, text in _ticks(view))


def test_the_matrix_bar_marks_uniform_for_attention_and_rollout(qtbot, window: MainWindow, photo):
    drop_and_wait(qtbot, window, photo)
    view = window.matrix_view
    attention = window.analysis.attention
    np.testing.assert_allclose(view.matrix, attention[2].mean(0), rtol=1e-6)
    _assert_uniform_marked(view)  # rows of 37 tokens: 1/37, line and words
    window.view_bar.layer_spin.setValue(1)
    window.view_bar.head_box.setCurrentIndex(2)  # head 2
    np.testing.assert_array_equal(view.matrix, attention[0, 1])
    _assert_uniform_marked(view)

    choose(window.method_bar.method_box, "rollout")  # the matrix follows rollout: marked too
    expected = rollout_matrix(rollout_layers(attention, "mean", 0.0, 0, 1))
    np.testing.assert_allclose(view.matrix, expected, rtol=1e-5)
    low, high = view.colorbar.levels()
    assert (low, high) == pytest.approx(heat_levels(expected))
    _assert_uniform_marked(view)  # its rows sum to 1 too (the CLS column keeps the most)

    # under relevance the matrix is raw attention (its caption says so), and so still marked
    choose(window.method_bar.method_box, "relevance")
    assert window.matrix_panel.text().startswith("Raw attention, not relevance")
    np.testing.assert_allclose(view.matrix, attention[0, 1], rtol=1e-6)
    _assert_uniform_marked(view)


def test_the_overview_bar_marks_uniform_except_for_relevance(
    qtbot, window: MainWindow, photo, tmp_path, monkeypatch
):
    drop_and_wait(qtbot, window, photo)
    overview = show_overview(window, LAYERS_HEADS)
    grid = overview.view
    low, high = grid.colorbar.levels()
    attention = window.analysis.attention[:, :, 0, 1:]  # every layer and head, the CLS token
    assert (low, high) == pytest.approx((attention.min(), attention.max()), rel=1e-6)
    _assert_uniform_marked(grid)
    target = tmp_path / "grid.png"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), ""))
    overview.export_button.click()
    card = json.loads((tmp_path / "grid.json").read_text())
    assert card["uniform_level"] == pytest.approx(1 / TOKENS)

    second = tmp_path / "second.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 255, (48, 48, 3), np.uint8)).save(second)
    drop_and_wait(qtbot, window, second)
    overview.set_mode(IMAGES)  # attention of two images with the same 6x6 grid: one 1/37
    assert [len(row) for row in grid.tiles] == [2]
    _assert_uniform_marked(grid)
    with qtbot.waitSignal(window.worker.map_ready, timeout=30000):
        choose(window.method_bar.method_box, "relevance")
    qtbot.waitUntil(lambda: all(t.heat is not None for t in grid.tiles[0]), timeout=30000)
    _no_uniform(grid)
    assert "uniform" not in grid.title.text


def test_the_overview_says_when_images_have_different_uniform_levels(
    qtbot, window: MainWindow, photo, tmp_path
):
    tall = tmp_path / "tall.png"
    Image.fromarray(np.random.default_rng(4).integers(0, 255, (96, 40, 3), np.uint8)).save(tall)
    drop_and_wait(qtbot, window, tall)
    drop_and_wait(qtbot, window, photo)
    with qtbot.waitSignal(window.analysis_shown, timeout=30000):
        window.view_bar.aspect_box.setChecked(True)  # whole images: each its own grid
    overview = show_overview(window, IMAGES)
    grid = overview.view
    qtbot.waitUntil(lambda: all(t.heat is not None for t in grid.tiles[0]), timeout=30000)
    tokens = sorted(e.analysis.spec.num_tokens for e in window.session.entries.values())
    assert tokens[0] != tokens[1]  # 1 + 5x7 for the photo, another grid for the tall one
    _no_uniform(grid)  # no one line would be true for both
    words = f"uniform level not marked: it differs by image, 1/{tokens[1]} to 1/{tokens[0]}"
    assert words in grid.title.text and words in grid.scale_text


def test_lock_scale_holds_model_b_and_the_difference_across_a_layer_change(
    qtbot,
    window: MainWindow,
    photo: Path,
    model_b: Path,
    monkeypatch,
):
    models = compare_with(qtbot, window, model_b, monkeypatch, photo)
    a, b, difference = window.image_view, models.panel.view, models.panel.difference
    window.view_bar.layer_spin.setValue(1)
    drawn(qtbot, window)
    assert models.panel.same_scale_box.isChecked()
    locked = tuple(a.colorbar.levels())
    assert tuple(b.colorbar.levels()) == pytest.approx(locked)  # one scale for A and B
    locked_difference = tuple(difference.colorbar.levels())
    qtbot.mouseClick(window.view_bar.lock_box, Qt.LeftButton)
    window.view_bar.layer_spin.setValue(3)
    drawn(qtbot, window)
    b_analysis = models.analyses[window.session.current_key]
    np.testing.assert_allclose(b.heat_values, b_analysis.attention[2].mean(0)[0, 1:].reshape(6, 6))
    shared = heat_levels(np.concatenate([a.heat_values.ravel(), b.heat_values.ravel()]))
    assert not np.allclose(shared, locked)  # layer 3's own range differs from layer 1's
    for view in (a, b):  # both held on the locked scale, and their bars say so
        np.testing.assert_allclose(view.heat.levels, locked)
        np.testing.assert_allclose(view.colorbar.levels(), locked)
    assert any("clipped" in text for _, text in _ticks(b))  # layer 3 goes beyond it in B
    np.testing.assert_allclose(difference.heat.levels, locked_difference)
    np.testing.assert_allclose(difference.colorbar.levels(), locked_difference)
    _assert_uniform_marked(b)  # B's bar marks its 1/37 too, on the locked scale

    # each its own scale while locked: B keeps what it shows; one scale again: B on A's
    models.panel.same_scale_box.setChecked(False)
    np.testing.assert_allclose(b.colorbar.levels(), locked)
    window.view_bar.layer_spin.setValue(2)
    np.testing.assert_allclose(b.colorbar.levels(), locked)
    models.panel.same_scale_box.setChecked(True)
    np.testing.assert_allclose(b.colorbar.levels(), a.colorbar.levels())

    # unlocked: each map on the levels it asks for again, the two sharing one scale
    qtbot.mouseClick(window.view_bar.lock_box, Qt.LeftButton)
    shared = heat_levels(np.concatenate([a.heat_values.ravel(), b.heat_values.ravel()]))
    for view in (a, b):
        np.testing.assert_allclose(view.colorbar.levels(), shared, rtol=1e-6)
        assert not any("clipped" in text for _, text in _ticks(view))


def test_locked_before_comparing_b_takes_a_locked_scale(
    qtbot,
    window: MainWindow,
    photo: Path,
    model_b: Path,
    monkeypatch,
):
    drop_and_wait(qtbot, window, photo)
    locked = tuple(window.image_view.colorbar.levels())
    qtbot.mouseClick(window.view_bar.lock_box, Qt.LeftButton)
    models = compare_with(qtbot, window, model_b, monkeypatch)
    b = models.panel.view
    assert models.panel.same_scale_box.isChecked()
    for view in (window.image_view, b):  # "A and B on one colour scale" holds: A's locked one
        np.testing.assert_allclose(view.heat.levels, locked)
        np.testing.assert_allclose(view.colorbar.levels(), locked)


def test_same_scale_under_lock_puts_the_compared_method_on_the_locked_scale(
    qtbot, window: MainWindow, photo
):
    drop_and_wait(qtbot, window, photo)
    left, right = window.image_view, window.compare_view
    locked = tuple(left.colorbar.levels())
    qtbot.mouseClick(window.view_bar.lock_box, Qt.LeftButton)
    window.method_bar.compare_box.setChecked(True)  # rollout beside, each its own scale
    assert window.compare_bar.choice().method == "rollout"
    own = tuple(right.colorbar.levels())
    np.testing.assert_allclose(own, heat_levels(right.heat_values), rtol=1e-6)
    assert not np.allclose(own, locked)
    window.method_bar.same_scale_box.setChecked(True)  # one scale: the locked one, in both
    for view in (left, right):
        np.testing.assert_allclose(view.heat.levels, locked)
        np.testing.assert_allclose(view.colorbar.levels(), locked)
    window.view_bar.layer_spin.setValue(1)
    np.testing.assert_allclose(right.colorbar.levels(), locked)


def test_uniform_words_near_a_clipped_end_are_kept_clear_of_it(qtbot):
    """On a locked scale the uniform level can lie just above the end that says "clipped": the
    two labels overlapped (read "uniform 1/37" over "clipped ▼"). Its words now sit just clear of
    that end's, its line still at the level; with nothing clipped, at the level itself."""
    bar = new_colorbar(width=12)
    owner = type("Owner", (), {"colorbar": bar})  # _ticks reads a view's colorbar
    set_colorbar_levels(bar, (0.0, 1.0), uniform=(0.02, "uniform 1/50"))
    assert (pytest.approx(0.02), "uniform\n1/50") in _ticks(owner)
    set_colorbar_levels(bar, (0.0, 1.0), uniform=(0.02, "uniform 1/50"), clipped=(True, False))
    where = {text: value for value, text in _ticks(owner)}
    line = 2 * END_INSET  # a line of words, as a share of the bar
    assert where["clipped ▼"] == pytest.approx(line / 2)  # one line, just inside the end
    assert where["uniform\n1/50"] - line >= where["clipped ▼"] + line / 2 - 1e-9  # no overlap
    assert where["uniform\n1/50"] < 0.2  # still beside the bottom of the bar, near its line
    set_colorbar_levels(bar, (0.0, 1.0), uniform=(0.98, "uniform 1/50"), clipped=(False, True))
    where = {text: value for value, text in _ticks(owner)}
    assert where["uniform\n1/50"] + line <= where["clipped ▲"] - line / 2 + 1e-9
