"""The fine-tune worker: opens the dataset, loads its own base model and runs ``core.training``'s
generator in a thread of its own, turning events into signals.

The explorer's model worker keeps its model; this one builds a fresh copy of the same base from
the explorer's :class:`ModelRequest` (``finetune`` replaces the head and trains the copy, which
the explorer adopts only at the end). Training steps arrive many times a second: they are sent to
the GUI in batches at most every :data:`EMIT_INTERVAL` seconds, so the GUI thread is never
flooded. Cancel is a ``threading.Event`` that the GUI sets directly (a queued call would wait for
the job to end); the engine checks it before every batch.
"""

from __future__ import annotations

import gc
import json
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import QObject, Signal, Slot

from vitexplorer.gui.workers import ModelRequest

if TYPE_CHECKING:  # torch is imported in the worker's thread, when a job first needs it
    from vitexplorer.core.models.loading import LoadedModel
    from vitexplorer.core.training.timelapse import TimeLapse

EMIT_INTERVAL = 0.05  # seconds between batches of steps (and stage updates) sent to the GUI


@dataclass(frozen=True)
class TrainJob:
    """Fine-tune ``base`` on ``source`` (``"cifar10"`` or a folder) with ``settings``, the
    fields of ``core.training.FinetuneConfig``."""

    source: str
    base: ModelRequest
    settings: dict[str, Any] = field(default_factory=dict)
    data_root: str | None = None  # where CIFAR-10 is kept; None: core's default
    # the explorer's model when it was trained here and not saved (a LoadedModel): the run
    # starts from a copy of it, not from ``base``, the model it was trained from
    model: Any = None


@dataclass(frozen=True)
class ScratchJob:
    """Build a small ViT of ``architecture`` (the fields of ``core.architecture.ARCH_DEFAULTS``)
    with random weights on ``device`` and train it on ``source`` with ``settings``, the fields
    of ``core.training.TrainConfig``."""

    source: str
    architecture: dict[str, Any]
    settings: dict[str, Any] = field(default_factory=dict)
    data_root: str | None = None
    device: str = "auto"


@dataclass(frozen=True)
class DownloadJob:
    """Fetch CIFAR-10 into ``data_root`` (None: core's default) without training."""

    data_root: str | None = None


@dataclass(frozen=True)
class SaveJob:
    """Write ``loaded`` (a fine-tuned LoadedModel) and ``extra`` metadata to ``path``, with the
    run's ``timelapse`` (a core.timelapse.TimeLapse, or None) beside the weights."""

    path: str
    loaded: LoadedModel
    extra: dict[str, Any]
    timelapse: TimeLapse | None = None


@dataclass(frozen=True)
class StepBatch:
    """Training steps since the last batch: 1-based step numbers and their losses."""

    steps: np.ndarray  # int64
    losses: np.ndarray  # float64
    epoch: int
    lr: float
    fraction: float


