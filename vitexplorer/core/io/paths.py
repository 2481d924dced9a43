"""A user's path with its ``~`` expanded, or one clear line when it cannot be.

``Path.expanduser`` raises a bare RuntimeError for ``~nouser/...`` (a user that does not exist on
this machine); every place where a path from the user enters (command-line options and positional
paths, the app's fields, open dialogs, drops, recent files and settings) goes through
:func:`expand_user` instead, so that the error reads as a line saying what to fix. Standard library
only: the GUI imports it before torch.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class UserPathError(ValueError):
    """A path whose ``~user`` names no user on this machine (or whose home is unknown)."""


def expand_user(path: str | os.PathLike[str]) -> Path:
    """``path`` with a leading ``~`` or ``~user`` expanded; UserPathError says why it cannot be."""
    try:
        return Path(path).expanduser()
    except RuntimeError as exc:
        text = os.fspath(path)
        name = text[1:].split("/", 1)[0].split(os.sep, 1)[0]
        if name:
            reason = f"there is no user '{name}' on this machine"
        else:
            reason = "the home folder is unknown here (HOME is not set)"
        raise UserPathError(f"{text}: {reason}") from exc


def node_kind(mode: int) -> str:
    """What a file system node that is not a regular file is, in the words every refusal uses:
    "a folder", "a named pipe (FIFO)", "a device", "a socket", or "a special file"."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"
