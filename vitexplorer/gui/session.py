"""One model session: a model in its own worker thread, what the GUI knows of it, its analyses
and its maps. The explorer's model is one session and a compared model another (issue 23).

A session owns its :class:`~vitexplorer.gui.workers.WorkerThread` (started on first use),
connects every worker signal explicitly to a slot of its own, drops the answers of a retired
worker, of a replaced model or of another feed (crop or whole image), keeps the maps that
arrive in its :class:`~vitexplorer.core.explain.maps.MapCache`, and says so with signals of
its own: views subscribe to those, never to the worker. Both sessions read images from one
:class:`~vitexplorer.core.explorer.decoded.DecodedImages`, so an image is decoded once for the
analyses and the maps of both models.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, cast

from PySide6.QtCore import QObject, Signal

from vitexplorer.core.explain.maps import MapCache, MapJob
from vitexplorer.core.explorer.decoded import DecodedImages
from vitexplorer.core.models.feed import CROP, Feed
from vitexplorer.gui.workers import (
    AnalysisDone,
    MapCancelled,
    MapDone,
    MapFailed,
    MapProgress,
    ModelInfo,
    ModelRequest,
    WorkerThread,
)

KEEP = 4  # analyses kept by :meth:`ModelSession.analysis` (the compared model's), by image


class ModelSession(QObject):
    """A model, its worker and its maps; see the module docstring."""

    loading = Signal(str)  # the name being loaded
    ready = Signal(object)  # ModelInfo, once ``info`` is set
    failed = Signal(object)  # workers.ModelFailed | workers.ModelCancelled
    download_offered = Signal(object)  # DownloadOffer
    download_failed = Signal(object)  # DownloadFailed
    download_progress = Signal(int, int)
    analysis_started = Signal(str)  # key
    analysis_ready = Signal(object)  # AnalysisDone (of any generation: the owner decides)
    analysis_failed = Signal(str, str)  # key, message
    map_arrived = Signal(str)  # key: a map of this model and feed is now in ``maps``
    map_failed = Signal(object)  # MapFailed
    map_progress = Signal(object)  # MapProgress of this model's current generation
    map_cancelled = Signal(object)  # MapCancelled: the person cancelled it, no map
    working = Signal(str)  # what a job just asked for is ("computing relevance…")
    idle = Signal()

    def __init__(self, name: str, images: DecodedImages, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.name = name
        self.images = images
        self.info: ModelInfo | None = None  # the model loaded
        self.previous: ModelInfo | None = None  # the one before it
        self.loading_request: ModelRequest | None = None  # a load under way
        self.feed: Feed = CROP
        self.maps = MapCache()  # what this model's maps are read from
        self.maps_asked: set[tuple[str, MapJob]] = set()  # (image key, job) in the worker
        # (image key, job) cancelled by the person: not asked again until asked anew (again())
        self.maps_cancelled: set[tuple[str, MapJob]] = set()
        # image key -> the analysis of this model (for a compared model; the explorer's are
        # kept in its ImageSession with their memory budget)
        self.analyses: OrderedDict[str, Any] = OrderedDict()
        self.failed_images: dict[str, str] = {}  # image key -> why it could not be analysed
        self.asked: set[str] = set()  # images with the worker
        self._thread: WorkerThread | None = None
        self._retired: list[WorkerThread] = []  # stopping without being waited for

    # --- the worker ---------------------------------------------------------------------------
    @property
    def worker(self):  # ModelWorker | None
        return self._thread.worker if self._thread is not None else None

    @property
    def worker_thread(self) -> WorkerThread | None:
        return self._thread

    def start(self):  # ModelWorker
        """The worker, started (in its own thread) if it is not yet."""
        if self._thread is None:
            self._prune()
            from vitexplorer.gui.workers import ModelWorker

            self._thread = WorkerThread(ModelWorker(self.images), name=self.name)
            worker = self._thread.worker
            worker.feed = self.feed
            # bound slots of this GUI-thread object: queued, run on the GUI thread
            worker.model_loading.connect(self._loading)
            worker.model_ready.connect(self._ready)
            worker.model_failed.connect(self._failed)
            worker.download_offered.connect(self._download_offered)
            worker.download_failed.connect(self._download_failed)
            worker.download_progress.connect(self._download_progress)
            worker.analysis_started.connect(self._analysis_started)
            worker.analysis_ready.connect(self._analysis_ready)
            worker.analysis_failed.connect(self._analysis_failed)
            worker.map_ready.connect(self._map_ready)
            worker.map_failed.connect(self._map_failed)
            worker.map_progress.connect(self._map_progress)
            worker.map_cancelled.connect(self._map_cancelled)
            worker.idle.connect(self._idle)
        return self._thread.worker

    def _mine(self) -> bool:
        """Whether the signal answered comes from the current worker (a retired one's late
        answers are dropped)."""
        return self._thread is not None and self.sender() is self._thread.worker

    def retire(self) -> None:
        """Stop the worker without waiting for it (a load cannot be interrupted): its model
        goes with it, and whatever it still sends is dropped."""
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.worker.clear_queue()
            thread.worker.cancel_event.set()
            thread.thread.quit()
            self._retired.append(thread)
        self._prune()
        self.info = self.loading_request = None
        self.forget()

    def _prune(self) -> None:
        self._retired = [t for t in self._retired if not t.thread.isFinished()]

    def stop(self) -> None:
        """The window closes: every worker of this session stops (each waited for a moment)."""
        for thread in self.threads():
            thread.stop()
        self._thread = None
        self._retired = []

    def threads(self) -> list[WorkerThread]:
        """The worker threads still held (tests check they end)."""
        return [t for t in (self._thread, *self._retired) if t is not None]

    # --- requests -----------------------------------------------------------------------------
    def request_model(self, request: ModelRequest) -> None:
        self.loading_request = request
        self.start().request_model(request)

    def set_feed(self, feed: Feed) -> None:
        """Images are fed another way: maps of the old way are forgotten."""
        if feed == self.feed:
            return
        self.feed = feed
        if self.worker is not None:
            self.worker.feed = feed
        self.forget()

    def forget(self, key: str | None = None) -> None:
        """The maps and analyses of image ``key``, or of every image, are stale."""
        self.maps.forget(key)
        if key is None:
            self.maps_asked.clear()
            self.maps_cancelled.clear()
            self.analyses.clear()
            self.failed_images.clear()
            self.asked.clear()
        else:
            self.analyses.pop(key, None)

    def request_analysis(self, key: str, source: str | bytes, first: bool = False) -> None:
        self.start().request_analysis(key, source, first=first)

    def analysis(self, key: str, source: str | bytes):  # ImageAnalysis | None
        """This model's analysis of image ``key`` (kept for the last few images), asked of
        the worker when missing and not failed."""
        found = self.analyses.get(key)
        if found is None and key not in self.asked and key not in self.failed_images:
            self.asked.add(key)
            self.request_analysis(key, source, first=True)
        return found

    def ask_map(self, key: str, source: str | bytes, job: MapJob) -> bool:
        """Ask the worker for ``job``'s map of image ``key``, once; whether it was asked now.
        A job the person cancelled is not asked again until :meth:`again`."""
        if self.worker is None or (key, job) in self.maps_asked | self.maps_cancelled:
            return False
        self.maps_asked.add((key, job))
        self.working.emit(f"computing {job.method}…")
        self.worker.request_map(key, source, job)
        return True

    def cancelled(self, key: str, job: MapJob) -> bool:
        """Whether the person cancelled ``job``'s map of image ``key`` (and has not asked again)."""
        return (key, job) in self.maps_cancelled

    def again(self) -> None:
        """The person asks again (chose a method anew): cancelled maps may be computed."""
        self.maps_cancelled.clear()

    def cancel_maps(self) -> None:
        """Cancel every map asked of the worker: the running job stops at its next pass, the
        queued ones are dropped. Each is said with ``map_cancelled``; none leaves a map."""
        cancelled = sorted(self.maps_asked, key=repr)
        self.maps_asked.clear()
        self.maps_cancelled.update(cancelled)
        if self.worker is not None:
            self.worker.cancel_maps()
        generation = self.info.generation if self.info is not None else 0
        for key, job in cancelled:
            self.map_cancelled.emit(MapCancelled(key, generation, job))

    # --- the worker's answers -------------------------------------------------------------------
    def _current(self, generation: int) -> bool:
        return self._mine() and self.info is not None and generation == self.info.generation

    def _loading(self, name: str) -> None:
        if self._mine():
            self.loading.emit(name)

    def _ready(self, info: ModelInfo) -> None:
        if not self._mine():
            return
        self.previous, self.info, self.loading_request = self.info, info, None
        self.forget()
        self.ready.emit(info)

    def _failed(self, outcome) -> None:  # ModelFailed | ModelCancelled
        if self._mine():
            self.loading_request = None
            self.failed.emit(outcome)

    def _download_offered(self, offer) -> None:
        if self._mine():
            self.loading_request = None
            self.download_offered.emit(offer)

    def _download_failed(self, failed) -> None:
        if self._mine():
            self.loading_request = None
            self.download_failed.emit(failed)

    def _download_progress(self, done: int, total: int) -> None:
        if self._mine():
            self.download_progress.emit(done, total)

    def _analysis_started(self, key: str) -> None:
        if self._mine():
            self.analysis_started.emit(key)

    def _analysis_ready(self, done: AnalysisDone) -> None:
        if not self._mine():
            return
        self.asked.discard(done.key)
        if self._current(done.generation) and done.feed == self.feed:
            self.maps.forget(done.key)  # made from the analysis this replaces
        self.analysis_ready.emit(done)

    def keep_analysis(self, done: AnalysisDone) -> bool:
        """Keep ``done`` as this model's analysis of its image (the last :data:`KEEP`), when
        it is of this model and feed; whether it was kept."""
        if self.info is None or done.generation != self.info.generation:
            return False  # a replaced model's
        if done.feed != self.feed:
            return False  # made the other way (asked again when drawn)
        self.analyses[done.key] = done.analysis
        self.analyses.move_to_end(done.key)
        while len(self.analyses) > KEEP:
            self.analyses.popitem(last=False)
        return True

    def _analysis_failed(self, key: str, message: str) -> None:
        if self._mine():
            self.asked.discard(key)
            self.analysis_failed.emit(key, message)

    def _map_ready(self, done: MapDone) -> None:
        if not self._mine():
            return
        self.maps_asked.discard((done.key, done.job))
        self.maps_cancelled.discard((done.key, done.job))  # finished before the cancel reached it
        if not self._current(done.generation) or done.feed != self.feed:
            return  # a replaced model's, or made the other way; asked again on draw
        self.maps.store(done.key, done.job, done.matrix)
        self.map_arrived.emit(done.key)

    def _map_failed(self, failed: MapFailed) -> None:
        if self._mine():
            self.maps_asked.discard((failed.key, failed.job))
            self.map_failed.emit(failed)

    def _map_progress(self, progress: MapProgress) -> None:
        if self._current(progress.generation) and (progress.key, progress.job) in self.maps_asked:
            self.map_progress.emit(progress)

    def _map_cancelled(self, cancelled: MapCancelled) -> None:
        """The running job stopped; :meth:`cancel_maps` said so already, unless the worker was
        stopped otherwise (the window closes)."""
        asked = (cancelled.key, cast(MapJob, cancelled.job))
        if self._mine() and asked in self.maps_asked:
            self.maps_asked.discard(asked)
            self.maps_cancelled.add(asked)
            self.map_cancelled.emit(cancelled)

    def _idle(self) -> None:
        if self._mine():
            self.idle.emit()
