"""The mouse wheel edits a spin box or combo box only when it has the focus; otherwise the panel
under the pointer scrolls (ten notches once turned a weight decay of 0.0001 into 9.8e-08)."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication, QWidget

from tests.gui.test_finetune import panel_of
from vitexplorer.gui.main_window import MainWindow

pytestmark = pytest.mark.slow  # the whole file is left out of the quick suite (-m "not slow")


def wheel(widget: QWidget, notches: int) -> None:
    """``notches`` turns of the wheel (negative: towards the user) over ``widget``'s middle."""
    middle = QPointF(widget.width() / 2, widget.height() / 2)
    for _ in range(abs(notches)):
        event = QWheelEvent(
            middle,
            QPointF(widget.mapToGlobal(middle.toPoint())),
            QPoint(0, 0),
            QPoint(0, 120 if notches > 0 else -120),
            Qt.NoButton,
            Qt.NoModifier,
            Qt.NoScrollPhase,
            False,
        )
        QApplication.sendEvent(widget, event)


def focus(qtbot, window: MainWindow, widget: QWidget) -> None:
    window.activateWindow()
    widget.setFocus(Qt.MouseFocusReason)
    qtbot.waitUntil(widget.hasFocus, timeout=5000)


def test_the_wheel_scrolls_the_panel_past_unfocused_settings(qtbot, window: MainWindow):
    panel = panel_of(window)
    form = panel.form
    qtbot.mouseClick(form.more_button, Qt.LeftButton)  # a column taller than the window
    window.resize(1024, 500)
    qtbot.waitUntil(lambda: panel.form_scroll.verticalScrollBar().maximum() > 0, timeout=5000)
    bar = panel.form_scroll.verticalScrollBar()
    bar.setValue(0)
    decay = form.weight_decay
    assert decay.focusPolicy() == Qt.StrongFocus and form.freeze_box.focusPolicy() == Qt.StrongFocus
    before = decay.value()
    window.setFocus()
    assert not decay.hasFocus()
    wheel(decay, -10)
    assert decay.value() == before  # untouched
    assert bar.value() > 0, "the panel scrolled instead"
    index = form.freeze_box.currentIndex()
    wheel(form.freeze_box, -2)
    assert form.freeze_box.currentIndex() == index

    focus(qtbot, window, decay)  # clicked into: now the wheel is the user's way to change it
    wheel(decay, -1)
    assert decay.value() == before / 2  # its arrows halve and double
    focus(qtbot, window, form.freeze_box)
    wheel(form.freeze_box, -1)
    assert form.freeze_box.currentIndex() == index + 1


def test_other_tabs_spin_boxes_are_guarded_too(qtbot, window: MainWindow):
    """The guard is the application's, not the Train tab's: every spin box and combo box in the
    window, whoever made it, gets a focus policy the wheel does not take."""
    from PySide6.QtWidgets import QAbstractSpinBox, QComboBox

    widgets = window.findChildren(QAbstractSpinBox) + window.findChildren(QComboBox)
    assert len(widgets) > 10
    assert all(w.focusPolicy() != Qt.WheelFocus for w in widgets)
