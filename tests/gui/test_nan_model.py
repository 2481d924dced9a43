"""A model whose outputs are NaN: the predictions panel says so plainly, the maps stay, and
nothing raises (issue 22)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.gui.conftest import running_window
from tests.gui.test_main_window import drop
from tests.gui.test_misleading_notice import checkpoint_with_head
from vitexplorer.gui.main_window import MainWindow

NAN_LINE = "The model's outputs are not numbers (NaN): no prediction."


@pytest.fixture(scope="module")
def nan_head(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The GUI's tiny model with a head of NaN: its attention is finite, its logits are not."""
    folder = tmp_path_factory.mktemp("nan")
    return checkpoint_with_head(folder, "nan-head.safetensors", float("nan"), None)


@pytest.fixture
def nan_window(qtbot, tmp_path: Path, nan_head: Path) -> Iterator[MainWindow]:
    yield from running_window(qtbot, tmp_path / "settings.ini", nan_head)


@pytest.mark.slow
def test_nan_outputs_are_said_in_the_predictions_panel(qtbot, nan_window, photo) -> None:
    window = nan_window
    with qtbot.captureExceptions() as raised:
        with qtbot.waitSignal(window.analysis_shown, timeout=30000):
            drop(window, photo)
        qtbot.wait(50)  # let queued slots run
    assert raised == []
    analysis = window.analysis
    assert np.isnan(analysis.logits).all()
    panel = window.predictions
    assert panel.hint.text() == NAN_LINE
    assert not panel.hint.isHidden()
    assert panel.values == []
    assert [name.text() for name in panel.names] == [""] * 5
    assert [bar.value() for bar in panel.bars] == [0] * 5
    assert not any(bar.isVisible() for bar in panel.bars)  # the reason is seen in their place
    # the maps that exist are kept: the attention is finite and drawn
    assert np.isfinite(analysis.attention).all()
    assert window.image_view.heat_values.size > 0
    assert np.isfinite(window.image_view.heat_values).all()
    # the notice bar says why as well, once
    assert any("not finite" in m for m in window.notice.messages)


def test_panel_draws_no_nan_bar_and_gives_the_model_hint_back(qtbot) -> None:
    from vitexplorer.core.explain.analysis import Prediction
    from vitexplorer.gui.views.panels import PredictionsPanel

    panel = PredictionsPanel()
    qtbot.addWidget(panel)
    panel.set_hint("Random weights: these predictions mean nothing.")
    undefined = [Prediction(0, "kind 0", float("nan")), Prediction(1, "kind 1", float("nan"))]
    panel.set_predictions(undefined, "the model's outputs are not numbers (NaN): no prediction")
    assert panel.hint.text() == NAN_LINE
    assert panel.values == [] and panel.names[0].text() == "" and panel.bars[0].value() == 0
    panel.set_predictions(undefined)  # no reason given: still no NaN bar, the model's hint
    assert panel.values == [] and panel.bars[0].format() == ""
    assert panel.hint.text() == "Random weights: these predictions mean nothing."
    panel.set_predictions([Prediction(3, "kind 3", 0.625), Prediction(1, "kind 1", 0.25)])
    assert panel.values == [("kind 3", 0.625), ("kind 1", 0.25)]
    assert panel.bars[0].value() == 625 and panel.bars[0].format() == "62.5%"
    assert not panel.bars[0].isHidden()
    assert panel.hint.text() == "Random weights: these predictions mean nothing."


def test_undefined_prediction_names_nan_and_infinity() -> None:
    import torch as t

    from vitexplorer.core.explain.analysis import undefined_prediction

    def check(logits: list[float]) -> str | None:
        values = t.tensor(logits)
        return undefined_prediction(values.numpy(), values.softmax(-1).numpy())

    assert check([1.0, float("nan"), 0.5]) == (
        "the model's outputs are not numbers (NaN): no prediction"
    )
    assert check([1.0, float("inf"), 0.5]).startswith("the model's outputs are infinite")
    assert check([1.0, float("-inf"), 0.5]) is None  # that class is 0, the others are defined
    assert check([1.0, 2.0, 0.5]) is None
