"""Compare with another model (issue 13, the app): a second model beside the explorer's on the
same image, token, method, layer and head, chosen and loaded as a person does it, its maps on
one colour scale with the explorer's, the difference B - A and the head table."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtWidgets import QApplication, QFileDialog

from tests.gui.conftest import GUI_CONFIG, running_window
from tests.gui.test_main_window import click_patch, drop_and_wait
from tests.gui.test_methods import choose
from vitexplorer.core.explain.analysis import analyze_image
from vitexplorer.core.explain.model_compare import compare_maps, counterpart_token, head_changes
from vitexplorer.core.explain.relevance import relevance_map
from vitexplorer.core.explain.tokens import token_for_patch
from vitexplorer.core.io.images import load_image
from vitexplorer.core.models.loading import load_model, save_checkpoint
from vitexplorer.core.models.preprocessing import aspect_grid, preprocess
from vitexplorer.gui.main_window import MainWindow
from vitexplorer.gui.model_compare_view import BEFORE, FILE, MODEL, ModelCompare
from vitexplorer.gui.model_labels import request_for_base
from vitexplorer.gui.views.common import heat_levels, shared_levels
from vitexplorer.gui.workers import ModelRequest

pytestmark = pytest.mark.slow  # the whole file is left out of the quick suite (-m "not slow")


def tiny_checkpoint(folder: Path, name: str, seed: int, patch: int = 8, extra=None) -> Path:
    """A tiny small ViT like the window's (48 px, three layers of three heads), another seed;
    its qkv weights drawn wide so that its attention differs clearly from the window's."""
    config = GUI_CONFIG.__class__(**{**GUI_CONFIG.__dict__, "patch_size": patch})
    torch.manual_seed(seed)
    model = load_model("small_vit", "none", "cpu", small_config=config)
    for block in model.module.blocks:
        torch.nn.init.normal_(block.attn.qkv.weight, std=0.5)
    path = folder / name
    names = {"class_names": [f"kind {i}" for i in range(GUI_CONFIG.num_classes)]}
    save_checkpoint(path, model, {**names, **(extra or {})})
    return path


@pytest.fixture(scope="session")
def other(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another model of the window's shape: a 6x6 grid, three layers of three heads."""
    return tiny_checkpoint(tmp_path_factory.mktemp("other"), "other.safetensors", seed=1)


@pytest.fixture(scope="session")
def coarse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model with 16 px patches: a 3x3 grid where the window's model has 6x6."""
    return tiny_checkpoint(tmp_path_factory.mktemp("coarse"), "coarse.safetensors", 2, patch=16)


@pytest.fixture
def window(qtbot, tmp_path: Path, checkpoint: Path) -> Iterator[MainWindow]:
    """The window of tests/gui/conftest.py; on closing, the compared model's worker threads
    must have ended too."""
    runner = running_window(qtbot, tmp_path / "settings.ini", checkpoint)
    window = next(runner)
    yield window
    threads = window.explanations.models.threads()
    with pytest.raises(StopIteration):
        next(runner)
    assert all(t.thread.isFinished() for t in threads), "a compared model's worker outlived it"


def models_of(window: MainWindow) -> ModelCompare:
    return window.explanations.models


def compare_with(
    qtbot,
    window: MainWindow,
    path: Path,
    monkeypatch,
    photo: Path | None = None,
) -> ModelCompare:
    """``photo`` opened (if given); Compare on, "another model", and the model box's file
    entry, as a person picks it (the file dialog answers ``path``); then wait until both views
    and the difference show."""
    if photo is not None:
        drop_and_wait(qtbot, window, photo)
    models = models_of(window)
    window.method_bar.compare_box.setChecked(True)
    choose(models.mode_box, MODEL)
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(path), ""))
    with qtbot.waitSignal(models.model_ready, timeout=30000):
        pick(models.panel.model_box, FILE)
    drawn(qtbot, window)
    return models


