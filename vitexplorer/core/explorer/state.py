"""What the explorer shows, as one evented object without Qt (napari's evented models).

:class:`ExplorerState` holds the current image, the selection (layer, head, token), the method
bars' choices, how an image is fed to the model (:class:`Feed`), the locked colour scale and
whether a second view compares. Setting a field announces it (:mod:`.evented`); the window and
the views subscribe and redraw what a change concerns, and nobody refreshes a window by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vitexplorer.core.explorer.session import Selection
from vitexplorer.core.models.feed import CROP, Feed

# the fields whose change redraws the views of the image on screen
DRAWN = frozenset(
    ("layer", "head", "token", "choice", "compare_choice", "same_scale")
    + ("comparing", "compare_with")
)


@dataclass
class ExplorerState(Selection):
    """The explorer's state: a :class:`Selection` (layer, head, token) and the rest of what
    the views draw from. ``choice`` and ``compare_choice`` are the method bars' ``MapChoice``
    (None before the bars exist); ``compare_with`` is "method" or "model"."""

    image: str | None = None  # the key of the image on screen
    choice: Any = None  # MapChoice of the method bar
    compare_choice: Any = None  # MapChoice of the compare bar
    same_scale: bool = False  # the method comparison's two views on one colour scale
    feed: Feed = CROP
    scale_locked: bool = False
    comparing: bool = False  # the second view is shown
    compare_with: str = "method"  # "method" or "model"

    @property
    def selection(self) -> Selection:
        """The layer, head and token alone (a copy: setting it changes nothing here)."""
        return Selection(self.layer, self.head, self.token)
