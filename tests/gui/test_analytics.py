"""The Model analytics tab on its own, offscreen: a tiny torchvision ViT (32 px images, 8 px
patches: a 4x4 grid) for the structure views, hand-made statistics of three layers and two heads
(not square, so a transposed array shows), clicked and hovered as a person does."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QApplication, QFileDialog

from tests.conftest import tiny_spec
from vitexplorer.core.explain.head_stats import HeadStatistics, head_statistics
from vitexplorer.core.explain.structure import (
    filter_components,
    patch_filters,
    position_embeddings,
    position_similarity,
    principal_filter_directions,
)
from vitexplorer.core.models.capture import forward_with_attention
from vitexplorer.gui.analytics_tab import FOLDER, IMAGE, AnalyticsTab
from vitexplorer.gui.app import configure_pyqtgraph
from vitexplorer.gui.views.structure_views import GAP

pytestmark = pytest.mark.slow  # the whole file is left out of the quick suite (-m "not slow")

SPEC = tiny_spec()
IMAGE_STATS = HeadStatistics(
    distance=np.array([[3.0, 7.5], [11.25, 2.0], [14.0, 9.5]]),
    entropy=np.array([[0.5, 1.25], [2.0, 0.75], [1.5, 2.5]]),
    prefix_share=np.array([[0.1, 0.4], [0.05, 0.9], [0.3, 0.2]]),
)
FOLDER_STATS = HeadStatistics(
    distance=IMAGE_STATS.distance + 1.0,
    entropy=IMAGE_STATS.entropy * 2.0,
    prefix_share=IMAGE_STATS.prefix_share / 2.0,
)


@pytest.fixture
def tab(qtbot) -> AnalyticsTab:
    configure_pyqtgraph()
    tab = AnalyticsTab()
    qtbot.addWidget(tab)
    tab.resize(1300, 820)
    tab.show()
    return tab


def click_scene(qtbot, view, scene_pos: QPointF, move_only: bool = False) -> None:
    """A real mouse click (or move) on a pyqtgraph widget at a scene position."""
    QApplication.processEvents()  # lay out what was just shown
    pos = view.mapFromScene(scene_pos)
    if move_only:
        qtbot.mouseMove(view.viewport(), pos=QPoint(pos.x(), pos.y()))
    else:
        qtbot.mouseClick(view.viewport(), Qt.LeftButton, pos=QPoint(pos.x(), pos.y()))


def test_empty_states_say_what_will_appear(tab: AnalyticsTab):
    areas = (tab.distance_area, tab.entropy_area, tab.prefix_area)
    for area in (*areas, tab.similarity_area, tab.filter_area):
        assert not area.showing_view
        assert "appear" in area.label.text()
    assert "image" in tab.distance_area.label.text()
    assert "model" in tab.similarity_area.label.text()
    assert not tab.export_button.isEnabled()
    assert not tab.folder_button.isEnabled()


def test_scatter_has_one_point_per_head_and_a_click_selects_it(qtbot, tab: AnalyticsTab):
    tab.set_image_statistics(IMAGE_STATS, "cat.png")
    assert tab.distance_area.showing_view
    points = tab.distance_plot.points.points()
    assert len(points) == 6
    held = {p.data(): (p.pos().x(), p.pos().y()) for p in points}
    assert held == {
        (layer, head): (layer + 1.0, IMAGE_STATS.distance[layer, head])
        for layer in range(3)
        for head in range(2)
    }
    assert "cat.png" in tab.distance_plot.plotItem.titleLabel.text

    plot = tab.distance_plot
    scene = plot.plotItem.vb.mapViewToScene(QPointF(2.0, 2.0))  # layer 2 (from 1), head 2
    with qtbot.waitSignal(tab.head_selected) as blocker:
        click_scene(qtbot, plot, scene)
    assert blocker.args == [1, 1]
    assert tab.selected == (1, 1)
    ring_x, ring_y = plot.ring.getData()
    assert (ring_x[0], ring_y[0]) == (2.0, 2.0)


def test_heatmaps_hold_the_statistics_and_cells_read_and_select(qtbot, tab: AnalyticsTab):
    tab.set_image_statistics(IMAGE_STATS, "cat.png")
    entropy, prefix = tab.entropy_map, tab.prefix_map
    np.testing.assert_array_equal(entropy.values, IMAGE_STATS.entropy)
    np.testing.assert_array_equal(prefix.values, IMAGE_STATS.prefix_share)
    # drawn with the layer across and the head down; the share in per cent
    np.testing.assert_allclose(entropy.image.image, IMAGE_STATS.entropy.T, rtol=1e-6)
    np.testing.assert_allclose(prefix.image.image, 100 * IMAGE_STATS.prefix_share.T, rtol=1e-6)
    assert entropy.colorbar.levels() == pytest.approx((0.5, 2.5))

    centre = prefix.plot.vb.mapViewToScene(QPointF(2.5, 0.5))  # layer 3, head 1
    click_scene(qtbot, prefix, centre, move_only=True)
    assert prefix.readout.text == "layer 3, head 1: 30.0 %"
    with qtbot.waitSignal(tab.head_selected) as blocker:
        click_scene(qtbot, prefix, centre)
    assert blocker.args == [2, 0]
    for heatmap in (entropy, prefix):
        assert heatmap.ring.isVisible()
        assert heatmap.ring.rect().topLeft() == QPointF(2, 0)
    tab.set_selected(None, None)  # the explorer shows the mean of heads
    assert not entropy.ring.isVisible()
    assert len(tab.distance_plot.ring.getData()[0]) == 0


def test_position_similarity_mosaic_and_a_click_enlarges_a_position(
    qtbot, tab: AnalyticsTab, tiny_torchvision_vit
):
    tab.set_model(SPEC, tiny_torchvision_vit)
    expected = position_similarity(position_embeddings(tiny_torchvision_vit), (4, 4), 1)
    view = tab.similarity_view
    assert tab.similarity_area.showing_view
    np.testing.assert_array_equal(view.similarity, expected)
    mosaic = view.mosaic.image
    stride = 4 + GAP
    assert mosaic.shape == (4 * stride - GAP, 4 * stride - GAP)
    np.testing.assert_array_equal(
        mosaic[2 * stride : 2 * stride + 4, 1 * stride :][:, :4], expected[2, 1]
    )
    assert np.isnan(mosaic[4, :]).all() and np.isnan(mosaic[:, 4]).all()  # the gaps
    assert view.selected == (2, 2)  # the centre, before any click

    # position (1, 3): tile row 1, column 3; click inside the tile, off its centre
    scene = view.mosaic_plot.vb.mapViewToScene(QPointF(3 * stride + 0.5, 1 * stride + 2.5))
    with qtbot.waitSignal(view.position_clicked) as blocker:
        click_scene(qtbot, view, scene)
    assert blocker.args == [1, 3]
    np.testing.assert_array_equal(view.enlarged, expected[1, 3])
    assert view.marker.rect().topLeft() == QPointF(3, 1)
    assert view.large.levels.tolist() == [-1.0, 1.0]

    # a click on the enlarged map enlarges the position clicked there
    scene = view.large_plot.vb.mapViewToScene(QPointF(0.5, 3.5))
    click_scene(qtbot, view, scene)
    np.testing.assert_array_equal(view.enlarged, expected[3, 0])


def test_filter_grid_shows_the_principal_components(tab: AnalyticsTab, tiny_torchvision_vit):
    tab.set_model(SPEC, tiny_torchvision_vit)
    weight = patch_filters(tiny_torchvision_vit)  # (32, 3, 8, 8): at most 32 components
    images = filter_components(weight, 28)
    _, shares = principal_filter_directions(weight, 28)
    grid = tab.filter_view
    assert len(grid.tiles) == 28
    for i in (0, 13, 27):
        np.testing.assert_array_equal(grid.tile_image(i), images[i])
        assert grid.tiles[i][2].text == f"{i + 1}: {100 * shares[i]:.1f}%"


def test_a_new_model_drops_the_statistics_and_an_unreadable_one_says_so(
    tab: AnalyticsTab, tiny_torchvision_vit
):
    tab.set_image_statistics(IMAGE_STATS, "cat.png")
    tab.set_model(SPEC, tiny_torchvision_vit)
    assert tab.statistics is None and not tab.distance_area.showing_view
    tab.set_model(SPEC, torch.nn.Linear(2, 2))
    assert not tab.similarity_area.showing_view
    assert "cannot" in tab.similarity_area.label.text()
    assert "Linear" in tab.filter_area.label.text()


def test_statistics_of_a_real_forward_pass(tab: AnalyticsTab, tiny_torchvision_vit):
    torch.manual_seed(1)
    with torch.inference_mode():
        _, attention = forward_with_attention(tiny_torchvision_vit, torch.rand(1, 3, 32, 32))
    stats = head_statistics(attention[0].numpy(), (4, 4), 1, 8)
    tab.set_image_statistics(stats, "noise")
    _, distances = tab.distance_plot.points.getData()
    np.testing.assert_allclose(distances, stats.distance.ravel())
    np.testing.assert_allclose(tab.entropy_map.image.image, stats.entropy.T, rtol=1e-6)


def test_export_writes_the_statistics_and_the_figures(
    tab: AnalyticsTab, tiny_torchvision_vit, tmp_path: Path
):
    tab.set_model(SPEC, tiny_torchvision_vit)
    tab.set_image_statistics(IMAGE_STATS, "cat.png")
    written = tab.export(tmp_path)
    names = {p.name for p in written} - {"distance_vs_depth.svg"}  # where pyqtgraph can
    assert names == {
        "distance_vs_depth.png",
        "head_stats.csv",
        "position_similarity.png",
        "filter_components.png",
        "analytics.json",
    }
    assert written[-1].name == "analytics.json"  # the card last
    names = {p.name for p in written}
    assert {p.name for p in tmp_path.iterdir()} == names, "no temporary file is left behind"
    with open(tmp_path / "head_stats.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(int(r["layer"]), int(r["head"])) for r in rows] == [  # from 1, as the plot
        (layer, head) for layer in (1, 2, 3) for head in (1, 2)
    ]
    for row in rows:
        layer, head = int(row["layer"]) - 1, int(row["head"]) - 1  # the arrays' indices
        assert float(row["mean_distance_px"]) == pytest.approx(IMAGE_STATS.distance[layer, head])
        assert float(row["entropy_nats"]) == pytest.approx(IMAGE_STATS.entropy[layer, head])
        assert float(row["prefix_share"]) == pytest.approx(IMAGE_STATS.prefix_share[layer, head])
        assert row["images"] == "1"
    for name in ("distance_vs_depth.png", "position_similarity.png", "filter_components.png"):
        image = QImage(str(tmp_path / name))
        assert image.width() >= 600 and image.height() >= 300, name
    svg = tmp_path / "distance_vs_depth.svg"
    assert not svg.exists() or "<svg" in svg.read_text()[:2000]


def _card(folder: Path) -> dict:
    return json.loads((folder / "analytics.json").read_text())


def _folder(path: Path) -> Path:
    path.mkdir()  # as the folder dialog gives it
    return path


def test_export_card_says_what_from_which_model_and_images(
    tab: AnalyticsTab, tiny_torchvision_vit, tmp_path: Path
):
    tab.set_model(SPEC, tiny_torchvision_vit)
    tab.set_image_statistics(IMAGE_STATS, "cat.png")
    written = tab.export(_folder(tmp_path / "image"))
    card = _card(tmp_path / "image")
    assert card["method"] == "head statistics"
    assert card["model"]["display_name"] == SPEC.display_name
    assert card["model"]["num_layers"] == SPEC.num_layers and card["device"] == "cpu"
    assert card["images"] == ["cat.png"] and card["images_skipped"] == 0
    assert card["outputs"]["table"] == "head_stats.csv"
    assert card["table_rows"].startswith("one per layer (1..3) and head (1..2)")  # the table's
    shares = card["structure"]["variance_shares"]
    assert card["parameters"]["filter_components"] == len(shares) == len(tab.shares)
    np.testing.assert_allclose(shares, tab.shares, atol=1e-6)
    assert sum(shares) <= 1 + 1e-6 and shares == sorted(shares, reverse=True)
    # every other file, named with its size as written
    listed = {f["name"]: f["bytes"] for f in card["files"]}
    assert set(listed) == {p.name for p in written[:-1]}
    assert all(listed[p.name] == p.stat().st_size > 0 for p in written[:-1])

    # the folder average: the folder and its count, not one image
    tab.set_folder_statistics(FOLDER_STATS, str(tmp_path / "cats"), 10)
    tab.export(_folder(tmp_path / "folder"))
    card = _card(tmp_path / "folder")
    assert card["folder"] == {"path": str(tmp_path / "cats"), "images": 10}
    assert card["images"] is None and card["images_skipped"] is None
    with open(tmp_path / "folder" / "head_stats.csv", newline="") as handle:
        assert {row["images"] for row in csv.DictReader(handle)} == {"10"}

    # the structure alone (no image yet): a card of the structure, no statistics
    tab.set_model(SPEC, tiny_torchvision_vit)
    tab.export(_folder(tmp_path / "structure"))
    card = _card(tmp_path / "structure")
    assert card["method"] == "model structure" and "outputs" not in card
    assert {f["name"] for f in card["files"]} == {
        "position_similarity.png",
        "filter_components.png",
    }


def test_export_that_cannot_finish_leaves_the_folder_as_it_was(
    tab: AnalyticsTab, tiny_torchvision_vit, tmp_path: Path
):
    tab.set_model(SPEC, tiny_torchvision_vit)
    tab.set_image_statistics(IMAGE_STATS, "cat.png")
    (tmp_path / "distance_vs_depth.png").write_bytes(b"the user's own")
    (tmp_path / "head_stats.csv").mkdir()  # a folder where the table goes: refused
    with pytest.raises(OSError, match="head_stats.csv is a folder"):
        tab.export(tmp_path)
    assert (tmp_path / "distance_vs_depth.png").read_bytes() == b"the user's own"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["distance_vs_depth.png", "head_stats.csv"]


def test_folder_flow(qtbot, tab: AnalyticsTab, tmp_path: Path, monkeypatch):
    tab.set_image_statistics(IMAGE_STATS, "cat.png")
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *args, **kw: str(tmp_path))
    with qtbot.waitSignal(tab.folder_requested) as blocker:
        qtbot.mouseClick(tab.folder_request_button, Qt.LeftButton)
    assert blocker.args == [str(tmp_path)]

    tab.set_folder_progress(3, 10)
    assert tab.progress.isVisible() and tab.cancel_button.isVisible()
    assert (tab.progress.value(), tab.progress.maximum()) == (3, 10)
    assert not tab.folder_request_button.isEnabled()
    with qtbot.waitSignal(tab.folder_cancelled):
        qtbot.mouseClick(tab.cancel_button, Qt.LeftButton)
    assert not tab.cancel_button.isEnabled()

    tab.set_folder_statistics(FOLDER_STATS, str(tmp_path / "cats"), 10)
    assert not tab.progress.isVisible() and tab.folder_request_button.isEnabled()
    assert tab.source == FOLDER and tab.folder_button.isChecked()
    np.testing.assert_array_equal(tab.distance_plot.distance, FOLDER_STATS.distance)
    np.testing.assert_array_equal(tab.entropy_map.values, FOLDER_STATS.entropy)
    assert "cats: mean over 10 image(s)" in tab.distance_plot.plotItem.titleLabel.text

    qtbot.mouseClick(tab.image_button, Qt.LeftButton)
    assert tab.source == IMAGE
    np.testing.assert_array_equal(tab.distance_plot.distance, IMAGE_STATS.distance)
    np.testing.assert_array_equal(tab.prefix_map.values, IMAGE_STATS.prefix_share)

    tab.set_folder_progress(1, 4)
    tab.stop_folder_progress("cancelled")
    assert not tab.progress.isVisible() and tab.status.text() == "cancelled"
