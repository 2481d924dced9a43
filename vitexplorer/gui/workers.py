"""The model worker: owns the model and runs every torch call off the GUI thread.

Requests arrive from the GUI thread as plain method calls (not signals: the worker's own thread
may be busy with a forward pass) and are kept in a small queue guarded by a lock: at most one
pending model change (a load, or a fine-tuned model to adopt; a newer one supersedes it) and an
ordered set of pending images, analysed with whichever model is loaded when their turn comes. A
model change goes first. Every result is
tagged with the generation of the model that made it, so the GUI can drop stale ones. The worker
answers with signals carrying numpy arrays and frozen dataclasses only; a failed or cancelled
load is a :class:`ModelFailed` or a :class:`ModelCancelled`, told apart by type. Images are read
from a :class:`~vitexplorer.core.explorer.decoded.DecodedImages` that two workers may share: an
image is decoded once for its analysis and its maps, by either model.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np
from PySide6.QtCore import QObject, QThread, Signal, Slot

from vitexplorer.core.explorer.decoded import DecodedImages
from vitexplorer.core.models.feed import CROP, Feed

if TYPE_CHECKING:
    from vitexplorer.core.explain.maps import MapJob


@dataclass(frozen=True)
class ModelRequest:
    """Which model to load: see ``vitexplorer.core.models.loading.load_model``."""

    name: str
    weights: str = "default"
    device: str = "auto"
    allow_download: bool = False


@dataclass(frozen=True)
class ModelFailed:
    """A load that failed: ``message`` is its one line (naming the file and what to do); the
    model in use stays."""

    request: ModelRequest
    message: str


@dataclass(frozen=True)
class ModelCancelled:
    """A load (a download) cancelled by the person: nothing to report as an error."""

    request: ModelRequest


@dataclass(frozen=True)
class ParamCounts:
    """Parameter counts for the fine-tune panel, read off the model with core's own split.

    ``trained[k]`` is the number of parameters that train besides the head when the last ``k``
    blocks train (``k = 0``: head only; ``k = len - 1``: nothing frozen, so everything but the
    head). A new head for C classes adds ``(head_inputs + 1) * C``.
    """

    total: int
    head_inputs: int
    trained: tuple[int, ...]

    def trainable(self, blocks: int, num_classes: int) -> int:
        return self.trained[blocks] + (self.head_inputs + 1) * num_classes


@dataclass(frozen=True)
class SavedTimeLapse:
    """The time-lapse of a vitexplorer checkpoint's training, read by the worker when it loads
    the checkpoint: ``timelapse`` is None when the file holds none, or ``problem`` says why the
    one it holds cannot be shown (the model loads all the same)."""

    file: str  # the checkpoint's name, for people
    timelapse: object | None  # vitexplorer.core.training.timelapse.TimeLapse
    problem: str = ""


@dataclass(frozen=True)
class ModelInfo:
    """What the GUI knows of the loaded model."""

    request: ModelRequest  # for a fine-tuned model, the request of the model it started from
    spec: object  # vitexplorer.core.models.loading.ModelSpec (kept untyped: no torch import here)
    device: str
    generation: int
    seconds: float
    devices: tuple[str, ...]
    params: ParamCounts | None = None  # None: an architecture the fine-tune engine cannot split
    fine_tuned: bool = False  # trained in this session and not loaded from a file
    weights_file: str | None = None  # where the parameters were read from (method cards)
    # the training time-lapse of a model loaded from a vitexplorer checkpoint; None otherwise
    saved_timelapse: SavedTimeLapse | None = None


@dataclass(frozen=True)
class StructureDone:
    """The model's own structure for the analytics tab (core.structure), asked for when the tab
    first needs it: position similarity, filter components and their variance shares, or None
    with the reason for an architecture whose parameters cannot be read."""

    generation: int
    structure: tuple | None
    reason: str = ""


@dataclass(frozen=True)
class DownloadOffer:
    """Default weights that are not cached yet: what, how big, from where, to where."""

    request: ModelRequest
    description: str
    size_mb: float
    url: str
    path: str


@dataclass(frozen=True)
class DownloadFailed:
    """A download asked for that could not reach its server: ``reason`` is the network's own
    words (``[Errno 101] Network is unreachable``); the model in use stays."""

    request: ModelRequest
    reason: str


@dataclass(frozen=True)
class _Adoption:
    """A model trained in another thread, handed over whole: from now on this worker owns it."""

    loaded: object  # vitexplorer.core.models.loading.LoadedModel
    request: ModelRequest


@dataclass(frozen=True)
class MapDone:
    """A map job's answer: the method's (tokens, tokens) matrix for one image, row i token i's
    map (:func:`vitexplorer.core.explain.maps.model_matrix`)."""

    key: str
    generation: int
    job: MapJob  # the method and its options
    matrix: np.ndarray  # (tokens, tokens) float32
    feed: Feed = CROP  # how the image was fed: the centre crop or the whole image


@dataclass(frozen=True)
class MapFailed:
    """A map job that could not be computed, and why (one line)."""

    key: str
    generation: int
    job: object  # vitexplorer.core.explain.maps.MapJob
    message: str


@dataclass(frozen=True)
class MapProgress:
    """A map job of several passes (integrated gradients' steps, occlusion's patches) has done
    ``done`` of its ``total`` passes."""

    key: str
    generation: int
    job: object  # vitexplorer.core.explain.maps.MapJob
    done: int
    total: int


@dataclass(frozen=True)
class MapCancelled:
    """A map job the person cancelled (:meth:`ModelWorker.cancel_maps`): no map, no error."""

    key: str
    generation: int
    job: object  # vitexplorer.core.explain.maps.MapJob


@dataclass(frozen=True)
class FolderStatsDone:
    folder: str
    generation: int
    statistics: (
        object | None
    )  # vitexplorer.core.explain.head_stats.HeadStatistics; None if no image worked
    images: int
    skipped: tuple[str, ...]
    cancelled: bool


@dataclass
class _FolderJob:
    folder: str
    paths: list[str]
    done: int = 0
    statistics: list = field(default_factory=list)  # HeadStatistics of the images done
    skipped: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class AnalysisDone:
    key: str
    generation: int
    analysis: object  # vitexplorer.core.explain.analysis.ImageAnalysis
    thumbnail: np.ndarray  # (h, w, 3) uint8
    feed: Feed = CROP  # how the image was fed: the centre crop or the whole image


class ModelWorker(QObject):
    """Lives in its own QThread; see the module docstring for the queueing rules."""

    model_loading = Signal(str)
    model_ready = Signal(object)  # ModelInfo
    model_failed = Signal(object)  # ModelFailed | ModelCancelled
    download_offered = Signal(object)  # DownloadOffer
    download_failed = Signal(object)  # DownloadFailed: no network, instead of model_failed
    download_progress = Signal(int, int)  # bytes done, bytes total
    analysis_started = Signal(str)  # key
    analysis_ready = Signal(object)  # AnalysisDone
    analysis_failed = Signal(str, str)  # key, message
    map_ready = Signal(object)  # MapDone
    map_failed = Signal(object)  # MapFailed
    map_progress = Signal(object)  # MapProgress, from a job of several passes
    map_cancelled = Signal(object)  # MapCancelled
    folder_progress = Signal(int, int)  # images done, images in all
    folder_done = Signal(object)  # FolderStatsDone
    structure_ready = Signal(object)  # StructureDone
    idle = Signal()
    _wake = Signal()

    def __init__(self, images: DecodedImages | None = None) -> None:
        super().__init__()
        # decoded images, shared with the other model's worker in a comparison
        self.images = images if images is not None else DecodedImages()
        self._lock = threading.Lock()
        self._pending_model: ModelRequest | _Adoption | None = None
        self._pending_images: OrderedDict[str, str | bytes] = OrderedDict()
        self._pending_maps: OrderedDict[tuple[str, object], str | bytes] = OrderedDict()
        self._folder: _FolderJob | None = None
        self._folder_cancel = False
        self._hash_pending = False  # the weights file's hash, for method cards, when idle
        self._structure_pending = False  # the analytics tab waits for the model's structure
        self._map_epoch = 0  # raised by cancel_maps: a running job of an older epoch stops
        # set from the GUI thread directly (a queued slot would wait for the download to end)
        self.cancel_event = threading.Event()
        # how images are fed (centre crop or whole image); set from the GUI thread (a frozen
        # value: read once per job here)
        self.feed: Feed = CROP
        self._model = (
            None  # vitexplorer.core.models.loading.LoadedModel, touched only in this thread
        )
        self._generation = 0
        self._wake.connect(self._drain)

    # --- called from the GUI thread -------------------------------------------------------
    def request_model(self, request: ModelRequest) -> None:
        with self._lock:
            self._pending_model = request
        self.cancel_event.clear()
        self._wake.emit()

    def use_model(self, loaded: object, request: ModelRequest) -> None:
        """Adopt a fine-tuned ``LoadedModel``; nobody else may touch it afterwards. ``request``
        names the model it started from (what a new fine-tune starts from, what settings keep)."""
        with self._lock:
            self._pending_model = _Adoption(loaded, request)
        self._wake.emit()

    def request_analysis(self, key: str, source: str | bytes, first: bool = False) -> None:
        with self._lock:
            self._pending_images[key] = source
            if first:
                self._pending_images.move_to_end(key, last=False)
        self._wake.emit()

    def request_map(self, key: str, source: str | bytes, job: object) -> None:
        """A map of a method that needs the model (``job``, a ``MapJob``: relevance, say) for
        an image; asked for while a person waits for it, so it goes before queued images."""
        with self._lock:
            self._pending_maps[(key, job)] = source
        self._wake.emit()

    def cancel_maps(self) -> None:
        """Drop the queued map jobs and stop the running one at its next pass (it answers
        with a :class:`MapCancelled`); the session says which jobs were cancelled."""
        with self._lock:
            self._pending_maps.clear()
            self._map_epoch += 1

    def request_folder_statistics(self, folder: str, paths: list[str]) -> None:
        """Per-head statistics averaged over ``paths``; one image per turn, so that the
        explorer's own requests are never stuck behind a long folder."""
        with self._lock:
            self._folder = _FolderJob(folder, list(paths))
            self._folder_cancel = False
        self._wake.emit()

    def request_structure(self) -> None:
        """The current model's structure (StructureDone), before queued images: a person has
        the analytics tab open and waits for it. Asked for again by a new model."""
        with self._lock:
            self._structure_pending = True
        self._wake.emit()

    def cancel_folder(self) -> None:
        with self._lock:
            self._folder_cancel = True
        self._wake.emit()

    def clear_queue(self) -> None:
        with self._lock:
            self._pending_images.clear()
            self._pending_maps.clear()
            self._pending_model = None
            self._folder_cancel = True

    def prioritise(self, key: str) -> None:
        """Move a queued image to the front; nothing if it is running or done."""
        with self._lock:
            if key in self._pending_images:
                self._pending_images.move_to_end(key, last=False)

    # --- the worker thread ----------------------------------------------------------------
    @Slot()
    def _drain(self) -> None:
        while True:
            with self._lock:
                request, self._pending_model = self._pending_model, None
                job = map_job = folder = None
                ready = request is None and self._model is not None
                structure = ready and self._structure_pending
                if structure:
                    self._structure_pending = False
                elif ready and self._pending_maps:
                    map_job = (*self._pending_maps.popitem(last=False), self._map_epoch)
                elif ready and self._pending_images:
                    job = self._pending_images.popitem(last=False)
                elif ready and self._folder is not None:
                    folder = self._folder
                    if self._folder_cancel:
                        self._folder = None
            if isinstance(request, _Adoption):
                self._adopt(request)
            elif request is not None:
                self._load(request)
            elif structure:
                self._structure()
            elif map_job is not None:
                self._map(*map_job[0], map_job[1], map_job[2])
            elif job is not None:
                self._analyse(*job)
            elif folder is not None:
                self._folder_step(folder)
            elif self._hash_pending:
                self._hash_weights()
            else:
                break
        self.idle.emit()

    def _load(self, request: ModelRequest) -> None:
        from vitexplorer.core.models import loading as models

        try:
            download = _default_download(request)
            if download is not None:
                if not download.cached and not request.allow_download:
                    offer = DownloadOffer(
                        request,
                        download.description,
                        download.size_mb,
                        download.url,
                        str(download.path),
                    )
                    self.download_offered.emit(offer)
                    return
            self.model_loading.emit(request.name)
            start = time.perf_counter()
            # the old model stays until the new one is built: a failed load loses nothing
            loaded = models.load_model(
                request.name,
                request.weights,
                request.device,
                allow_download=request.allow_download,
                progress=self.download_progress.emit,
                cancelled=self.cancel_event.is_set,
            )
        except Exception as exc:  # every failure becomes a message; the thread lives on
            from vitexplorer.core.models.download import DownloadCancelled

            unreachable = _network_reason(exc) if request.allow_download else None
            if isinstance(exc, DownloadCancelled):  # by its type, not its words
                self.model_failed.emit(ModelCancelled(request))
            elif unreachable is not None:
                self.download_failed.emit(DownloadFailed(request, unreachable))
            else:
                self.model_failed.emit(ModelFailed(request, _message(exc)))
            return
        saved = _saved_timelapse(loaded.weights_file, loaded.spec)
        self._use(loaded, request, time.perf_counter() - start, fine_tuned=False, saved=saved)

    def _adopt(self, adoption: _Adoption) -> None:
        self._use(adoption.loaded, adoption.request, 0.0, fine_tuned=True)

    def _use(
        self,
        loaded,
        request: ModelRequest,
        seconds: float,
        fine_tuned: bool,
        saved: SavedTimeLapse | None = None,
    ) -> None:
        from vitexplorer.core.models import loading as models

        with self._lock:  # statistics of two models must not be averaged together
            folder, self._folder = self._folder, None
        if folder is not None:  # sent with the old model's generation, before the new model
            self._finish_folder(folder, cancelled=True)
        self._model = loaded
        self._generation += 1
        self._hash_pending = loaded.weights_file is not None
        info = ModelInfo(
            request,
            loaded.spec,
            str(loaded.device),
            self._generation,
            seconds,
            tuple(models.available_devices()),
            _param_counts(loaded.module),
            fine_tuned,
            None if loaded.weights_file is None else str(loaded.weights_file),
            saved,
        )
        self.model_ready.emit(info)

    def _analyse(self, key: str, source: str | bytes) -> None:
        from vitexplorer.core.explain.analysis import analyze_image

        self.analysis_started.emit(key)
        feed = self.feed
        try:
            image = self.images.get(key, source)
            analysis = analyze_image(self._model, image, feed)
            analysis.statistics  # noqa: B018  (computed here, in the worker, for the analytics tab)
        except Exception as exc:
            self.analysis_failed.emit(key, _message(exc))
            return
        thumbnail = _thumbnail(analysis.display)
        self.analysis_ready.emit(AnalysisDone(key, self._generation, analysis, thumbnail, feed))

    def _cancelled_since(self, epoch: int) -> bool:
        with self._lock:
            return self._map_epoch != epoch or self.cancel_event.is_set()

    def _map(self, key: str, job, source: str | bytes, epoch: int = 0) -> None:  # maps.MapJob
        """One map job; a method of several passes reports each (``map_progress``) and stops
        at the next when :meth:`cancel_maps` was called since the job was taken."""
        from vitexplorer.core.explain.maps import model_matrix
        from vitexplorer.core.explain.method import MethodCancelled
        from vitexplorer.core.models.preprocessing import aspect_grid, preprocess

        generation = self._generation

        def progress(done: int, total: int) -> None:
            if self._cancelled_since(epoch):
                raise MethodCancelled(f"{job.method} cancelled after {done} of {total} passes")
            self.map_progress.emit(MapProgress(key, generation, job, int(done), int(total)))

        try:
            if self._cancelled_since(epoch):  # cancelled between its turn and its start
                raise MethodCancelled(f"{job.method} cancelled before it started")
            image = self.images.get(key, source)
            spec, feed = self._model.spec, self.feed
            batch = preprocess(image, spec, feed).unsqueeze(0).to(self._model.device)
            grid = aspect_grid(image.width, image.height, spec) if feed.whole else None
            matrix = model_matrix(job.method, self._model, batch, job.options, grid, progress)
        except MethodCancelled:
            self.map_cancelled.emit(MapCancelled(key, generation, job))
            return
        except Exception as exc:
            self.map_failed.emit(MapFailed(key, self._generation, job, _message(exc)))
            return
        self.map_ready.emit(MapDone(key, self._generation, job, matrix, feed))

    def _folder_step(self, job: _FolderJob) -> None:
        """Analyse the folder's next image; the last one (or a cancel) sends the result."""
        from vitexplorer.core.explain.analysis import analyze_image
        from vitexplorer.core.io.images import load_image

        with self._lock:
            cancelled = self._folder_cancel
        if cancelled or job.done >= len(job.paths):
            with self._lock:
                if self._folder is job:
                    self._folder = None
            self._finish_folder(job, cancelled)
            return
        path = job.paths[job.done]
        try:
            job.statistics.append(analyze_image(self._model, load_image(path)).statistics)
        except Exception as exc:  # an unreadable image is skipped and named
            job.skipped.append(f"{path}: {_message(exc)}")
        job.done += 1
        self.folder_progress.emit(job.done, len(job.paths))

    def _structure(self) -> None:
        """The model's own structure, read here where the module lives (two SVDs of the patch
        filters' matrix and a cosine similarity: under a second for ViT-B/16)."""
        from vitexplorer.core.explain.structure import model_structure

        spec = self._model.spec
        try:
            found = model_structure(self._model.module, spec.grid, spec.num_prefix_tokens)
        except Exception as exc:  # an architecture whose parameters cannot be read
            self.structure_ready.emit(StructureDone(self._generation, None, _message(exc)))
            return
        self.structure_ready.emit(StructureDone(self._generation, found))

    def _hash_weights(self) -> None:
        """Hash the weights file once, when nothing else waits: an export's method card then
        finds it ready instead of reading hundreds of megabytes on the GUI thread."""
        from vitexplorer.core.explain.provenance import file_sha256

        self._hash_pending = False
        try:
            file_sha256(self._model.weights_file)
        except OSError:
            pass  # the card will say the file could not be read

    def _finish_folder(self, job: _FolderJob, cancelled: bool) -> None:
        from vitexplorer.core.explain.head_stats import average_statistics

        mean = average_statistics(job.statistics) if job.statistics else None
        self.folder_done.emit(
            FolderStatsDone(
                job.folder,
                self._generation,
                mean,
                len(job.statistics),
                tuple(job.skipped),
                cancelled,
            )
        )


