"""GUI responsiveness while a fine-tune runs: the gaps between ticks of a 10 ms QTimer on the GUI
thread, from the click on Start until the explorer has adopted the model and re-analysed the
image on screen.

Runs the real main window (offscreen unless QT_QPA_PLATFORM says otherwise) with the fine-tune
tab shown, so the live curves are drawn as they grow, on ../shared/data/cifar10 when it is there
(a folder of class subfolders), otherwise on a synthetic folder of noisy colours. The model is a
small ViT with random weights (saved as a checkpoint first), or ``--model vit_b_32`` with random
weights. Target: the longest gap at most 50 ms.

    python benchmarks/gui_training_responsiveness.py [--per-class 200] [--epochs 4]
        [--freeze last:2] [--model small_vit|vit_b_32] [--data DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QEventLoop, QObject, Slot  # noqa: E402

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


class Probe(QObject):
    """Timer ticks, and the events that end each phase, recorded on the GUI thread."""

    def __init__(self, status=None, threshold_ms: float = 50.0) -> None:  # noqa: ANN001
        super().__init__()
        self.loop = QEventLoop()
        self.status = status  # a label whose text is noted beside each long gap
        self.threshold = threshold_ms / 1e3
        self.long: list[tuple[float, float, str]] = []  # (seconds in, gap ms, status)
        self.ticks: list[float] = []
        self.results: list = []
        self.failures: list[str] = []
        self.batches = 0
        self.trained_at = 0.0
        self.adopted = False

    @Slot()
    def tick(self) -> None:
        now = time.perf_counter()
        if self.ticks and now - self.ticks[-1] > self.threshold and self.status is not None:
            where = now - self.ticks[0]
            self.long.append((where, 1e3 * (now - self.ticks[-1]), self.status.text()))
        self.ticks.append(now)

    @Slot(object)
    def step_batch(self, _batch) -> None:  # noqa: ANN001
        self.batches += 1

    @Slot(object)
    def finished(self, result) -> None:  # noqa: ANN001
        self.results.append(result)
        self.trained_at = time.perf_counter()

    @Slot(str)
    def failed(self, message: str) -> None:
        self.failures.append(message)
        self.loop.quit()

    @Slot(object)
    def model_changed(self, info) -> None:  # noqa: ANN001
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
        "--show-gaps", type=float, default=0.0, metavar="MS", help="list the gaps over MS ms"
    )
    args = parser.parse_args()

    import torch
    from PySide6.QtCore import QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    from vitexplorer.core.models import load_model, save_checkpoint
    from vitexplorer.core.vit import SmallViTConfig
    from vitexplorer.gui.app import configure_pyqtgraph
    from vitexplorer.gui.main_window import MainWindow, sample_image_path
    from vitexplorer.gui.workers import ModelRequest

    app = QApplication(sys.argv[:1])
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

    probe = Probe(panel.status if args.show_gaps else None, args.show_gaps or 50.0)
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(probe.tick)
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
    ticks, results, failures = probe.ticks, probe.results, probe.failures
    trained = probe.trained_at
    steps_received = probe.batches
    if failures:
        print(f"fine-tune failed: {failures[0]}")
        window.close()
        return

    result = results[0]
    gaps = [1e3 * (b - a) for a, b in zip(ticks, ticks[1:], strict=False)]
    training = [g for g, t in zip(gaps, ticks[1:], strict=False) if t <= trained]
    print(f"model      {described}, CPU, torch threads {torch.get_num_threads()}")
    print(f"data       {data_text}")
    print(
        f"run        {args.per_class} images/class, freeze {args.freeze}, {args.epochs} epochs, "
        f"batch {args.batch_size}: {result.steps} steps, test accuracy "
        f"{100 * (result.test_acc or 0):.1f}%, cached={result.cached}"
    )
    print(
        f"time       training {trained - started:.1f} s (engine {result.seconds:.1f} s), then "
        f"adoption and re-analysis {ended - trained:.2f} s"
    )
    print(f"step batches received by the GUI: {steps_received} for {result.steps} steps")
    for label, values in (("whole run", gaps), ("training only", training)):
        print(
            f"{label:14s} ticks {len(values) + 1:6d}   max gap {max(values):6.1f} ms   "
            f"p99 {percentile(values, 0.99):5.1f} ms   median {percentile(values, 0.5):5.1f} ms"
        )
    for where, gap, status in probe.long:
        print(f"  gap {gap:6.1f} ms at {where:6.2f} s: {status}")
    window.close()


if __name__ == "__main__":
    main()