def pick(box, data) -> None:
    """Choose an entry of a box that acts on ``activated`` (a person's choice)."""
    index = box.findData(data)
    assert index >= 0, data
    box.setCurrentIndex(index)
    box.activated.emit(index)


def drawn(qtbot, window: MainWindow) -> None:
    panel = models_of(window).panel
    qtbot.waitUntil(
        lambda: panel.view.heat_values.size > 0 and panel.difference.heat_values.size > 0,
        timeout=30000,
    )


def compared_analysis(path: Path, photo: Path):
    """The compared model's analysis of ``photo``, made here, independently of the app."""
    return analyze_image(load_model(str(path), device="cpu"), load_image(photo))


def test_a_model_compared_with_itself_differs_by_exactly_zero(
    qtbot, window: MainWindow, photo: Path, checkpoint: Path, monkeypatch
):
    compare_with(qtbot, window, checkpoint, monkeypatch, photo)
    panel = models_of(window).panel
    for method in ("attention", "rollout"):
        choose(window.method_bar.method_box, method)
        difference = panel.difference.heat.image
        assert difference.shape == (6, 6)
        assert np.all(difference == 0), method
        assert "no difference" in panel.difference.title.text
        np.testing.assert_array_equal(panel.view.heat_values, window.image_view.heat_values)
    assert panel.note.text() == ""  # one grid, one prefix token: nothing to say
    assert window.image_view.title.text.startswith("A · ")
    assert panel.view.title.text.startswith("B · tiny.safetensors — ")


def test_both_views_share_one_colour_scale_unless_told_otherwise(
    qtbot, window: MainWindow, photo: Path, other: Path, monkeypatch
):
    compare_with(qtbot, window, other, monkeypatch, photo)
    panel = models_of(window).panel
    a, b = window.image_view, panel.view
    assert panel.same_scale_box.isChecked(), "one colour scale is the default"
    assert not np.allclose(a.heat_values, b.heat_values)
    expected = shared_levels([a.heat_values, b.heat_values])
    np.testing.assert_allclose(a.heat.levels, expected)
    np.testing.assert_allclose(b.heat.levels, expected)
    assert a.colorbar.levels() == b.colorbar.levels()
    assert not window.method_bar.same_scale_box.isVisible()  # the panel's own setting rules

    panel.same_scale_box.setChecked(False)
    np.testing.assert_allclose(a.heat.levels, heat_levels(a.heat_values))
    np.testing.assert_allclose(b.heat.levels, heat_levels(b.heat_values))
    assert not np.allclose(a.heat.levels, b.heat.levels)

    panel.same_scale_box.setChecked(True)  # and a new layer and head keep one scale
    window.view_bar.layer_spin.setValue(2)
    window.view_bar.head_box.setCurrentIndex(3)  # head 3
    np.testing.assert_allclose(a.heat.levels, b.heat.levels)
    b_analysis = models_of(window).analyses[window.session.current_key]
    np.testing.assert_allclose(b.heat_values, b_analysis.attention[1, 2, 0, 1:].reshape(6, 6))
    assert "layer 2, head 3" in b.title.text and "layer 2, head 3" in a.title.text


def test_the_difference_is_b_minus_a_on_a_diverging_scale_symmetric_around_zero(
    qtbot, window: MainWindow, photo: Path, other: Path, monkeypatch
):
    models = compare_with(qtbot, window, other, monkeypatch, photo)
    panel = models.panel
    a, b = window.image_view.heat_values, panel.view.heat_values
    np.testing.assert_allclose(panel.difference.heat.image, b - a, atol=1e-7)
    low, high = panel.difference.heat.levels
    assert low == pytest.approx(-high) and high == pytest.approx(np.abs(b - a).max())
    colours = panel.difference.heat.getColorMap().getLookupTable(nPts=3)
    assert colours[1].min() > 200, "zero is white-ish on the diverging map"
    assert "B − A" in panel.difference.title.text
    assert "other.safetensors minus" in panel.difference.title.text

    panel.swap_button.click()  # A and B turn round: the explorer's model is B now
    assert window.image_view.title.text.startswith("B · ")
    assert panel.view.title.text.startswith("A · other.safetensors")
    np.testing.assert_allclose(panel.difference.heat.image, a - b, atol=1e-7)