def _default_download(request: ModelRequest):  # models.WeightsDownload | None
    """The default weights that ``request`` needs from the network, described without network
    access (torchvision's ImageNet weights, a timm model's pretrained tag); None otherwise."""
    from vitexplorer.core.models import loading as models

    return models.default_download(request.name, request.weights)


def _saved_timelapse(path, spec) -> SavedTimeLapse | None:  # Path | None, ModelSpec
    """The time-lapse in the weights file at ``path`` when it is a vitexplorer checkpoint (a
    safetensors file with vitexplorer's metadata), checked against the model ``spec`` loaded
    from it; None for any other model."""
    from pathlib import Path

    from vitexplorer.core.models.checkpoint import (
        file_label,
        is_safetensors_file,
        read_safetensors_header,
    )
    from vitexplorer.core.training.timelapse import TimeLapseError, read_timelapse

    if path is None:
        return None
    name = file_label(Path(path))
    try:
        if not is_safetensors_file(path) or read_safetensors_header(path, weights=False)[1] is None:
            return None
        return SavedTimeLapse(name, read_timelapse(path, spec))
    except TimeLapseError as exc:
        return SavedTimeLapse(name, None, str(exc))
    except Exception as exc:  # the file changed since the model was read from it, say
        problem = f"the time-lapse in {name} cannot be read: {_message(exc)}"
        return SavedTimeLapse(name, None, problem)


