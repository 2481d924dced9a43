"""Images on screen before any model has seen them.

The image a drop shows is decoded at once on a small thread pool, with the same safe decoder as
the analysis (:func:`vitexplorer.core.io.images.load_image`, no torch): the window shows it and its
thumbnail while the model loads, downloads or was declined, and the analysis follows when it
arrives. The other images' thumbnails are decoded as the strip scrolls near them (a drop of
50,000 images does not decode them all). An image that cannot be decoded is reported here, when
it is decoded, without waiting for a model.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque

import numpy as np
from PySide6.QtCore import QObject, Signal

PREVIEW_SIDE = 768  # pixels on the longer side: enough for the explorer's view, 1.7 MB at most
THUMBNAIL_SIDE = 72
KEPT = 8  # previews kept (the images most recently decoded); thumbnails are kept by the strip


def downscaled(image, side: int) -> np.ndarray:  # PIL.Image.Image
    """``image`` as (h, w, 3) uint8 with its longer side at most ``side`` pixels."""
    from PIL import Image

    scale = side / max(image.size)
    if scale < 1:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))


class PreviewLoader(QObject):
    """Decodes images off the GUI thread; keeps the last few previews by image key.

    The decodes run on one daemon thread (not a QThreadPool, whose destructor waits for its
    jobs without a limit): a decoder stuck in a file never keeps the process alive, and
    :meth:`stop` waits a few seconds at most, then names it in :func:`decoders_still_running`
    for the app to exit without it."""

    decoded = Signal(str, object, object)  # key, preview (h, w, 3) uint8, thumbnail
    failed = Signal(str, str)  # key, one-line message naming the file

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.previews: OrderedDict[str, np.ndarray] = OrderedDict()
        self.decoded.connect(self._keep)
        self._jobs: deque[tuple[str, str | bytes]] = deque()
        self._wake = threading.Condition()
        self._stopping = False
        self._busy = False
        self._thread: threading.Thread | None = None

    def request(self, key: str, source: str | bytes) -> None:
        """Decode ``source`` after the requests made before (one at a time: the model worker
        needs the cores)."""
        with self._wake:
            if self._stopping:
                return
            self._jobs.append((key, source))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="vitexplorer-previews", daemon=True
                )
                self._thread.start()
            self._wake.notify()

    def preview(self, key: str) -> np.ndarray | None:
        return self.previews.get(key)

    def forget(self, key: str) -> None:
        self.previews.pop(key, None)

    def _keep(self, key: str, preview: np.ndarray, _thumbnail: np.ndarray) -> None:
        self.previews[key] = preview
        self.previews.move_to_end(key)
        while len(self.previews) > KEPT:
            self.previews.popitem(last=False)

    def stop(self, timeout_ms: int = 3000) -> bool:
        """Drop what has not started and wait for what has (one decode, at most) up to
        ``timeout_ms``; False when it is still running then (it is left to the process's end)."""
        with self._wake:
            self._stopping = True
            self._jobs.clear()
            self._wake.notify_all()
            thread = self._thread
        if thread is None:
            return True
        thread.join(timeout_ms / 1000)
        if thread.is_alive():
            _STILL_RUNNING.append(thread)
            return False
        return True

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._jobs and not self._stopping:
                    self._wake.wait()
                if self._stopping:
                    return
                key, source = self._jobs.popleft()
            outcome = _decode(source)
            with self._wake:
                if self._stopping:
                    return  # the window is closing: nobody left to tell
                try:
                    if isinstance(outcome, str):
                        self.failed.emit(key, outcome)
                    else:
                        self.decoded.emit(key, *outcome)
                except RuntimeError:  # the loader's C++ side is gone (the window was deleted)
                    return


def _decode(source: str | bytes) -> tuple[np.ndarray, np.ndarray] | str:
    """The preview and thumbnail of ``source``, or the one-line reason it cannot be shown."""
    from vitexplorer.core.io.images import ImageLoadError, load_image

    try:
        image = load_image(source)
        return downscaled(image, PREVIEW_SIDE), downscaled(image, THUMBNAIL_SIDE)
    except ImageLoadError as exc:
        return str(exc)
    except Exception as exc:  # never a traceback from a user's file
        return f"cannot be shown ({type(exc).__name__})"


# Decoders still inside a file when their window closed: the app exits without them.
_STILL_RUNNING: list[threading.Thread] = []


def decoders_still_running() -> list[str]:
    """The names of the decoding threads that were asked to stop and have not."""
    return [t.name for t in _STILL_RUNNING if t.is_alive()]
