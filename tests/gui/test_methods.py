"""The explorer's method bar: rollout and relevance on the same overlay, and side by side."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt
from PySide6.QtWidgets import QApplication

from tests.gui.test_main_window import click_patch, drop_and_wait
from vitexplorer.core.explain.relevance import relevance_map
from vitexplorer.core.explain.rollout import rollout_map
from vitexplorer.core.io.images import load_image
from vitexplorer.core.models.loading import load_model
from vitexplorer.core.models.preprocessing import preprocess
from vitexplorer.gui.main_window import MainWindow

pytestmark = pytest.mark.slow  # the whole file is left out of the quick suite (-m "not slow")


def choose(box, data) -> None:
    """Pick a combo box entry by its data, as a person picks it from the list."""
    index = box.findData(data)
    assert index >= 0, data
    box.setCurrentIndex(index)


def test_switching_to_rollout_redraws_the_overlay_with_its_map(qtbot, window: MainWindow, photo):
    drop_and_wait(qtbot, window, photo)
    started: list[str] = []
    window.worker.analysis_started.connect(started.append)
    attention = window.analysis.attention
    choose(window.method_bar.method_box, "rollout")
    np.testing.assert_allclose(
        window.image_view.heat_values, rollout_map(attention, 0, (6, 6), 1), rtol=1e-6
    )
    assert "rollout" in window.image_view.title.text
    QApplication.processEvents()
    bar = window.method_bar
    assert bar.fusion_box.isVisible() and not bar.target_box.isVisible()

    click_patch(qtbot, window, 3, 1)  # a click follows the clicked token's rollout row
    token = 1 + 3 * 6 + 1
    np.testing.assert_allclose(
        window.image_view.heat_values, rollout_map(attention, token, (6, 6), 1), rtol=1e-6
    )
    choose(window.method_bar.fusion_box, "max")
    window.method_bar.discard_spin.setValue(50)
    window.method_bar.start_spin.setValue(2)  # from layer 2: start_layer 1
    expected = rollout_map(attention, token, (6, 6), 1, "max", 0.5, 1)
    np.testing.assert_allclose(window.image_view.heat_values, expected, rtol=1e-6)
    assert "max of heads, 50% discarded, from layer 2" in window.image_view.title.text

    choose(window.method_bar.method_box, "attention")  # and back to the raw attention
    np.testing.assert_allclose(  # of the last layer, where the window opens
        window.image_view.heat_values, attention[2, :, token, 1:].mean(0).reshape(6, 6)
    )
    QApplication.processEvents()
    assert started == [], "rollout is computed from the stored maps, not a new forward pass"


def test_relevance_comes_from_the_worker_for_the_chosen_class(
    qtbot, window: MainWindow, photo, checkpoint
):
    drop_and_wait(qtbot, window, photo)
    model = load_model(str(checkpoint), device="cpu")
    batch = preprocess(load_image(photo), model.spec).unsqueeze(0)
    predicted = window.analysis.predictions[0].index
    with qtbot.waitSignal(window.worker.map_ready, timeout=30000):
        choose(window.method_bar.method_box, "relevance")
        assert "computing" in window.image_view.title.text
        assert window.image_view.heat_values.size == 0  # no stale overlay meanwhile
    qtbot.waitUntil(lambda: window.image_view.heat_values.size > 0, timeout=5000)
    mine = relevance_map(model, batch, predicted).map
    np.testing.assert_allclose(window.image_view.heat_values, mine, rtol=1e-4, atol=1e-7)
    assert "(predicted)" in window.image_view.title.text

    other = window.analysis.predictions[2].index  # the third most probable class
    with qtbot.waitSignal(window.worker.map_ready, timeout=30000):
        choose(window.method_bar.target_box, other)
    qtbot.waitUntil(lambda: "computing" not in window.image_view.title.text, timeout=5000)
    theirs = relevance_map(model, batch, other).map
    np.testing.assert_allclose(window.image_view.heat_values, theirs, rtol=1e-4, atol=1e-7)
    assert not np.allclose(mine, theirs)
    assert repr(f"kind {other}") in window.image_view.title.text

    asked: list = []
    window.worker.map_ready.connect(asked.append)
    choose(window.method_bar.target_box, None)  # back to the predicted class: kept, not redone
    np.testing.assert_allclose(window.image_view.heat_values, mine, rtol=1e-4, atol=1e-7)
    QApplication.processEvents()
    assert asked == []


def test_compare_shows_a_second_method_side_by_side(qtbot, window: MainWindow, photo):
    drop_and_wait(qtbot, window, photo)
    attention = window.analysis.attention
    assert not window.compare_panel.isVisible()
    window.method_bar.compare_box.setChecked(True)
    assert window.compare_panel.isVisible()
    # left: attention (layer 3, the last, mean of heads); right: rollout by default
    np.testing.assert_allclose(
        window.image_view.heat_values, attention[2, :, 0, 1:].mean(0).reshape(6, 6)
    )
    np.testing.assert_allclose(
        window.compare_view.heat_values, rollout_map(attention, 0, (6, 6), 1), rtol=1e-6
    )
    choose(window.compare_bar.fusion_box, "min")
    click_patch(qtbot, window, 0, 5)  # a click on the left moves both views
    np.testing.assert_allclose(
        window.compare_view.heat_values,
        rollout_map(attention, 6, (6, 6), 1, "min"),
        rtol=1e-6,
    )
    assert window.compare_view.selection.isVisible()
    window.method_bar.compare_box.setChecked(False)
    assert not window.compare_panel.isVisible()


def test_export_writes_picture_map_and_method_card(
    qtbot, window: MainWindow, photo, checkpoint, tmp_path, monkeypatch
):
    import hashlib
    import json

    from PIL import Image
    from PySide6.QtWidgets import QFileDialog

    drop_and_wait(qtbot, window, photo)
    choose(window.method_bar.method_box, "rollout")
    window.method_bar.compare_box.setChecked(True)
    choose(window.compare_bar.method_box, "attention")
    click_patch(qtbot, window, 1, 2)
    target = tmp_path / "figures" / "photo.rollout.png"
    target.parent.mkdir()
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), ""))
    window.export_action.trigger()

    folder = target.parent
    card = json.loads((folder / "photo.rollout.json").read_text())
    # pyqtgraph 0.14 cannot write SVG with Qt 6.10+ (its issue #3485): then the card says why
    svg = card["files"]["vector"] is not None
    names = sorted(p.name for p in folder.iterdir())
    extensions = ("png", "svg", "npy", "json") if svg else ("png", "npy", "json")
    assert names == sorted(
        f"photo.rollout{extra}.{ext}" for extra in ("", ".compare") for ext in extensions
    )
    if svg:
        assert "<svg" in (folder / "photo.rollout.svg").read_text()[:500]
    else:
        assert "could not write an SVG" in card["files"]["vector_note"]
    np.testing.assert_array_equal(
        np.load(folder / "photo.rollout.npy"), window.image_view.heat_values
    )
    np.testing.assert_array_equal(
        np.load(folder / "photo.rollout.compare.npy"), window.compare_view.heat_values
    )
    with Image.open(folder / "photo.rollout.png") as png:
        assert png.width > 100 and png.height > 100
    assert card["method"] == "rollout"
    assert card["parameters"] == {  # tokens and layers from 1
        "token": 1 + 1 * 6 + 2 + 1, "head_fusion": "mean", "discard_ratio": 0.0, "start_layer": 1,
    }  # fmt: skip
    assert card["model"]["weights"]["sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert card["image"] == str(photo)
    assert card["preprocessing"]["center_crop"] == 48
    compare = json.loads((folder / "photo.rollout.compare.json").read_text())
    assert compare["method"] == "attention"
    assert compare["parameters"] == {"layer": 3, "head": None, "token": 10}
    assert compare["map"]["axes"] == ["axis 0: patch rows 1..6", "axis 1: patch columns 1..6"]
    assert f"Exported {len(names)} files" in window.statusBar().currentMessage()


def test_analytics_tab_follows_the_image_and_a_point_opens_its_head(
    qtbot, window: MainWindow, photo, tmp_path, monkeypatch
):
    from PIL import Image
    from PySide6.QtWidgets import QDockWidget, QFileDialog

    from tests.gui.test_analytics import click_scene
    from vitexplorer.core.explain.analysis import analyze_image
    from vitexplorer.core.explain.head_stats import average_statistics, head_statistics

    drop_and_wait(qtbot, window, photo)
    tab = window.analytics
    stats = window.analysis.statistics
    np.testing.assert_array_equal(
        stats.distance, head_statistics(window.analysis.attention, (6, 6), 1, 8).distance
    )
    window.tabs.setCurrentWidget(tab)
    assert not any(d.isVisible() for d in window.findChildren(QDockWidget))  # stepped aside
    assert not window.method_bar.isVisible()
    np.testing.assert_array_equal(tab.distance_plot.distance, stats.distance)
    np.testing.assert_array_equal(tab.entropy_map.values, stats.entropy)
    # the model's position embeddings, read by the worker now that the tab needs them
    qtbot.waitUntil(lambda: tab.similarity_area.showing_view, timeout=10000)

    choose(window.method_bar.method_box, "rollout")
    plot = tab.distance_plot
    qtbot.wait(50)  # the tab's first layout
    scene = plot.plotItem.vb.mapViewToScene(QPointF(3.0, float(stats.distance[2, 1])))
    click_scene(qtbot, plot, scene)  # layer 3 (from 1): one of its heads, whichever is on top
    layer, head = window.selection.layer, window.selection.head
    assert window.tabs.currentIndex() == 0  # back in the explorer
    assert layer == 2 and head is not None  # the heads of a random model overlap
    assert window.method_bar.choice().method == "attention"
    np.testing.assert_allclose(
        window.image_view.heat_values,
        window.analysis.attention[2, head, 0, 1:].reshape(6, 6),
    )
    assert any(d.isVisible() for d in window.findChildren(QDockWidget))  # and back
    assert tab.selected == (2, head)

    folder = tmp_path / "folder" / "inner"
    folder.mkdir(parents=True)
    for i in range(3):
        pixels = np.random.default_rng(i).integers(0, 256, (50, 50, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.png")
    (folder / "broken.png").write_bytes(b"not an image")
    monkeypatch.setattr(
        QFileDialog, "getExistingDirectory", lambda *a, **k: str(tmp_path / "folder")
    )
    window.tabs.setCurrentWidget(tab)
    with qtbot.waitSignal(window.worker.folder_done, timeout=30000) as blocker:
        qtbot.mouseClick(tab.folder_request_button, Qt.LeftButton)
    done = blocker.args[0]
    assert (done.images, len(done.skipped), done.cancelled) == (3, 1, False)
    from vitexplorer.core.models.loading import load_model

    model = load_model(window.model.request.name, device="cpu")
    expected = average_statistics(
        [
            analyze_image(model, Image.open(folder / f"{i}.png").convert("RGB")).statistics
            for i in range(3)
        ]
    )
    qtbot.waitUntil(lambda: tab.source == "folder", timeout=5000)
    np.testing.assert_allclose(tab.distance_plot.distance, expected.distance, rtol=1e-5)
    np.testing.assert_allclose(tab.prefix_map.values, expected.prefix_share, rtol=1e-5)


def test_the_model_structure_is_read_once_when_the_analytics_tab_first_needs_it(
    qtbot, tmp_path, checkpoint, monkeypatch
):
    """A model load never waits for the analytics' SVD: the explorer is ready as soon as the
    weights are, and the structure is computed once, in the worker, when the tab is opened."""
    from tests.gui.conftest import make_window
    from vitexplorer.core.explain import structure
    from vitexplorer.gui.workers import ModelRequest

    calls = {"structure": 0, "svd": 0}
    real_structure, real_svd = structure.model_structure, structure.principal_filter_directions

    def counted_structure(*args, **kwargs):
        calls["structure"] += 1
        return real_structure(*args, **kwargs)

    def counted_svd(*args, **kwargs):
        calls["svd"] += 1
        return real_svd(*args, **kwargs)

    monkeypatch.setattr(structure, "model_structure", counted_structure)
    monkeypatch.setattr(structure, "principal_filter_directions", counted_svd)
    window = make_window(qtbot, tmp_path / "s.ini", ModelRequest(str(checkpoint)))
    with qtbot.waitSignal(window.model_changed, timeout=30000):
        window.start()
    tab = window.analytics
    assert calls == {"structure": 0, "svd": 0}
    assert not tab.similarity_area.showing_view
    with qtbot.waitSignal(window.worker.structure_ready, timeout=30000):
        window.tabs.setCurrentWidget(tab)
    qtbot.waitUntil(lambda: tab.similarity_area.showing_view, timeout=5000)
    assert calls == {"structure": 1, "svd": 1}  # one SVD serves the components and the shares
    expected = real_structure(
        load_model(str(checkpoint), device="cpu").module, window.model.spec.grid, 1
    )
    np.testing.assert_allclose(tab.similarity, expected[0], rtol=1e-6)
    np.testing.assert_allclose(tab.components, expected[1], rtol=1e-6)
    window.tabs.setCurrentIndex(0)
    window.tabs.setCurrentWidget(tab)  # a round trip reads nothing again
    qtbot.wait(200)
    assert calls["structure"] == 1
    window.close()


def _second_checkpoint(folder) -> object:
    """A small ViT on another grid than the window's (4x4 patches, 17 tokens)."""
    import torch

    from vitexplorer.core.models.loading import save_checkpoint
    from vitexplorer.core.models.vit import SmallViTConfig

    torch.manual_seed(1)
    config = SmallViTConfig(image_size=32, patch_size=8, width=24, depth=2, heads=2, num_classes=5)
    path = folder / "second.safetensors"
    save_checkpoint(path, load_model("small_vit", "none", "cpu", small_config=config))
    return path


