"""Files written so that they are never seen half written, with the usual permissions.

Every file vitexplorer writes (analysis outputs, exports, checkpoints, downloads) goes through
:func:`atomic_path`: the data goes to a hidden temporary file beside the target, which is renamed
over the target only once complete. A process killed in the middle (kill -9, a power cut) leaves
the target as it was, plus a temporary file (or folder) named
``.vitexplorer-<pid>-<random>.tmp...``; the next write into that folder removes such leftovers
once the process that made them is gone. The temporary name has a fixed length, so any name the
file system accepts can be written.

A target that is a FIFO or a character device (``/dev/null``, a terminal), or a link to one, is
never renamed over: the finished data is streamed into it. Any other node that is not a regular
file (a folder, a block device, a socket) is refused before anything is written.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

TEMP_PREFIX = ".vitexplorer-"
_TEMP_PATTERN = re.compile(r"^\.vitexplorer-(\d+)-[A-Za-z0-9_]+\.tmp")
STALE_AFTER = 24 * 3600.0  # a leftover older than this goes even if its process id lives again
ROOM_MARGIN = 16 * 1024 * 1024  # bytes left free beyond a file's size before it is written


@contextmanager
def atomic_path(
    path: Path, mode: int | None = None, durable: bool = False, own_folder: bool = False
) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed over ``path`` when the block ends
    without an exception, removed when it does not.

    The temporary name keeps ``path``'s suffix, so writers that pick a format by it still can.
    ``mode`` defaults to what a new file gets under the umask (as ``open`` would give).
    ``durable`` flushes the data to the disk before the rename (for checkpoints and downloads),
    so a power cut cannot leave an empty file under the final name. ``own_folder`` puts the
    temporary file in a hidden folder of its own, for writers that make temporary files of their
    own beside the file they are given (safetensors does): whatever a killed write leaves is
    then inside that folder, and removed with it.
    """
    path = Path(path)
    folder = path.parent
    stream = _special_target(path)  # refused now, before any work, when it cannot be written
    if stream:  # /dev/null's folder is no place for temporary files: the system's is
        folder = Path(tempfile.gettempdir())
    remove_stale_temporaries(folder)
    suffix = path.suffix if 0 < len(path.suffix) <= 16 else ""
    prefix = f"{TEMP_PREFIX}{os.getpid()}-"
    scratch: Path | None = None
    if own_folder:
        scratch = Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=folder))
        tmp = scratch / f"staged{suffix}"
    else:
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=f".tmp{suffix}", dir=folder)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        if durable:
            _fsync(tmp)
        if stream or _special_target(path):
            _stream_into(tmp, path)
            tmp.unlink(missing_ok=True)
        else:
            os.chmod(tmp, file_mode() if mode is None else mode)
            os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        explained = explain_write_error(exc, folder)
        if explained is not exc:
            raise explained from exc
        raise
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _special_target(path: Path) -> bool:
    """True when ``path`` (links followed) is a FIFO or a character device, to be written as a
    stream; False when it is a regular file or absent. Raises ``OSError`` for any other node."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False  # absent (or a dangling link): the rename makes a new file
    if stat.S_ISREG(mode):
        return False
    if stat.S_ISFIFO(mode) or stat.S_ISCHR(mode):
        return True
    kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file"
    raise OSError(errno.EINVAL, f"{path} is {kind}; give a file's name")


def _stream_into(source: Path, target: Path) -> None:
    """Copy ``source``'s bytes into the FIFO or device ``target`` without replacing the node."""
    with open(source, "rb") as src, open(target, "wb", buffering=0) as dst:
        shutil.copyfileobj(src, dst)


def write_atomic(
    path: Path, write: Callable[[IO[bytes]], Any], mode: int | None = None, durable: bool = False
) -> None:
    """Write ``path`` through ``write(handle)`` on a temporary file beside it (see
    :func:`atomic_path`), so it is never seen half written."""
    with atomic_path(Path(path), mode, durable) as tmp, open(tmp, "wb") as handle:
        write(handle)


def explain_write_error(exc: BaseException, folder: Path) -> BaseException:
    """``exc`` itself, or an ``OSError(ENOSPC)`` naming ``folder`` when a writer that does not
    report the system's reason (numpy's "N requested and M written") failed on a full disk."""
    if not isinstance(exc, OSError) or exc.errno is not None:
        return exc
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return exc
    if free >= ROOM_MARGIN:
        return exc
    return OSError(errno.ENOSPC, f"no space left on the disk of {folder} ({_size(free)} free)")


def free_space_problem(folder: Path, needed_bytes: int) -> str | None:
    """None when ``folder``'s disk has room for ``needed_bytes`` (and a margin), else a line
    saying how much is free and how much is needed."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError as exc:
        return f"cannot tell the free space in {folder}: {exc.strerror or exc}"
    if free >= needed_bytes + ROOM_MARGIN:
        return None
    return (
        f"not enough free space in {folder}: {_size(needed_bytes)} needed, {_size(free)} free; "
        f"free some space or choose another folder"
    )


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Remove the temporary files that writes into ``folder`` left behind when their process was
    killed (their process has ended, or they are older than a day); returns what was removed."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        match = _TEMP_PATTERN.match(entry.name)
        if match is None:
            continue
        try:
            is_folder = entry.is_dir(follow_symlinks=False)
            if not (is_folder or entry.is_file(follow_symlinks=False)):
                continue
            age = now - entry.stat(follow_symlinks=False).st_mtime
            if _process_alive(int(match.group(1))) and age < STALE_AFTER:
                continue
            if is_folder:
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


def file_mode() -> int:
    """The permissions a newly created file gets under the current umask."""
    return 0o666 & ~_umask()


def _umask() -> int:
    """The process's umask, read without changing it where the system allows (changing it, even
    for a moment, races with other threads creating files)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # someone else's process, or a pid this system cannot name: leave it
    return True


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _size(nbytes: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} bytes"
