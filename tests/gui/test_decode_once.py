"""The image is decoded once per job chain (issue 23, step 3): in compare mode with relevance
for two classes, the explorer's and the compared model's workers analyse the image and compute
four relevance maps from one decode, not one decode per job."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from tests.gui.test_compare_models import compare_with, drawn, other, window  # noqa: F401
from tests.gui.test_methods import choose
from vitexplorer.core.io import images as image_io
from vitexplorer.gui.main_window import MainWindow

pytestmark = pytest.mark.slow


def test_compare_with_relevance_for_two_classes_decodes_the_image_once(
    qtbot,
    window: MainWindow,  # noqa: F811
    photo: Path,
    other: Path,  # noqa: F811
    monkeypatch,
):
    decoded: list[object] = []
    real = image_io.load_image

    def counting(source, *args, **kwargs):
        # the previews (shown before any analysis) have a decoder of their own; every other
        # decode, in either model's worker, counts
        if not any(
            f.filename.endswith(("gui/previews.py", "gui\\previews.py")) for f in inspect.stack()
        ):
            decoded.append(source)
        return real(source, *args, **kwargs)

    monkeypatch.setattr(image_io, "load_image", counting)
    models = compare_with(qtbot, window, other, monkeypatch, photo)
    panel = models.panel
    choose(window.method_bar.method_box, "relevance")
    drawn(qtbot, window)
    qtbot.waitUntil(lambda: window.image_view.heat_values.size > 0, timeout=30000)
    first = window.image_view.heat_values.copy()
    chosen = window.analysis.predictions[2].index
    choose(window.method_bar.target_box, chosen)
    qtbot.waitUntil(lambda: "computing" not in panel.view.title.text, timeout=30000)
    qtbot.waitUntil(lambda: "computing" not in window.image_view.title.text, timeout=30000)
    assert abs(window.image_view.heat_values - first).max() > 0  # another class's map
    # two analyses (A's and B's) and four relevance maps: one decode of the photo
    assert [str(s) for s in decoded] == [str(photo)], decoded
