"""What a model is to vitexplorer: one description (:class:`ModelSpec`) for the rest of the app,
and the ways to obtain a model: torchvision's ViT family with its ImageNet weights (downloaded
into the torch hub cache with progress), a local weights file, random weights, or the project's
own small ViT.
"""

from __future__ import annotations

import difflib
import importlib
import math
import os
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.models import get_model, get_model_weights
from torchvision.transforms import InterpolationMode

from vitexplorer.core.checkpoint import (
    WeightsFileError,
    check_fits,
    check_weights_path,
    file_label,
    is_safetensors_file,
    read_safetensors_header,
    read_weights,
    save_weights,
    shapes_of,
    state_numel,
)
from vitexplorer.core.download import (
    CancelCheck,
    DownloadCancelled,  # noqa: F401  (re-exported: callers catch models.DownloadCancelled)
    DownloadError,
    ProgressCallback,
    download_file,
)
from vitexplorer.core.families.layouts import recognise_layout
from vitexplorer.core.spec import (  # noqa: F401  (re-exported: models.ModelSpec and names)
    IMAGENET_MEAN,
    IMAGENET_STD,
    MODEL_NAMES,
    SMALL_VIT,
    TORCHVISION_VITS,
    LibraryFamily,
    ModelSpec,
    library_family,
)
from vitexplorer.core.vit import (
    MAX_CLASSES,
    MAX_IMAGE_SIZE,
    SmallViT,
    SmallViTConfig,
    check_grid,
    check_whole,
    show_value,
)

CHECKPOINT_FORMAT = 1
INTERPOLATIONS: tuple[str, ...] = tuple(mode.value for mode in InterpolationMode)
_TORCHVISION_CONFIG = ("image_size", "num_classes")  # what a torchvision checkpoint may set
_MAX_CLASS_NAME = 1000  # characters
_MAX_CHANNEL_VALUE = 1000.0  # a checkpoint's mean and std, per channel
_MIN_STD = 1e-6


class WeightsUnavailableError(RuntimeError):
    """The default weights are not cached and could not be downloaded."""


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


def check_model_source(name: str, weights: str = "default") -> None:
    """Refuse now what :func:`load_model` would refuse later and can be found out cheaply.

    An unknown model name (ValueError); a weights path that is not a regular file; a checkpoint
    whose metadata is unsound or does not match the shapes of its tensors, read from the
    safetensors header (WeightsFileError). No tensor is read and no model allocated; a .pth file
    is only checked to be a file.
    """
    family = library_family(name)
    if is_weights_path(name):
        path, architecture = Path(name), None
    elif family is not None:
        family_module(family).check_source(name, weights)
        return
    elif name not in MODEL_NAMES:
        raise ValueError(unknown_model_message(name))
    elif weights in ("default", "none"):
        return
    else:
        path, architecture = Path(weights), name
    check_weights_path(path)
    if is_safetensors_file(path):
        shapes, meta = read_safetensors_header(path)
        _check_plan(_plan(path, architecture, shapes, meta), shapes, file_label(path))


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
    family = library_family(name)
    if is_weights_path(name):
        weights_file = Path(name)
        module, spec = _from_file(weights_file, None)
    elif family is not None:
        module, spec, weights_file = family_module(family).load(
            name,
            weights,
            allow_download=allow_download,
            progress=progress,
            cancelled=cancelled,
        )
    elif name not in MODEL_NAMES:
        raise ValueError(unknown_model_message(name))
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
        module, spec = _torchvision_from_state(name, state, download.description, download.path)
        weights_file = download.path
    target = device if isinstance(device, torch.device) else resolve_device(device)
    if weights_file is not None:
        weights_file = weights_file.expanduser().resolve()
    return LoadedModel(module.eval().to(target), spec, target, weights_file)


def _torchvision_from_state(
    name: str, state: dict[str, torch.Tensor], label: str, path: Path
) -> tuple[nn.Module, ModelSpec]:
    """A torchvision ViT shaped by its state dict: input size and class count are read off it."""
    source = file_label(path)
    return _build(_torchvision_plan(name, shapes_of(state), label, source), state, source)


