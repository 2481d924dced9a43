"""The fine-tune panel: settings, Start and Cancel, progress with time left, live curves, and the
results (test accuracy, confusion matrix, a gallery of test predictions, and the time-lapse of
the probe images, which fills during the run and follows the explorer's model afterwards).

The panel runs jobs on a :class:`FinetuneWorker` in its own thread and tells the window what
happened through signals: a trained model to adopt, a test image to open in the explorer, a
problem to show.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import cast

from PySide6.QtCore import QEvent, QSettings, QSize, Qt, QTimer, Signal, Slot
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from vitexplorer.core.models.families.registry import SMALL_VIT
from vitexplorer.core.models.spec import ModelSpec
from vitexplorer.gui.architecture_form import ERROR_STYLE
from vitexplorer.gui.finetune_results import FinetuneResults
from vitexplorer.gui.finetune_settings import CIFAR10, CIFAR10_CLASSES, FinetuneSettings
from vitexplorer.gui.finetune_worker import (
    DownloadJob,
    FinetuneWorker,
    SaveJob,
    ScratchJob,
    StepBatch,
    TrainJob,
)
from vitexplorer.gui.train_estimate import TimeEstimator
from vitexplorer.gui.views.training_views import TrainingCurves
from vitexplorer.gui.workers import ModelInfo, ModelRequest, WorkerThread

STAGE_TEXT = {
    "opening": "Reading the dataset…",
    "model": "Preparing the model…",
    "loading": "Loading images",
    "features": "Computing the frozen part's outputs",
    "testing": "Testing",
    "downloading": "Downloading CIFAR-10…",
}
RUN_UNDER_WAY = "Time-lapse of the run under way"
NO_TIMELAPSE_RUN = (
    "This run keeps no time-lapse: Time-lapse probes is off in the settings (set it above 0 to "
    "follow a few test images through training)."
)
WAITING_FOR_FRAME = (
    "Training: the time-lapse's first frame, the probe images before the first step, comes once "
    "the images are read."
)
KEPT_IN_MEMORY = (
    "The fine-tuned model is still in memory: File > Save model can save it somewhere else."
)


def duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def count(n: int) -> str:
    """7,690 or 85.8 M."""
    return f"{n / 1e6:.1f} M" if n >= 1_000_000 else f"{n:,}"


class FinetunePanel(QWidget):
    model_trained = Signal(object)  # FinetuneResult that learnt something: the explorer adopts it
    sample_opened = Signal(object)  # core.training.TestSample to show in the explorer
    problem = Signal(str, str)  # title, message: a job failed, nothing was adopted or saved
    notice = Signal(str)  # worth keeping on screen, not a failure (skipped images)
    finished = Signal(object)  # FinetuneResult, once the views show it
    failed = Signal(str)  # message, once it is shown
    saved = Signal(str)  # path
    busy_changed = Signal(bool)
    run_starting = Signal()  # a run is submitted: what earlier runs said no longer holds

    def __init__(self, settings: QSettings) -> None:
        super().__init__()
        self.form = FinetuneSettings(settings)
        self.model_info: ModelInfo | None = None
        self.job_base: ModelRequest | None = None  # what the last run started from
        self.result = None  # the last FinetuneResult that learnt something
        self.busy = False  # a job runs on the fine-tune thread
        self._job = ""  # "train", "download" or "save"
        self._closing = False
        self._adopted_text = ""  # the status to show once the explorer has adopted the model
        self._results_timer = QTimer(self)
        self._results_timer.setSingleShot(True)
        self._results_timer.setInterval(0)
        self._results_timer.timeout.connect(self._show_results)
        self._started_at = 0.0
        self._class_names: tuple[str, ...] = ()  # the run's, from its Started event
        self._run_timelapse = False  # the time-lapse shown is the run the curves show
        self._epochs = 0
        self._steps_total = 0
        self._thread: WorkerThread | None = None
        self._worker: FinetuneWorker | None = None  # the thread's worker
        self.estimator = TimeEstimator(self)
        self.estimator.updated.connect(self._update_params)
        self._build()
        self.form.changed.connect(self._form_changed)
        self.form.download_requested.connect(self.download)
        self.start_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.results.sample_clicked.connect(self._sample_clicked)
        self.timelapse.epoch_shown.connect(self._epoch_shown)
        self._user_chose_page = False
        self.results.pages.tabBarClicked.connect(self._page_clicked)
        self._set_busy(False)

    # --- construction ---------------------------------------------------------------------
    def _build(self) -> None:
        self.base_label = QLabel("Load a model in the explorer first.")
        self.base_label.setWordWrap(True)
        self.start_button = QPushButton("Start")
        self.start_button.setDefault(True)
        self.cancel_button = QPushButton("Cancel")
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setFormat("")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.status.setMinimumHeight(48)
        self.status.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)

        left = QWidget()
        column = QVBoxLayout(left)
        heading = QLabel("<b>Train a model</b>")
        column.addWidget(heading)
        column.addWidget(self.base_label)
        column.addWidget(_line())
        column.addWidget(self.form)
        column.addStretch(1)
        scroll = ColumnScroll()
        scroll.setWidget(left)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.form_scroll = scroll  # (QWidget.scroll is a method)
        # under the scrolling form, always in view: what the run trains and how long it takes
        # (its last line was cut at the scroll area's bottom), Start and Cancel, the progress
        footer = QWidget()
        below = QVBoxLayout(footer)
        below.setContentsMargins(9, 0, 9, 0)
        below.addWidget(_line())
        below.addWidget(self.form.params_label)  # taken out of the form's scrolling column
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.cancel_button)
        below.addLayout(buttons)
        below.addWidget(self.progress)
        below.addWidget(self.status)
        self.footer = footer
        side = QWidget()
        side.setMaximumWidth(440)
        side_column = QVBoxLayout(side)
        side_column.setContentsMargins(0, 0, 0, 0)
        side_column.setSpacing(2)
        side_column.addWidget(scroll, 1)
        side_column.addWidget(footer)

        self.curves = TrainingCurves()
        self.results = FinetuneResults()
        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(self.curves)
        right.addWidget(self.results)
        right.setSizes([330, 470])

        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(side, 1)  # one part in three, at least its minimum, at most 440 px
        layout.addWidget(right, 2)

    def _ensure_worker(self) -> FinetuneWorker:
        """The worker, in its thread (started on first use)."""
        if self._thread is None or self._worker is None:
            worker = FinetuneWorker()
            self._thread = WorkerThread(worker, "vitexplorer-finetune")
            self._worker = worker
            # bound slots of this GUI-thread object: queued, run here, never in the worker
            worker.stage.connect(self._stage)
            worker.started.connect(self._started)
            worker.steps.connect(self._steps)
            worker.epoch.connect(self._epoch)
            worker.snapshot.connect(self._snapshot)
            worker.notice.connect(self._notice)
            worker.download_progress.connect(self._download_progress)
            worker.downloaded.connect(self._downloaded)
            worker.finished.connect(self._finished)
            worker.failed.connect(self._failed)
            worker.stopped.connect(self._stopped)
            worker.saved.connect(self._saved)
            worker.save_failed.connect(self._save_failed)
        return self._worker

    @property
    def timelapse(self):  # TimeLapseView
        return self.results.timelapse

    @property
    def worker(self) -> FinetuneWorker | None:
        return self._worker if self._thread else None

    @property
    def thread(self):
        return self._thread.thread if self._thread else None

    # --- the explorer's model -------------------------------------------------------------
    def set_model(self, info: ModelInfo) -> None:
        """The model a run starts from: the explorer's, or for a fine-tuned one, its base."""
        self.model_info = info
        self.form.set_num_layers(model_spec(info).num_layers)
        self._describe_start()
        self._update_params()
        self._set_busy(self.busy)

    def show_model_timelapse(self, info: ModelInfo) -> None:
        """The explorer loaded a model (not one trained here): the time-lapse view shows the one
        saved with it, or says why there is none. A run under way keeps its own."""
        if self.busy and self._job == "train":
            return
        self._run_timelapse = False
        saved = info.saved_timelapse
        if saved is None:
            self.timelapse.show_message(
                f"The explorer's model, {model_spec(info).display_name}, was not trained in "
                f"vitexplorer: it has no time-lapse. Train a model here (Time-lapse probes above "
                f"0) to watch its attention change epoch by epoch, or open a checkpoint saved "
                f"with one."
            )
        elif saved.problem:
            self.timelapse.show_message(
                f"{saved.problem[:1].upper()}{saved.problem[1:]}. The model itself opened "
                f"normally; train again to record a new time-lapse."
            )
        elif saved.timelapse is None:
            self.timelapse.show_message(
                f"{saved.file} holds no time-lapse: it was saved without probes, or by an older "
                f"vitexplorer."
            )
        else:
            origin = f"Time-lapse saved with {saved.file}"
            self.timelapse.show_timelapse(saved.timelapse, model_spec(info).class_names, origin)

    def _head_text(self) -> str:
        """Which head a fine-tune would start from, for the model and dataset chosen."""
        from vitexplorer.core.training.heads import choose_head

        info = self.model_info
        names = self.form.class_names()
        if info is None or self.form.from_scratch():
            return ""
        if names is None:
            return "Which head: known once the dataset is chosen."
        spec = model_spec(info)
        model_names = spec.class_names if spec.has_classifier else ()
        choice = choose_head(self.form.head_box.currentData(), model_names, names)
        return f"Head: {choice.reason}."

    def _describe_start(self) -> None:
        info = self.model_info
        self.form.set_head_text(self._head_text())
        if self.form.from_scratch():
            text = (
                "Builds a new small ViT with random weights, of the shape set below, and trains "
                "every weight; the best epoch (by validation accuracy) is kept, and the explorer "
                "then uses it."
            )
        elif info is None:
            text = "Load a model in the explorer first."
        else:  # the model the explorer uses, as it is (one trained here too, saved or not)
            spec = model_spec(info)
            unsaved = " (trained here, not saved)" if self._in_memory_base() is not None else ""
            text = (
                f"Starts from the explorer's model: {spec.display_name}, {spec.weights}{unsaved}."
            )
        self.base_label.setText(text)

    def _in_memory_base(self):  # a LoadedModel or None
        """The explorer's model when it was trained here and not saved: a run starts from it
        (from a copy), not from the model it was trained from."""
        info, result = self.model_info, self.result
        if info is not None and info.fine_tuned and result is not None:
            return result.model
        return None

    def _form_changed(self) -> None:
        self._describe_start()
        self._update_params()
        self._set_busy(self.busy)

    def _update_params(self) -> None:
        if self.form.from_scratch():
            self._scratch_params()
            return
        info = self.model_info
        if info is None or info.params is None:
            self.form.set_params_text("")
            return
        classes = self.form.num_classes()
        if classes is None:
            self.form.set_params_text("Trainable parameters: known once the dataset is chosen")
            return
        params = info.params
        trainable = params.trainable(min(self.form.trained_blocks(), len(params.trained) - 1),
                                     classes)  # fmt: skip
        total = params.trainable(len(params.trained) - 1, classes)
        self._show_params(trainable, total, exact=False)

    def _scratch_params(self) -> None:
        """The new model's size, and the memory training it needs (checked against the free
        memory when the explorer's device is the CPU; a GPU's is checked at Start)."""
        from vitexplorer.core.models.architecture import (
            free_ram,
            memory_problem,
            parameter_count,
            size_text,
            training_bytes,
        )

        arch = self.form.architecture
        if arch.problem() is not None:
            self.form.set_params_text("")
            return
        classes = self.form.num_classes()
        shape = arch.shape(classes or CIFAR10_CLASSES)
        batch = self.form.batch_size.value()
        need = sum(training_bytes(shape, batch))
        text = f"Trainable parameters: <b>{count(parameter_count(shape))}</b>, every one"
        text += "" if classes else f" (for {CIFAR10_CLASSES} classes)"
        text += f"; about {size_text(need)} of memory to train at batch size {batch}."
        advice = "lower the batch size (More settings), the width or the depth"
        problem = memory_problem(shape, batch, free_ram(), advice)
        on_cpu = self.model_info is not None and self.model_info.device.startswith("cpu")
        if on_cpu and problem is not None:
            text += f"<br><span style='{ERROR_STYLE}'>{problem[:1].upper()}{problem[1:]}.</span>"
        measure = self.isVisible() and not self.busy  # only while the tab is seen, and idle
        text += "<br>" + self.estimator.line(self.form, classes or CIFAR10_CLASSES,
                                             self._device(), measure)  # fmt: skip
        self.form.set_params_text(text)

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self._update_params()  # the estimate is measured only while the tab is seen

    def _device(self) -> str:
        """Where a run from scratch trains: the device the explorer's model was asked on (auto
        without a model)."""
        info = self.model_info
        return info.request.device if info is not None else "auto"

    def _show_params(self, trainable: int, total: int, exact: bool) -> None:
        share = 100 * trainable / max(total, 1)
        share_text = f"{share:.0f}" if share >= 10 else f"{share:.2g}"
        text = f"Trainable parameters: <b>{count(trainable)}</b> of {count(total)} ({share_text}%)"
        self.form.set_params_text(text if exact else text + " for this dataset")

    # --- jobs -----------------------------------------------------------------------------
    def start(self) -> None:
        if self.busy:
            return
        if self.form.from_scratch():
            self._start_scratch()
            return
        if self.model_info is None:
            self._refuse("Load a model in the explorer first; fine-tuning starts from it.")
            return
        source = self.form.source()
        if not source:
            self._refuse(
                "Choose a dataset folder (one subfolder of images per class) or a pixel CSV file."
            )
            return
        if self._dataset_missing():
            return
        config = self.form.config()
        self.form.remember()
        root = str(self.form.data_root) if source == CIFAR10 else None
        self.job_base = self.model_info.request
        job = TrainJob(source, self.job_base, config, root, model=self._in_memory_base())
        self._submit_training(job)

    def _start_scratch(self) -> None:
        problem = self.form.architecture.problem()
        if problem is not None:
            self._refuse(f"{problem[1][:1].upper()}{problem[1][1:]}.")
            return
        source = self.form.source()
        if not source:
            self._refuse(
                "Choose a dataset: CIFAR-10, a folder (one subfolder of images per class) or a "
                "pixel CSV file."
            )
            return
        if self._dataset_missing():
            return
        config = self.form.config()
        self.form.remember()
        root = str(self.form.data_root) if source == CIFAR10 else None
        self.job_base = ModelRequest(SMALL_VIT, "none", self._device())
        arch = self.form.architecture.values()
        self._submit_training(ScratchJob(source, arch, config, root, self._device()))

    def _dataset_missing(self) -> bool:
        """Refuse (and say why) when the chosen dataset is not there; the field may have
        changed since Start was last enabled."""
        problem = self.form.dataset_problem()
        if problem is not None:
            self.form.refresh_dataset_status()
            self._refuse(f"{problem[:1].upper()}{problem[1:]}.")
        return problem is not None

    def _submit_training(self, job: TrainJob | ScratchJob) -> None:
        self.run_starting.emit()  # earlier runs' failures no longer hold
        self.estimator.cancel()  # the run needs the processor more than the estimate does
        self._epochs = job.settings["epochs"]
        self._steps_total = 0
        self.curves.reset(self._epochs, 1)
        self.results.clear("Training…")
        self._class_names = ()
        self._run_timelapse = True
        self._user_chose_page = False
        settings = job.settings
        if settings.get("probe_files") or settings.get("probes"):
            self.timelapse.show_message(WAITING_FOR_FRAME)
            self.results.pages.setCurrentWidget(self.timelapse)
        else:
            self.timelapse.show_message(NO_TIMELAPSE_RUN)
        self._begin("train", "Starting…")
        self._ensure_worker().submit(job)

    def download(self) -> None:
        if self.busy:
            return
        self._begin("download", "Connecting…")
        self._ensure_worker().submit(DownloadJob(str(self.form.data_root)))

    def save(self, path: str) -> bool:
        """Write the last fine-tuned model to ``path`` in the background; False if there is none
        or a job runs."""
        if self.result is None or self.busy:
            return False
        self._begin("save", f"Saving {path}…")
        self.progress.setRange(0, 0)
        result = self.result
        job = SaveJob(path, result.model, result.metadata(), result.timelapse)
        self._ensure_worker().submit(job)
        return True

    def cancel(self) -> None:
        """Set the worker's flag directly: a queued call would wait for the job to end."""
        if self.busy and self.worker is not None and self._job != "save":
            self.worker.cancel_event.set()
            self.status.setText("Cancelling…")

    def shutdown(self) -> None:
        """The window closes: cancel, wait for the thread, and forget what it still sends."""
        self._closing = True
        self.estimator.stop()
        if self._thread is not None:
            self._thread.stop()
            self._thread = None
            self._worker = None

    def _begin(self, job: str, status: str) -> None:
        self._job = job
        self._started_at = time.monotonic()
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.progress.setFormat("")
        self.status.setText(status)
        self._set_busy(True)

    def _end(self, status: str) -> None:
        self.progress.setRange(0, 1000)
        self._set_busy(False)
        self._job = ""
        self.status.setText(status)

    def _set_busy(self, busy: bool) -> None:
        changed = busy != self.busy
        self.busy = busy
        ready = self.form.from_scratch() or self.model_info is not None
        if self.form.from_scratch() and self.form.architecture.problem() is not None:
            ready = False  # the form says why, beside the field
        missing = self.form.dataset_problem()  # said beside the dataset, with the download
        if missing is not None:
            ready = False
        self.start_button.setEnabled(not busy and ready)
        self.start_button.setToolTip(f"{missing[:1].upper()}{missing[1:]}" if missing else "")
        self.cancel_button.setEnabled(busy and self._job != "save")
        self.form.setEnabled(not busy)
        if changed:
            self.busy_changed.emit(busy)

    def _refuse(self, message: str) -> None:
        self.status.setText(message)
        what = "training" if self.form.from_scratch() else "fine-tuning"
        self.problem.emit(f"Cannot start {what}", message)

    # --- progress -------------------------------------------------------------------------
    def _show_fraction(self, fraction: float) -> None:
        fraction = min(max(fraction, 0.0), 1.0)
        self.progress.setValue(round(1000 * fraction))
        elapsed = time.monotonic() - self._started_at
        if fraction > 0.01 and elapsed > 1.0:
            left = elapsed * (1 - fraction) / fraction
            self.progress.setFormat(f"{100 * fraction:.0f}%  ·  about {duration(left)} left")
        else:
            self.progress.setFormat(f"{100 * fraction:.0f}%")

    @Slot(str, int, int, float)
    def _stage(self, name: str, done: int, total: int, fraction: float) -> None:
        if self._closing:
            return
        text = STAGE_TEXT.get(name, name)
        self.status.setText(f"{text} {done} / {total}" if total else text)
        if name != "downloading":
            self._show_fraction(fraction)

    @Slot(object)
    def _started(self, event) -> None:  # core.training.Started
        if self._closing:
            return
        self._steps_total = event.steps_per_epoch * event.epochs
        self._class_names = tuple(event.class_names)
        self.curves.reset(event.epochs, self._steps_total)
        self._show_params(event.trainable_params, event.total_params, exact=True)
        how = (
            "; the frozen part runs once, then epochs train on its outputs" if event.cached else ""
        )
        self.status.setText(
            f"Training on {event.num_train} images ({event.num_val} validate, {event.num_test} "
            f"test), {len(event.class_names)} classes, on {event.device}{how}."
        )
        self._show_fraction(event.fraction)

    @Slot(object)
    def _steps(self, batch: StepBatch) -> None:
        if self._closing:
            return
        self.curves.add_steps(batch.steps, batch.losses)
        step = int(batch.steps[-1])
        self.status.setText(
            f"Epoch {batch.epoch} of {self._epochs} · step {step} of {self._steps_total} · "
            f"loss {batch.losses[-1]:.3f} · learning rate {batch.lr:.2g}"
        )
        self._show_fraction(batch.fraction)

    @Slot(object)
    def _epoch(self, event) -> None:  # core.training.Epoch
        if self._closing:
            return
        self.curves.add_epoch(event)
        self._show_fraction(event.fraction)

    @Slot(object)
    def _snapshot(self, event) -> None:  # core.training.Snapshot
        if self._closing:
            return
        self.timelapse.show_timelapse(
            event.timelapse, self._class_names, RUN_UNDER_WAY, planned=self._epochs
        )

    def _epoch_shown(self, epoch: int) -> None:
        """The time-lapse's epoch marked on the curves, when they are of the same run."""
        self.curves.mark_epoch(epoch if self._run_timelapse and epoch > 0 else None)

    def _page_clicked(self, _index: int) -> None:
        self._user_chose_page = True

    @Slot(str)
    def _notice(self, message: str) -> None:
        if not self._closing:
            self.notice.emit(message)

    @Slot(int, int)
    def _download_progress(self, done: int, total: int) -> None:
        if self._closing or total <= 0:
            return
        self.status.setText(f"Downloading CIFAR-10… {done / 1e6:.0f} of {total / 1e6:.0f} MB")
        self._show_fraction(done / total)

    @Slot(str)
    def _downloaded(self, root: str) -> None:
        if self._closing:
            return
        self.form.refresh_dataset_status()
        self._end(f"CIFAR-10 is ready in {root}.")

    # --- endings --------------------------------------------------------------------------
    @Slot(object)
    def _finished(self, result) -> None:  # core.training.FinetuneResult
        if self._closing:
            return
        self.curves.redraw()
        steps = result.steps
        if steps == 0:  # cancelled before training began: nothing to adopt
            self._end("Cancelled before training began; the explorer keeps its model.")
            self.results.say("Cancelled: nothing was trained.")
            self._run_ended("Time-lapse of the run cancelled before training")
            self.finished.emit(result)
            return
        self.result = result
        if result.timelapse is not None:
            which = "cancelled run" if result.cancelled else "run just trained"
            origin = f"Time-lapse of the {which} (not saved)"
            names = result.model.spec.class_names
            self.timelapse.show_timelapse(result.timelapse, names, origin)
        self.progress.setValue(1000)
        self.progress.setFormat("done" if not result.cancelled else "cancelled")
        took = duration(result.seconds)
        ended = (
            f"Cancelled after {steps} steps ({took})." if result.cancelled else f"Done in {took}."
        )
        if result.best_epoch is not None:
            of = len(result.history) if result.cancelled or result.diverged else self._epochs
            val = (
                f", validation accuracy {result.best_val_acc:.1%}"
                if result.best_val_acc is not None and result.best_val_acc >= 0
                else ""
            )
            ended += f" Kept the best epoch, {result.best_epoch} of {of}{val}."
        scratch = result.config.from_scratch
        which = "partly trained" if result.cancelled else "trained" if scratch else "fine-tuned"
        # said once the explorer really uses it (adopted(), with the window's status bar)
        self._adopted_text = (
            f"{ended} The explorer now uses the {which} model; File > Save model keeps it."
        )
        self._end(f"{ended} Handing the {which} model to the explorer\u2026")
        self.model_trained.emit(result)
        # The confusion matrix and the gallery on a later turn of the event loop: drawn in the
        # same turn as the curves and the explorer's new analysis, they held the GUI thread for
        # 40 ms at once. (A QTimer, not QTimer.singleShot(0, ...), which Qt 6 turns into a
        # queued call that runs in the same turn.)
        self._results_timer.start()

    def adopted(self) -> None:
        """The explorer now uses the model this panel trained: said here and in the window's
        status bar in the same turn."""
        if self._adopted_text and not self.busy:
            self.status.setText(self._adopted_text)
        self._adopted_text = ""

    @Slot()
    def _show_results(self) -> None:
        result = self.result
        if self._closing or result is None:
            return
        self.results.show_result(result, result.steps)
        if not self._user_chose_page and result.test_acc is not None:
            self.results.pages.setCurrentIndex(0)  # the test results, unless the user chose
        self.finished.emit(result)

    @Slot(str)
    def _failed(self, message: str) -> None:
        if self._closing:
            return
        job = self._job
        self.progress.setValue(0)
        self.progress.setFormat("")
        what = "Training" if self.form.from_scratch() else "Fine-tuning"
        title = "Could not download CIFAR-10" if job == "download" else f"{what} failed"
        self._end(f"{title}: {message}")
        if job != "download":
            self.results.say("Nothing was trained; the explorer keeps its model.")
            self._run_ended("Time-lapse of the run that failed (nothing was kept)")
        self.problem.emit(title, message)
        self.failed.emit(message)

    @Slot(str)
    def _stopped(self, message: str) -> None:
        if self._closing:
            return
        self.progress.setValue(0)
        self.progress.setFormat("")
        if self._job == "train":
            self._run_ended("Time-lapse of the cancelled run")
        self._end(f"{message[:1].upper()}{message[1:]}; nothing changed.")

    @Slot(str)
    def _saved(self, path: str) -> None:
        if self._closing:
            return
        self._end(f"Saved {path}")
        if self.result is not None and self.timelapse.timelapse is self.result.timelapse:
            self.timelapse.relabel(f"Time-lapse saved with {Path(path).name}")
        self.saved.emit(path)

    @Slot(str)
    def _save_failed(self, message: str) -> None:
        """Nothing is lost: ``result`` keeps the model, and File > Save model can try again."""
        if self._closing:
            return
        message = f"{message.rstrip('.')}. {KEPT_IN_MEMORY}"
        self._end(f"Could not save the model: {message}")
        self.problem.emit("Could not save the model", message)

    def _run_ended(self, origin: str) -> None:
        """A run ended without a result: its frames so far stay, said to come from ``origin``;
        without any, the view says there are none."""
        if self.timelapse.timelapse is not None:
            self.timelapse.relabel(origin)
        elif self.timelapse.message() == WAITING_FOR_FRAME:
            self.timelapse.show_message("The run ended before its first frame: no time-lapse.")

    def _sample_clicked(self, index: int) -> None:
        if self.result is not None and 0 <= index < len(self.result.samples):
            self.sample_opened.emit(self.result.samples[index])


