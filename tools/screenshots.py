"""Screenshots of every tab of the real window at common screen sizes, for a person to look at.

Run under X (Xvfb works): it opens the window with the demo model (or ``--model``), loads the
images, and for each size (1024x700, 1280x800, 1920x1080 by default) shows each tab (and each
tab of the explorer's right-hand docks) and saves a PNG per view::

    Xvfb :107 -screen 0 1920x1080x24 &
    DISPLAY=:107 QT_QPA_PLATFORM=xcb python tools/screenshots.py --out /tmp/shots IMAGE...

Settings go to a throwaway file, so the person's saved layout is neither used nor changed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

SIZES = ((1024, 700), (1280, 800), (1920, 1080))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's vitexplorer


def parse_size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    return int(width), int(height)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="*", help="images to open (default: the sample image)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the PNGs")
    parser.add_argument("--model", default="demo", help="model to load (default: demo)")
    parser.add_argument("--weights", default="default")
    parser.add_argument(
        "--size", type=parse_size, action="append", help="WxH; repeat (default: the three)"
    )
    args = parser.parse_args(argv)

    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from vitexplorer.gui.app import configure_pyqtgraph
    from vitexplorer.gui.main_window import MainWindow, sample_image_path
    from vitexplorer.gui.workers import ModelRequest

    app = QApplication.instance() or QApplication(sys.argv[:1])
    configure_pyqtgraph()
    args.out.mkdir(parents=True, exist_ok=True)
    settings = QSettings(str(Path(tempfile.mkdtemp()) / "s.ini"), QSettings.IniFormat)
    window = MainWindow(settings, ModelRequest(args.model, args.weights, "cpu"))
    window.show()

    def wait(ms: int) -> None:
        from PySide6.QtCore import QEventLoop, QTimer

        loop = QEventLoop()
        QTimer.singleShot(ms, loop.quit)
        loop.exec()

    shown: list[str] = []
    window.analysis_shown.connect(shown.append)
    window.start(args.images or [sample_image_path()])
    for _ in range(600):  # up to a minute for the model and the first image
        if shown:
            break
        wait(100)
    if not shown:
        print("no image was analysed within a minute", file=sys.stderr)
        return 1
    for _ in range(600):  # the other images: until the worker is idle (its busy bar hides)
        if window.busy.isHidden():
            break
        wait(100)
    wait(500)
    written = []
    for width, height in args.size or SIZES:
        window.resize(width, height)
        for index in range(window.tabs.count()):
            window.tabs.setCurrentIndex(index)
            name = window.tabs.tabText(index).lower().replace(" ", "-")
            wait(600)
            path = args.out / f"{width}x{height}-{name}.png"
            window.grab().save(str(path))
            written.append(path)
            if index != 0:
                continue
            tabbed = [d for d in window.docks if window.tabifiedDockWidgets(d)]
            for dock in tabbed:  # every dock that shares its place with others, in front
                dock.raise_()
                wait(400)
                path = args.out / f"{width}x{height}-{name}-{dock.objectName()}.png"
                window.grab().save(str(path))
                written.append(path)
                if dock.widget() is window.overview:  # its second view: every open image
                    window.overview.set_mode("images")
                    wait(600)
                    path = args.out / f"{width}x{height}-{name}-overview-images.png"
                    window.grab().save(str(path))
                    written.append(path)
                    window.overview.set_mode("layers_heads")
            if tabbed:
                tabbed[0].raise_()
        window.tabs.setCurrentIndex(0)
    for path in written:
        print(path)
    window.close()
    app.processEvents()
    return 0


if __name__ == "__main__":
    sys.exit(main())