def _torchvision_plan(
    name: str, shapes: Mapping[str, tuple[int, ...]], label: str, source: str
) -> BuildPlan:
    """How to build torchvision's ``name`` for these tensors: the input size is read off the
    position embedding, the class count off the head, both checked before anything is built."""
    image_size, num_classes = get_model_weights(name).DEFAULT.meta["min_size"][0], 1000
    pos, head = shapes.get("encoder.pos_embedding"), shapes.get("heads.head.weight")
    if pos is not None and head is not None and len(pos) == 3 and len(head) == 2:
        patch = _torchvision_patch(name)
        positions = pos[1] - 1  # the class token, then one per patch
        side = math.isqrt(max(positions, 0))
        if positions < 1 or side * side != positions:
            raise WeightsFileError(
                f"{source}: its encoder.pos_embedding has {pos[1]} positions, not one plus a "
                f"square grid of patches"
            )
        image_size, num_classes = side * patch, head[0]
        try:
            check_whole(
                "the image size its encoder.pos_embedding implies", image_size, 1, MAX_IMAGE_SIZE
            )
            check_grid(image_size, patch)
            check_whole("the class count of its heads.head.weight", num_classes, 1, MAX_CLASSES)
        except ValueError as exc:
            raise WeightsFileError(f"{source}: {exc}") from None

    def build() -> nn.Module:
        return get_model(name, weights=None, image_size=image_size, num_classes=num_classes)

    return BuildPlan(
        build,
        TORCHVISION_VITS[name],
        lambda module: _torchvision_spec(name, module, label),
        from_metadata=False,
    )


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
    if names and len(names) == spec.num_classes:  # checked: see check_checkpoint_metadata
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


@dataclass(frozen=True)
class BuildPlan:
    """How to build the model that a weights file describes, checked against it first."""

    build: Callable[[], nn.Module]  # a model with random weights (on the meta device: a skeleton)
    what: str  # the model, for messages
    spec: Callable[[nn.Module], ModelSpec]
    from_metadata: bool  # the file claims a shape: its parameter count is checked as well


def family_module(family: LibraryFamily) -> Any:
    """The file of a family that another library builds; a ValueError of one line naming the
    extra to install when that library is missing.

    A family's file offers ``load(name, weights, *, allow_download, progress, cancelled)`` ->
    (module, spec, weights file or None), ``check_source(name, weights)`` (cheap refusals
    before any heavy work), ``check_config(arch, config)`` -> (image size, classes) and
    ``checkpoint_plan(arch, meta, label)`` -> :class:`BuildPlan` for vitexplorer checkpoints of
    its models, and ``ADAPTER``, its :class:`~vitexplorer.core.families.base.ViTAdapter`."""
    if not family.installed:
        raise ValueError(family.missing_message())
    return importlib.import_module(family.module)


