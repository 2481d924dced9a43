"""What a model is to vitexplorer: one description (:class:`ModelSpec`) for the rest of the app,
and the ways to obtain a model: torchvision's ViT family with its ImageNet weights (downloaded
into the torch hub cache with progress), a local weights file, random weights, or the project's
own small ViT.
"""

from __future__ import annotations

import os
import urllib.request
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.models import get_model, get_model_weights

from vitexplorer.core.checkpoint import WeightsFileError, check_fits, read_weights, save_weights
from vitexplorer.core.download import (
    CancelCheck,
    DownloadCancelled,  # noqa: F401  (re-exported: callers catch models.DownloadCancelled)
    DownloadError,
    ProgressCallback,
    download_file,
)
from vitexplorer.core.vit import SmallViT, SmallViTConfig

TORCHVISION_VITS: dict[str, str] = {
    "vit_b_16": "ViT-B/16",
    "vit_b_32": "ViT-B/32",
    "vit_l_16": "ViT-L/16",
    "vit_l_32": "ViT-L/32",
    "vit_h_14": "ViT-H/14",
}
SMALL_VIT = "small_vit"
MODEL_NAMES: tuple[str, ...] = (*TORCHVISION_VITS, SMALL_VIT)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CHECKPOINT_FORMAT = 1


class WeightsUnavailableError(RuntimeError):
    """The default weights are not cached and could not be downloaded."""


@dataclass(frozen=True)
class ModelSpec:
    """Everything the app needs to know about a model besides its parameters."""

    name: str  # architecture: a torchvision builder name or "small_vit"
    display_name: str
    weights: str  # where the parameters came from, for people
    image_size: int
    resize_size: int
    patch_size: int
    num_layers: int
    num_heads: int
    class_names: tuple[str, ...]
    num_prefix_tokens: int = 1
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"
    config: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def grid(self) -> tuple[int, int]:
        """Patch rows and columns."""
        side = self.image_size // self.patch_size
        return side, side

    @property
    def num_patches(self) -> int:
        rows, cols = self.grid
        return rows * cols

    @property
    def num_tokens(self) -> int:
        return self.num_prefix_tokens + self.num_patches

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def describe(self) -> dict[str, Any]:
        """The JSON-ready facts that ``vitexplorer analyze`` writes beside each map."""
        return {
            "model": self.name,
            "display_name": self.display_name,
            "weights": self.weights,
            "input_size": [self.image_size, self.image_size],
            "patch_size": self.patch_size,
            "grid": list(self.grid),
            "num_prefix_tokens": self.num_prefix_tokens,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "num_tokens": self.num_tokens,
        }


@dataclass
class LoadedModel:
    """A model ready for inference: the module (eval mode, on ``device``) and its spec."""

    module: nn.Module
    spec: ModelSpec
    device: torch.device
    weights_file: Path | None = None  # where the parameters were read from; None when random


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


def default_weights_download(name: str) -> WeightsDownload:
    """Describe the default ImageNet weights of a torchvision ViT (no network access)."""
    weights = get_model_weights(name).DEFAULT
    filename = os.path.basename(urllib.request.urlparse(weights.url).path)
    path = Path(torch.hub.get_dir()) / "checkpoints" / filename
    acc = weights.meta.get("_metrics", {}).get("ImageNet-1K", {}).get("acc@1")
    description = f"{TORCHVISION_VITS[name]} ImageNet-1k weights ({weights.name}"
    description += f", top-1 {acc:.1f}%)" if acc else ")"
    return WeightsDownload(name, weights.url, path, float(weights.meta["_file_size"]), description)


def download_weights(
    download: WeightsDownload,
    progress: ProgressCallback | None = None,
    cancelled: CancelCheck | None = None,
    timeout: float = 30.0,
) -> Path:
    """Fetch ``download`` into the torch hub cache, checking torchvision's hash prefix.

    The file appears at its final path only when complete and verified.
    """
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


