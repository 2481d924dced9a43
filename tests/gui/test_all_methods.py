"""All methods: the image under every method of the catalogue at once, each tile equal to the
method's own map, the model methods computed in the worker one at a time with a progress line
and a cancel; a method that does not apply says why. Compare takes any method of the catalogue,
and the help describes each from the catalogue."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QSettings, Qt

from tests.gui.conftest import running_window
from tests.gui.test_main_window import drop_and_wait
from tests.gui.test_map_progress import FAKE, PAUSE, fake_method
from vitexplorer.core.explain import method as catalogue_module
from vitexplorer.core.explain.maps import explanation_map, resolved
from vitexplorer.core.explain.method import Method, catalogue, register
from vitexplorer.core.io.images import load_image
from vitexplorer.core.models.loading import load_model
from vitexplorer.core.models.preprocessing import preprocess
from vitexplorer.gui.all_methods import DRAWN, NOT_DRAWN, tile_options
from vitexplorer.gui.help import help_html
from vitexplorer.gui.main_window import MainWindow

NEVER = "never-applies"
REASON = "has no such part, so never-applies cannot explain it; attention works"


class NeverApplies(Method):
    """A method that applies to no model (as one that needs a part a model lacks)."""

    def applies(self, spec) -> str | None:
        return f"{spec.display_name} {REASON}"


@pytest.fixture
def extra_methods() -> Iterator[None]:
    """A model method of several passes and one that never applies, for one test."""
    never = NeverApplies(
        name=NEVER,
        label="Never",
        summary="a test's method",
        tip="A test's method that applies to no model",
        help_title="Never (a test's)",
        help="nothing.",
        needs_model=True,
        order=95,
    )
    added = [register(fake_method()), register(never)]
    PAUSE["seconds"] = 0.0
    yield
    PAUSE["seconds"] = 0.0
    for method in added:
        del catalogue_module._REGISTRY[method.name]


@pytest.fixture
def methods_window(qtbot, tmp_path: Path, checkpoint: Path, extra_methods) -> Iterator[MainWindow]:
    yield from running_window(qtbot, tmp_path / "settings.ini", checkpoint)


def settled(window: MainWindow) -> bool:
    view = window.explanations.all_methods
    done = all(t.status in (DRAWN, NOT_DRAWN) for t in view.tiles.values())
    return bool(view.tiles) and done and not view.cancel_button.isVisible()


def expected_maps(window: MainWindow, photo: Path, checkpoint: Path) -> dict[str, np.ndarray]:
    """Each method's map computed here, outside the window, with the tiles' options."""
    model = load_model(str(checkpoint), device="cpu")
    batch = preprocess(load_image(photo), model.spec).unsqueeze(0)
    analysis = window.analysis
    options = window.method_bar.choice().options
    maps = {}
    for method in catalogue():
        if method.applies(analysis.spec):
            continue
        chosen = resolved(method.name, tile_options(method, options, window.state), analysis)
        if method.needs_model:
            maps[method.name] = explanation_map(method.name, chosen, model=model, batch=batch)
        else:
            maps[method.name] = explanation_map(method.name, chosen, analysis=analysis)
    return maps


def test_every_method_is_shown_at_once_each_equal_to_its_own_map(
    qtbot, methods_window: MainWindow, photo: Path, checkpoint: Path
):
    window = methods_window
    drop_and_wait(qtbot, window, photo)
    window.method_bar.option_widgets["path_steps"].setValue(4)
    session = window.model_session
    at_ask: list[int] = []  # how many map jobs the worker held when the view asked another
    original = session.ask_map
    session.ask_map = lambda *a: at_ask.append(len(session.maps_asked)) or original(*a)
    window.method_bar.all_box.setChecked(True)
    view = window.explanations.all_methods
    assert view.isVisible() and not window.image_view.isVisible()
    qtbot.waitUntil(lambda: settled(window), timeout=60000)
    model_methods = [m for m in catalogue() if m.needs_model and m.name != NEVER]
    assert len(at_ask) == len(model_methods) and set(at_ask) == {0}, at_ask  # one at a time

    expected = expected_maps(window, photo, checkpoint)
    assert set(view.tiles) == {m.name for m in catalogue()}
    spec = window.analysis.spec
    for name, tile in view.tiles.items():
        title = tile.label.text()
        assert tile.method.label in title and tile.method.cost_words(None, spec)[:6] in title
        if name == NEVER:
            assert tile.status == NOT_DRAWN and tile.heat is None and REASON in tile.words
            assert not tile.heat_item.isVisible()
            continue
        assert tile.status == DRAWN, (name, tile.words)
        assert tile.heat.shape == spec.grid, name
        np.testing.assert_allclose(tile.heat, expected[name], rtol=1e-4, atol=1e-6, err_msg=name)
        low, high = tile.heat.min(), tile.heat.max()
        assert f"{low:.3g} to {high:.3g}" in title  # its own scale, in its title
        if (
            tile.method.signed
        ):  # its own range, symmetric around zero (tests/gui/test_signed_maps_gui)
            largest = np.abs(tile.heat).max()
            assert tile.heat_item.levels == pytest.approx([-largest, largest])
        else:
            assert tile.heat_item.levels[0] == pytest.approx(low)  # drawn on its own range
    assert "1 per path step (4 at 4)" in view.tiles[FAKE].label.text()
    count = len(catalogue())
    assert view.progress_label.text() == f"{count} of {count} methods"

    window.method_bar.all_box.setChecked(False)  # and back: the image view again
    assert window.image_view.isVisible() and not view.isVisible()


def test_all_methods_says_how_far_it_is_and_a_cancel_stops_it_until_asked_again(
    qtbot, methods_window: MainWindow, photo: Path, checkpoint: Path
):
    window = methods_window
    drop_and_wait(qtbot, window, photo)
    window.method_bar.option_widgets["path_steps"].setValue(30)
    PAUSE["seconds"] = 0.05
    session = window.model_session
    view = window.explanations.all_methods
    with qtbot.waitSignal(
        session.map_progress, timeout=30000, check_params_cb=lambda p: p.job.method == FAKE
    ):
        window.method_bar.all_box.setChecked(True)
    line = view.progress_label.text()
    assert " of 30 passes" in line and f"{FAKE}: " in line, line
    assert " methods" in line and view.cancel_button.isVisible()
    with qtbot.waitSignal(session.map_cancelled, timeout=10000):
        qtbot.mouseClick(view.cancel_button, Qt.LeftButton)
    tile = view.tiles[FAKE]
    assert tile.status == NOT_DRAWN and tile.words == "cancelled" and tile.heat is None
    qtbot.wait(300)  # the worker's own answer to the cancel changes nothing
    assert not session.maps_asked and tile.heat is None
    assert view.again_button.isVisible() and not view.cancel_button.isVisible()
    assert "cancelled: " in view.progress_label.text()

    PAUSE["seconds"] = 0.0
    qtbot.mouseClick(view.again_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: settled(window), timeout=60000)
    expected = expected_maps(window, photo, checkpoint)
    np.testing.assert_allclose(view.tiles[FAKE].heat, expected[FAKE], rtol=1e-4, atol=1e-6)
    assert all(t.words != "cancelled" for t in view.tiles.values())


def test_compare_puts_a_model_method_beside_another(
    qtbot, methods_window: MainWindow, photo: Path, checkpoint: Path
):
    window = methods_window
    drop_and_wait(qtbot, window, photo)
    compare = window.compare_bar
    assert [compare.method_box.itemData(i) for i in range(compare.method_box.count())] == [
        m.name for m in catalogue()
    ]
    window.method_bar.set_method("relevance")
    compare.option_widgets["path_steps"].setValue(3)
    window.method_bar.compare_box.setChecked(True)
    compare.set_method(FAKE)
    qtbot.waitUntil(
        lambda: bool(window.compare_view.heat_values.size and window.image_view.heat_values.size),
        timeout=30000,
    )
    model = load_model(str(checkpoint), device="cpu")
    batch = preprocess(load_image(photo), model.spec).unsqueeze(0)
    options = replace(compare.choice().options, token=0)
    fake = explanation_map(FAKE, options, model=model, batch=batch)
    relevance = explanation_map("relevance", options, model=model, batch=batch)
    np.testing.assert_allclose(window.compare_view.heat_values, fake, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(window.image_view.heat_values, relevance, rtol=1e-4, atol=1e-6)


def test_the_help_describes_every_method_with_its_paper_year_and_cost(
    qtbot, methods_window: MainWindow
):
    text = help_html(methods_window, QSettings())
    for method in catalogue():
        assert method.help_title in text and method.help in text, method.name
        if method.paper:
            assert method.paper.split(",")[0] in text
        if method.year is not None:
            assert str(method.year) in text
        assert f"Cost: {method.cost_words()}." in text, method.name
