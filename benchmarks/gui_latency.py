"""GUI responsiveness: time to a visible window, the redraw after a click on a patch, and the
time from choosing a model to its first analysis on screen.

Runs the real main window offscreen with torchvision ViT-B/16 (random weights) on a photo, then
selects patches and layers the way clicks and key presses do, and times each redraw (numpy
slicing of the stored attention plus pyqtgraph updates, with pending paint events processed).
Then it switches the window to each model of ``--switch`` in turn, as the model box does, and
times the model's arrival (the status bar's "Loaded") and its first analysis of the photo on
screen (random weights; the analytics tab is not opened, so its structure is not read).

    python benchmarks/gui_latency.py [IMAGE] [--model vit_b_16] [--clicks 200]
                                     [--switch small_vit vit_b_32 vit_b_16 ...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

START = time.perf_counter()
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", nargs="?", default=None)
    parser.add_argument("--model", default="vit_b_16")
    parser.add_argument("--clicks", type=int, default=200)
    parser.add_argument(
        "--switch", nargs="*", default=["small_vit", "vit_b_32", "vit_b_16", "vit_l_16"]
    )
    args = parser.parse_args()

    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    app = QApplication(sys.argv[:1])
    from vitexplorer.gui.app import configure_pyqtgraph
    from vitexplorer.gui.main_window import MainWindow, sample_image_path
    from vitexplorer.gui.workers import ModelRequest

    configure_pyqtgraph()
    settings = QSettings(os.path.join(tempfile.mkdtemp(), "s.ini"), QSettings.IniFormat)
    window = MainWindow(settings, ModelRequest(args.model, "none", "cpu"))
    window.resize(1400, 900)
    window.show()
    app.processEvents()
    shown = time.perf_counter() - START
    torch_loaded_before_window = "torch" in sys.modules

    done: list[str] = []
    window.analysis_shown.connect(done.append)
    window.start([args.image or sample_image_path()])
    while not done:
        app.processEvents()
        time.sleep(0.005)
    ready = time.perf_counter() - START

    rows, cols = window.analysis.spec.grid
    own = []  # vitexplorer's share: slicing the stored maps and handing them to the views
    for i in range(args.clicks):
        start = time.perf_counter()
        window.select_patch((i * 3) % rows, (i * 11) % cols)
        own.append(time.perf_counter() - start)
        app.processEvents()
    times = []
    for i in range(args.clicks):
        start = time.perf_counter()
        if i % 10 == 9:
            window.step_layer(1 if (i // 10) % 2 == 0 else -1)
        else:
            window.select_patch((i * 7) % rows, (i * 5) % cols)
        window.image_view.repaint()
        app.processEvents()
        times.append(time.perf_counter() - start)

    switches = []  # (model, seconds to model ready, seconds to its first analysis on screen)
    ready_at: list[float] = []
    window.model_changed.connect(lambda *_: ready_at.append(time.perf_counter()))
    for name in args.switch:
        done.clear()
        ready_at.clear()
        start = time.perf_counter()
        window.request_model(ModelRequest(name, "none", "cpu"))
        while not done or not ready_at:
            app.processEvents()
            time.sleep(0.002)
        switches.append((name, ready_at[0] - start, time.perf_counter() - start))
    window.close()
    ms = sorted(t * 1e3 for t in times)
    print(f"model {args.model} (random weights), {rows}x{cols} patches, CPU")
    print(
        f"window shown after start   {shown:6.2f} s (torch imported by then: "
        f"{torch_loaded_before_window})"
    )
    print(f"first analysis on screen   {ready:6.2f} s")
    print(
        f"redraw per click/layer     median {statistics.median(ms):.1f} ms, "
        f"95th percentile {ms[int(0.95 * len(ms))]:.1f} ms, max {ms[-1]:.1f} ms"
    )
    print(
        "  of which vitexplorer's own work, without painting: median "
        f"{statistics.median(own) * 1e3:.1f} ms"
    )
    for name, model_ready, first in switches:
        print(
            f"switch to {name:<12} model ready {model_ready:6.2f} s, first analysis on "
            f"screen {first:6.2f} s"
        )


if __name__ == "__main__":
    main()
    # The figures are printed. The app itself ends through app.exec() and its own check for
    # threads still running (vitexplorer/gui/app.py); this script drives the window without an
    # event loop of its own, and Python's teardown of its Qt objects crashed it now and then
    # (SIGSEGV after the last line, seen once in five runs), so it ends here, as the app does
    # when a thread is left.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
