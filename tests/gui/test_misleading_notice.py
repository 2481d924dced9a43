"""A model whose output is the same for every class, and a relevance map of zeros, are said so in
the window's notice bar and the view's title, not drawn as if they meant something."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.gui.conftest import GUI_CONFIG, running_window
from tests.gui.test_main_window import drop_and_wait
from tests.gui.test_methods import choose
from vitexplorer.core.models.loading import load_model, save_checkpoint
from vitexplorer.gui.main_window import MainWindow

pytestmark = pytest.mark.slow  # the whole file is left out of the quick suite (-m "not slow")


def checkpoint_with_head(folder: Path, name: str, weight: float, bias: float | None) -> Path:
    """The GUI's tiny model (seed 0, seven classes) with its head's weights (and bias, unless
    None) set to one value, saved as ``folder/name``."""
    torch.manual_seed(0)
    model = load_model("small_vit", "none", "cpu", small_config=GUI_CONFIG)
    with torch.no_grad():
        model.module.head.weight.fill_(weight)
        if bias is not None:
            model.module.head.bias.fill_(bias)
    path = folder / name
    save_checkpoint(path, model, {"class_names": [f"kind {i}" for i in range(7)]})
    return path


@pytest.fixture(scope="module")
def zero_head(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The GUI's tiny model with a head of zeros, as torchvision builds random weights."""
    return checkpoint_with_head(tmp_path_factory.mktemp("zero"), "zero-head.safetensors", 0.0, 0.0)


@pytest.fixture
def zero_window(qtbot, tmp_path: Path, zero_head: Path) -> Iterator[MainWindow]:
    yield from running_window(qtbot, tmp_path / "settings.ini", zero_head)


def test_constant_output_and_zero_relevance_are_noticed(qtbot, zero_window, photo) -> None:
    window = zero_window
    drop_and_wait(qtbot, window, photo)
    assert window.analysis.predictions[0].probability == pytest.approx(1 / 7)
    assert window.notice.isVisible()
    assert window.notice.messages == [
        "photo.png: every logit is 0: the output does not depend on the class (each gets "
        "14.29%), so the prediction and any class-specific map mean nothing; a head of zeros "
        "does this, as torchvision builds it for random weights."
    ]
    assert "zero everywhere" not in window.image_view.title.text  # attention still ranks

    with qtbot.waitSignal(window.worker.map_ready, timeout=30000):
        choose(window.method_bar.method_box, "relevance")
    qtbot.waitUntil(lambda: window.image_view.heat_values.size > 0, timeout=5000)
    assert not window.image_view.heat_values.any()  # the gradient of a zero head is zero
    assert window.image_view.title.text.endswith("· the map is zero everywhere")
    assert len(window.notice.messages) == 2
    assert window.notice.messages[1].startswith("photo.png, relevance for 'kind 0' (predicted)")
    assert window.notice.messages[1].endswith("the map is zero everywhere: it ranks no patch above "
                                              "another.")  # fmt: skip

    choose(window.method_bar.method_box, "rollout")  # and back: said once, not on every redraw
    choose(window.method_bar.method_box, "relevance")
    assert len(window.notice.messages) == 2
    assert np.isfinite(window.image_view.heat_values).all()


def test_a_working_model_gets_no_notice(qtbot, window, photo) -> None:
    drop_and_wait(qtbot, window, photo)
    with qtbot.waitSignal(window.worker.map_ready, timeout=30000):
        choose(window.method_bar.method_box, "relevance")
    qtbot.waitUntil(lambda: window.image_view.heat_values.size > 0, timeout=5000)
    assert window.notice.messages == []
    assert "everywhere" not in window.image_view.title.text


def test_what_a_replaced_model_said_is_withdrawn(qtbot, zero_window, photo, checkpoint) -> None:
    """The notices about a model's output hold for that model only: another model takes over
    (a fine-tuned one, or one chosen in the toolbar) and they go; a file that could not be
    opened stays reported."""
    from vitexplorer.gui.workers import ModelRequest

    window = zero_window
    drop_and_wait(qtbot, window, photo)
    window.notice.add("Could not open broken.png: the file is truncated or corrupt")
    assert len(window.notice.messages) == 2
    with qtbot.waitSignal(window.analysis_shown, timeout=30000):
        window.request_model(ModelRequest(str(checkpoint), "default", "cpu"))
    assert window.notice.messages == ["Could not open broken.png: the file is truncated or corrupt"]
    assert window.notice.isVisible()