def test_the_compare_view_follows_a_model_switch(qtbot, window: MainWindow, photo, tmp_path):
    """Compare on, a patch clicked, another model with another grid: both views follow the
    new model at once (token, grid, map, title), nothing of the old model's is left."""
    from vitexplorer.gui.workers import ModelRequest

    drop_and_wait(qtbot, window, photo)
    window.method_bar.compare_box.setChecked(True)
    choose(window.compare_bar.method_box, "rollout")
    click_patch(qtbot, window, 5, 5)
    compare = window.compare_view
    assert window.selection.token == 36 and "(token 37)" in compare.title.text
    assert compare.heat_values.shape == (6, 6)
    second = _second_checkpoint(tmp_path)
    with qtbot.waitSignal(window.model_changed, timeout=30000):
        window.request_model(ModelRequest(str(second), "default", "cpu"))
    # the new model is in use (its analysis on its way, or here): neither view shows the old
    for view in (window.image_view, compare):
        assert view.heat_values.shape in ((0, 0), (4, 4)), "the old model's map is still drawn"
        assert "token 37" not in view.title.text
    qtbot.waitUntil(lambda: window.analysis is not None, timeout=30000)
    qtbot.waitUntil(lambda: compare.heat_values.shape == (4, 4), timeout=5000)
    token = window.selection.token
    assert token == 0
    label = window.analysis.spec.token_label(token)
    for view in (window.image_view, compare):
        assert view.grid == (4, 4)
        assert f"{label} (token 1)" in view.title.text, view.title.text
    rollout = rollout_map(window.analysis.attention, 0, (4, 4), 1)
    np.testing.assert_allclose(compare.heat_values, rollout, rtol=1e-5)


