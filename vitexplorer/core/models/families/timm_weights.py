"""timm's pretrained weights, from timm's own cache and download places: a Hugging Face hub
repository (``pretrained_cfg.hf_hub_id``, the hub client's cache) or a plain URL (the torch hub
cache). Offline, a cached file is used without any network call; the download itself reports
progress and honours cancel as torchvision's does. No code from a hub repository is ever run:
only weight files are fetched, and timm reads them with ``weights_only`` or safetensors.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlparse

import timm
import torch
from torch import nn

from vitexplorer.core.models.checkpoint import WeightsFileError
from vitexplorer.core.models.download import (
    CancelCheck,
    DownloadCancelled,
    DownloadError,
    ProgressCallback,
    WeightsDownload,
    WeightsUnavailableError,
    download_weights,
)
from vitexplorer.core.models.families.hub import probe, unreachable
from vitexplorer.core.models.skeleton import compute_buffers, has_meta, skeleton

# timm's ``weight_init`` where every parameter is then loaded from a file (strictly): its
# initialisation is skipped; on the meta device it computes nothing, but its Python still takes
# 0.15 s for a ViT-L/16
LOADED = "skip"
# the safetensors file timm looks for first in a hub repository, by the file its config names
_SAFE_ALTERNATIVES = {
    "pytorch_model.bin": "model.safetensors",
    "open_clip_pytorch_model.bin": "open_clip_model.safetensors",
}


@dataclass(frozen=True)
class Source:
    """Where timm fetches a pretrained tag's weights, and where its caches keep them."""

    name: str  # arch.tag
    repo: str | None  # a Hugging Face hub repository ...
    revision: str | None
    filenames: tuple[str, ...]  # ... and the files timm tries there, in order
    url: str | None  # a plain URL (the torch hub cache)

    @property
    def description(self) -> str:
        return f"timm's {self.name} weights"

    def cached(self) -> Path | None:
        """The cached file, looked up without the network; None when not downloaded."""
        if self.repo is not None:
            from huggingface_hub import try_to_load_from_cache

            for filename in self.filenames:
                found = try_to_load_from_cache(self.repo, filename, revision=self.revision)
                if isinstance(found, str):
                    return Path(found)
        if self.url is not None and self.torch_hub_path().is_file():
            return self.torch_hub_path()
        return None

    def torch_hub_path(self) -> Path:
        assert self.url is not None
        return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(self.url).path).name

    def cache_place(self) -> Path:
        """Where the cache keeps (or would keep) the file: the hub client's folder of the
        repository, or the torch hub cache's file."""
        if self.repo is None:
            return self.torch_hub_path()
        from huggingface_hub.constants import HF_HUB_CACHE

        return Path(HF_HUB_CACHE) / ("models--" + self.repo.replace("/", "--"))

    def download(self, progress: ProgressCallback | None, cancelled: CancelCheck | None) -> Path:
        if self.repo is None:
            assert self.url is not None
            plan = WeightsDownload(
                self.name, self.url, self.torch_hub_path(), 0.0, self.description
            )
            try:
                return download_weights(plan, progress, cancelled)
            except WeightsUnavailableError as exc:
                cause = exc.__cause__
                if isinstance(cause, DownloadError) and cause.kind == "network":
                    raise self._no_network(str(cause))  # noqa: B904  (its cause: set)
                raise
        import huggingface_hub
        from huggingface_hub.errors import RemoteEntryNotFoundError

        bar = _progress_bar(progress, cancelled)
        for filename in self.filenames:
            why = probe(self.repo, filename, self.revision)  # offline: said at once
            if why is not None:
                raise self._no_network(why)
            try:
                found = huggingface_hub.hf_hub_download(
                    self.repo, filename, revision=self.revision, tqdm_class=bar
                )
            except RemoteEntryNotFoundError:  # the hub answered: the repository lacks the file
                continue
            except Exception as exc:
                lost = unreachable(exc)  # the connection lost since the probe
                if lost is not None:
                    raise self._no_network(lost)  # noqa: B904  (its cause: the DownloadError)
                raise
            return Path(str(found))
        raise WeightsFileError(f"{self.repo} holds none of {', '.join(self.filenames)}")

    def _no_network(self, why: str) -> WeightsUnavailableError:
        """The one line for a server that cannot be reached, with a network DownloadError as
        its cause: the app recognises it by that type (its bar keeps the model in use)."""
        url = cast(str, self.url)  # a source without a repository has a URL
        server = "the Hugging Face hub" if self.repo is not None else urlparse(url).netloc
        error = WeightsUnavailableError(
            f"no network ({server} cannot be reached: {_first_line(why)}) and timm's "
            f"{self.name} weights are not in the cache ({self.cache_place()}); connect, or give "
            f"a weights file in timm's layout with --weights FILE (or --weights none for random "
            f"weights)"
        )
        error.__cause__ = DownloadError(why, "network")
        return error