class ColumnScroll(QScrollArea):
    """A scroll area for a column that scrolls only vertically: never narrower than the column's
    minimum width plus the scroll bar, so nothing in it is cut off at the right edge (a plain
    QScrollArea's minimum ignores its widget, and the window squeezed the form under it)."""

    def minimumSizeHint(self) -> QSize:
        hint = super().minimumSizeHint()
        widget = self.widget()
        if widget is None:
            return hint
        width = widget.minimumSizeHint().width() + self.verticalScrollBar().sizeHint().width()
        return QSize(max(hint.width(), width + 2 * self.frameWidth()), hint.height())

    def sizeHint(self) -> QSize:
        """The minimum width: the rest goes to the curves, whose three plots need about 650 px
        side by side (narrower, pyqtgraph draws them past the view's edge)."""
        return QSize(self.minimumSizeHint().width(), super().sizeHint().height())

    def eventFilter(self, watched, event) -> bool:
        if watched is self.widget() and event.type() == QEvent.Type.LayoutRequest:
            self.updateGeometry()  # the column's minimum changed (More settings, a long text)
        return super().eventFilter(watched, event)


def _line() -> QFrame:
    line = QFrame()
    line.setFrameShape(QFrame.Shape.HLine)
    line.setFrameShadow(QFrame.Shadow.Sunken)
    return line


def model_spec(info: ModelInfo) -> ModelSpec:
    """The spec of the explorer's model (:class:`ModelInfo` holds it as a plain ``object``)."""
    return cast(ModelSpec, info.spec)
