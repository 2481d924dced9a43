"""Start the GUI: show the window first, then load torch and the model in the worker."""

from __future__ import annotations

import os
import sys

import pyqtgraph as pg
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from vitexplorer import __version__


def configure_pyqtgraph() -> None:
    pg.setConfigOptions(imageAxisOrder="row-major", antialias=True)


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
    window = MainWindow()
    window.show()
    QTimer.singleShot(0, lambda: window.start(images or [greeting_image_path()]))
    status = app.exec()
    _exit_if_threads_are_stuck(status)
    return status


def _exit_if_threads_are_stuck(status: int) -> None:
    """End the process now if a worker did not stop when the window closed: letting Python tear
    down a running QThread aborts the process (and its settings were already saved)."""
    from vitexplorer.gui.workers import threads_still_running

    stuck = threads_still_running()
    if not stuck:
        return
    print(
        f"vitexplorer: {', '.join(stuck)} did not stop within 5 s of closing; exiting without it",
        file=sys.stderr,
    )
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