def pretrained_source(arch: str) -> Source:
    """Where the weights of ``arch`` (``NAME.TAG``, or timm's default tag) come from, read off
    timm's pretrained config as timm resolves it: the hub first, then the URL."""
    cfg = timm.models.get_pretrained_cfg(arch)
    if cfg is None or not (cfg.hf_hub_id or cfg.url):  # a model problem, as an unknown tag
        raise ValueError(
            f"timm has no pretrained weights for {arch}; use --weights none or a weights file"
        )
    name = f"{cfg.architecture}.{cfg.tag}" if cfg.tag else cfg.architecture
    repo: str | None = None
    revision: str | None = None
    files: tuple[str, ...] = ()
    if cfg.hf_hub_id:
        repo, _, revision = cfg.hf_hub_id.partition("@")
        first = cfg.hf_hub_filename or "pytorch_model.bin"
        safe = _SAFE_ALTERNATIVES.get(first)
        if safe is None and first.endswith(".bin"):
            safe = first[: -len(".bin")] + ".safetensors"
        files = tuple(f for f in (safe, first) if f)
    # timm's config types allow an architecture of None and a (url, filename) pair; no
    # pretrained config of timm 1.0 has either
    url = cast("str | None", cfg.url or None)
    return Source(cast(str, name), repo, revision or None, files, url)


def describe(arch: str) -> WeightsDownload:
    """The download that timm would make for ``arch``'s weights (its size is unknown offline)."""
    source = pretrained_source(arch)
    cached = source.cached()
    if source.repo is not None:
        revision = source.revision or "main"
        url = f"https://huggingface.co/{source.repo}/resolve/{revision}/{source.filenames[0]}"
        path = cached or source.cache_place()  # a folder until downloaded: not cached
    else:
        assert source.url is not None
        url, path = source.url, cached or source.torch_hub_path()
    return WeightsDownload(source.name, url, path, 0.0, source.description)


def fetch(
    arch: str,
    allow_download: bool,
    progress: ProgressCallback | None = None,
    cancelled: CancelCheck | None = None,
) -> tuple[nn.Module, str, Path]:
    """timm's ``arch`` with its pretrained weights: (module, ``NAME.TAG``, the weights file).

    The file comes from timm's cache, or is downloaded when ``allow_download``; timm then
    builds the model from that file (its own key conversions and filters apply)."""
    source = pretrained_source(arch)
    path = source.cached()
    if path is None:
        if not allow_download:
            raise WeightsUnavailableError(
                f"{source.description} are not downloaded (not in timm's cache)"
            )
        try:
            path = source.download(progress, cancelled)
        except (DownloadCancelled, WeightsUnavailableError):
            raise
        except Exception as exc:  # the hub client's many errors: one line, never a traceback
            raise WeightsUnavailableError(
                f"could not download {source.description} ({_reason(exc)}). Without a network, "
                f"use --weights FILE with a file in timm's layout, or --weights none"
            ) from exc
    # a local file takes precedence over every remote source in timm's resolution
    overlay = {"file": str(path), "custom_load": path.suffix == ".npz"}
    module = None if overlay["custom_load"] else _without_init(source.name, overlay)
    if module is not None:
        return module, source.name, path
    try:
        module = timm.create_model(source.name, pretrained=True, pretrained_cfg_overlay=overlay)
    except Exception as exc:  # a damaged or foreign cached file
        raise WeightsFileError(
            f"the cached {source.description} at {path} could not be loaded ({_reason(exc)}); "
            f"delete that file and load the model again to download a fresh copy"
        ) from exc
    return module, source.name, path


def _without_init(name: str, overlay: dict[str, Any]) -> nn.Module | None:
    """timm's ``create_model(pretrained=True)`` with the model on the meta device, so none of
    its parameters is initialised only to be overwritten (nor is timm's initialisation run on them:
    :data:`LOADED`), and timm's own loading (its reader, its key conversions, its checks)
    handing its tensors over instead of copying them (issue 14: 0.9 s of a ViT-B/16's load).
    None when timm left anything on the meta device (a parameter its state dict lacks) or
    failed: the caller then builds the ordinary way, which gives timm's own message for a
    damaged file. Not for a ``.npz`` file, which timm copies in itself."""

    def build(pretrained: bool) -> nn.Module:
        return timm.create_model(
            name, pretrained=pretrained, pretrained_cfg_overlay=overlay, weight_init=LOADED
        )

    try:
        with skeleton(assign_loads=True):
            module = build(pretrained=True)
        compute_buffers(module, lambda: build(pretrained=False))
    except Exception:  # the ordinary way tells what is wrong, as it always did
        return None
    return None if has_meta(module) else module


def _reason(exc: BaseException, limit: int = 160) -> str:
    first = _first_line(str(exc), limit)
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _first_line(text: str, limit: int = 160) -> str:
    text = text.strip()
    return text.splitlines()[0][:limit] if text else ""


def _progress_bar(progress: ProgressCallback | None, cancelled: CancelCheck | None) -> type:
    """A silent tqdm class for the hub client that reports bytes and honours cancel."""
    from tqdm.auto import tqdm

    class Bar(tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._total = int(kwargs.get("total") or 0)
            self._done = int(kwargs.get("initial") or 0)
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

        def update(self, n: float | None = 1) -> bool | None:
            if cancelled is not None and cancelled():
                raise DownloadCancelled("download cancelled")
            self._done += int(n or 0)
            if progress is not None:
                progress(self._done, self._total)
            return super().update(n)

    return Bar
