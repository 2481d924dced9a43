"""Images on screen before any model has seen them.

The image a drop shows is decoded at once on a small thread pool, with the same safe decoder as
the analysis (:func:`vitexplorer.core.images.load_image`, no torch): the window shows it and its
thumbnail while the model loads, downloads or was declined, and the analysis follows when it
arrives. The other images' thumbnails are decoded as the strip scrolls near them (a drop of
50,000 images does not decode them all). An image that cannot be decoded is reported here, when
it is decoded, without waiting for a model.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

PREVIEW_SIDE = 768  # pixels on the longer side: enough for the explorer's view, 1.7 MB at most
THUMBNAIL_SIDE = 72
KEPT = 8  # previews kept (the images most recently decoded); thumbnails are kept by the strip


def downscaled(image, side: int) -> np.ndarray:  # noqa: ANN001  (PIL.Image.Image)
    """``image`` as (h, w, 3) uint8 with its longer side at most ``side`` pixels."""
    from PIL import Image

    scale = side / max(image.size)
    if scale < 1:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))


class _Decode(QRunnable):
    def __init__(self, loader: PreviewLoader, key: str, source: str | bytes) -> None:
        super().__init__()
        self.loader, self.key, self.source = loader, key, source

    def run(self) -> None:
        from vitexplorer.core.images import ImageLoadError, load_image

        try:
            image = load_image(self.source)
            preview = downscaled(image, PREVIEW_SIDE)
            thumbnail = downscaled(image, THUMBNAIL_SIDE)
        except ImageLoadError as exc:
            self.loader.failed.emit(self.key, str(exc))
            return
        except Exception as exc:  # noqa: BLE001  (never a traceback from a user's file)
            self.loader.failed.emit(self.key, f"cannot be shown ({type(exc).__name__})")
            return
        self.loader.decoded.emit(self.key, preview, thumbnail)


class PreviewLoader(QObject):
    """Decodes images off the GUI thread; keeps the last few previews by image key."""

    decoded = Signal(str, object, object)  # key, preview (h, w, 3) uint8, thumbnail
    failed = Signal(str, str)  # key, one-line message naming the file

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(1)  # one at a time: the model worker needs the cores
        self.previews: OrderedDict[str, np.ndarray] = OrderedDict()
        self.decoded.connect(self._keep)

    def request(self, key: str, source: str | bytes) -> None:
        self.pool.start(_Decode(self, key, source))

    def preview(self, key: str) -> np.ndarray | None:
        return self.previews.get(key)

    def forget(self, key: str) -> None:
        self.previews.pop(key, None)

    def _keep(self, key: str, preview: np.ndarray, _thumbnail: np.ndarray) -> None:
        self.previews[key] = preview
        self.previews.move_to_end(key)
        while len(self.previews) > KEPT:
            self.previews.popitem(last=False)

    def stop(self, timeout_ms: int = 3000) -> None:
        """Drop what has not started and wait for what has (one decode, at most)."""
        self.pool.clear()
        self.pool.waitForDone(timeout_ms)
