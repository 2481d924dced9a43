"""Staging folders: where a write is made before it is renamed over its target, and which of
them a later write may remove.

A write stages its data in a hidden folder beside the target, named
``.vitexplorer-<owner>-<pid>-<random>.tmp``. ``<owner>`` is 16 hex digits: 8 from the host's
name and the inode of the process's PID namespace (which container, on which node), then 8 from
the kernel's boot id (``/proc/sys/kernel/random/boot_id``). A PID means something only on its
own host, in its own namespace, in its own boot; a folder on an NFS home shared by cluster nodes,
or a volume shared by containers, holds the staging folders of many of them. The folder holds a
file ``lock`` on which the write holds an advisory lock (``flock``) until it is done, where the
file system supports it.

A staging folder is removed by a later write only when it is provably dead, and never while its
lock is held:

* one of this owner's (this host, namespace and boot): its process has ended, or it is older
  than :data:`STALE_AFTER` (a day: its PID may name another process by now);
* one of this host and namespace, from another boot: nothing in it is newer than this boot's
  start (every process of that boot is gone);
* any other (another node, another container, or the old form ``.vitexplorer-<pid>-...`` whose
  owner cannot be told): only when nothing in it has changed for :data:`FOREIGN_STALE_AFTER`
  (7 days), as ``tmpwatch``-like cleaners judge.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import os
import re
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; the owner rules still hold
    fcntl = None  # type: ignore[assignment]

TEMP_PREFIX = ".vitexplorer-"
LOCK_NAME = "lock"
STALE_AFTER = 24 * 3600.0  # one of ours older than this goes even if its process id lives again
FOREIGN_STALE_AFTER = 7 * 24 * 3600.0  # another owner's goes only after a week untouched
_NEW_FORM = re.compile(r"^\.vitexplorer-([0-9a-f]{8})([0-9a-f]{8})-(\d+)-[A-Za-z0-9_]+\.tmp")
_OLD_FORM = re.compile(r"^\.vitexplorer-(\d+)-[A-Za-z0-9_]+\.tmp")


@dataclass(frozen=True)
class Owner:
    """Who made a staging entry: ``place`` (host and PID namespace) and ``boot``, 8 hex each."""

    place: str
    boot: str

    @property
    def id(self) -> str:
        return self.place + self.boot


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogateescape")).hexdigest()[:8]


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            return handle.read().strip()
    except OSError:
        return ""


@functools.cache
def this_owner() -> Owner:
    """This process's owner id (the same for its whole life: a fork gets its own PID, and the
    PID is in the name beside the owner)."""
    try:
        namespace = str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        namespace = ""
    place = _digest(socket.gethostname(), namespace)
    return Owner(place, _digest(_read_text("/proc/sys/kernel/random/boot_id")))


@functools.cache
def boot_time() -> float | None:
    """When this host booted (seconds since the epoch), or None where it cannot be told."""
    for line in _read_text("/proc/stat").splitlines():
        if line.startswith("btime "):
            try:
                return float(line.split()[1])
            except (IndexError, ValueError):
                return None
    return None


class Staging:
    """A staging folder beside the targets in ``folder``, locked until :meth:`close`."""

    def __init__(self, folder: Path) -> None:
        prefix = f"{TEMP_PREFIX}{this_owner().id}-{os.getpid()}-"
        self.path = Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=folder))
        self._lock: int | None = None
        try:
            self._lock = os.open(
                self.path / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
            )
            if fcntl is not None:
                fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            pass  # a file system without locks: the owner rules alone protect it

    def close(self) -> None:
        """Remove the folder and what is left in it, then let go of the lock."""
        shutil.rmtree(self.path, ignore_errors=True)
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None


def is_dead(name: str, newest: float, now: float | None = None) -> bool:
    """Whether the staging entry ``name``, last changed at ``newest``, is provably dead by the
    rules of this module (its lock aside); False for a name that is no staging entry."""
    now = time.time() if now is None else now
    age = now - newest
    match = _NEW_FORM.match(name)
    if match is None:
        return _OLD_FORM.match(name) is not None and age > FOREIGN_STALE_AFTER
    place, boot, pid = match.group(1), match.group(2), int(match.group(3))
    owner = this_owner()
    if place == owner.place and boot == owner.boot:
        if pid == os.getpid():
            return False  # this process's own write, in another thread
        return age > STALE_AFTER or not _process_alive(pid)
    booted = boot_time()
    if place == owner.place and booted is not None and newest < booted:
        return True  # made before this boot, here: its process is gone
    return age > FOREIGN_STALE_AFTER


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Remove the staging entries in ``folder`` that are provably dead (:func:`is_dead`) and
    whose lock nobody holds; returns what was removed."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        if not entry.name.startswith(TEMP_PREFIX):
            continue
        try:
            is_folder = entry.is_dir(follow_symlinks=False)
            if not (is_folder or entry.is_file(follow_symlinks=False)):
                continue
            if not is_dead(entry.name, _newest(entry.path, is_folder), now):
                continue
            lock = _take_lock(entry.path) if is_folder else None
            if lock is False:
                continue  # a live write holds it
            try:
                if is_folder:
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
            finally:
                if isinstance(lock, int):
                    os.close(lock)
            removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


def _newest(path: str, is_folder: bool) -> float:
    """The latest change time of ``path`` and, for a folder, of what is directly in it."""
    newest = os.lstat(path).st_mtime
    if is_folder:
        with os.scandir(path) as inside:
            for item in inside:
                try:
                    newest = max(newest, item.stat(follow_symlinks=False).st_mtime)
                except OSError:
                    continue
    return newest


def _take_lock(folder: str) -> int | bool | None:
    """The staging folder's lock taken (its descriptor, to close after removing), None when it
    has no lock file or the file system takes no locks, False when someone holds it."""
    try:
        fd = os.open(os.path.join(folder, LOCK_NAME), os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None  # killed before its lock was made
    except OSError:
        return False  # a lock file we cannot open: not ours to judge
    if fcntl is None:
        return fd
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        return None  # no locks on this file system
    return fd


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