def resolve_device(choice: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple's MPS, then the CPU."""
    if choice == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(choice)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {choice!r}; use auto, cpu, cuda, cuda:N or mps") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("CUDA was asked for but no CUDA GPU is available; use --device cpu")
        if (device.index or 0) >= torch.cuda.device_count():
            count = torch.cuda.device_count()
            raise ValueError(f"there is no {choice}: this machine has {count} CUDA GPU(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("MPS was asked for but is not available on this machine")
    return device


def available_devices() -> list[str]:
    """Devices this machine can run on, best first."""
    devices = []
    if torch.cuda.is_available():
        devices += [f"cuda:{i}" if i else "cuda" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        devices.append("mps")
    return [*devices, "cpu"]


def is_weights_path(name: str) -> bool:
    return name.endswith((".safetensors", ".pth", ".pt", ".bin"))


def load_model(
    name: str,
    weights: str = "default",
    device: str | torch.device = "auto",
    *,
    small_config: SmallViTConfig | None = None,
    allow_download: bool = True,
    progress: ProgressCallback | None = None,
    cancelled: CancelCheck | None = None,
) -> LoadedModel:
    """Build a model and its spec.

    ``name`` is a torchvision ViT name, ``small_vit``, or the path of a vitexplorer checkpoint.
    ``weights`` is ``default`` (ImageNet weights for torchvision models, random for the small ViT),
    ``none`` (random), or the path of a weights file: a plain state dict (.pth or .safetensors)
    for the architecture ``name``, or a vitexplorer checkpoint, whose metadata then decides.
    """
    weights_file: Path | None = None
    if is_weights_path(name):
        weights_file = Path(name)
        module, spec = _from_file(weights_file, None)
    elif name not in MODEL_NAMES:
        choices = ", ".join(MODEL_NAMES)
        raise ValueError(f"unknown model {name!r}; choose one of {choices} or a checkpoint path")
    elif weights not in ("default", "none"):
        weights_file = Path(weights)
        module, spec = _from_file(weights_file, name)
    elif name == SMALL_VIT:
        config = small_config or SmallViTConfig()
        module, spec = SmallViT(config), small_vit_spec(config, "random initialisation")
    elif weights == "none":
        module = get_model(name, weights=None)  # 224 px: random weights need no 518 px ViT-H
        spec = _torchvision_spec(name, module, "random initialisation")
    else:
        download = default_weights_download(name)
        if not download.cached:
            if not allow_download:
                raise WeightsUnavailableError(f"the {download.description} are not downloaded")
            download_weights(download, progress, cancelled)
        try:
            state, _ = read_weights(download.path)
        except WeightsFileError as exc:
            raise WeightsFileError(
                f"the cached {download.description} at {download.path} are damaged ({exc}); "
                f"delete that file and load the model again to download a fresh copy"
            ) from exc
        module, spec = _torchvision_from_state(name, state, download.description)
        weights_file = download.path
    target = device if isinstance(device, torch.device) else resolve_device(device)
    if weights_file is not None:
        weights_file = weights_file.expanduser().resolve()
    return LoadedModel(module.eval().to(target), spec, target, weights_file)


def _torchvision_from_state(
    name: str, state: dict[str, torch.Tensor], label: str
) -> tuple[nn.Module, ModelSpec]:
    """A torchvision ViT shaped by its state dict: input size and class count are read off it."""
    image_size, num_classes = get_model_weights(name).DEFAULT.meta["min_size"][0], 1000
    if "encoder.pos_embedding" in state and "heads.head.weight" in state:
        patch = int(name.rsplit("_", 1)[1])
        side = int(round((state["encoder.pos_embedding"].shape[1] - 1) ** 0.5))
        image_size, num_classes = side * patch, state["heads.head.weight"].shape[0]
    module = get_model(name, weights=None, image_size=image_size, num_classes=num_classes)
    check_fits(module, state, TORCHVISION_VITS[name])
    module.load_state_dict(state)
    return module, _torchvision_spec(name, module, label)


def _torchvision_spec(
    name: str, module: nn.Module, label: str, meta: dict[str, Any] | None = None
) -> ModelSpec:
    """The spec of a torchvision ViT; preprocessing follows its default weights' transforms."""
    default = get_model_weights(name).DEFAULT
    preset = default.transforms()
    image_size = module.image_size
    num_classes = module.heads.head.out_features
    meta = meta or {}
    spec = ModelSpec(
        name=name,
        display_name=TORCHVISION_VITS[name],
        weights=label,
        image_size=image_size,
        resize_size=preset.resize_size[0] if preset.crop_size[0] == image_size else image_size,
        patch_size=module.patch_size,
        num_layers=len(module.encoder.layers),
        num_heads=module.encoder.layers[0].num_heads,
        class_names=_class_names(num_classes, default.meta["categories"]),
        mean=tuple(preset.mean),
        std=tuple(preset.std),
        interpolation=preset.interpolation.value,
        config={"image_size": image_size, "num_classes": num_classes},
    )
    return _apply_metadata(spec, meta)


def _apply_metadata(spec: ModelSpec, meta: dict[str, Any]) -> ModelSpec:
    """Class names and preprocessing recorded in a checkpoint override the defaults."""
    changes: dict[str, Any] = {}
    names = meta.get("class_names")
    if names and len(names) == spec.num_classes:
        changes["class_names"] = tuple(names)
    for key in ("mean", "std"):
        if key in meta:
            changes[key] = tuple(meta[key])
    for key in ("resize_size", "interpolation"):
        if key in meta:
            changes[key] = meta[key]
    return replace(spec, **changes) if changes else spec


def _class_names(num_classes: int, imagenet: list[str]) -> tuple[str, ...]:
    if num_classes == len(imagenet):
        return tuple(imagenet)
    return tuple(f"class {i}" for i in range(num_classes))


def small_vit_spec(config: SmallViTConfig, weights: str) -> ModelSpec:
    return ModelSpec(
        name=SMALL_VIT,
        display_name=f"Small ViT ({config.depth}x{config.width}, /{config.patch_size})",
        weights=weights,
        image_size=config.image_size,
        resize_size=config.image_size,
        patch_size=config.patch_size,
        num_layers=config.depth,
        num_heads=config.heads,
        class_names=_class_names(config.num_classes, []),
        config=config.to_dict(),
    )


def _from_file(path: Path, architecture: str | None) -> tuple[nn.Module, ModelSpec]:
    """A vitexplorer checkpoint (its metadata decides), else ``architecture``'s state dict."""
    state, meta = read_weights(path)
    label = f"file {path.name}"
    if meta and "architecture" in meta:
        try:
            module, spec = _from_metadata(meta, label)
        except (KeyError, TypeError, ValueError) as exc:
            raise WeightsFileError(
                f"{path.name} has invalid vitexplorer metadata ({exc!r})"
            ) from exc
        check_fits(module, state, spec.display_name)
        module.load_state_dict(state)
        return module, spec
    if architecture in TORCHVISION_VITS:
        return _torchvision_from_state(architecture, state, label)
    if architecture == SMALL_VIT:
        raise WeightsFileError(
            f"{path.name} is a plain state dict; a small ViT needs a vitexplorer checkpoint "
            f"(.safetensors with metadata), which records its depth, width and heads"
        )
    raise WeightsFileError(
        f"{path.name} has no vitexplorer metadata, so its architecture is unknown: choose the "
        f"architecture (--model NAME) and pass the file as its weights (--weights {path})"
    )


def _from_metadata(meta: dict[str, Any], label: str) -> tuple[nn.Module, ModelSpec]:
    """An untrained model shaped by a checkpoint's metadata."""
    arch = meta["architecture"]
    if arch == SMALL_VIT:
        config = SmallViTConfig(**meta["config"])
        return SmallViT(config), _apply_metadata(small_vit_spec(config, label), meta)
    if arch in TORCHVISION_VITS:
        module = get_model(arch, weights=None, **meta["config"])
        return module, _torchvision_spec(arch, module, label, meta)
    raise ValueError(f"unknown architecture {arch!r}")


def save_checkpoint(path: str | Path, model: LoadedModel, extra: dict[str, Any] | None = None):
    """Save a model as safetensors with the metadata that :func:`load_model` reads back."""
    spec = model.spec
    meta = {
        "format": CHECKPOINT_FORMAT,
        "architecture": spec.name,
        "config": spec.config,
        "class_names": list(spec.class_names),
        "mean": list(spec.mean),
        "std": list(spec.std),
        "resize_size": spec.resize_size,
        "interpolation": spec.interpolation,
        **(extra or {}),
    }
    save_weights(path, model.module.state_dict(), meta)