def test_the_head_table_lists_head_changes_of_the_current_image(
    qtbot, window: MainWindow, photo: Path, other: Path, monkeypatch
):
    compare_with(qtbot, window, other, monkeypatch, photo)
    table = models_of(window).panel.heads
    statistics_a = window.analysis.statistics
    statistics_b = compared_analysis(other, photo).statistics
    for statistic in ("distance", "entropy", "prefix_share"):
        choose(table.sort_box, statistic)
        expected = head_changes(statistics_a, statistics_b, statistic)
        rows = table.table.rowCount()
        assert rows == 3 * 3 == len(expected)
        shown = [[table.table.item(r, c).data(Qt.UserRole) for c in range(5)] for r in range(rows)]
        assert [(r[0], r[1]) for r in shown] == [(c.layer + 1, c.head + 1) for c in expected]
        k = ("distance", "entropy", "prefix_share").index(statistic)
        for row, change in zip(shown, expected, strict=True):
            assert row[2] == pytest.approx(change.change(statistic), abs=1e-5)
            assert row[3:5] == pytest.approx([change.a[k], change.b[k]], abs=1e-5)
        header = table.table.horizontalHeaderItem(2).text()
        assert "B − A" in header
    assert "photo.png" in table.caption.text()


def test_models_with_different_grids_are_compared_resampled_to_the_image(
    qtbot, window: MainWindow, photo: Path, coarse: Path, monkeypatch
):
    models = compare_with(qtbot, window, coarse, monkeypatch, photo)
    panel = models.panel
    assert panel.note.isVisible()
    note = panel.note.text()
    assert "6x6" in note and "3x3" in note and "resampled to the image" in note
    a, b = window.image_view.heat_values, panel.view.heat_values
    assert a.shape == (6, 6) and b.shape == (3, 3)
    size = window.analysis.display.shape[:2]
    expected = compare_maps(a, b, size).difference
    assert panel.difference.heat.image.shape == size
    np.testing.assert_allclose(panel.difference.heat.image, expected, atol=1e-6)
    assert "resampled to the image" in panel.difference.title.text

    click_patch(qtbot, window, 4, 1)  # a patch of A: B's query is the patch under its centre
    token_b, token_note = counterpart_token(token_for_patch(4, 1, (6, 6), 1), *specs(window))
    assert models.analyses[window.session.current_key].spec.grid == (3, 3)
    assert panel.view.selection.isVisible()
    assert f"token {token_b + 1})" in panel.view.title.text
    assert token_note and token_note in panel.note.text()


def specs(window: MainWindow):
    models = models_of(window)
    return window.analysis.spec, models.analyses[window.session.current_key].spec


def click_view(qtbot, view, row: int, col: int) -> None:
    scene = view.view.mapViewToScene(QPointF(col + 0.5, row + 0.5))
    pos = view.mapFromScene(scene)
    qtbot.mouseClick(view.viewport(), Qt.LeftButton, pos=QPoint(pos.x(), pos.y()))


