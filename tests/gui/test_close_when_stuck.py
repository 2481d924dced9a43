"""Closing the window while the model worker is stuck in a call that cannot be interrupted: the
app saves its settings and ends, without Qt's abort for a running QThread destroyed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # the whole file is left out of the quick suite (-m "not slow")

_SCRIPT = textwrap.dedent(
    """
    import os, sys, threading
    from PySide6.QtCore import QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    import vitexplorer.core.io.images as data
    from vitexplorer.gui import app as gui_app
    from vitexplorer.gui.main_window import MainWindow
    from vitexplorer.gui.workers import ModelRequest

    checkpoint, photo, settings_path = sys.argv[1:4]
    inside, never = threading.Event(), threading.Event()

    def stuck(source, *args, **kwargs):
        print("reading", flush=True)
        inside.set()
        never.wait()  # a read that never returns, like a FIFO with no writer

    data.load_image = stuck
    application = QApplication([])
    window = MainWindow(QSettings(settings_path, QSettings.IniFormat), ModelRequest(checkpoint))
    window.show()
    poll = QTimer()
    poll.timeout.connect(lambda: inside.is_set() and window.close())
    poll.start(50)
    window.start([photo])
    window.worker.model_failed.connect(lambda message: (print(message, flush=True), os._exit(3)))
    status = application.exec()
    gui_app._exit_if_threads_are_stuck(status)
    print("not reached: the worker was stuck", flush=True)
    """
)


def test_closing_with_a_stuck_worker_ends_cleanly(tmp_path: Path, checkpoint: Path, photo: Path):
    settings = tmp_path / "settings.ini"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(checkpoint), str(photo), str(settings)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    seconds = time.monotonic() - started
    assert "reading" in done.stdout, done.stderr  # the worker really was inside the read
    assert done.returncode == 0, done.stderr
    assert "QThread: Destroyed" not in done.stderr
    assert "did not stop within 5 s of closing" in done.stderr
    assert "not reached" not in done.stdout
    assert "window_state" in settings.read_text()  # what the window saves on close was saved
    assert seconds < 60
