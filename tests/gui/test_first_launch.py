"""The first launch on a machine without the ImageNet weights and without a network: the window
opens on the demo model, offers the download in a bar (never a modal question), and after any
failed load the model box, the title and the status bar name the model actually in use."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PySide6.QtCore import QPointF, Qt

from tests.gui.conftest import make_window
from tests.gui.test_main_window import bar_button, drop_and_wait, no_dialog_open
from vitexplorer.core.models import spec as specs
from vitexplorer.gui.main_window import DEFAULT_MODEL, SAMPLES, MainWindow, sample_image_path
from vitexplorer.gui.workers import ModelRequest

pytestmark = pytest.mark.slow  # the whole file is left out of the quick suite (-m "not slow")

needs_demo = pytest.mark.skipif(
    not specs.demo_path().is_file(), reason="the demo model is not in this installation"
)


def _unreachable(*_args, **_kwargs):
    raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No network in this process, and an empty torch hub cache: no weights on this machine."""
    monkeypatch.setattr(socket, "getaddrinfo", _unreachable)
    monkeypatch.setattr(socket, "create_connection", _unreachable)
    hub = tmp_path / "torch-home"
    monkeypatch.setenv("TORCH_HOME", str(hub))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # get_dir() reads TORCH_HOME again
    return hub


@pytest.fixture
def first_launch(qtbot, tmp_path: Path, offline: Path) -> Iterator[MainWindow]:
    """The window as the app opens it the first time: no settings file, the default model asked
    for, the greeting photo given; it waits until the demo has analysed the photo."""
    window = make_window(qtbot, tmp_path / "fresh.ini", None)
    assert window._initial_request == DEFAULT_MODEL
    with qtbot.waitSignal(window.analysis_shown, timeout=60000):
        window.start([sample_image_path(next(iter(SAMPLES)))])
    yield window
    window.close()


def _reads_the_demo(window: MainWindow) -> None:
    bar = window.model_bar
    assert window.model is not None and window.model.request.name == specs.DEMO
    assert bar.model_box.currentData() == specs.DEMO
    assert bar.model_box.currentText() == specs.DEMO_LABEL
    assert bar.weights_box.currentData() == "default"
    label = f"{specs.DEMO_LABEL} · trained on CIFAR-10"
    assert window.model_label.text() == label
    assert window.windowTitle() == f"vitexplorer — {label}"


@needs_demo
def test_the_first_launch_opens_the_demo_with_the_download_in_a_bar(qtbot, first_launch, offline):
    window = first_launch
    assert no_dialog_open(window), "nothing modal asks on the first launch"
    _reads_the_demo(window)
    bar = window.no_model_bar
    assert bar.isVisible()
    assert f"In use: {specs.DEMO_LABEL}" in bar.label.text()
    assert "ViT-B/16 ImageNet-1k weights" in bar.label.text()
    assert "download.pytorch.org" in bar.buttons[0].toolTip()
    assert str(offline) in bar.buttons[0].toolTip()  # where the file will be kept
    assert [b.text() for b in bar.buttons] == ["Download 330 MB", "Open weights file\u2026"]
    # the greeting photo is one the demo gets right, seen from the last layer
    assert window.predictions.values[0][0] == "ship"
    assert window.selection.layer == window.model.spec.num_layers - 1 == 5
    # one line says, once, that the demo sees 32x32 pixels
    said = [m for m in window.notice.messages if "32x32" in m]
    assert said == [
        f"{specs.DEMO_LABEL} sees every image as CIFAR-10 does, shrunk to 32x32 pixels (8x8 "
        "patches of 4 px), and knows its 10 classes only."
    ]


@needs_demo
def test_the_demo_notice_is_said_once(qtbot, tmp_path, offline, photo):
    settings = tmp_path / "s.ini"
    for launch in (1, 2):
        window = make_window(qtbot, settings, ModelRequest(specs.DEMO, "default", "cpu"))
        with qtbot.waitSignal(window.model_changed, timeout=60000):
            window.start()
        said = [m for m in window.notice.messages if "32x32" in m]
        assert len(said) == (1 if launch == 1 else 0)
        window.close()


@needs_demo
def test_download_pressed_offline_says_so_in_one_line_and_the_demo_stays(qtbot, first_launch):
    window = first_launch
    generation = window.model.generation
    with qtbot.waitSignal(window.model_failed, timeout=60000) as failed:
        qtbot.mouseClick(bar_button(window, "Download"), Qt.LeftButton)
    message = failed.args[0]
    assert "\n" not in message and len(message) < 300
    assert message.startswith("Could not download the ViT-B/16 ImageNet-1k weights")
    assert "download.pytorch.org cannot be reached (" in message
    assert "Temporary failure in name resolution" in message
    assert message.endswith(f"{specs.DEMO_LABEL} stays in use.")
    assert window.message_box is None and no_dialog_open(window)
    assert window.statusBar().currentMessage() == message
    assert window.no_model_bar.isVisible() and window.no_model_bar.label.text() == message
    qtbot.waitUntil(bar_button(window, "Download").isVisible, timeout=5000)  # to try again
    assert window.model.generation == generation, "the demo model is still the one in use"
    _reads_the_demo(window)
    assert window.analysis is not None and window.predictions.values[0][0] == "ship"