def _param_counts(module) -> ParamCounts | None:
    from vitexplorer.core.training.finetune_model import trainable_counts

    try:
        return ParamCounts(*trainable_counts(module))
    except TypeError:  # not a ViT the fine-tune engine knows
        return None


def _thumbnail(display: np.ndarray, side: int = 72) -> np.ndarray:
    step = max(1, display.shape[0] // side)
    return np.ascontiguousarray(display[::step, ::step])


def _network_reason(exc: BaseException) -> str | None:
    """The network's reason when ``exc`` comes from a download that could not reach its server
    (core.download's DownloadError of kind "network"); None for any other failure."""
    from vitexplorer.core.models.download import DownloadError

    cause = exc
    while cause is not None:
        if isinstance(cause, DownloadError):
            return str(cause) if cause.kind == "network" else None
        cause = cause.__cause__
    return None


def _message(exc: BaseException) -> str:
    from vitexplorer.core.explain.analysis import failure_message

    return failure_message(exc)


# Threads that did not stop when asked (a job stuck in a call that cannot be interrupted): kept
# referenced here so that Qt never destroys a running QThread (which aborts the process); the app
# ends the process without waiting for them (see vitexplorer.gui.app.run_gui).
_STILL_RUNNING: list[WorkerThread] = []


def threads_still_running() -> list[str]:
    """The names of the worker threads that were asked to stop and have not."""
    return [t.thread.objectName() for t in _STILL_RUNNING if t.thread.isRunning()]


class JobWorker(Protocol):
    """What a worker thread's worker offers: a cancel flag its job checks, a queue to drop,
    and Qt's move to another thread (it is a QObject)."""

    cancel_event: threading.Event

    def clear_queue(self) -> None: ...

    def moveToThread(self, thread: QThread) -> bool: ...


class WorkerThread:
    """A worker (the :class:`ModelWorker` unless another is given) in its own QThread, stopped
    cleanly on :meth:`stop`. A worker has a ``cancel_event`` and a ``clear_queue()``."""

    def __init__(self, worker: JobWorker | None = None, name: str = "vitexplorer-model") -> None:
        self.thread = QThread()
        self.thread.setObjectName(name)
        self.worker: JobWorker = worker if worker is not None else ModelWorker()
        self.worker.moveToThread(self.thread)
        self.thread.start()

    def stop(self, timeout_ms: int = 5000) -> bool:
        """Cancel the running job, drop queued ones, and wait for the thread to end.

        A job cancels within one encoder block or one batch; one that is stuck regardless (a
        call that cannot be interrupted) is left running, held so that it is never destroyed
        while it runs, and False is returned: closing the window never waits long nor crashes.
        """
        self.worker.clear_queue()
        self.worker.cancel_event.set()
        self.thread.quit()
        if self.thread.wait(timeout_ms):
            return True
        _STILL_RUNNING.append(self)
        return False
