"""GUI responsiveness while a fine-tune runs: the gaps between ticks of a 10 ms QTimer on the GUI
thread, from the click on Start until the explorer has adopted the model and re-analysed the
image on screen.

Runs the real main window (offscreen unless QT_QPA_PLATFORM says otherwise) with the fine-tune
tab shown, so the live curves are drawn as they grow, on ../shared/data/cifar10 when it is there
(a folder of class subfolders), otherwise on a synthetic folder of noisy colours. The model is a
small ViT with random weights (saved as a checkpoint first), or ``--model vit_b_32`` with random
weights. Target: the longest gap at most 50 ms.

Two figures put a long gap in context. First the same timer runs for ``--baseline`` seconds in
the same window with nothing else going on: the machine's own stalls (on a shared virtual
machine they reach 50 to 70 ms with no work at all). Then every event the GUI thread handles is
timed, and each gap is reported with the GUI thread's work inside it: the part the app causes.

    python benchmarks/gui_training_responsiveness.py [--per-class 200] [--epochs 4]
        [--freeze last:2] [--model small_vit|vit_b_32] [--data DIR] [--baseline 20]
        [--show-gaps MS]   # list the gaps over MS ms with the GUI events inside them
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QEventLoop, QObject, Slot
from PySide6.QtWidgets import QApplication

ROOT = Path(__file__).resolve().parents[1]
SHARED_CIFAR = ROOT.parent / "shared" / "data" / "cifar10"


def synthetic_folder(root: Path, classes: int = 10, per_class: int = 300) -> Path:
    """Noisy solid colours, 32 x 32, one folder per class."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(classes):
        folder = root / f"class{c}"
        folder.mkdir(parents=True)
        colour = rng.integers(0, 256, 3)
        for i in range(per_class):
            pixels = np.clip(colour + rng.normal(0, 40, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


class TimedApplication(QApplication):
    """Times every event the GUI thread handles while ``busy`` is a list; the time the GUI
    thread spends in events within a gap is the part of the gap that the app itself causes
    (the rest is the machine, or the GUI thread waiting for Python's GIL)."""

    def __init__(self, argv: list[str]) -> None:
        super().__init__(argv)
        self.busy: list[tuple[float, float]] | None = None
        self.slow: list[tuple[float, float, str]] = []  # events over 1 ms: (start, end, what)
        self._depth = 0
        self._gui = threading.get_ident()

    def notify(self, receiver, event) -> bool:
        if self.busy is None or self._depth or threading.get_ident() != self._gui:
            return super().notify(receiver, event)
        self._depth += 1
        start = time.perf_counter()
        try:
            return super().notify(receiver, event)
        finally:
            self._depth -= 1
            end = time.perf_counter()
            self.busy.append((start, end))
            if end - start > 1e-3:
                name = f"{type(receiver).__name__} {receiver.objectName()}".strip()
                what = f"{name} {event.type().name}"
                views = receiver.views() if hasattr(receiver, "views") else []
                if views:  # a graphics scene: name the view that shows it
                    what += f" ({type(views[0]).__name__})"
                self.slow.append((start, end, what))


class Probe(QObject):
    """Timer ticks, and the events that end each phase, recorded on the GUI thread."""

    def __init__(self, status=None, threshold_ms: float = 50.0) -> None:
        super().__init__()
        self.loop = QEventLoop()
        self.status = status  # a label whose text is noted beside each long gap
        self.threshold = threshold_ms / 1e3
        self.long: list[tuple[float, float, str]] = []  # (seconds in, gap ms, status)
        self.ticks: list[float] = []
        self.busy: list[tuple[float, float]] = []  # (start, end) of each event the GUI handled
        self.results: list = []
        self.failures: list[str] = []
        self.batches = 0
        self.trained_at = 0.0
        self.adopted = False

    @Slot()
    def tick(self) -> None:
        now = time.perf_counter()
        if self.ticks and now - self.ticks[-1] > self.threshold and self.status is not None:
            self.long.append((now, 1e3 * (now - self.ticks[-1]), self.status.text()))
        self.ticks.append(now)

    def work(self) -> list[tuple[float, float, float]]:
        """(start, end, GUI work in ms) of each gap between ticks."""
        gaps, i, busy = [], 0, self.busy
        for start, end in zip(self.ticks, self.ticks[1:], strict=False):
            while i < len(busy) and busy[i][1] <= start:
                i += 1
            j, worked = i, 0.0
            while j < len(busy) and busy[j][0] < end:
                worked += max(0.0, min(busy[j][1], end) - max(busy[j][0], start))
                j += 1
            gaps.append((start, end, 1e3 * worked))
        return gaps

    @Slot(object)
    def step_batch(self, _batch) -> None:
        self.batches += 1

    @Slot(object)
    def finished(self, result) -> None:
        self.results.append(result)
        self.trained_at = time.perf_counter()

    @Slot(str)
    def failed(self, message: str) -> None:
        self.failures.append(message)
        self.loop.quit()

    @Slot(object)
    def model_changed(self, info) -> None:
        self.adopted = self.adopted or info.fine_tuned

    @Slot(str)
    def analysis_shown(self, _key: str) -> None:
        if self.adopted:
            self.loop.quit()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="small_vit", choices=["small_vit", "vit_b_32"])
    parser.add_argument("--data", default=None, help="a folder of class subfolders")
    parser.add_argument("--per-class", type=int, default=200)
    parser.add_argument("--test-per-class", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--freeze", default="last:2", help="head, last:K or none")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--baseline",
        type=float,
        default=20.0,
        metavar="S",
        help="first time the timer for S seconds with nothing running (the machine's own jitter)",
    )
    parser.add_argument(
        "--show-gaps", type=float, default=0.0, metavar="MS", help="list the gaps over MS ms"
    )
    args = parser.parse_args()

    import torch
    from PySide6.QtCore import QSettings, QTimer

    from vitexplorer.core.models.loading import load_model, save_checkpoint
    from vitexplorer.core.models.vit import SmallViTConfig
    from vitexplorer.gui.app import configure_pyqtgraph
    from vitexplorer.gui.main_window import MainWindow, sample_image_path
    from vitexplorer.gui.workers import ModelRequest

    app = TimedApplication(sys.argv[:1])
    configure_pyqtgraph()
    tmp = Path(tempfile.mkdtemp(prefix="vitexplorer-bench-"))
    if args.model == "small_vit":
        torch.manual_seed(0)
        config = SmallViTConfig(image_size=32, patch_size=4, width=96, depth=4, heads=3)
        checkpoint = tmp / "small_vit.safetensors"
        save_checkpoint(checkpoint, load_model("small_vit", "none", "cpu", small_config=config))
        request = ModelRequest(str(checkpoint), "default", "cpu")
        described = "small ViT (32 px, 4 px patches, width 96, 4 blocks), random weights"
    else:
        request = ModelRequest("vit_b_32", "none", "cpu")
        described = "ViT-B/32 (224 px), random weights"
    if args.data:
        data, data_text = Path(args.data), args.data
    elif SHARED_CIFAR.is_dir():
        data, data_text = SHARED_CIFAR, f"{SHARED_CIFAR} (CIFAR-10 as image folders)"
    else:
        data = synthetic_folder(tmp / "synthetic")
        data_text = "synthetic noisy colours, 10 classes"

    settings = QSettings(str(tmp / "settings.ini"), QSettings.IniFormat)
    window = MainWindow(settings, request)
    window.resize(1400, 900)
    window.show()
    changes: list = []
    shown: list[str] = []
    window.model_changed.connect(changes.append)
    window.analysis_shown.connect(shown.append)
    window.start([sample_image_path()])
    while not (changes and shown):
        app.processEvents()
        time.sleep(0.005)

    window.tabs.setCurrentIndex(1)
    panel = window.finetune.panel
    form = panel.form
    form.source_box.setCurrentIndex(form.source_box.findData("folder"))
    form.folder_edit.setText(str(data))
    form.refresh_dataset_status()
    form.per_class.setValue(args.per_class)
    form.test_per_class.setValue(args.test_per_class)
    form.epochs.setValue(args.epochs)
    form.batch_size.setValue(args.batch_size)
    kind, _, blocks = args.freeze.partition(":")
    form.freeze_box.setCurrentIndex(form.freeze_box.findData(kind))
    if blocks:
        form.blocks.setValue(int(blocks))
    for _ in range(20):
        app.processEvents()

    # The machine's own timer jitter first: the same timer in the same window, nothing running.
    baseline = Probe()
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(baseline.tick)
    app.busy = baseline.busy
    if args.baseline > 0:
        QTimer.singleShot(round(1e3 * args.baseline), baseline.loop.quit)
        timer.start()
        baseline.loop.exec()
        timer.stop()
    timer.timeout.disconnect(baseline.tick)

    probe = Probe(panel.status if args.show_gaps else None, args.show_gaps or 50.0)
    timer.timeout.connect(probe.tick)
    app.busy = probe.busy
    panel.finished.connect(probe.finished)
    panel.failed.connect(probe.failed)
    window.model_changed.connect(probe.model_changed)
    window.analysis_shown.connect(probe.analysis_shown)

    timer.start()
    started = time.perf_counter()
    panel.start_button.click()
    panel.worker.steps.connect(probe.step_batch)  # a bound slot: it runs on the GUI thread
    probe.loop.exec()  # the application's own event loop until the re-analysis is on screen
    ended = time.perf_counter()
    timer.stop()
    app.busy = None
    if probe.failures:
        print(f"fine-tune failed: {probe.failures[0]}")
        window.close()
        return

    result = probe.results[0]
    print(f"model      {described}, CPU, torch threads {torch.get_num_threads()}")
    print(f"data       {data_text}")
    print(
        f"run        {args.per_class} images/class, freeze {args.freeze}, {args.epochs} epochs, "
        f"batch {args.batch_size}: {result.steps} steps, test accuracy "
        f"{100 * (result.test_acc or 0):.1f}%, cached={result.cached}"
    )
    print(
        f"time       training {probe.trained_at - started:.1f} s (engine {result.seconds:.1f} s), "
        f"then adoption and re-analysis {ended - probe.trained_at:.2f} s"
    )
    print(f"step batches received by the GUI: {probe.batches} for {result.steps} steps")
    print("gaps between ticks of the 10 ms timer; 'GUI work' is the time the GUI thread spent in")
    print("events within one gap (the part of the gap the app itself causes), at most over gaps")
    if len(baseline.ticks) > 1:
        report(f"idle {args.baseline:.0f} s", baseline)
    report("whole run", probe)
    report("training only", probe, until=probe.trained_at)
    work = {end: worked for _start, end, worked in probe.work()}
    for when, gap, status in probe.long:
        print(
            f"  gap {gap:6.1f} ms at {when - probe.ticks[0]:6.2f} s, GUI work in it "
            f"{work.get(when, 0.0):4.1f} ms: {status}"
        )
        for start, end, what in app.slow:
            if when - gap / 1e3 <= start < when:
                print(f"      {1e3 * (end - start):5.1f} ms  {what}")
    window.close()


def report(label: str, probe: Probe, until: float = float("inf")) -> None:
    gaps = [(end, 1e3 * (end - start), worked) for start, end, worked in probe.work()]
    gaps = [g for g in gaps if g[0] <= until]
    lengths = [g[1] for g in gaps]
    print(
        f"{label:14s} {gaps[-1][0] - probe.ticks[0]:5.1f} s   max gap {max(lengths):6.1f} ms   "
        f"p99 {percentile(lengths, 0.99):5.1f} ms   median {percentile(lengths, 0.5):5.1f} ms   "
        f"gaps over 30 ms {sum(g > 30 for g in lengths):3d}   "
        f"most GUI work in a gap {max(g[2] for g in gaps):5.1f} ms"
    )


if __name__ == "__main__":
    main()
    # The figures are printed; Python's teardown of the Qt objects this script drove without
    # an event loop of its own crashed such scripts now and then (SIGSEGV after the last line),
    # so it ends here, as the app does when a thread is left (see gui_latency.py).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
