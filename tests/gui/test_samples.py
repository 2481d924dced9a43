"""The bundled sample photos: ones the demo model gets right (the app opens on the first), each
offered under File > Open sample image, and shipped in the wheel."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtWidgets import QMenu

from tests.gui.test_main_window import drop_and_wait  # noqa: F401  (the window fixture's module)
from vitexplorer.core.models import spec as specs
from vitexplorer.gui.main_window import SAMPLES, MainWindow, greeting_image_path, sample_image_path

ROOT = Path(__file__).parents[2]
CIFAR_CLASS = {  # what each photo shows, in CIFAR-10's words
    "container-ship.jpg": "ship",
    "sports-car.jpg": "automobile",
    "robin.jpg": "bird",
    "border-collie.jpg": "dog",
}


@pytest.mark.slow
@pytest.mark.skipif(not specs.demo_path().is_file(), reason="no demo model in this installation")
def test_the_demo_model_gets_every_sample_right() -> None:
    from vitexplorer.core.explain.analysis import analyze_image
    from vitexplorer.core.io.images import load_image
    from vitexplorer.core.models.loading import load_model

    assert set(SAMPLES) == set(CIFAR_CLASS)
    model = load_model(specs.DEMO, device="cpu")
    for name, truth in CIFAR_CLASS.items():
        top = analyze_image(model, load_image(sample_image_path(name))).predictions
        assert top[0].name == truth, (name, [(p.name, p.probability) for p in top])
        assert top[0].probability > 2 * top[1].probability, name  # not a near tie
    assert greeting_image_path() == sample_image_path("container-ship.jpg")


def test_the_samples_are_packaged_and_credited() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11 on
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["vitexplorer.resources"]
    credits = (ROOT / "vitexplorer" / "resources" / "README.md").read_text()
    for name in SAMPLES:
        assert Path(sample_image_path(name)).is_file()
        assert f"*{Path(name).suffix}" in patterns, name
        assert f"`{name}`" in credits and "Unsplash" in credits


@pytest.mark.slow
def test_file_open_sample_offers_each_photo(qtbot, window: MainWindow) -> None:
    menu = next(m for m in window.findChildren(QMenu) if m.title() == "Open &sample image")
    actions = menu.actions()
    assert [a.text() for a in actions] == list(SAMPLES.values())
    with qtbot.waitSignal(window.analysis_shown, timeout=30000):
        actions[2].trigger()  # the robin
    entry = window.session.current
    assert entry.name == "robin.jpg" and entry.source == sample_image_path("robin.jpg")
    assert window.analysis.display.shape[:2] == (640, 640)  # the photo, square already
    assert [a.text() for a in window.recent_menu.actions()] == [], "a sample is not 'recent'"
