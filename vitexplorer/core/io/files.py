"""Files written so that they are never seen half written, with the usual permissions.

Every file vitexplorer writes (analysis outputs, exports, checkpoints, downloads) goes through
:func:`atomic_path` or :func:`write_set`: the data goes to a hidden staging folder beside the
target (:mod:`vitexplorer.core.io.staging`), and is renamed over the target only once complete. A
process killed in the middle (kill -9, a power cut) leaves the target as it was, plus a staging
folder named ``.vitexplorer-<owner>-<pid>-<random>.tmp``; a later write into that folder removes
such leftovers once they are provably dead (see :mod:`vitexplorer.core.io.staging`: another host's
or container's live write is never touched). The staged file's name inside is short, so any
name the file system accepts can be written.

Files that belong together (an image's data files and the card that describes them) are written
as one set by :func:`write_set`: every file staged first, so a failure (a full disk) leaves the
old files as they were; then the old cards removed, the data files renamed into place, and the
cards renamed last, each naming the files it describes with their sizes. Whatever moment a write
is killed at, a card present names files of its own run.

A target that is a FIFO or a character device (``/dev/null``, a terminal), or a link to one, is
never renamed over: the finished data is streamed into it. Any other node that is not a regular
file (a folder, a block device, a socket) is refused before anything is written.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

from vitexplorer.core.io.staging import (
    Staging,
    remove_stale_temporaries,
)

ROOM_MARGIN = 16 * 1024 * 1024  # bytes left free beyond a file's size before it is written
Writer = Callable[[IO[bytes]], Any]


@contextmanager
def atomic_path(
    path: Path, mode: int | None = None, durable: bool = False, own_folder: bool = False
) -> Iterator[Path]:
    """A temporary path in a staging folder beside ``path`` to write to; renamed over ``path``
    when the block ends without an exception, removed when it does not.

    The temporary name keeps ``path``'s suffix, so writers that pick a format by it still can.
    ``mode`` defaults to what a new file gets under the umask (as ``open`` would give).
    ``durable`` flushes the data to the disk before the rename (for checkpoints and downloads),
    so a power cut cannot leave an empty file under the final name. Writers that make temporary
    files of their own beside the file they are given (safetensors does) leave them in the
    staging folder, removed with it (``own_folder`` is kept for them: every write has one now).
    """
    path = Path(path)
    folder = path.parent
    stream = _special_target(path)  # refused now, before any work, when it cannot be written
    if stream:  # /dev/null's folder is no place for temporary files: the system's is
        folder = Path(tempfile.gettempdir())
    with _staging(folder) as staging:
        tmp = staging / f"staged{_suffix(path)}"
        yield tmp
        if durable:
            _fsync(tmp)
        _commit(tmp, path, mode, stream)


@contextmanager
def _staging(folder: Path) -> Iterator[Path]:
    """A fresh staging folder in ``folder`` (stale ones of dead writers removed first), removed
    when the block ends; an error inside it comes out as one line that says what to do
    (:func:`explain_write_error`: a full disk, no permission, a read-only file system)."""
    remove_stale_temporaries(folder)
    staging = Staging(folder)
    try:
        yield staging.path
    except BaseException as exc:
        explained = explain_write_error(exc, folder)
        if explained is not exc:
            raise explained from exc
        raise
    finally:
        staging.close()


def _suffix(path: Path) -> str:
    return path.suffix if 0 < len(path.suffix) <= 16 else ""


def _commit(tmp: Path, path: Path, mode: int | None, stream: bool = False) -> None:
    """Rename the finished ``tmp`` over ``path``, or stream it into a FIFO or device."""
    if stream or _special_target(path):
        _stream_into(tmp, path)
        tmp.unlink(missing_ok=True)
    else:
        os.chmod(tmp, file_mode() if mode is None else mode)
        os.replace(tmp, path)


@dataclass
class Card:
    """A file of a set that describes others: ``text(files)`` gives its bytes, ``files`` being
    the name and size in bytes of each of ``names`` (files of the set written before it)."""

    path: Path
    names: list[Path]
    text: Callable[[list[dict[str, Any]]], bytes]


@dataclass
class FileSet:
    """Files that belong together, written at once by :meth:`write` (:func:`write_set`)."""

    files: list[tuple[Path, Writer]] = field(default_factory=list)
    cards: list[Card] = field(default_factory=list)

    def add(self, path: Path, write: Writer) -> Path:
        self.files.append((Path(path), write))
        return Path(path)

    def card(
        self, path: Path, names: Sequence[Path], text: Callable[[list[dict[str, Any]]], bytes]
    ) -> Path:
        self.cards.append(Card(Path(path), [Path(n) for n in names], text))
        return Path(path)

    def paths(self) -> list[Path]:
        return [path for path, _ in self.files] + [card.path for card in self.cards]

    def write(self, mode: int | None = None) -> list[Path]:
        return write_set(self.files, self.cards, mode)


def _named_first(cards: Sequence[Card]) -> list[Card]:
    """``cards`` ordered so that every card comes after the cards it names (an image's card
    names its method cards): a write killed between two renames never leaves a card that names
    a card not yet in place."""
    pending = list(cards)
    ordered: list[Card] = []
    while pending:
        waiting = {card.path for card in pending}
        ready = [c for c in pending if not any(n in waiting and n != c.path for n in c.names)]
        if not ready:  # a loop of cards naming each other: keep the given order
            return ordered + pending
        ordered += ready
        pending = [c for c in pending if all(c is not r for r in ready)]
    return ordered


def write_set(
    files: Sequence[tuple[Path, Writer]], cards: Sequence[Card], mode: int | None = None
) -> list[Path]:
    """Write ``files`` (each through ``write(handle)``) and then ``cards``, as one set in one
    folder; returns every path written, the cards last.

    Every file is staged before any target is touched, so a failure (a full disk, a writer's
    error) leaves the old files as they were and raises. Then the old cards are removed, the
    data files renamed into place and the cards renamed last, in order: a write killed at any
    moment leaves no card that names a file of another run, or one never written."""
    cards = _named_first(cards)  # a card that names another card is renamed after it
    paths = [Path(path) for path, _ in files] + [card.path for card in cards]
    folders = {path.parent for path in paths}
    if len(folders) != 1 or len(set(paths)) != len(paths):
        raise ValueError("a set is written into one folder, each name once")
    folder = folders.pop()
    for path in paths:
        _special_target(path)  # refused now, before any work, when it cannot be written
    with _staging(folder) as staging:
        staged: dict[Path, Path] = {}
        for index, (path, write) in enumerate(files):
            staged[Path(path)] = tmp = staging / f"{index}{_suffix(Path(path))}"
            with open(tmp, "wb") as handle:
                write(handle)
        for index, card in enumerate(cards, start=len(files)):
            listing = [{"name": n.name, "bytes": staged[n].stat().st_size} for n in card.names]
            staged[card.path] = tmp = staging / f"{index}{_suffix(card.path)}"
            with open(tmp, "wb") as handle:
                handle.write(card.text(listing))
        for card in reversed(cards):  # the namers first: an old card never names a removed one
            if card.path.is_file() and not _special_target(card.path):
                card.path.unlink()  # an old card never stands beside new files
        for path in paths:
            _commit(staged[path], path, mode)
    return paths


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


_Failure = TypeVar("_Failure", bound=BaseException)


def explain_write_error(exc: _Failure, folder: Path) -> _Failure | OSError:
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
    """None when ``folder``'s disk has room for ``needed_bytes`` and :data:`ROOM_MARGIN` beyond
    it, else a line saying how much is needed, how much is free and the margin kept."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError as exc:
        return f"cannot tell the free space in {folder}: {exc.strerror or exc}"
    if free >= needed_bytes + ROOM_MARGIN:
        return None
    return (
        f"not enough free space in {folder}: {_size(needed_bytes)} needed, {_size(free)} free, "
        f"and vitexplorer keeps {_size(ROOM_MARGIN)} free beyond each file; "
        f"free some space or choose another folder"
    )


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


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _size(nbytes: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} bytes"
