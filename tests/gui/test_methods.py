"""The explorer's method bar: rollout and relevance on the same overlay, and side by side."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, Qt
from PySide6.QtWidgets import QApplication

from tests.gui.test_main_window import click_patch, drop_and_wait
from vitexplorer.core.data import load_image, preprocess
from vitexplorer.core.explain import rollout_map
from vitexplorer.core.models import load_model
from vitexplorer.core.relevance import relevance_map
from vitexplorer.gui.main_window import MainWindow


def choose(box, data) -> None:  # noqa: ANN001
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
    np.testing.assert_allclose(
        window.image_view.heat_values, attention[0, :, token, 1:].mean(0).reshape(6, 6)
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
    with qtbot.waitSignal(window.worker.relevance_ready, timeout=30000):
        choose(window.method_bar.method_box, "relevance")
        assert "computing" in window.image_view.title.text
        assert window.image_view.heat_values.size == 0  # no stale overlay meanwhile
    qtbot.waitUntil(lambda: window.image_view.heat_values.size > 0, timeout=5000)
    mine = relevance_map(model, batch, predicted).map
    np.testing.assert_allclose(window.image_view.heat_values, mine, rtol=1e-4, atol=1e-7)
    assert "(predicted)" in window.image_view.title.text

    other = window.analysis.predictions[2].index  # the third most probable class
    with qtbot.waitSignal(window.worker.relevance_ready, timeout=30000):
        choose(window.method_bar.target_box, other)
    qtbot.waitUntil(lambda: "computing" not in window.image_view.title.text, timeout=5000)
    theirs = relevance_map(model, batch, other).map
    np.testing.assert_allclose(window.image_view.heat_values, theirs, rtol=1e-4, atol=1e-7)
    assert not np.allclose(mine, theirs)
    assert repr(f"kind {other}") in window.image_view.title.text

    asked: list = []
    window.worker.relevance_ready.connect(asked.append)
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
    # left: attention (layer 1, mean of heads); right: rollout by default
    np.testing.assert_allclose(
        window.image_view.heat_values, attention[0, :, 0, 1:].mean(0).reshape(6, 6)
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
    assert compare["parameters"] == {"layer": 1, "head": None, "token": 10}
    assert compare["map"]["axes"] == ["axis 0: patch rows 1..6", "axis 1: patch columns 1..6"]
    assert f"Exported {len(names)} files" in window.statusBar().currentMessage()


def test_analytics_tab_follows_the_image_and_a_point_opens_its_head(
    qtbot, window: MainWindow, photo, tmp_path, monkeypatch
):
    from PIL import Image
    from PySide6.QtWidgets import QDockWidget, QFileDialog

    from tests.gui.test_analytics import click_scene
    from vitexplorer.core.analysis import analyze_image
    from vitexplorer.core.explain import average_statistics, head_statistics

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
    assert tab.similarity_area.showing_view  # the model's position embeddings, from the worker

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
    from vitexplorer.core.models import load_model

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