def test_clicking_a_patch_in_b_selects_the_same_place_in_a(
    qtbot, window: MainWindow, photo: Path, coarse: Path, monkeypatch
):
    compare_with(qtbot, window, coarse, monkeypatch, photo)
    panel = models_of(window).panel
    spec_a, spec_b = specs(window)
    click_view(qtbot, panel.view, 2, 0)  # B's bottom-left patch of 3x3
    expected, _ = counterpart_token(token_for_patch(2, 0, (3, 3), 1), spec_b, spec_a)
    assert window.selection.token == expected == token_for_patch(4, 0, (6, 6), 1)
    assert window.view_bar.layer_spin.value() == 3  # unchanged: the last, where it opens
    rect = window.image_view.selection.rect()
    assert (rect.y(), rect.x()) == (4, 0)
    # B's view shows B's patch under the centre of A's new query: its own bottom-left one
    b_rect = panel.view.selection.rect()
    assert (b_rect.y(), b_rect.x()) == (2, 0)

    panel.tabs.setCurrentWidget(panel.difference)  # the difference is drawn over A's image
    QApplication.processEvents()
    click_view(qtbot, panel.difference, 1, 5)
    assert window.selection.token == token_for_patch(1, 5, (6, 6), 1)


def test_a_model_that_fails_to_load_is_one_line_and_a_keeps_working(
    qtbot, window: MainWindow, photo: Path, other: Path, tmp_path: Path, monkeypatch
):
    drop_and_wait(qtbot, window, photo)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{not json at all}\n" * 3)
    models = models_of(window)
    window.method_bar.compare_box.setChecked(True)
    choose(models.mode_box, MODEL)
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(broken), ""))
    with qtbot.waitSignal(models.model_failed, timeout=30000) as failed:
        pick(models.panel.model_box, FILE)
    line = failed.args[0]
    assert line.startswith("Could not load broken.safetensors: ") and "\n" not in line
    assert models.panel.status.full_text == line
    assert models.panel.status.isVisible() and models.panel.status.text()  # shown, elided
    assert models.info is None
    assert window.message_box is None or not window.message_box.isVisible()  # no dialog
    before = window.image_view.heat_values.copy()
    click_patch(qtbot, window, 2, 3)  # model A works as ever
    assert window.selection.token == token_for_patch(2, 3, (6, 6), 1)
    assert not np.array_equal(before, window.image_view.heat_values)
    assert window.image_view.heat_values.shape == (6, 6)

    compare_with(qtbot, window, other, monkeypatch)  # a good model, then a broken one again
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(broken), ""))
    with qtbot.waitSignal(models.model_failed, timeout=30000) as failed:
        pick(models.panel.model_box, FILE)
    assert failed.args[0].endswith("; other.safetensors stays")
    assert models.panel.model_box.currentText() == "other.safetensors"
    click_patch(qtbot, window, 1, 1)  # both views follow: the model that stays still works
    assert panel_token(window) == token_for_patch(1, 1, (6, 6), 1)


def panel_token(window: MainWindow) -> int:
    rect = models_of(window).panel.view.selection.rect()
    return token_for_patch(int(rect.y()), int(rect.x()), (6, 6), 1)


