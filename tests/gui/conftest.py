"""The real main window, offscreen, with a tiny checkpoint so each test takes a moment."""

from __future__ import annotations

import gc
import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from PySide6.QtCore import QSettings

from vitexplorer.core.models.loading import load_model, save_checkpoint
from vitexplorer.core.models.vit import SmallViTConfig
from vitexplorer.gui.app import configure_pyqtgraph
from vitexplorer.gui.main_window import MainWindow
from vitexplorer.gui.workers import ModelRequest

# a 6x6 patch grid, three layers, three heads: small, but not square-symmetric in anything
GUI_CONFIG = SmallViTConfig(image_size=48, patch_size=8, width=48, depth=3, heads=3, num_classes=7)


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = load_model("small_vit", "none", "cpu", small_config=GUI_CONFIG)
    path = tmp_path_factory.mktemp("models") / "tiny.safetensors"
    save_checkpoint(path, model, {"class_names": [f"kind {i}" for i in range(7)]})
    return path


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    """A smooth colourful 80x60 picture (landscape, so the centre crop matters)."""
    y, x = np.mgrid[0:60, 0:80]
    rgb = np.stack([x * 3, y * 4, (x + y) * 2], axis=-1).clip(0, 255).astype(np.uint8)
    path = tmp_path / "photo.png"
    Image.fromarray(rgb).save(path)
    return path


def make_window(qtbot, settings_path: Path, request: ModelRequest | None) -> MainWindow:
    configure_pyqtgraph()
    settings = QSettings(str(settings_path), QSettings.IniFormat)
    window = MainWindow(settings, request)
    qtbot.addWidget(window)
    window.resize(1200, 800)
    window.show()
    return window


@pytest.fixture(autouse=True)
def collect_closed_windows() -> Iterator[None]:
    """After each test, collect its closed windows on the GUI thread. Left to Python's cyclic
    garbage collector, a window (its Qt objects, its stopped worker thread) may be destroyed
    by whichever thread happens to allocate next, such as the next test's model worker, and
    Qt aborts when Qt objects are destroyed from a thread that does not own them."""
    yield
    gc.collect()


def running_window(qtbot, settings_path: Path, model: Path) -> Iterator[MainWindow]:
    """The window with ``model`` loaded, for a fixture to yield from; on closing, the model
    worker's thread must have ended."""
    window = make_window(qtbot, settings_path, ModelRequest(str(model)))
    with qtbot.waitSignal(window.model_changed, timeout=30000):
        window.start()
    thread = window.model_session.worker_thread.thread
    yield window
    window.close()
    assert thread.isFinished(), "the model worker thread outlived the window"


@pytest.fixture
def window(qtbot, tmp_path: Path, checkpoint: Path) -> Iterator[MainWindow]:
    yield from running_window(qtbot, tmp_path / "settings.ini", checkpoint)
