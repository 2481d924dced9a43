"""Start the GUI: show the window first, then load torch and the model in the worker."""

from __future__ import annotations

import os
import sys
from typing import TypeGuard

import pyqtgraph as pg
from PySide6.QtCore import QCoreApplication, QEvent, QObject, Qt, QTimer
from PySide6.QtWidgets import (
    QAbstractScrollArea,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QWidget,
)

from vitexplorer import __version__


def configure_pyqtgraph() -> None:
    pg.setConfigOptions(imageAxisOrder="row-major", antialias=True)


class WheelGuard(QObject):
    """The mouse wheel edits a spin box or a combo box only when it has the keyboard focus
    (clicked or tabbed into); otherwise the wheel goes on to what holds it, so a panel scrolls
    under the pointer instead of changing the settings it passes over. Installed once on the
    application, it covers every such widget, those added later included."""

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        kind = event.type()
        if kind == QEvent.Type.Polish and _guarded(watched):
            _no_wheel_focus(watched)
        elif kind == QEvent.Type.Wheel and _guarded(watched) and not watched.hasFocus():
            area = _scroll_area_of(watched)
            if area is not None:  # Qt does not pass a sent wheel event on to parents
                QCoreApplication.sendEvent(area.viewport(), event)
            return True
        return False


def _scroll_area_of(widget: QWidget) -> QAbstractScrollArea | None:
    """The nearest scroll area holding ``widget``, if any."""
    parent = widget.parentWidget()
    while parent is not None and not isinstance(parent, QAbstractScrollArea):
        parent = parent.parentWidget()
    return parent


def _guarded(watched: QObject) -> TypeGuard[QWidget]:
    return isinstance(watched, (QAbstractSpinBox, QComboBox))


def _no_wheel_focus(widget: QWidget) -> None:
    """A wheel would give these widgets the focus (Qt.WheelFocus), and then take the wheel."""
    if widget.focusPolicy() == Qt.FocusPolicy.WheelFocus:
        widget.setFocusPolicy(Qt.FocusPolicy.StrongFocus)


def install_wheel_guard(app: QCoreApplication | None = None) -> WheelGuard | None:
    """Install the :class:`WheelGuard` on ``app`` (the running application) once; widgets that
    exist already are given a focus policy the wheel does not change."""
    app = app or QApplication.instance()
    if app is None:
        return None
    guard = app.findChild(WheelGuard, options=Qt.FindChildOption.FindDirectChildrenOnly)
    if guard is None:
        guard = WheelGuard(app)  # a child of the application: it lives as long
        app.installEventFilter(guard)
        for widget in QApplication.allWidgets():
            if _guarded(widget):
                _no_wheel_focus(widget)
    return guard


def no_display_message() -> str | None:
    """Why no window can open here (Linux without X or Wayland), or None."""
    if not sys.platform.startswith("linux") or os.environ.get("QT_QPA_PLATFORM"):
        return None
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return None
    return (
        "vitexplorer: no display to open a window on (DISPLAY and WAYLAND_DISPLAY are unset). "
        "For work without a window use 'vitexplorer analyze IMAGE... --model NAME --out DIR'."
    )


def run_gui(images: list[str]) -> int:
    """Open the main window with ``images`` (or a photo the demo model gets right); returns
    the exit code."""
    message = no_display_message()
    if message:
        print(message, file=sys.stderr)
        return 1
    from vitexplorer.gui.main_window import MainWindow, greeting_image_path

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setOrganizationName("vitexplorer")
    app.setApplicationName("vitexplorer")
    app.setApplicationVersion(__version__)
    configure_pyqtgraph()
    install_wheel_guard(app)
    window = MainWindow()
    window.show()
    QTimer.singleShot(0, lambda: window.start(images or [greeting_image_path()]))
    status = app.exec()
    _exit_if_threads_are_stuck(status)
    return status


def _exit_if_threads_are_stuck(status: int) -> None:
    """End the process now if a worker or an image decoder did not stop when the window closed:
    letting Python tear down a running QThread aborts the process, and a decoder inside a hostile
    file could keep it busy for minutes (the settings were already saved)."""
    from vitexplorer.gui.previews import decoders_still_running
    from vitexplorer.gui.workers import threads_still_running

    stuck = threads_still_running() + decoders_still_running()
    if not stuck:
        return
    print(
        f"vitexplorer: {', '.join(stuck)} did not stop within 5 s of closing; exiting without it",
        file=sys.stderr,
    )
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
