"""A drop of many images: how soon the window answers again, and its longest stall.

Makes ``--count`` tiny PNGs (32 x 32) in a temporary folder, opens the real main window offscreen
with the small ViT (random weights, CPU), and drops the folder on it (``add_images``, what a drop
calls). A 10 ms QTimer ticks on the GUI thread throughout; reported: the time the drop call takes
to return, the time to its first tick after the drop (the window answering), the time until every
image is in the strip, and the largest gap between two ticks from the drop until ``--settle``
seconds after the last image came in (thumbnail decoding included).

``--old`` puts back the strip's previous way for comparison (each thumbnail found by scanning the
whole strip, every image added in one go and every thumbnail decoded at once).

    python benchmarks/drop_many.py [--count 20000] [--settle 2] [--old]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # this checkout's vitexplorer, installed or not
    sys.path.insert(0, str(ROOT))


def make_images(folder: Path, count: int) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(count):
        pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i:05d}.png", compress_level=1)


def use_old_way() -> None:
    """The strip and the drop as they were before issue 22."""
    from PySide6.QtCore import Qt

    from vitexplorer.core.explorer.session import expand_paths
    from vitexplorer.gui.main_window import MainWindow
    from vitexplorer.gui.views.panels import ThumbnailStrip

    def item_for(self, key):
        for i in range(self.count()):
            if self.item(i).data(Qt.UserRole) == key:
                return self.item(i)
        return None

    def add_images(self, paths):
        for i, path in enumerate(expand_paths(paths)):
            key = self._add_entry(Path(path).name, path, select=i == 0)
            if i:
                self.previews.request(key, path)

    ThumbnailStrip.item_for = item_for
    ThumbnailStrip._ask_for_visible = lambda self: None
    MainWindow.add_images = add_images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--settle", type=float, default=2.0)
    parser.add_argument("--old", action="store_true")
    args = parser.parse_args()

    from PySide6.QtCore import QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    app = QApplication(sys.argv[:1])
    from vitexplorer.gui.app import configure_pyqtgraph
    from vitexplorer.gui.main_window import MainWindow
    from vitexplorer.gui.workers import ModelRequest

    if args.old:
        use_old_way()
    temp = tempfile.TemporaryDirectory()
    folder = Path(temp.name) / "many"
    folder.mkdir()
    made = time.perf_counter()
    make_images(folder, args.count)
    print(f"{args.count} PNGs made in {time.perf_counter() - made:.1f} s")

    configure_pyqtgraph()
    settings = QSettings(os.path.join(temp.name, "s.ini"), QSettings.IniFormat)
    window = MainWindow(settings, ModelRequest("small_vit", "none", "cpu"))
    window.resize(1400, 900)
    window.show()
    loaded: list[object] = []
    window.model_changed.connect(lambda *a: loaded.append(a))
    window.start()
    while not loaded:
        app.processEvents()
        time.sleep(0.005)

    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    for _ in range(20):
        app.processEvents()
        time.sleep(0.01)

    dropped = time.perf_counter()
    ticks.append(dropped)
    window.add_images([str(folder)])
    returned = time.perf_counter() - dropped
    while window.thumbnails.count() < args.count:
        app.processEvents()
    all_in = time.perf_counter() - dropped
    settle_end = time.perf_counter() + args.settle
    while time.perf_counter() < settle_end:
        app.processEvents()
    after = [t for t in ticks if t >= dropped]
    first_tick = next((t - dropped for t in after[1:]), float("nan"))
    gap = max(b - a for a, b in zip(after, after[1:], strict=False))
    way = "old" if args.old else "new"
    print(
        f"{way}: {args.count} images; drop call returned in {returned * 1000:.0f} ms; "
        f"first 10 ms tick after {first_tick * 1000:.0f} ms; all in the strip after "
        f"{all_in:.2f} s; longest stall {gap * 1000:.0f} ms (until {args.settle:g} s after)"
    )
    timer.stop()
    window.close()


if __name__ == "__main__":
    main()
    # The figures are printed; Python's teardown of the Qt objects this script drove without
    # an event loop of its own crashed such scripts now and then (SIGSEGV after the last line),
    # so it ends here, as the app does when a thread is left (see gui_latency.py).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
