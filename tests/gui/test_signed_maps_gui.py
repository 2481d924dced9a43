"""Signed maps drawn truthfully in the app: a method whose sign means something (integrated
gradients, CP-LRP, AttnLRP, occlusion) is drawn on the diverging CET-D1 with levels symmetric
around zero, its colour bar showing them, "Lock scale" and "Same scale" symmetric too; every
other map on inferno from its minimum to its maximum, as before. The All methods tiles say what
they show (the explorer's caption) and draw signed maps the same way, saying "symmetric"."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyqtgraph as pg
import pytest
import torch
from PIL import Image

from tests.gui.conftest import GUI_CONFIG, running_window
from tests.gui.test_all_methods import settled
from tests.gui.test_main_window import drop_and_wait
from vitexplorer.core.models.loading import load_model, save_checkpoint
from vitexplorer.gui.all_methods import DRAWN
from vitexplorer.gui.main_window import MainWindow
from vitexplorer.gui.views.common import DIFFERENCE_COLORMAP, HEAT_COLORMAP
from vitexplorer.gui.views.image_view import ImageView


def table(name: str) -> np.ndarray:
    """The lookup table pyqtgraph draws ``name`` with (what ImageItem.setColorMap sets)."""
    return pg.colormap.get(name).getLookupTable(nPts=256)


def assert_drawn_with(item: pg.ImageItem, name: str) -> None:
    np.testing.assert_array_equal(np.asarray(item.lut), table(name))


def assert_symmetric(levels, largest: float) -> None:
    assert tuple(levels) == pytest.approx((-largest, largest))


def test_image_view_draws_a_signed_map_diverging_and_symmetric(qtbot) -> None:
    view = ImageView()
    qtbot.addWidget(view)
    view.set_image(np.zeros((24, 24, 3), np.uint8), (3, 3))
    signed = np.array([[-0.696, 0.1, 0.579], [0.0, 0.2, -0.1], [0.3, 0.05, 0.4]], np.float32)
    view.set_heat(signed, signed=True)
    assert_drawn_with(view.heat, DIFFERENCE_COLORMAP)
    assert_symmetric(view.heat.levels, 0.696)  # not -0.696 to 0.579
    assert_symmetric(view.colorbar.levels(), 0.696)
    assert view.colorbar.colorMap().name == DIFFERENCE_COLORMAP
    ticks = dict((text, value) for value, text in view.colorbar.axis._tickLevels[0])
    assert ticks["0.0"] == pytest.approx(0.0)  # zero labelled, in the bar's middle

    unsigned = np.abs(signed) + 0.1  # the same view, an unsigned map: as before
    view.set_heat(unsigned)
    assert_drawn_with(view.heat, HEAT_COLORMAP)
    assert tuple(view.heat.levels) == pytest.approx((unsigned.min(), unsigned.max()))
    assert view.colorbar.colorMap().name == HEAT_COLORMAP

    # Lock scale: kept for the next maps, made symmetric for a signed one
    view.set_heat(signed, signed=True)
    view.lock_scale(True)
    view.set_heat(signed * 2, signed=True)
    assert_symmetric(view.heat.levels, 0.696)  # the locked scale, the values beyond clipped
    view.lock_scale(False)
    view.set_heat(unsigned)
    view.lock_scale(True)  # locked on 0.1..0.796: a signed map on -0.796..0.796
    view.set_heat(signed, signed=True)
    assert_symmetric(view.heat.levels, unsigned.max())
    assert_drawn_with(view.heat, DIFFERENCE_COLORMAP)


@pytest.fixture
def noisy(tmp_path: Path) -> Path:
    """A 48 px picture of noise: the tiny model's integrated gradients have both signs on it."""
    pixels = np.random.default_rng(1).integers(0, 256, (48, 48, 3), np.uint8)
    path = tmp_path / "noise.png"
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture(scope="module")
def strong_head(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The window tests' tiny model with a stronger random head (std 0.5): its class scores
    move enough for integrated gradients to have negative patches."""
    torch.manual_seed(0)
    model = load_model("small_vit", "none", "cpu", small_config=GUI_CONFIG)
    torch.nn.init.normal_(model.module.head.weight, std=0.5)
    path = tmp_path_factory.mktemp("signed") / "tiny.safetensors"
    save_checkpoint(path, model, {"class_names": [f"kind {i}" for i in range(7)]})
    return path


@pytest.fixture
def signed_window(qtbot, tmp_path: Path, strong_head: Path) -> Iterator[MainWindow]:
    yield from running_window(qtbot, tmp_path / "settings.ini", strong_head)


def test_explorer_and_all_methods_draw_integrated_gradients_diverging(
    qtbot, signed_window: MainWindow, noisy: Path
) -> None:
    window = signed_window
    drop_and_wait(qtbot, window, noisy)
    bar = window.explanations.method_bar
    bar.option_widgets["path_steps"].setValue(4)
    view = window.image_view
    assert_drawn_with(view.heat, HEAT_COLORMAP)  # attention first: as before
    attention = view.heat_values
    assert tuple(view.heat.levels) == pytest.approx((attention.min(), attention.max()))

    with qtbot.waitSignal(window.worker.map_ready, timeout=30000):
        bar.set_method("integrated-gradients")
    qtbot.waitUntil(lambda: view.heat_values.size > 0, timeout=10000)
    heat = view.heat_values
    largest = float(np.abs(heat).max())
    assert heat.min() < 0  # a map with counter-evidence, so the test can tell the scales apart
    assert_drawn_with(view.heat, DIFFERENCE_COLORMAP)
    assert_symmetric(view.heat.levels, largest)
    assert_symmetric(view.colorbar.levels(), largest)

    # Compare with cp-lrp on the same scale: one scale, symmetric over both maps
    compare = window.explanations.compare_bar
    window.method_bar.compare_box.setChecked(True)
    with qtbot.waitSignal(window.worker.map_ready, timeout=30000):
        compare.set_method("cp-lrp")
    other = window.explanations.compare_view
    qtbot.waitUntil(lambda: other.heat_values.size > 0, timeout=10000)
    window.method_bar.same_scale_box.setChecked(True)
    both = max(largest, float(np.abs(other.heat_values).max()))
    assert_symmetric(view.heat.levels, both)
    assert_symmetric(other.heat.levels, both)
    assert_drawn_with(other.heat, DIFFERENCE_COLORMAP)
    compare.set_method("rollout")  # a signed and an unsigned map on one scale: each its colours
    assert_drawn_with(other.heat, HEAT_COLORMAP)
    assert_drawn_with(view.heat, DIFFERENCE_COLORMAP)
    assert view.heat.levels[0] == pytest.approx(-view.heat.levels[1])
    window.method_bar.same_scale_box.setChecked(False)
    window.method_bar.compare_box.setChecked(False)

    # All methods: signed tiles diverging and symmetric, the others as before; titles say what
    # each tile shows, as the explorer's title does
    window.view_bar.layer_spin.setValue(2)
    bar.all_box.setChecked(True)
    tiles = window.explanations.all_methods
    qtbot.waitUntil(lambda: settled(window), timeout=60000)
    for name, tile in tiles.tiles.items():
        assert tile.status == DRAWN, (name, tile.words)
        title = tile.label.text()
        m = float(np.abs(tile.heat).max())
        if tile.method.signed:
            assert_drawn_with(tile.heat_item, DIFFERENCE_COLORMAP)
            assert_symmetric(tile.heat_item.levels, m)
            assert f"symmetric ±{m:.3g}" in title, title
        else:
            assert_drawn_with(tile.heat_item, HEAT_COLORMAP)
            low, high = tile.heat.min(), tile.heat.max()
            assert tuple(tile.heat_item.levels) == pytest.approx((low, high))
            assert "symmetric" not in title, title
    assert "layer 2, mean of heads" in tiles.tiles["attention"].label.text()
    predicted = window.analysis.spec.class_names[window.analysis.predictions[0].index]
    assert f"for '{predicted}' (predicted)" in tiles.tiles["integrated-gradients"].label.text()
    np.testing.assert_allclose(tiles.tiles["integrated-gradients"].heat, heat, rtol=1e-5)
