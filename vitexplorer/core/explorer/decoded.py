"""Decoded images shared by the model workers: one decode per image and job chain.

An image on screen is analysed by the explorer's model, then maps are computed for it (and, in
a model comparison, the same again by the compared model's worker). Each job used to decode the
file again (up to seven decodes for compare mode with relevance for two classes); the workers
now read it from here, where the last few images stay decoded. Thread-safe: two workers asking
for the same image wait for one decode.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

KEEP = 2  # decoded images kept: the one on screen and the one before it


class DecodedImages:
    """The last ``keep`` images decoded, by image key; :meth:`get` decodes a missing one with
    the app's safe decoder (``vitexplorer.core.models.preprocessing.load_image``)."""

    def __init__(self, keep: int = KEEP) -> None:
        self.keep = keep
        self._images: OrderedDict[str, Any] = OrderedDict()  # key -> PIL image
        self._lock = threading.Lock()

    def get(self, key: str, source: str | bytes) -> Any:
        """The image ``key`` (decoded from ``source`` unless kept), as a copy the caller may
        change; the decoder's error (a one-line ``ImageLoadError``) passes through."""
        from vitexplorer.core.io.images import load_image

        with self._lock:  # one decode per image, whichever worker asks first
            image = self._images.get(key)
            if image is None:
                image = load_image(source)
                self._images[key] = image
                while len(self._images) > self.keep:
                    self._images.popitem(last=False)
            self._images.move_to_end(key)
        return image.copy()

    def forget(self, key: str | None = None) -> None:
        """Drop image ``key`` (removed, say), or every image."""
        with self._lock:
            if key is None:
                self._images.clear()
            else:
                self._images.pop(key, None)
