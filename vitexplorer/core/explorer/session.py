"""The explorer's state without Qt: the open images, their analyses, and what is selected.

The main window is wiring over these objects; every rule about them (which analyses to keep in
memory, how a selection survives a model change, where an arrow key moves) lives and is tested
here.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vitexplorer.core.explain.tokens import patch_for_token, token_for_patch
from vitexplorer.core.explorer.evented import Evented
from vitexplorer.core.io.folders import image_files

if TYPE_CHECKING:  # the GUI imports this module before torch is loaded
    from vitexplorer.core.explain.analysis import ImageAnalysis
    from vitexplorer.core.models.spec import ModelSpec

MEMORY_BUDGET = 2 * 1024**3  # bytes of stored attention maps across all open images


@dataclass
class ImageEntry:
    key: str
    name: str
    source: str | bytes  # a path, or encoded bytes (clipboard, drag from a browser)
    analysis: ImageAnalysis | None = None  # for the current model


def expand_paths(paths: list[str]) -> list[str]:
    """Absolute paths of the files given; a folder becomes its image files, sorted by name.

    A name that a file dialog or a drop turned into text with replacement characters (bytes
    that are not UTF-8) is matched back to the file it names. Anything else that is not a folder
    is kept as given, for the image reader to accept or to refuse with its reason."""
    expanded: list[str] = []
    for path in paths:
        p = Path(recover_name(path)).absolute()
        if p.is_dir():
            try:
                expanded += [str(f) for f in image_files(p)]
            except OSError:
                expanded.append(str(p))  # the reader says why it cannot be read
        else:
            expanded.append(str(p))
    return expanded


def recover_name(path: str) -> str:
    """``path``, or the one file in its folder whose name it shows with U+FFFD replacement
    characters where the real name has bytes that are not UTF-8 (Qt decodes such names so)."""
    if "\ufffd" not in path or os.path.lexists(path):
        return path
    folder, name = os.path.split(path)
    try:
        names = os.listdir(folder or ".")
    except OSError:
        return path
    wanted = name.encode("utf-8", "surrogatepass")
    matches = [
        n
        for n in names
        if os.fsencode(n).decode("utf-8", "replace").encode("utf-8", "surrogatepass") == wanted
    ]
    return os.path.join(folder, matches[0]) if len(matches) == 1 else path


class ImageSession:
    """Open images in order, each with the analysis of the current model if it is held.

    Analyses are kept while their attention fits ``memory_budget``; past it the least recently
    shown are dropped (never the current one), to be analysed again when shown. ViT-H/14 at
    518 px holds 3.8 GB of attention per image.
    """

    def __init__(self, memory_budget: int = MEMORY_BUDGET) -> None:
        self.entries: dict[str, ImageEntry] = {}
        self.current_key: str | None = None
        self.memory_budget = memory_budget
        self._recent: list[str] = []  # keys holding an analysis, least recently used first
        self._counter = itertools.count(1)

    @property
    def current(self) -> ImageEntry | None:
        return self.entries.get(self.current_key) if self.current_key else None

    @property
    def analysis(self) -> ImageAnalysis | None:
        entry = self.current
        return entry.analysis if entry else None

    def next_number(self) -> int:
        return next(self._counter)

    def add(self, name: str, source: str | bytes) -> str:
        key = f"image-{self.next_number()}"
        self.entries[key] = ImageEntry(key, name, source)
        return key

    def remove(self, key: str) -> ImageEntry | None:
        if key == self.current_key:
            self.current_key = None
        self._recent = [k for k in self._recent if k != key]
        return self.entries.pop(key, None)

    def touch(self, key: str) -> None:
        """Mark ``key`` as the most recently used."""
        self._recent = [k for k in self._recent if k != key] + [key]

    def store(self, key: str, analysis: ImageAnalysis) -> None:
        self.entries[key].analysis = analysis
        self.touch(key)
        self._evict()

    def forget_analyses(self) -> None:
        """The model changed: every analysis is stale."""
        for entry in self.entries.values():
            entry.analysis = None
        self._recent = []

    def held_bytes(self) -> int:
        return sum(self._held(k).attention.nbytes for k in self._recent)

    def _held(self, key: str) -> ImageAnalysis:
        analysis = self.entries[key].analysis
        assert analysis is not None  # every key in _recent holds one
        return analysis

    def _evict(self) -> None:
        total = self.held_bytes()
        for key in list(self._recent):
            if total <= self.memory_budget:
                break
            if key != self.current_key:
                total -= self._held(key).attention.nbytes
                self.entries[key].analysis = None
                self._recent.remove(key)


@dataclass
class Selection(Evented):
    """What the views show: a layer (0-based), a head or None for the mean, and a token.

    Evented (:mod:`vitexplorer.core.explorer.evented`): a view subscribes and hears which of
    these changed, once per change however many fields it set."""

    layer: int = 0
    head: int | None = None
    token: int = 0  # 0 is CLS

    def fit(self, spec: ModelSpec) -> None:
        """Keep what still makes sense for ``spec``; the token goes back to CLS (the centre
        patch for a model without prefix tokens). Announced as one change."""
        self.update(
            layer=min(self.layer, spec.num_layers - 1),
            head=None if self.head is not None and self.head >= spec.num_heads else self.head,
            token=spec.default_token(),
        )

    def patch(self, spec: ModelSpec) -> tuple[int, int] | None:
        return patch_for_token(self.token, spec.grid, spec.num_prefix_tokens)

    def moved(self, d_row: int, d_col: int, spec: ModelSpec) -> int:
        """The token an arrow key leads to: one patch over, stopping at the edges; from a
        prefix token such as CLS, the centre patch."""
        rows, cols = spec.grid
        patch = self.patch(spec)
        if patch is None:
            row, col = rows // 2, cols // 2
        else:
            row = min(max(patch[0] + d_row, 0), rows - 1)
            col = min(max(patch[1] + d_col, 0), cols - 1)
        return token_for_patch(row, col, spec.grid, spec.num_prefix_tokens)
