"""The demo model with "Random weights" in the weights box: its architecture, untrained, and
every label says so (issue 21). The demo is a tiny trained-looking checkpoint here, put where the
installation keeps the demo."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest
import torch

from tests.conftest import TV_DOWNLOAD
from tests.gui.conftest import GUI_CONFIG, make_window
from vitexplorer.core.models.spec import RANDOM
from vitexplorer.gui.workers import ModelRequest

pytestmark = pytest.mark.slow  # the whole file is left out of the quick suite (-m "not slow")


def test_random_weights_on_the_demo_model_are_random_and_say_so(
    qtbot, tmp_path, monkeypatch, photo
):
    from vitexplorer.core.models import loading as models
    from vitexplorer.core.models import spec

    demo = tmp_path / spec.DEMO_FILE
    torch.manual_seed(0)
    trained = models.load_model("small_vit", "none", "cpu", small_config=GUI_CONFIG)
    models.save_checkpoint(demo, trained, {"class_names": [f"kind {i}" for i in range(7)]})
    monkeypatch.setattr(spec, "demo_path", lambda: demo)
    window = make_window(qtbot, tmp_path / "s.ini", ModelRequest("demo", "default", "cpu"))
    with qtbot.waitSignal(window.analysis_shown, timeout=60000):
        window.start([str(photo)])
    assert window.model.spec.weights == "trained on CIFAR-10"
    trained_logits = np.array(window.session.current.analysis.logits, copy=True)
    trained_predictions = list(window.predictions.values)

    # the person picks "Random weights" beside the demo model
    box = window.model_bar.weights_box
    with qtbot.waitSignal(window.analysis_shown, timeout=60000):
        box.setCurrentIndex(box.findData("none"))
        box.activated.emit(box.currentIndex())

    loaded = window.model
    assert (loaded.request.name, loaded.request.weights) == ("demo", "none")
    assert loaded.spec.weights == RANDOM and loaded.weights_file is None
    assert loaded.spec.display_name == spec.DEMO_RANDOM_LABEL
    # the demo's architecture and classes, other parameters
    assert loaded.spec.num_layers == GUI_CONFIG.depth and loaded.spec.num_classes == 7
    random_logits = window.session.current.analysis.logits
    assert random_logits.shape == trained_logits.shape
    assert np.abs(random_logits - trained_logits).max() > 1e-3
    assert window.predictions.values != trained_predictions
    # every label says random: the weights box, the model label, the predictions' hint
    assert box.currentText() == "Random weights"
    assert window.model_label.text() == f"{spec.DEMO_RANDOM_LABEL} · {RANDOM}"
    assert "trained on" not in window.model_label.text()
    assert window.predictions.hint.text() == "Random weights: these predictions mean nothing."

    # and back: the trained weights again, as they were
    with qtbot.waitSignal(window.analysis_shown, timeout=60000):
        box.setCurrentIndex(box.findData("default"))
        box.activated.emit(box.currentIndex())
    assert window.model.spec.weights == "trained on CIFAR-10"
    again = window.session.current.analysis.logits
    np.testing.assert_allclose(again, trained_logits, rtol=0, atol=1e-5)
    assert window.predictions.hint.text() == ""
    window.close()


def test_random_weights_beside_a_checkpoint_keep_its_shape_and_classes(
    qtbot, window, checkpoint, photo
):
    with qtbot.waitSignal(window.analysis_shown, timeout=30000):
        window.add_images([str(photo)])
    trained = window.model.spec
    trained_logits = np.array(window.session.current.analysis.logits, copy=True)
    box = window.model_bar.weights_box
    assert box.currentText() == f"file: {checkpoint.name}"

    with qtbot.waitSignal(window.analysis_shown, timeout=30000):
        box.setCurrentIndex(box.findData("none"))
        box.activated.emit(box.currentIndex())
    loaded = window.model
    assert (loaded.request.name, loaded.request.weights) == (str(checkpoint), "none")
    assert loaded.spec.weights == RANDOM and loaded.weights_file is None
    # the checkpoint's architecture: its grid, depth, heads and classes, not the default shape
    for field in ("grid", "num_layers", "num_heads", "class_names"):
        assert getattr(loaded.spec, field) == getattr(trained, field)
    logits = window.session.current.analysis.logits
    assert np.abs(logits - trained_logits).max() > 1e-3
    assert box.currentText() == "Random weights"
    assert window.model_label.text().endswith(f"· {RANDOM}")
    assert window.predictions.hint.text() == "Random weights: these predictions mean nothing."

    # the checkpoint's own weights are one choice away, as they were
    with qtbot.waitSignal(window.analysis_shown, timeout=30000):
        box.setCurrentIndex(box.findData(str(checkpoint)))
        box.activated.emit(box.currentIndex())
    assert window.model.spec.weights == f"file {checkpoint.name}"
    again = window.session.current.analysis.logits
    np.testing.assert_allclose(again, trained_logits, rtol=0, atol=1e-5)


def test_the_demo_offer_bar_leaves_with_the_trained_weights(qtbot, tmp_path, monkeypatch, photo):
    """The bar above the image names the trained demo as the model in use: it is not shown
    beside the demo's random weights."""
    from vitexplorer.core.models import loading as models
    from vitexplorer.core.models import spec
    from vitexplorer.core.models.download import WeightsDownload

    demo = tmp_path / spec.DEMO_FILE
    torch.manual_seed(0)
    trained = models.load_model("small_vit", "none", "cpu", small_config=GUI_CONFIG)
    models.save_checkpoint(demo, trained, {"class_names": [f"kind {i}" for i in range(7)]})
    monkeypatch.setattr(spec, "demo_path", lambda: demo)
    download = WeightsDownload(
        "vit_b_32", "http://127.0.0.1:9/vit_b_32-d86f8d99.pth", tmp_path / "x.pth", 336.6, "W"
    )
    monkeypatch.setattr(TV_DOWNLOAD, lambda name: download)
    window = make_window(qtbot, tmp_path / "s.ini", ModelRequest("vit_b_32", "default", "cpu"))
    with qtbot.waitSignal(window.analysis_shown, timeout=60000):
        window.start([str(photo)])
    assert window.model.request.name == "demo" and window.no_model_bar.isVisible()
    assert f"In use: {spec.DEMO_LABEL}" in window.no_model_bar.label.text()
    box = window.model_bar.weights_box
    with qtbot.waitSignal(window.analysis_shown, timeout=60000):
        box.setCurrentIndex(box.findData("none"))
        box.activated.emit(box.currentIndex())
    assert window.model.spec.weights == RANDOM
    assert not window.no_model_bar.isVisible()
    window.close()