def test_the_model_before_fine_tuning_is_found_beside_the_checkpoint(
    qtbot, tmp_path: Path, photo: Path
):
    base = tiny_checkpoint(tmp_path, "base.safetensors", seed=3)
    spec = load_model(str(base), device="cpu").spec
    record = {"finetune": {"base": f"{spec.display_name}, file base.safetensors"}}
    tuned = tiny_checkpoint(tmp_path, "tuned.safetensors", seed=4, extra=record)
    runner = running_window(qtbot, tmp_path / "s.ini", tuned)
    window = next(runner)
    try:
        drop_and_wait(qtbot, window, photo)
        models = models_of(window)
        window.method_bar.compare_box.setChecked(True)
        choose(models.mode_box, MODEL)
        box = models.panel.model_box
        item = box.model().item(box.findData(BEFORE))
        assert item.isEnabled() and item.text() == "Before fine-tuning: base.safetensors"
        with qtbot.waitSignal(models.model_ready, timeout=30000) as ready:
            pick(box, BEFORE)
        assert Path(ready.args[0].request.name) == base
        drawn(qtbot, window)
        # the model before is A, the explorer's (after) B: the difference is after minus before
        assert window.image_view.title.text.startswith("B (after) · tuned.safetensors")
        assert models.panel.view.title.text.startswith("A (before) · base.safetensors")
        assert "after minus before" in models.panel.difference.title.text
        assert "model before fine-tuning" in models.panel.status.full_text
        a, b = models.panel.view.heat_values, window.image_view.heat_values
        np.testing.assert_allclose(models.panel.difference.heat.image, b - a, atol=1e-7)

        # the explorer switches to another model: nothing of the old comparison stays
        seen = []  # the compared views the moment the explorer has its new model
        window.model_changed.connect(
            lambda _info: seen.append(
                (
                    models.panel.view.title.text,
                    models.panel.view.heat_values.size,
                    models.panel.difference.heat_values.size,
                    models.panel.heads.table.rowCount(),
                )
            )
        )
        with qtbot.waitSignal(window.analysis_shown, timeout=30000):
            window.request_model(ModelRequest(str(base)))
        assert seen == [("Waiting for the explorer's analysis…", 0, 0, 0)]
        drawn(qtbot, window)
        assert not item.isEnabled()  # the base model itself was fine-tuned from nothing known
        # the compared model keeps its side (A) when the explorer's model changes; neither is
        # now the other's base, so no "before" or "after" is said
        assert window.image_view.title.text.startswith("B · base.safetensors")
        assert models.panel.view.title.text.startswith("A · base.safetensors")
        assert "before" not in models.panel.difference.title.text
        assert np.all(models.panel.difference.heat.image == 0)

        models.panel.close_button.click()  # closing B empties its views
        assert models.info is None and models.panel.view.heat_values.size == 0
        assert models.panel.difference.heat_values.size == 0
        assert "No model to compare with" in models.panel.view.title.text
        assert window.image_view.title.text.startswith("A · base.safetensors")
    finally:
        threads = models_of(window).threads()
        with pytest.raises(StopIteration):
            next(runner)
        assert all(t.thread.isFinished() for t in threads)


def test_bases_are_found_by_what_a_checkpoint_names(tmp_path: Path):
    (tmp_path / "mine.safetensors").write_bytes(b"")
    assert request_for_base("Demo ViT (CIFAR-10), trained on CIFAR-10", tmp_path).name == "demo"
    request = request_for_base("ViT-B/16, ViT-B/16 ImageNet-1k weights (IMAGENET1K_V1)", tmp_path)
    assert (request.name, request.weights) == ("vit_b_16", "default")
    request = request_for_base("Small ViT (3x48, /8), file mine.safetensors", tmp_path)
    assert request.name == str(tmp_path / "mine.safetensors")
    request = request_for_base("ViT-B/32, file mine.safetensors", tmp_path)
    assert (request.name, request.weights) == ("vit_b_32", str(tmp_path / "mine.safetensors"))
    assert request_for_base("Small ViT (3x48, /8), file gone.safetensors", tmp_path) is None
    assert request_for_base("Small ViT (3x48, /8), random initialisation", tmp_path) is None
    assert request_for_base("timm: vit_tiny, pretrained", tmp_path) is None


def test_a_model_with_no_known_base_says_why(qtbot, window: MainWindow):
    models = models_of(window)
    window.method_bar.compare_box.setChecked(True)
    choose(models.mode_box, MODEL)
    box = models.panel.model_box
    item = box.model().item(box.findData(BEFORE))
    assert not item.isEnabled()
    assert "no model before fine-tuning" in item.toolTip()
    assert window.compare_bar.isHidden() and window.compare_view.isHidden()
    choose(models.mode_box, "method")  # and back: the method comparison as it was
    assert not window.compare_bar.isHidden() and models.panel.isHidden()
    assert window.method_bar.same_scale_box.isVisible()


