"""Start the GUI: show the window first, then load torch and the model in the worker."""

from __future__ import annotations

import sys

import pyqtgraph as pg
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from vitexplorer import __version__


def configure_pyqtgraph() -> None:
    pg.setConfigOptions(imageAxisOrder="row-major", antialias=True)


def run_gui(images: list[str]) -> int:
    """Open the main window with ``images`` (or the sample image); returns the exit code."""
    from vitexplorer.gui.main_window import MainWindow, sample_image_path

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setOrganizationName("vitexplorer")
    app.setApplicationName("vitexplorer")
    app.setApplicationVersion(__version__)
    configure_pyqtgraph()
    window = MainWindow()
    window.show()
    QTimer.singleShot(0, lambda: window.start(images or [sample_image_path()]))
    return app.exec()
