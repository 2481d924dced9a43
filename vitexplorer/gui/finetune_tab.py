"""The fine-tune tab's wiring into the main window.

The explorer and the fine-tune panel are two tabs of the central area; the explorer's docks and
toolbars step aside while another tab is shown, and come back exactly as they were. A run that
learnt something hands its model to the explorer's worker (which owns it from then on), so the
explorer predicts with the dataset's class names; a test image clicked in the gallery opens in
the explorer; File > Save model writes the fine-tuned model.
"""

from __future__ import annotations

import os

import numpy as np
from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QObject
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QFileDialog, QTabWidget

from vitexplorer.core.models.spec import DEMO
from vitexplorer.gui.app import install_wheel_guard
from vitexplorer.gui.finetune_panel import FinetunePanel, model_spec
from vitexplorer.gui.workers import ModelInfo

EXPLORER, FINETUNE = 0, 1
MODEL_FILTER = "vitexplorer model (*.safetensors)"
TRAIN_PROBLEM = "train-problem"  # the notice bar's tag for the Train tab's failures


def png_bytes(image: np.ndarray) -> bytes:
    """An (H, W, 3) uint8 array encoded as PNG, with Qt alone (no torch, no PIL import)."""
    array = np.ascontiguousarray(image)
    h, w, _ = array.shape
    qimage = QImage(array.data, w, h, 3 * w, QImage.Format.Format_RGB888)
    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    qimage.save(buffer, "PNG")  # type: ignore[call-overload]  # the stub says bytes; PySide6 takes str
    return bytes(buffer.data().data())