def test_the_compare_view_follows_a_model_adopted_behind_another_tab(
    qtbot, window: MainWindow, photo, tmp_path
):
    """A fine-tuned model takes over while the fine-tune tab is on screen: back in the explorer,
    the compare view shows the new model's map on its grid, not the old one spilling over."""
    from vitexplorer.gui.workers import ModelRequest

    drop_and_wait(qtbot, window, photo)
    window.method_bar.compare_box.setChecked(True)
    choose(window.compare_bar.method_box, "rollout")
    assert window.compare_view.heat_values.shape == (6, 6)
    window.tabs.setCurrentIndex(1)  # the fine-tune tab
    adopted = load_model(str(_second_checkpoint(tmp_path)), device="cpu")
    with qtbot.waitSignal(window.analysis_shown, timeout=30000):
        window.worker.use_model(adopted, ModelRequest("small_vit", "none", "cpu"))
    window.tabs.setCurrentIndex(0)
    compare = window.compare_view
    assert compare.grid == (4, 4) and compare.heat_values.shape == (4, 4)
    rollout = rollout_map(window.analysis.attention, 0, (4, 4), 1)
    np.testing.assert_allclose(compare.heat_values, rollout, rtol=1e-5)
    window.grab()  # painted as a person would see it


def test_same_scale_puts_both_compare_views_on_one_colour_scale(qtbot, window: MainWindow, photo):
    drop_and_wait(qtbot, window, photo)
    window.method_bar.compare_box.setChecked(True)
    choose(window.compare_bar.method_box, "rollout")
    left, right = window.image_view, window.compare_view
    own = [tuple(view.colorbar.levels()) for view in (left, right)]
    for view, levels in zip((left, right), own, strict=True):  # each on its own range
        values = view.heat_values
        np.testing.assert_allclose(levels, (values.min(), values.max()), rtol=1e-5)
    assert own[0] != own[1]
    window.method_bar.same_scale_box.setChecked(True)
    low = min(left.heat_values.min(), right.heat_values.min())
    high = max(left.heat_values.max(), right.heat_values.max())
    for view in (left, right):
        np.testing.assert_allclose(view.colorbar.levels(), (low, high), rtol=1e-5)
        np.testing.assert_allclose(view.heat.levels, (low, high), rtol=1e-5)
    window.method_bar.same_scale_box.setChecked(False)
    assert [tuple(view.colorbar.levels()) for view in (left, right)] == own