def test_class_relevance_of_both_models_comes_from_their_workers(
    qtbot, window: MainWindow, photo: Path, other: Path, monkeypatch
):
    models = compare_with(qtbot, window, other, monkeypatch, photo)
    panel = models.panel
    model = load_model(str(other), device="cpu")
    batch = preprocess(load_image(photo), model.spec).unsqueeze(0)
    b_analysis = models.analyses[window.session.current_key]
    choose(window.method_bar.method_box, "relevance")
    drawn(qtbot, window)
    qtbot.waitUntil(lambda: window.image_view.heat_values.size > 0, timeout=30000)
    predicted = b_analysis.predictions[0].index  # B explains its own predicted class
    expected = relevance_map(model, batch, predicted).map
    np.testing.assert_allclose(panel.view.heat_values, expected, rtol=1e-4, atol=1e-7)
    assert "(predicted)" in panel.view.title.text

    chosen = window.analysis.predictions[2].index  # a class of A's: the same class in B
    choose(window.method_bar.target_box, chosen)
    qtbot.waitUntil(lambda: "computing" not in panel.view.title.text, timeout=30000)
    qtbot.waitUntil(lambda: "computing" not in window.image_view.title.text, timeout=30000)
    expected = relevance_map(model, batch, chosen).map
    np.testing.assert_allclose(panel.view.heat_values, expected, rtol=1e-4, atol=1e-7)
    a, b = window.image_view.heat_values, panel.view.heat_values
    np.testing.assert_allclose(panel.difference.heat.image, b - a, atol=1e-7)


def test_the_whole_image_is_compared_on_both_models_grids(
    qtbot, window: MainWindow, photo: Path, coarse: Path, monkeypatch
):
    models = compare_with(qtbot, window, coarse, monkeypatch, photo)
    panel = models.panel
    spec_a, spec_b = specs(window)
    with qtbot.waitSignal(window.analysis_shown, timeout=30000):
        window.view_bar.aspect_box.setChecked(True)
    grid_a, grid_b = aspect_grid(80, 60, spec_a), aspect_grid(80, 60, spec_b)
    assert grid_a != (6, 6)
    qtbot.waitUntil(lambda: panel.view.heat_values.shape == grid_b, timeout=30000)
    drawn(qtbot, window)
    assert window.image_view.heat_values.shape == grid_a
    assert panel.difference.heat.image.shape == window.analysis.display.shape[:2]
    assert "whole image" in panel.view.title.text
    assert "crop" not in panel.note.text()  # both saw the whole image


def test_a_model_fine_tuned_here_is_compared_with_the_model_it_started_from(
    qtbot, window: MainWindow, photo: Path, checkpoint: Path, other: Path
):
    drop_and_wait(qtbot, window, photo)
    tuned = load_model(str(other), device="cpu")  # stands for what the Train tab hands over
    with qtbot.waitSignal(window.analysis_shown, timeout=30000):
        window.worker.use_model(tuned, ModelRequest(str(checkpoint), "default", "cpu"))
    models = models_of(window)
    window.method_bar.compare_box.setChecked(True)
    choose(models.mode_box, MODEL)
    box = models.panel.model_box
    assert box.itemText(box.findData(BEFORE)) == "Before fine-tuning: tiny.safetensors"
    with qtbot.waitSignal(models.model_ready, timeout=30000):
        pick(box, BEFORE)
    drawn(qtbot, window)
    assert models.panel.view.title.text.startswith("A (before) · tiny.safetensors")
    assert window.image_view.title.text.startswith("B (after) · other.safetensors")
    panel = models.panel
    a, b = panel.view.heat_values, window.image_view.heat_values
    np.testing.assert_allclose(panel.difference.heat.image, b - a, atol=1e-7)
    assert "after minus before" in panel.difference.title.text
    panel.swap_button.click()
    assert "before minus after" in panel.difference.title.text
    assert window.image_view.title.text.startswith("A (after) · other.safetensors")