@needs_demo
def test_a_failed_load_of_another_model_puts_the_box_back(qtbot, first_launch, tmp_path):
    window = first_launch
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not safetensors")
    box = window.model_bar.model_box
    box.setCurrentIndex(box.findData("vit_b_32"))  # as a person picks it, then a file
    with qtbot.waitSignal(window.model_failed, timeout=60000):
        window.request_model(ModelRequest("vit_b_32", str(bad), "cpu"))
    _reads_the_demo(window)
    # another architecture whose weights are not downloaded: the bar offers them, the demo stays
    with qtbot.waitSignal(window.worker.download_offered, timeout=60000):
        box.setCurrentIndex(box.findData("vit_b_32"))
        box.activated.emit(box.currentIndex())
    qtbot.waitUntil(lambda: "ViT-B/32" in window.no_model_bar.label.text(), timeout=5000)
    assert f"In use: {specs.DEMO_LABEL}" in window.no_model_bar.label.text()
    _reads_the_demo(window)


@needs_demo
def test_a_failed_first_load_says_no_model(qtbot, tmp_path, offline):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not safetensors")
    window = make_window(qtbot, tmp_path / "s.ini", ModelRequest(str(bad), "default", "cpu"))
    with qtbot.waitSignal(window.model_failed, timeout=60000):
        window.start()
    bar = window.model_bar
    assert bar.model_box.currentText() == "no model"
    assert bar.weights_box.currentText() == "no weights"
    assert window.model_label.text() == "no model"
    assert window.windowTitle() == "vitexplorer — no model"
    # choosing "no model" again loads nothing; choosing the demo loads it
    requested: list[ModelRequest] = []
    bar.model_requested.connect(requested.append)
    bar.model_box.activated.emit(0)
    assert requested == []
    with qtbot.waitSignal(window.model_changed, timeout=60000):
        bar.model_box.setCurrentIndex(bar.model_box.findData(specs.DEMO))
        bar.model_box.activated.emit(bar.model_box.currentIndex())
    assert bar.model_box.findData("") < 0, "the 'no model' entry goes with the first model"
    _reads_the_demo(window)
    window.close()


def test_the_hover_readout_follows_the_map(qtbot, window: MainWindow, photo):
    """Hover a patch, then change the layer with [ and the method: the readout reads the map
    now shown at the same patch, never the previous one's value."""
    drop_and_wait(qtbot, window, photo)
    view = window.image_view
    view.scene().sigMouseMoved.emit(view.view.mapViewToScene(QPointF(5.5, 1.5)))
    token = 1 + 6 + 5

    def attention(layer: int) -> float:
        return float(window.analysis.attention[layer, :, 0, 1:].mean(axis=0).reshape(6, 6)[1, 5])

    prefix = f"patch row 2, col 6 (token {token + 1}) · "
    assert window.hover_label.text() == f"{prefix}attention {attention(2):.4f}"
    qtbot.keyClick(view, Qt.Key_BracketLeft)
    assert window.selection.layer == 1
    assert window.hover_label.text() == f"{prefix}attention {attention(1):.4f}"
    assert attention(1) != pytest.approx(attention(2), abs=1e-4), "the test could not fail"
    window.method_bar.set_method("rollout")
    shown = float(view.heat_values[1, 5])
    assert window.hover_label.text() == f"{prefix}rollout {shown:.4f}"
    assert not np.isclose(shown, attention(1), atol=1e-4)
    window.select_image(window.session.current_key)  # shown again: still the same map
    assert window.hover_label.text() == f"{prefix}rollout {shown:.4f}"
    view.scene().sigMouseMoved.emit(view.view.mapViewToScene(QPointF(-3, -3)))  # off the image
    assert window.hover_label.text() == ""
    qtbot.keyClick(view, Qt.Key_BracketRight)
    assert window.hover_label.text() == "", "nothing hovered: nothing read"


@needs_demo
def test_a_timm_download_pressed_offline_is_one_line_in_the_bar_too(qtbot, first_launch):
    """timm's weights come from the Hugging Face hub: offline, the one connection attempt fails
    and the bar says so at once, as for torchvision's weights; the demo stays in use."""
    pytest.importorskip("timm")
    window = first_launch
    generation = window.model.generation
    with qtbot.waitSignal(window.worker.download_offered, timeout=60000):
        window.request_model(ModelRequest("timm:test_vit", "default", "cpu"))
    qtbot.waitUntil(lambda: bar_button(window, "Download") is not None, timeout=5000)
    with qtbot.waitSignal(window.model_failed, timeout=60000) as failed:
        qtbot.mouseClick(bar_button(window, "Download"), Qt.LeftButton)
    message = failed.args[0]
    assert message.startswith("Could not download the ") and "\n" not in message
    assert "cannot be reached (" in message and "name resolution" in message
    assert message.endswith(f"{specs.DEMO_LABEL} stays in use.")
    assert window.message_box is None and no_dialog_open(window)
    assert window.model.generation == generation
    _reads_the_demo(window)