def test_colour_bar_labels_fit_a_map_of_values_near_002(qtbot, window: MainWindow, photo):
    """The reported flaw: a map of values near 0.02 had ticks that all read 0.0. The labels
    come from core.scales and tell the values apart, in the view (and so in its export)."""
    drop_and_wait(qtbot, window, photo)
    view = window.image_view
    values = np.linspace(0.0195, 0.0232, 36, dtype=np.float32).reshape(6, 6)
    view.set_heat(values)
    ticks = view.colorbar.axis._tickLevels[0]  # what pyqtgraph draws beside the bar
    labels = [label for _, label in ticks]
    assert len(labels) >= 3 and len(set(labels)) == len(labels), labels
    for value, label in ticks:
        assert 0.0195 <= value <= 0.0232 and abs(float(label) - value) < 1e-9, (value, label)
    assert "0.0" not in labels
    tiny = values * 1e-4  # relevance-sized values: scientific notation, still distinct
    view.set_heat(tiny)
    labels = [label for _, label in view.colorbar.axis._tickLevels[0]]
    assert len(set(labels)) == len(labels) >= 2 and all("e-" in text for text in labels), labels
    view.clear_heat()
    assert not view.colorbar.isVisible(), "no map, no scale"


def test_relevance_beside_rollout_shows_the_same_clicked_token(
    qtbot, window: MainWindow, photo, checkpoint
):
    """Compare: relevance on the left, rollout on the right. A click on a patch moves both to
    that patch's token: relevance becomes that token's row of R (checked against R computed
    here) and both titles name the token."""
    drop_and_wait(qtbot, window, photo)
    model = load_model(str(checkpoint), device="cpu")
    batch = preprocess(load_image(photo), model.spec).unsqueeze(0)
    predicted = window.analysis.predictions[0].index
    window.method_bar.compare_box.setChecked(True)
    with qtbot.waitSignal(window.worker.map_ready, timeout=30000):
        choose(window.method_bar.method_box, "relevance")
    qtbot.waitUntil(lambda: window.image_view.heat_values.size > 0, timeout=5000)
    expected = relevance_map(model, batch, predicted, matrix=True)
    np.testing.assert_allclose(window.image_view.heat_values, expected.map, rtol=1e-4, atol=1e-7)
    for view in (window.image_view, window.compare_view):
        assert view.title.text.endswith("the CLS token (token 1)"), view.title.text

    click_patch(qtbot, window, 2, 4)  # patch row 3, col 5: token 1 + 2 * 6 + 4 + 1
    token = 1 + 2 * 6 + 4
    row = expected.token_map(token, (6, 6), 1)
    np.testing.assert_allclose(window.image_view.heat_values, row, rtol=1e-4, atol=1e-7)
    assert not np.allclose(row, expected.map, rtol=1e-3)  # another token, another map
    attention = window.analysis.attention
    np.testing.assert_allclose(
        window.compare_view.heat_values, rollout_map(attention, token, (6, 6), 1), rtol=1e-6
    )
    where = f"patch row 3, col 5 (token {token + 1})"
    for view in (window.image_view, window.compare_view):
        assert where in view.title.text, view.title.text
    assert window.image_view.selection.isVisible()  # the clicked patch is marked in both
