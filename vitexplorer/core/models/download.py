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
from dataclasses import dataclass
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


class WeightsUnavailableError(RuntimeError):
    """The default weights are not cached and could not be downloaded."""


@dataclass(frozen=True)
class WeightsDownload:
    """torchvision's default weights for one architecture and where the hub cache keeps them."""

    model_name: str
    url: str
    path: Path
    size_mb: float
    description: str

    @property
    def cached(self) -> bool:
        return self.path.is_file()


def download_weights(
    download: WeightsDownload,
    progress: ProgressCallback | None = None,
    cancelled: CancelCheck | None = None,
    timeout: float = 30.0,
) -> Path:
    """Fetch ``download`` into its cache, checking the hash prefix of its file name where it
    has one (torchvision's and timm's ``-<sha256 prefix>`` names).

    The file appears at its final path only when complete and verified.
    """
    import torch  # its hub's name pattern; the rest of this module needs no torch

    match = torch.hub.HASH_REGEX.search(download.path.name)
    try:
        return download_file(
            download.url,
            download.path,
            size_hint=int(download.size_mb * 1e6),
            checksum=("sha256", match.group(1)) if match else None,
            progress=progress,
            cancelled=cancelled,
            timeout=timeout,
        )
    except DownloadError as exc:
        if exc.kind == "disk":
            raise WeightsUnavailableError(f"cannot write to the weights cache: {exc}") from exc
        if exc.kind == "checksum":
            raise WeightsUnavailableError(str(exc)) from exc
        raise WeightsUnavailableError(
            f"could not download the {download.description}, {download.size_mb:.0f} MB, from "
            f"{download.url}: {exc}. Without a network you can pick a local weights file "
            f"(.pth or .safetensors; in the app the Weights file… button, on the command line "
            f"--weights PATH) or copy the file to {download.path}; random weights (--weights none) "
            f"and the small ViT need no download."
        ) from exc