def unknown_model_message(name: str) -> str:
    """An unknown built-in name, with the closest names."""
    close = difflib.get_close_matches(name, MODEL_NAMES, n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    return (
        f"unknown model {name!r}; {hint}choose one of {', '.join(MODEL_NAMES)}, a timm: or hf: "
        f"model, or a checkpoint path"
    )


def build_from_file(
    path: Path, plan: Callable[[Mapping[str, tuple[int, ...]]], BuildPlan]
) -> tuple[nn.Module, ModelSpec]:
    """The model that ``plan(shapes)`` describes, with the weights in ``path``, allocated only
    once they fit (for a family's plain state dicts)."""
    state, _ = read_weights(path)
    return _build(plan(shapes_of(state)), state, file_label(path))


def _from_file(path: Path, architecture: str | None) -> tuple[nn.Module, ModelSpec]:
    """A vitexplorer checkpoint (its metadata decides), else ``architecture``'s state dict."""
    state, meta = read_weights(path)
    try:
        return _build(_plan(path, architecture, shapes_of(state), meta), state, file_label(path))
    except WeightsFileError:
        raise
    except (
        ArithmeticError,
        AssertionError,
        LookupError,
        MemoryError,
        RuntimeError,
        TypeError,
    ) as exc:
        # every check above should have caught it; one line all the same, never a traceback
        reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else ""
        raise WeightsFileError(
            f"{file_label(path)} could not be loaded ({type(exc).__name__}: {reason})"
        ) from exc


def _plan(
    path: Path,
    architecture: str | None,
    shapes: Mapping[str, tuple[int, ...]],
    meta: dict[str, Any] | None,
) -> BuildPlan:
    """What to build for the file at ``path``, its tensors' ``shapes`` and metadata ``meta``."""
    source, label = file_label(path), f"file {path.name}"
    if meta is not None:
        try:
            meta = check_checkpoint_metadata(meta)
        except ValueError as exc:
            raise WeightsFileError(f"{source} has invalid vitexplorer metadata: {exc}") from None
        return _metadata_plan(meta, label)
    layout = recognise_layout(shapes)
    looks = f"; {layout.describe()}" if layout is not None else ""
    if architecture in TORCHVISION_VITS:
        if layout is not None and layout.family != "torchvision":
            raise WeightsFileError(f"{source} is not in torchvision's layout{looks}")
        return _torchvision_plan(architecture, shapes, label, source)
    if architecture == SMALL_VIT:
        if layout is not None and layout.family != "vitexplorer small":
            raise WeightsFileError(f"{source} is not a small ViT checkpoint{looks}")
        raise WeightsFileError(
            f"{source} is a plain state dict; a small ViT needs a vitexplorer checkpoint "
            f"(.safetensors with metadata), which records its depth, width and heads{looks}"
        )
    if layout is not None:
        raise WeightsFileError(f"{source} has no vitexplorer metadata{looks}")
    raise WeightsFileError(
        f"{source} has no vitexplorer metadata and matches no layout vitexplorer knows (timm, "
        f"torchvision, Hugging Face): choose the architecture (--model NAME) and pass the file "
        f"as its weights (--weights {path})"
    )


def _metadata_plan(meta: dict[str, Any], label: str) -> BuildPlan:
    """An untrained model shaped by a checkpoint's checked metadata."""
    arch = meta["architecture"]
    family = library_family(arch)
    if family is not None:
        return family_module(family).checkpoint_plan(arch, meta, label)
    if arch == SMALL_VIT:
        config = SmallViTConfig(**meta["config"])
        spec = _apply_metadata(small_vit_spec(config, label), meta)
        return BuildPlan(lambda: SmallViT(config), spec.display_name, lambda module: spec, True)
    kwargs = {key: meta["config"][key] for key in _TORCHVISION_CONFIG if key in meta["config"]}
    return BuildPlan(
        lambda: get_model(arch, weights=None, **kwargs),
        TORCHVISION_VITS[arch],
        lambda module: _torchvision_spec(arch, module, label, meta),
        True,
    )


def _check_plan(plan: BuildPlan, shapes: Mapping[str, Any], source: str) -> None:
    """Build ``plan`` on the meta device (no memory) and hold it against the file's tensors."""
    with torch.device("meta"):
        skeleton = plan.build()
    if plan.from_metadata:
        implied, held = state_numel(skeleton.state_dict()), state_numel(shapes)
        if implied != held:
            raise WeightsFileError(
                f"{source}: its metadata describes a {plan.what} of {implied:,} parameters but "
                f"the file holds {held:,}; the metadata does not match the weights"
            )
    try:
        check_fits(skeleton, shapes, plan.what)
    except WeightsFileError as exc:
        raise WeightsFileError(f"{source}: {exc}") from None


def _build(
    plan: BuildPlan, state: dict[str, torch.Tensor], source: str
) -> tuple[nn.Module, ModelSpec]:
    """The model of ``plan`` with the weights of ``state``, allocated only once they fit."""
    _check_plan(plan, state, source)
    module = plan.build()
    module.load_state_dict(state)
    return module, plan.spec(module)


def check_checkpoint_metadata(meta: object) -> dict[str, Any]:
    """``meta``, a checkpoint's JSON metadata, if every field that :func:`load_model` reads is
    sound; else a ValueError of one line. Nothing is built. Keys it does not read (the record
    of a fine-tune run, for one) pass unchecked."""
    if not isinstance(meta, dict):
        raise ValueError(f"it is {show_value(meta)}, not a JSON object")
    if "format" in meta:
        version = check_whole("format", meta["format"], 1, 1_000_000)
        if version > CHECKPOINT_FORMAT:
            raise ValueError(
                f"it is format {version}, newer than this vitexplorer reads "
                f"({CHECKPOINT_FORMAT}); update vitexplorer"
            )
    if "architecture" not in meta:
        raise ValueError("it names no architecture")
    arch = meta["architecture"]
    if not isinstance(arch, str) or (arch not in MODEL_NAMES and library_family(arch) is None):
        raise ValueError(
            f"architecture {_quoted(arch)} is unknown; expected one of {', '.join(MODEL_NAMES)} "
            f"or a timm: or hf: model"
        )
    if "config" not in meta:
        raise ValueError("it has no config")
    config = meta["config"]
    if not isinstance(config, dict):
        raise ValueError(f"config is {show_value(config)}, not a JSON object")
    try:
        image_size, num_classes = _check_config(arch, config)
    except ValueError as exc:
        raise ValueError(f"config: {exc}") from None
    if "class_names" in meta:
        names = meta["class_names"]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError("class_names must be a list of texts")
        if len(names) != num_classes:
            raise ValueError(f"class_names has {len(names)} names for {num_classes} classes")
        if any(len(n) > _MAX_CLASS_NAME for n in names):
            raise ValueError(f"class_names has a name over {_MAX_CLASS_NAME} characters long")
    for key in ("mean", "std"):
        if key in meta:
            _check_channels(key, meta[key], positive=key == "std")
    if "resize_size" in meta:
        check_whole("resize_size", meta["resize_size"], image_size, 2 * image_size)
    if "interpolation" in meta and (
        not isinstance(meta["interpolation"], str) or meta["interpolation"] not in INTERPOLATIONS
    ):
        raise ValueError(
            f"interpolation {_quoted(meta['interpolation'])} is not one of "
            f"{', '.join(INTERPOLATIONS)}"
        )
    return meta


def _check_config(arch: str, config: dict[str, Any]) -> tuple[int, int]:
    """The image size and class count of a checked ``config`` of ``arch``."""
    family = library_family(arch)
    if family is not None:
        return family_module(family).check_config(arch, config)
    allowed = SmallViTConfig.field_names() if arch == SMALL_VIT else _TORCHVISION_CONFIG
    unknown = [key for key in config if key not in allowed]
    if unknown:
        raise ValueError(
            f"unknown setting {_quoted(unknown[0])}; a {arch} config has {', '.join(allowed)}"
        )
    if arch == SMALL_VIT:
        small = SmallViTConfig(**config)  # checks every field
        return small.image_size, small.num_classes
    patch = _torchvision_patch(arch)
    image_size = check_whole("image_size", config.get("image_size", 224), patch, MAX_IMAGE_SIZE)
    if image_size % patch:
        raise ValueError(
            f"image_size {image_size} is not a multiple of {TORCHVISION_VITS[arch]}'s "
            f"{patch} px patches"
        )
    check_grid(image_size, patch)
    return image_size, check_whole("num_classes", config.get("num_classes", 1000), 1, MAX_CLASSES)


def _check_channels(key: str, value: object, positive: bool) -> None:
    """``mean`` or ``std``: three numbers, one per colour channel, of a sane size (images are
    scaled to 0..1 before they are normalised); ``std`` above 0."""
    if not (
        isinstance(value, list)
        and len(value) == 3
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        and all(-_MAX_CHANNEL_VALUE <= v <= _MAX_CHANNEL_VALUE for v in value)  # NaN fails too
    ):
        raise ValueError(
            f"{key} must be a list of three numbers from -{_MAX_CHANNEL_VALUE:g} to "
            f"{_MAX_CHANNEL_VALUE:g}, one per colour channel"
        )
    if positive and not all(v >= _MIN_STD for v in value):
        raise ValueError(f"{key} must be at least {_MIN_STD:g} for every channel")


def _quoted(value: object) -> str:
    """A name from a file for a message: quoted and short when it is a text."""
    if not isinstance(value, str):
        return show_value(value)
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "\u2026"


def _torchvision_patch(name: str) -> int:
    """The patch size in a torchvision ViT's name: ``vit_b_16`` has 16 px patches."""
    return int(name.rsplit("_", 1)[1])


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