class FinetuneWorker(QObject):
    """Lives in its own QThread and runs one job at a time; see the module docstring."""

    stage = Signal(str, int, int, float)  # name, done, total, fraction of the whole run
    started = Signal(object)  # core.training.Started
    steps = Signal(object)  # StepBatch
    epoch = Signal(object)  # core.training.Epoch
    snapshot = Signal(object)  # core.training.Snapshot: a time-lapse frame, and all so far
    notice = Signal(str)
    download_progress = Signal(int, int)  # bytes done, bytes total
    downloaded = Signal(str)  # where the dataset now is
    finished = Signal(object)  # core.training.FinetuneResult (cancelled or not)
    failed = Signal(str)  # a message for people; nothing was learnt or saved
    stopped = Signal(str)  # cancelled before there was anything to show
    saved = Signal(str)  # path
    save_failed = Signal(str)
    _wake = Signal()

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._pending: TrainJob | ScratchJob | DownloadJob | SaveJob | None = None
        self.cancel_event = threading.Event()  # set from the GUI thread directly
        self._last_emit = 0.0
        self._wake.connect(self._drain)

    # --- called from the GUI thread -------------------------------------------------------
    def submit(self, job: TrainJob | ScratchJob | DownloadJob | SaveJob) -> None:
        with self._lock:
            self._pending = job
        self.cancel_event.clear()
        self._wake.emit()

    def clear_queue(self) -> None:
        with self._lock:
            self._pending = None

    # --- the worker thread ----------------------------------------------------------------
    @Slot()
    def _drain(self) -> None:
        with self._lock:
            job, self._pending = self._pending, None
        if isinstance(job, TrainJob):
            self._guarded(self._train, job)
        elif isinstance(job, ScratchJob):
            self._guarded(self._scratch, job)
        elif isinstance(job, DownloadJob):
            self._guarded(self._download, job)
        elif isinstance(job, SaveJob):
            self._save(job)

    def _guarded(self, run, job) -> None:
        from vitexplorer.core.models.download import DownloadCancelled

        # A full garbage collection walks every object torch and torchvision created at import
        # (some 340,000) while holding the GIL: about 120 ms here, and reading a big dataset
        # triggers one. Frozen objects are skipped (they are still freed when unreferenced), so
        # the GUI thread is never held that long during the job.
        gc.freeze()
        try:
            run(job)
        except DownloadCancelled:
            self.stopped.emit("download cancelled")
        except Exception as exc:  # every failure becomes a message; the thread lives on
            self.failed.emit(failure_message(exc))
        finally:
            gc.unfreeze()

    def _download(self, job: DownloadJob) -> None:
        from vitexplorer.core.training.datasets import open_dataset

        self.stage.emit("downloading", 0, 0, 0.0)
        dataset = open_dataset(
            "cifar10",
            root=job.data_root,
            download=True,
            progress=self._download_progress,
            cancelled=self.cancel_event.is_set,
        )
        self.downloaded.emit(dataset.root)

    def _download_progress(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self._last_emit >= EMIT_INTERVAL or done >= total:
            self._last_emit = now
            self.download_progress.emit(done, total)

    def _train(self, job: TrainJob) -> None:
        from vitexplorer.core.models import loading as models
        from vitexplorer.core.models.base_record import base_request
        from vitexplorer.core.training.config import FinetuneConfig
        from vitexplorer.core.training.engine import finetune

        cancelled = self.cancel_event.is_set
        config = FinetuneConfig(**job.settings)
        replace(config, freeze="head").check(1)  # all but the freeze policy, before any reading
        dataset = self._open_dataset(job)
        if dataset is None:
            return
        record = None  # a model trained here and not saved cannot be loaded again
        if job.model is not None:
            import copy

            base = copy.deepcopy(job.model)  # the engine changes the model it is given
        else:
            base = _load_base(models, job.base)
            record = base_request(job.base.name, job.base.weights, base.spec.family)
        if cancelled():
            self.stopped.emit("cancelled")
            return
        self._relay(finetune(base, dataset, config, cancelled=cancelled), record)

    def _scratch(self, job: ScratchJob) -> None:
        """As ``vitexplorer train``: the architecture and settings checked, then the memory
        training needs against the device's free memory, before anything is read or built."""
        import torch

        from vitexplorer.core.models import loading as models
        from vitexplorer.core.models.architecture import (
            architecture_problem,
            available_bytes,
            memory_problem,
        )
        from vitexplorer.core.models.families.registry import SMALL_VIT
        from vitexplorer.core.models.vit import SmallViTConfig
        from vitexplorer.core.training.config import TrainConfig
        from vitexplorer.core.training.engine import finetune
        from vitexplorer.core.training.events import TrainingError

        cancelled = self.cancel_event.is_set
        found = architecture_problem(job.architecture)
        if found is not None:
            raise TrainingError(found[1])
        config = TrainConfig(**job.settings)
        config.check(job.architecture["depth"])
        advice = "lower the batch size (More settings), the width or the depth"
        free = available_bytes(job.device)
        shape = SmallViTConfig(**job.architecture)
        problem = memory_problem(shape, config.batch_size, free, advice)
        if problem is not None:
            raise TrainingError(problem)
        dataset = self._open_dataset(job)
        if dataset is None:
            return
        shape = SmallViTConfig(num_classes=dataset.num_classes, **job.architecture)
        torch.manual_seed(config.seed)  # the same weights as 'vitexplorer train --seed'
        model = models.load_model(SMALL_VIT, "none", job.device, small_config=shape)
        self._relay(finetune(model, dataset, config, cancelled=cancelled))

    def _open_dataset(self, job: TrainJob | ScratchJob):
        """The job's dataset, then the 'model' stage; None (said) when cancelled meanwhile."""
        from vitexplorer.core.training.datasets import open_dataset

        self.stage.emit("opening", 0, 0, 0.0)
        dataset = open_dataset(job.source, root=job.data_root)
        if self.cancel_event.is_set():
            self.stopped.emit("cancelled")
            return None
        self.stage.emit("model", 0, 0, 0.0)
        return dataset

    def _relay(self, events, base_request: Any = None) -> None:  # the engine's generator
        """The engine's events as signals, steps in batches. ``base_request``
        (core.models.base_record.BaseRequest): how the base loads again, for the result."""
        from vitexplorer.core.training.events import (
            Epoch,
            Finished,
            Notice,
            Snapshot,
            Stage,
            Started,
            Step,
        )

        pending: list = []  # Step events not sent yet
        self._last_emit = 0.0
        for event in events:
            now = time.monotonic()
            if isinstance(event, Step):
                pending.append(event)
                if now - self._last_emit >= EMIT_INTERVAL:
                    self._send_steps(pending)
                continue
            if pending:  # keep the order: steps before the epoch that ends them
                self._send_steps(pending)
            if isinstance(event, Stage):
                if now - self._last_emit >= EMIT_INTERVAL or event.done == event.total:
                    self._last_emit = now
                    self.stage.emit(event.name, event.done, event.total, event.fraction)
            elif isinstance(event, Started):
                self.started.emit(event)
            elif isinstance(event, Epoch):
                self.epoch.emit(event)
            elif isinstance(event, Snapshot):
                self.snapshot.emit(event)
            elif isinstance(event, Notice):
                self.notice.emit(event.message)
            elif isinstance(event, Finished):
                event.result.base_request = base_request
                self.finished.emit(event.result)

    def _send_steps(self, pending: list) -> None:
        last = pending[-1]
        batch = StepBatch(
            np.array([s.step for s in pending], dtype=np.int64),
            np.array([s.loss for s in pending], dtype=np.float64),
            last.epoch,
            last.lr,
            last.fraction,
        )
        pending.clear()
        self._last_emit = time.monotonic()
        self.steps.emit(batch)

    def _save(self, job: SaveJob) -> None:
        """The module is only read here (its parameters; the explorer's worker may run it at the
        same time, which reads them too); the file appears whole or not at all. Before writing:
        every weight must be finite, and the folder must have room for the file. A failure is
        a message; the model stays where it was, for another try elsewhere."""
        try:
            problem = _save_problem(job)
            if problem is None:
                from vitexplorer.core.models.loading import save_checkpoint

                save_checkpoint(job.path, job.loaded, job.extra, job.timelapse)
        except OSError as exc:
            problem = f"cannot write {job.path}: {exc.strerror or failure_message(exc)}"
        except Exception as exc:
            problem = failure_message(exc)
        if problem is not None:
            self.save_failed.emit(problem)
            return
        self.saved.emit(job.path)


def _save_problem(job: SaveJob) -> str | None:
    """Why ``job`` cannot be written, found out before writing; None when nothing is known."""
    from vitexplorer.core.io.files import free_space_problem
    from vitexplorer.core.training.engine import check_savable, checkpoint_bytes

    folder = Path(job.path).parent
    if not folder.is_dir():
        return f"the folder {folder} does not exist"
    check_savable(job.loaded)  # TrainingError: NaN or infinite weights are never written
    tensors = list(job.loaded.module.state_dict().items())
    metadata = len(json.dumps(job.extra, default=str)) + 4096  # and the model's description
    if job.timelapse is not None and job.timelapse.frames:
        tensors += job.timelapse.tensors().items()
        metadata += len(json.dumps(job.timelapse.metadata(), default=str))
    return free_space_problem(folder, checkpoint_bytes(tensors, metadata))


def _load_base(models, request: ModelRequest):
    """The explorer's base model, built afresh; weights must be on this computer already."""
    from vitexplorer.core.models.download import WeightsUnavailableError

    try:
        return models.load_model(
            request.name, request.weights, request.device, allow_download=False
        )
    except WeightsUnavailableError as exc:
        raise WeightsUnavailableError(
            f"{exc}: load the model in the explorer first (it offers the download), then "
            f"fine-tune it"
        ) from exc


def failure_message(exc: BaseException) -> str:
    """One message for people. The engine's own errors already say what to do, GPU memory
    included; anything else goes through the app's general rule."""
    from vitexplorer.core.explain.analysis import failure_message as message
    from vitexplorer.core.training.config import FreezePolicyError
    from vitexplorer.core.training.datasets import DatasetError
    from vitexplorer.core.training.events import TrainingError

    if isinstance(exc, (TrainingError, DatasetError, FreezePolicyError)):
        return " ".join(str(exc).split())
    return message(exc)
