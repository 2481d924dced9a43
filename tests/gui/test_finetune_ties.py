"""A tie is never shown as right in the fine-tune results: the gallery, the count and the
confusion matrix's caption, in the real main window."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt

from tests.core.test_training_ties import _train_then_zero_the_head
from tests.gui.test_finetune import colour_folder, fill, panel_of
from vitexplorer.core.training import engine as training
from vitexplorer.core.training.events import TestSample as Sample
from vitexplorer.gui.main_window import MainWindow
from vitexplorer.gui.views.training_views import (
    CORRECT_COLOR,
    MISTAKE_COLOR,
    TIE_COLOR,
    ConfusionView,
    SampleGallery,
)


def _frame_colour(gallery: SampleGallery, row: int) -> tuple[int, int, int]:
    image = gallery.item(row).icon().pixmap(gallery.ICON, gallery.ICON).toImage()
    colour = image.pixelColor(2, gallery.ICON // 2)
    return colour.red(), colour.green(), colour.blue()


@pytest.mark.slow
def test_a_zero_head_run_shows_ties_not_right(qtbot, window: MainWindow, tmp_path, monkeypatch):
    monkeypatch.setattr(training._Run, "_train", _train_then_zero_the_head)
    panel = panel_of(window)
    fill(panel, qtbot, colour_folder(tmp_path / "colours", per_class=8), per_class=4,
         test_per_class=4, epochs=1)  # fmt: skip
    finished: list = []
    panel.finished.connect(finished.append)
    with qtbot.waitSignal(panel.finished, timeout=60000):
        qtbot.mouseClick(panel.start_button, Qt.LeftButton)
    result = finished[0]
    # a head of zeros gives each of the 3 classes 1/3: every test image ties, and the argmax
    # (blue, the first class) is "right" for the 4 blue images only by index
    assert result.steps > 0 and result.ties == 12 and result.right == 0
    assert abs(result.test_acc - 1 / 3) < 1e-6
    results = panel.results
    summary = results.summary.text()
    assert "Test accuracy <b>33.3%</b>" in summary
    assert "0 of 12 test images right, 12 ties" in summary
    gallery = results.gallery
    assert gallery.count() == 12 and gallery.ties() == 12 and gallery.mistakes() == 0
    tie = (TIE_COLOR.red(), TIE_COLOR.green(), TIE_COLOR.blue())
    for row in range(gallery.count()):
        item = gallery.item(row)
        assert "✓" not in item.text() and item.text().endswith("(a tie)")
        assert item.foreground().color() == TIE_COLOR
        assert "a tie at 33%" in item.toolTip() and "right" not in item.toolTip()
        assert _frame_colour(gallery, row) == tie
    caption = results.confusion.plot.titleLabel.text
    assert "12 of 12 are ties" in caption
    assert results.confusion.matrix[:, 0].tolist() == [4, 4, 4]  # by argmax, as before
    assert np.array_equal(results.confusion.ties, results.confusion.matrix)


def test_gallery_marks_right_wrong_and_tie_apart(qtbot):
    gallery = SampleGallery()
    qtbot.addWidget(gallery)
    image = np.full((16, 16, 3), 200, np.uint8)
    samples = [
        Sample("right.png", image, 0, 0, 0.9, 0.05),
        Sample("wrong.png", image, 1, 0, 0.8, 0.1),
        Sample("tie.png", image, 0, 0, 0.45, 0.4495),  # two-way: caught by the runner-up
        Sample("old.png", image, 2, 2, 0.7),  # recorded without a runner-up: still read
    ]
    gallery.set_samples(samples, ("a", "b", "c"))
    colours = [gallery.item(i).foreground().color() for i in range(4)]
    assert colours == [CORRECT_COLOR, MISTAKE_COLOR, TIE_COLOR, CORRECT_COLOR]
    assert gallery.mistakes() == 1 and gallery.ties() == 1
    assert "45%" in gallery.item(2).toolTip() and "a tie" in gallery.item(2).toolTip()
    assert gallery.item(0).text() == "a ✓" and gallery.item(3).text() == "c ✓"
    # the right image has no frame: its edge keeps the picture's grey
    assert _frame_colour(gallery, 0) == (200, 200, 200)
    assert _frame_colour(gallery, 1) == (MISTAKE_COLOR.red(), MISTAKE_COLOR.green(), 30)


def test_confusion_caption_counts_ties_only_when_there_are_some(qtbot):
    view = ConfusionView()
    qtbot.addWidget(view)
    matrix = np.array([[3, 1], [0, 4]])
    view.set_matrix(matrix, ("a", "b"))
    assert view.plot.titleLabel.text == "Confusion matrix (test images)"
    view.set_matrix(matrix, ("a", "b"), np.array([[2, 0], [0, 0]]))
    assert "2 of 8 are ties" in view.plot.titleLabel.text
