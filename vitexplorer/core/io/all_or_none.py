"""Several output files, in one folder or several, written all or none.

Each file goes to a temporary file beside it (:func:`vitexplorer.core.io.files.atomic_path`); only
once every one is complete are they renamed over their names. A write that fails (a read-only
folder, a full disk) removes the temporaries and the folders the set made, so the output folder
holds what it held before: no new file, no old file replaced, nothing half written.

:func:`vitexplorer.core.io.files.write_set` is the other way to write a set: one folder, the card
last, each card naming its files (an image's outputs); this one is for a run whose outputs span
several folders and have no card (``timelapse``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import IO, Any


class AllOrNone:
    """``with AllOrNone() as files: files.write(path, writer)...``: see the module docstring."""

    def __init__(self, mode: int | None = None) -> None:
        self.mode = mode
        self._stack = ExitStack()
        self._made: list[Path] = []  # folders this set created, outermost first

    def __enter__(self) -> AllOrNone:
        self._stack.__enter__()
        return self

    def folder(self, path: Path) -> Path:
        """``path`` as a folder, made (with its missing parents) if it is not one yet."""
        missing = []
        for parent in (path, *path.parents):
            if os.path.lexists(parent):
                break
            missing.append(parent)
        path.mkdir(parents=True, exist_ok=True)
        self._made += reversed(missing)  # outermost first
        return path

    def write(self, path: Path, writer: Callable[[IO[bytes]], Any]) -> Path:
        """Write ``path`` through ``writer(handle)``, kept aside until the set is complete."""
        from vitexplorer.core.io.files import atomic_path

        tmp = self._stack.enter_context(atomic_path(path, self.mode))
        with open(tmp, "wb") as handle:
            writer(handle)
        return path

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        trace: TracebackType | None,
    ) -> bool:
        try:
            return bool(self._stack.__exit__(kind, exc, trace))
        except BaseException:
            self._remove_folders()
            raise
        finally:
            if exc is not None:
                self._remove_folders()

    def _remove_folders(self) -> None:
        for folder in reversed(self._made):  # the innermost first; only if left empty
            try:
                folder.rmdir()
            except OSError:
                pass
        self._made = []
