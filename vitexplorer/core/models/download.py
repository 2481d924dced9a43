"""Downloading one file with progress, cancel and a checksum, into its final place atomically.

Weights (into the torch hub cache) and CIFAR-10 (into the data cache) both come this way; the
file appears at its final path only when it is complete and verified.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO

from vitexplorer.core.io.files import atomic_path

ProgressCallback = Callable[[int, int], None]  # (bytes done, bytes total)
CancelCheck = Callable[[], bool]


class DownloadCancelled(RuntimeError):
    """The user cancelled a download."""


class DownloadError(RuntimeError):
    """A failed download; ``kind`` is "network", "disk" (the message names the path and the
    system's reason) or "checksum"."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


def download_file(
    url: str,
    dst: Path,
    *,
    size_hint: int = 0,
    checksum: tuple[str, str] | None = None,
    progress: ProgressCallback | None = None,
    cancelled: CancelCheck | None = None,
    timeout: float = 30.0,
) -> Path:
    """Fetch ``url`` to ``dst``. ``checksum`` is (hash name, expected hex digest or its prefix)."""
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(dst, durable=True) as tmp, open(tmp, "wb") as out:
            _fetch(url, out, size_hint, checksum, progress, cancelled, timeout, dst.name)
    except OSError as exc:  # network errors became DownloadErrors in _fetch: this is the disk
        raise DownloadError(f"{dst}: {exc.strerror or exc}", "disk") from exc
    return dst


def _fetch(
    url: str,
    out: IO[bytes],
    size_hint: int,
    checksum: tuple[str, str] | None,
    progress: ProgressCallback | None,
    cancelled: CancelCheck | None,
    timeout: float,
    name: str,
) -> None:
    """Stream ``url`` into ``out``, checking ``checksum`` at the end."""
    digest = hashlib.new(checksum[0] if checksum else "sha256")
    try:
        response = urllib.request.urlopen(url, timeout=timeout)
    except (OSError, http.client.HTTPException) as exc:
        raise _network_error(exc) from exc
    with response:
        total = int(response.headers.get("Content-Length") or 0) or size_hint
        done = 0
        while True:
            try:
                chunk = response.read(1 << 20)
            except (OSError, http.client.HTTPException) as exc:
                raise _network_error(exc) from exc
            if not chunk:
                break
            if cancelled is not None and cancelled():
                raise DownloadCancelled("download cancelled")
            out.write(chunk)
            digest.update(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done, total)
    if checksum and not digest.hexdigest().startswith(checksum[1]):
        raise DownloadError(
            f"the downloaded {name} is corrupt (its checksum does not match); try again",
            "checksum",
        )


def _network_error(exc: BaseException) -> DownloadError:
    reason = getattr(exc, "reason", None) or exc
    return DownloadError(str(reason), "network")


def user_cache_dir() -> Path:
    """Where vitexplorer keeps downloads other than weights (those go to the torch hub cache)."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "vitexplorer"


CIFAR10_FOLDER = "cifar-10-batches-py"  # torchvision's CIFAR10.base_folder, named without torch


def default_data_root() -> Path:
    """Where datasets are downloaded unless the user picks another folder."""
    return user_cache_dir() / "datasets"