class FinetuneTab(QObject):
    """Owns the panel and connects it to ``window`` (a MainWindow)."""

    def __init__(self, window, tabs: QTabWidget) -> None:
        super().__init__(window)
        install_wheel_guard()  # once per application: settings take the wheel only when focused
        self.window = window
        self.tabs = tabs
        self.panel = FinetunePanel(window.settings)
        self.adopted = None  # the FinetuneResult whose model the explorer uses, until saved
        self._explorer_state: QByteArray | None = None  # the layout while another tab shows
        self._explorer_width = 0  # the window's width when the explorer's docks stepped aside
        tabs.addTab(self.panel, "Train")
        tabs.currentChanged.connect(self._tab_changed)
        self.panel.model_trained.connect(self._adopt)
        self.panel.sample_opened.connect(self._open_sample)
        self.panel.problem.connect(self._problem)
        self.panel.notice.connect(self._notice)
        self.panel.saved.connect(self._saved)
        self.panel.busy_changed.connect(self.update_actions)
        self.panel.run_starting.connect(self._run_starting)

    # --- tabs -----------------------------------------------------------------------------
    def show_explorer(self) -> None:
        self.tabs.setCurrentIndex(EXPLORER)

    def show_panel(self) -> None:
        self.tabs.setCurrentIndex(FINETUNE)

    def _tab_changed(self, index: int) -> None:
        """Every tab but the explorer fills the central area: the explorer's docks (but floating
        ones) and its bars step aside (once, however many tabs are visited) and come back with
        the explorer. The window's state is kept when they go and restored when they come back:
        shown again one by one, Qt gave the docks other sizes than they had."""
        if index != EXPLORER:
            self._step_aside()
        else:
            self._restore_docks()

    def _step_aside(self) -> None:
        window = self.window
        if self._explorer_state is not None:
            return
        self._explorer_state = window.layout_state()
        self._explorer_width = window.width()
        for dock in window.docks:
            if not dock.isFloating():
                dock.hide()
            # a dock shown now would cover this tab, and go again when the explorer comes back
            dock.toggleViewAction().setEnabled(False)
        for bar in window.explorer_bars:
            bar.hide()

    def _restore_docks(self) -> None:
        window = self.window
        state, self._explorer_state = self._explorer_state, None
        if state is None:
            return
        window.set_layout_state(state)
        if window.width() != self._explorer_width:  # resized meanwhile: the column follows
            window.column_share.apply()
        for dock in window.docks:
            dock.toggleViewAction().setEnabled(True)

    def reset_layout(self, state: QByteArray) -> None:
        """View > Reset layout: ``state`` now, or when the explorer comes back."""
        self.window.column_share.offset = 0  # the column's default share of the width too
        if self._explorer_state is not None:
            self._explorer_state = state
            self._explorer_width = -1  # the column's width is set when the explorer is back
        else:
            self.window.set_layout_state(state)
            self.window.column_share.apply()

    def before_close(self) -> None:
        """Put the explorer's layout back (it is what the window remembers), then cancel any
        job and wait for the fine-tune thread."""
        self._restore_docks()
        self.panel.shutdown()

    # --- the explorer's model -------------------------------------------------------------
    def model_ready(self, info: ModelInfo) -> None:
        self.adopted = self.panel.result if info.fine_tuned else None
        self.panel.set_model(info)
        if info.fine_tuned:
            result = self.panel.result
            scratch = result is not None and result.config.from_scratch
            label = "trained here, not saved" if scratch else "fine-tuned, not saved"
            # the box names the entry the run started from: the demo, not "Small ViT"
            shown = DEMO if info.request.name == DEMO else model_spec(info).name
            self.window.model_bar.show_finetuned(info.request, shown, label)
            self.panel.adopted()  # the panel and the status bar say so together
        else:  # the time-lapse follows the explorer's model: the one saved with it, or none
            self.panel.show_model_timelapse(info)
        self.update_actions()

    def _adopt(self, result) -> None:  # core.training.FinetuneResult
        worker = self.window.worker
        if worker is not None:
            worker.use_model(result.model, self.panel.job_base)

    def update_actions(self, _busy: bool = False) -> None:
        action = getattr(self.window, "save_model_action", None)
        if action is not None:
            action.setEnabled(self.panel.result is not None and not self.panel.busy)

    # --- saving ---------------------------------------------------------------------------
    def save_model(self) -> None:
        """File > Save model: the last fine-tuned model, as safetensors plus metadata."""
        result = self.panel.result
        if result is None or self.panel.busy:
            return
        name = f"{result.model.spec.name}-{_slug(result.dataset)}.safetensors"
        path, _ = QFileDialog.getSaveFileName(self.window, "Save model", name, MODEL_FILTER)
        if not path:
            return
        if not path.endswith(".safetensors"):
            path += ".safetensors"
        from pathlib import Path

        from vitexplorer.gui.export import refuse_overwrite

        if refuse_overwrite(self.window, [Path(path)], "Save model"):
            return
        self.panel.save(path)

    def _saved(self, path: str) -> None:
        """The saved file now stands for the explorer's model: settings remember it and the
        next run starts from it."""
        window = self.window
        window.statusBar().showMessage(f"Saved the trained model to {path}", 10000)
        model = window.model
        if model is None or not model.fine_tuned or self.adopted is not self.panel.result:
            return
        info = window.model_saved(path)
        window.model_bar.show_request(info.request, model.spec.name)
        self.adopted = None
        self.panel.set_model(info)

    # --- gallery and messages ---------------------------------------------------------------
    def _open_sample(self, sample) -> None:  # core.training.TestSample
        window = self.window
        if os.path.isfile(sample.source):
            window.add_images([sample.source])
        else:  # CIFAR-10's own batches hold no files: the image itself
            result = self.panel.result
            if result is None:  # the run it came from is gone: nothing left to name it by
                return
            names = result.model.spec.class_names
            label = f"{result.dataset} {sample.source} ({names[sample.true]})"
            window.add_image_bytes(png_bytes(sample.image), label)
        self.show_explorer()

    def _problem(self, title: str, message: str) -> None:
        self.window.notice.add(f"{title}: {message}", tag=TRAIN_PROBLEM)
        self.window.statusBar().showMessage(f"{title}: {message}", 15000)
        self.window.show_message(title, message)

    def _run_starting(self) -> None:
        """A new run: what the Train tab's earlier failures said no longer holds."""
        self.window.notice.withdraw(TRAIN_PROBLEM)
        bar = self.window.statusBar()
        if bar.currentMessage().startswith(("Fine-tuning failed", "Training failed", "Cannot")):
            bar.clearMessage()

    def _notice(self, message: str) -> None:
        self.window.notice.add(message)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-") or "dataset"