def test_cancel_stops_a_load_and_nothing_it_sends_later_is_shown(
    qtbot, window: MainWindow, photo: Path, other: Path, monkeypatch
):
    drop_and_wait(qtbot, window, photo)
    models = models_of(window)
    window.method_bar.compare_box.setChecked(True)
    choose(models.mode_box, MODEL)
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(other), ""))
    pick(models.panel.model_box, FILE)  # the load starts in the worker...
    assert models.panel.cancel_button.isVisible() and models.panel.progress.isVisible()
    assert models.panel.status.full_text == "Loading other.safetensors…"
    (thread,) = models.threads()
    models.panel.cancel_button.click()  # ...and is cancelled before its answer arrives
    qtbot.waitUntil(thread.thread.isFinished, timeout=30000)
    QApplication.processEvents()
    assert models.info is None and not models.panel.cancel_button.isVisible()
    assert models.panel.status.full_text.startswith("Loading other.safetensors cancelled")
    assert models.panel.view.heat_values.size == 0
    click_patch(qtbot, window, 0, 0)  # the explorer's model is untouched
    assert window.image_view.heat_values.shape == (6, 6)


def test_a_fine_tune_is_named_by_what_it_was_trained_on_and_sides_stay_between_runs(
    qtbot, window: MainWindow, photo: Path, tmp_path: Path, monkeypatch
):
    """Fine-tune in the Train tab, compare with the model before: the two names differ and the
    fine-tune's says what it was trained on. Save it and fine-tune that again: the compared
    model stays A (sides never turn round between runs), and since it is not the new model's
    own base, B − A is said without "before" and "after"."""
    from tests.gui.test_finetune import adopted_and_shown, colour_folder, fill, panel_of

    data = colour_folder(tmp_path / "colours", per_class=8)
    drop_and_wait(qtbot, window, photo)
    runs: list = []

    def fine_tune(epochs: int) -> str:
        panel = panel_of(window)
        fill(panel, qtbot, data, per_class=5, test_per_class=2, epochs=epochs, batch_size=8)
        panel.finished.connect(runs.append)
        with adopted_and_shown(qtbot, window, panel):
            qtbot.mouseClick(panel.start_button, Qt.LeftButton)
        panel.finished.disconnect(runs.append)
        window.finetune.show_explorer()
        result = runs[-1]
        assert not result.cancelled and len(result.history) == epochs
        plural = "" if epochs == 1 else "s"
        return (
            f"{window.model.spec.display_name}, fine-tuned on {result.dataset} (15 images, "
            f"{epochs} epoch{plural}, head only)"
        )

    named = fine_tune(1)
    models = models_of(window)
    window.method_bar.compare_box.setChecked(True)
    choose(models.mode_box, MODEL)
    with qtbot.waitSignal(models.model_ready, timeout=30000):
        pick(models.panel.model_box, BEFORE)
    qtbot.waitUntil(lambda: window.analysis is not None, timeout=30000)
    drawn(qtbot, window)
    panel = models.panel
    assert panel.view.title.text.startswith("A (before) · tiny.safetensors — ")
    assert window.image_view.title.text.startswith(f"B (after) · {named} — ")
    assert models.other_label() != models.explorer_label()
    assert f"B − A (after minus before): {named} minus tiny.safetensors" in (
        panel.difference.title.text
    )

    saved = tmp_path / "first.safetensors"  # File > Save model: the next run starts from it
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(saved), ""))
    with qtbot.waitSignal(window.finetune.panel.saved, timeout=30000):
        window.save_model_action.trigger()
    assert models.explorer_label() == named  # saved, it is still named by its training
    second = fine_tune(2)  # another run, from the saved model: tiny stays A, the new one is B
    assert second != named
    qtbot.waitUntil(lambda: named not in window.image_view.title.text, timeout=30000)
    drawn(qtbot, window)
    assert panel.view.title.text.startswith("A · tiny.safetensors — ")
    assert window.image_view.title.text.startswith(f"B · {second} — ")
    assert panel.difference.title.text.startswith(f"B − A: {second} minus tiny.safetensors")
    a, b = panel.view.heat_values, window.image_view.heat_values
    np.testing.assert_allclose(panel.difference.heat.image, b - a, atol=1e-7)
