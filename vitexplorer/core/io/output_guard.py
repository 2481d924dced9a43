"""Outputs that would overwrite an input: the check the window makes before it saves.

The command line checks its own options (``vitexplorer.cli.common.check_outputs``); the window
saves through dialogs where any name can be typed, so before a byte is written each file it is
about to write is compared with what it has open: the images, the model's checkpoint or weights
(a Hugging Face folder's files), the fine-tune dataset. Links are resolved and hard links
caught (:func:`os.path.samefile`). Qt-free.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

Named = Iterable[tuple[str, "str | os.PathLike[str] | None"]]  # (what it is, in words; path)


def output_conflict(
    outputs: Sequence[str | os.PathLike[str]], inputs: Named = (), folders: Named = ()
) -> str | None:
    """One line saying why writing ``outputs`` would overwrite one of ``inputs`` (files) or
    write into one of ``folders`` (read as a whole: a dataset, a model folder), or None."""
    files = [(label, Path(p)) for label, p in inputs if p is not None and _exists(p)]
    trees = [(label, Path(p)) for label, p in folders if p is not None and os.path.isdir(p)]
    for output in map(Path, outputs):
        for label, path in files:
            if _same_file(output, path):
                return (
                    f"{output.name} is {label} ({path}); saving there would overwrite it: "
                    f"choose another name"
                )
        where = _real(output)
        for label, folder in trees:
            inside = _real(folder)
            if where == inside or where.startswith(inside.rstrip(os.sep) + os.sep):
                return (
                    f"{output} is inside {label} ({folder}), which the window reads; "
                    f"save it elsewhere"
                )
    return None


def _exists(path: str | os.PathLike[str]) -> bool:
    try:
        return os.path.lexists(path)
    except (OSError, ValueError):  # a NUL in the name, a name too long
        return False


def _real(path: str | os.PathLike[str]) -> str:
    return os.path.realpath(os.path.expanduser(path))


def _same_file(a: Path, b: Path) -> bool:
    """``a`` and ``b`` name one file: the same inode (links of either kind), or the same place
    once links are resolved (``a`` not written yet)."""
    try:
        if os.path.samefile(a, b):
            return True
    except (OSError, ValueError):
        pass
    return _real(a) == _real(b)
