"""The Train tab's time estimate: a few training steps of the configured small ViT, measured in a
thread of their own (never on the GUI thread), again whenever the architecture, the batch size
or the device changes, and only once the settings have rested for a moment.

The measurement is one step's time; the panel multiplies it by the run's steps (see
:func:`vitexplorer.core.training.estimate.run_seconds`), so changing the images or the epochs needs
no new measurement.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal, Slot

from vitexplorer.gui.workers import WorkerThread

DEBOUNCE_MS = 600  # settings rest this long before a measurement starts
MEASURED_STEPS = 2  # timed steps, after one untimed one


@dataclass(frozen=True)
class Measurement:
    """What a measurement was of, and what it found (``seconds``: one training step)."""

    architecture: tuple[tuple[str, Any], ...]
    num_classes: int
    batch_size: int
    device: str  # as asked (auto, cpu, cuda)
    seconds: float = 0.0
    ran_on: str = ""  # the device it really ran on
    steps: int = MEASURED_STEPS


class EstimateWorker(QObject):
    """Measures in its own thread; a request superseded meanwhile is skipped."""

    measured = Signal(object)  # Measurement
    failed = Signal(object, str)  # Measurement asked, message
    _run = Signal(object)

    def __init__(self) -> None:
        super().__init__()
        self.cancel_event = threading.Event()
        self.latest: Measurement | None = None  # set from the GUI thread
        self._run.connect(self._measure)

    def submit(self, request: Measurement) -> None:
        self.latest = request
        self._run.emit(request)

    def clear_queue(self) -> None:
        self.latest = None

    @Slot(object)
    def _measure(self, request: Measurement) -> None:
        if request is not self.latest or self.cancel_event.is_set():
            return  # superseded before it began
        try:
            import torch

            from vitexplorer.core.models import loading as models
            from vitexplorer.core.models.families.registry import SMALL_VIT
            from vitexplorer.core.models.vit import SmallViTConfig
            from vitexplorer.core.training.estimate import MeasureCancelled, measure_step

            shape = SmallViTConfig(**dict(request.architecture), num_classes=request.num_classes)
            model = models.load_model(SMALL_VIT, "none", request.device, small_config=shape)

            def stale() -> bool:
                return request is not self.latest or self.cancel_event.is_set()

            try:
                with torch.enable_grad():
                    seconds = measure_step(
                        model.module, request.batch_size, shape.image_size, shape.num_classes,
                        model.device, MEASURED_STEPS, stale,
                    )  # fmt: skip
            except MeasureCancelled:
                return
            ran_on = model.device.type.upper() if model.device.type != "cpu" else "the CPU"
            from dataclasses import replace

            self.measured.emit(replace(request, seconds=seconds, ran_on=ran_on))
        except Exception as exc:  # memory, a device that is not there: said
            self.failed.emit(request, " ".join(str(exc).split())[:200])


class TimeEstimator(QObject):
    """Debounces requests and runs them on an :class:`EstimateWorker`; ``updated`` when a
    measurement of what was last asked ends (or fails, ``problem`` then says why)."""

    updated = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._thread: WorkerThread | None = None
        self._worker: EstimateWorker | None = None  # the thread's worker
        self._pending: Measurement | None = None
        self.current: Measurement | None = None  # the last measured, for what it was of
        self.asked: Measurement | None = None  # the last asked
        self.problem = ""  # why the measurement of what was last asked failed
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self._start)

    def request(self, request: Measurement) -> bool:
        """Measure ``request`` once the settings rest; False when the last measurement (or the
        one under way) is of the same thing."""
        if request == self.asked:
            return False
        self.asked = request
        self.problem = ""
        self._pending = request
        self._timer.start()
        return True

    def is_current(self, request: Measurement) -> bool:
        current = self.current
        return current is not None and current == _asked(current, request)

    def _start(self) -> None:
        if self._pending is None:
            return
        if self._thread is None or self._worker is None:
            self._worker = EstimateWorker()
            self._thread = WorkerThread(self._worker, "vitexplorer-estimate")
            self._worker.measured.connect(self._measured)
            self._worker.failed.connect(self._failed)
        self._worker.submit(self._pending)
        self._pending = None

    @Slot(object)
    def _measured(self, result: Measurement) -> None:
        if self.asked is None or _asked(result, self.asked) != result:
            return  # of settings since changed
        self.current = result
        self.updated.emit()

    @Slot(object, str)
    def _failed(self, request: Measurement, message: str) -> None:
        if request == self.asked:
            self.problem = message
            self.updated.emit()

    def line(self, form, classes: int, device: str, measure: bool) -> str:
        """The settings panel's line on the run's time for ``form``'s settings (a
        FinetuneSettings), measuring again first when ``measure`` and the model, batch size or
        device changed."""
        from vitexplorer.core.training.estimate import run_seconds, subset_sizes
        from vitexplorer.gui.finetune_panel import duration

        batch = form.batch_size.value()
        arch = tuple(sorted(form.architecture.values().items()))
        request = Measurement(arch, classes, batch, device)
        if measure:
            self.request(request)
        measured = self.current if self.is_current(request) else None
        if measured is None:
            if self.problem and request == self.asked:
                return f"Time: no estimate ({self.problem})."
            return "Time: measuring a few training steps for an estimate…"
        sizes = subset_sizes(classes, form.per_class.value(), form.test_per_class.value(),
                             form.val_percent.value() / 100)  # fmt: skip
        epochs = form.epochs.value()
        total = run_seconds(measured.seconds, batch, sizes, epochs)
        steps = epochs * -(-sizes.train // batch)
        return (
            f"Time: about <b>{duration(total)}</b> on {measured.ran_on} — an estimate: "
            f"{steps:,} steps of batch {batch} at {measured.seconds:.2g} s each (the median of "
            f"{measured.steps} measured here), plus validation and testing; reading the images "
            f"is not counted."
        )

    def cancel(self) -> None:
        """Drop what is waiting and stop a measurement under way (a run is starting, and
        would share the processor with it); the next request measures again."""
        self._timer.stop()
        self._pending = None
        self.asked = None
        if self._worker is not None:
            self._worker.clear_queue()

    def stop(self) -> None:
        self._timer.stop()
        if self._thread is not None:
            self._thread.stop()
            self._thread = None
            self._worker = None


def _asked(result: Measurement, request: Measurement) -> Measurement:
    """``request`` with ``result``'s findings: equal to ``result`` when it was of ``request``."""
    from dataclasses import replace

    return replace(request, seconds=result.seconds, ran_on=result.ran_on, steps=result.steps)
