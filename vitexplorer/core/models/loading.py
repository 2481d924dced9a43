"""What a model is to vitexplorer: one description (:class:`ModelSpec`) for the rest of the app,
and the ways to obtain one. Each family's file in :mod:`vitexplorer.core.models.families` knows how
its models are built and where their weights come from (:func:`family_module_for`); this module
dispatches to it and holds what the families share: vitexplorer checkpoints (safetensors with
metadata that records the architecture), building a model only once a file's tensors are known
to fit it, weight downloads into a cache with progress, and the device.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.transforms import InterpolationMode

from vitexplorer.core.io.paths import expand_user
from vitexplorer.core.io.values import check_whole, show_value
from vitexplorer.core.models import spec as specs
from vitexplorer.core.models.checkpoint import (
    TIMELAPSE_KEY,
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
from vitexplorer.core.models.download import (
    CancelCheck,
    DownloadCancelled,  # noqa: F401  (re-exported: callers catch models.DownloadCancelled)
    DownloadError,
    ProgressCallback,
    download_file,
)
from vitexplorer.core.models.families.layouts import (
    misfit_message,
    recognise_layout,
    unknown_layout_message,
)
from vitexplorer.core.models.skeleton import compute_buffers, has_meta, owned, skeleton
from vitexplorer.core.models.spec import (  # noqa: F401  (re-exported: models.ModelSpec and names)
    DEMO,
    DEMO_LABEL,
    DEMO_RANDOM_LABEL,
    IMAGENET_MEAN,
    IMAGENET_STD,
    MODEL_NAMES,
    SMALL_VIT,
    TORCHVISION_VITS,
    LibraryFamily,
    ModelSpec,
    library_family,
)
from vitexplorer.core.models.vit import SmallViTConfig

CHECKPOINT_FORMAT = 1
INTERPOLATIONS: tuple[str, ...] = tuple(mode.value for mode in InterpolationMode)
RANDOM = "random initialisation"  # the weights label of a model with random weights
CROP_MODES = ("center", "squash", "border")  # ModelSpec.crop_mode
_MAX_CLASS_NAME = 1000  # characters
_MAX_CHANNEL_VALUE = 1000.0  # a checkpoint's mean and std, per channel
_MIN_STD = 1e-6
# the files of the families that come with vitexplorer (timm's and HF's: spec.LIBRARY_FAMILIES)
_BUILT_IN_FAMILIES = {
    **dict.fromkeys(TORCHVISION_VITS, "vitexplorer.core.models.families.torchvision"),
    SMALL_VIT: "vitexplorer.core.models.families.small_vit",
}

# A plain state dict's plan, from its tensors' shapes and its path (see load_weights_file)
PlainPlan = Callable[[Mapping[str, tuple[int, ...]], Path], "BuildPlan"]


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


def family_module_for(name: str) -> Any:
    """The file of ``name``'s family (see :mod:`vitexplorer.core.models.families`): a ValueError of
    one line for an unknown name, or naming the extra to install when the family's library is
    missing.

    A family's file offers ``load(name, weights, *, allow_download, progress, cancelled)`` ->
    (module, spec, weights file or None); ``check_source(name, weights)`` (cheap refusals
    before any heavy work); ``check_config(arch, config)`` -> (image size, classes) and
    ``checkpoint_plan(arch, meta, label)`` -> :class:`BuildPlan` for vitexplorer checkpoints
    of its models; where it has downloadable default weights, ``default_weights_download(name)``
    -> :class:`WeightsDownload`; and ``ADAPTER``, its
    :class:`~vitexplorer.core.models.families.base.ViTAdapter`."""
    family = library_family(name)
    if family is not None:
        return family_module(family)
    if name not in _BUILT_IN_FAMILIES:
        raise ValueError(unknown_model_message(name))
    return importlib.import_module(_BUILT_IN_FAMILIES[name])


def demo_checkpoint() -> Path:
    """The demo model's checkpoint (a small ViT trained on CIFAR-10, shipped in
    vitexplorer/resources with its model card), or a ValueError of one line when this
    installation lacks it."""
    path = specs.demo_path()
    if not path.is_file():
        raise ValueError(
            f"the demo model is not in this installation ({path} is missing); reinstall "
            f"vitexplorer, or choose another model"
        )
    return path


def family_module(family: LibraryFamily) -> Any:
    """The file of a family that another library builds, or a ValueError of one line naming the
    extra to install when that library is missing."""
    if not family.installed:
        raise ValueError(family.missing_message())
    return importlib.import_module(family.module)


def default_download(name: str, weights: str = "default") -> WeightsDownload | None:
    """The default weights that loading ``name`` with ``weights`` would fetch from the network,
    described without network access; None when it needs none (random weights, a file, a
    family without downloads) or when the model cannot be loaded at all (:func:`load_model`
    then says why, as for any other model problem)."""
    if weights != "default" or is_weights_path(name):
        return None
    try:
        family = family_module_for(name)
        describe = getattr(family, "default_weights_download", None)
        return describe(name) if describe is not None else None
    except (ValueError, WeightsUnavailableError):  # the load says why, as a model problem
        return None


def check_model_source(name: str, weights: str = "default") -> None:
    """Refuse now what :func:`load_model` would refuse later and can be found out cheaply.

    An unknown model name (ValueError); a weights path that is not a regular file; a checkpoint
    whose metadata is unsound or does not match the shapes of its tensors, read from the
    safetensors header (WeightsFileError). No tensor is read and no model allocated; a .pth file
    is only checked to be a file.
    """
    if name == DEMO:
        demo_checkpoint()
        if weights not in ("default", "none"):
            family_module_for(SMALL_VIT).check_source(SMALL_VIT, weights)
    elif is_weights_path(name):
        check_own_weights(name, weights)
        check_weights_file(Path(name), None)
    else:
        family_module_for(name).check_source(name, weights)


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

    ``name`` is a torchvision ViT name, ``small_vit``, ``demo``, a ``timm:`` or ``hf:`` model,
    or the path of a vitexplorer checkpoint. ``weights`` is ``default`` (the family's pretrained
    weights: ImageNet for torchvision, downloaded when missing; the demo's and a checkpoint's
    own; random for the small ViT), ``none`` (random, for every model: the demo's and a
    checkpoint's architecture untrained), or the path of a weights file: a plain state dict in
    the family's layout, or a vitexplorer checkpoint, whose metadata then decides (for the
    demo, as for the small ViT). ``small_config`` shapes a random small ViT.
    """
    weights_file: Path | None
    if name == DEMO and weights == "none":  # the demo's architecture, random weights
        module, spec = random_like(demo_checkpoint())
        spec, weights_file = replace(spec, display_name=DEMO_RANDOM_LABEL), None
    elif name == DEMO and weights == "default":
        weights_file = demo_checkpoint()
        module, spec = load_weights_file(weights_file, None)
        spec = replace(spec, display_name=DEMO_LABEL, weights="trained on CIFAR-10")
    elif is_weights_path(name):
        check_own_weights(name, weights)
        weights_file = None if weights == "none" else Path(name)
        module, spec = (
            random_like(Path(name)) if weights == "none" else load_weights_file(Path(name), None)
        )
    else:
        name = SMALL_VIT if name == DEMO else name  # a file for the demo: a small ViT's
        options = {"config": small_config} if name == SMALL_VIT and small_config else {}
        module, spec, weights_file = family_module_for(name).load(
            name,
            weights,
            allow_download=allow_download,
            progress=progress,
            cancelled=cancelled,
            **options,
        )
    target = device if isinstance(device, torch.device) else resolve_device(device)
    if target.type == "cuda":  # refused in one line rather than out of memory half way
        from vitexplorer.core.training.estimate import check_model_fits

        check_model_fits(spec.name, module, target)
    if weights_file is not None:
        weights_file = expand_user(weights_file).resolve()
    return LoadedModel(module.eval().to(target), spec, target, weights_file)


def check_own_weights(name: str, weights: str) -> None:
    """A checkpoint carries its own weights: ``weights`` may be ``default`` (those), ``none``
    (its architecture with random weights) or the checkpoint itself; another file is refused
    in one line rather than ignored."""
    if weights in ("default", "none") or expand_user(weights) == expand_user(name):
        return
    raise ValueError(
        f"{Path(name).name} is a checkpoint and carries its own weights, so the weights file "
        f"{Path(weights).name} cannot replace them: open that file as the model instead, or ask "
        f"for random weights ('none') to get the checkpoint's architecture untrained"
    )


def random_like(path: Path) -> tuple[nn.Module, ModelSpec]:
    """The model that the checkpoint ``path`` describes, with random weights: its metadata
    decides the architecture, its tensors (read from the header where it is safetensors) are
    checked to fit it, and none is loaded."""
    if is_safetensors_file(path):
        shapes, meta = read_safetensors_header(path)
    else:
        state, meta = read_weights(path)
        shapes = shapes_of(state)
    plan = _file_plan(path, shapes, meta, None)
    check_plan(plan, shapes, file_label(path))
    module = plan.build()
    return module, replace(plan.spec(module), weights=RANDOM)


def apply_metadata(spec: ModelSpec, meta: dict[str, Any]) -> ModelSpec:
    """Class names and preprocessing recorded in a checkpoint override the defaults."""
    changes: dict[str, Any] = {}
    names = meta.get("class_names")
    if names and len(names) == spec.num_classes:  # checked: see check_checkpoint_metadata
        changes["class_names"] = tuple(names)
    for key in ("mean", "std"):
        if key in meta:
            changes[key] = tuple(meta[key])
    for key in ("resize_size", "interpolation", "crop_mode"):
        if key in meta:
            changes[key] = meta[key]
    return replace(spec, **changes) if changes else spec


def class_names_for(num_classes: int, imagenet: list[str]) -> tuple[str, ...]:
    """``imagenet``'s names for a head of as many classes, else ``class 0``, ``class 1``..."""
    if num_classes == len(imagenet):
        return tuple(imagenet)
    return tuple(f"class {i}" for i in range(num_classes))


@dataclass(frozen=True)
class BuildPlan:
    """How to build the model that a weights file describes, checked against it first."""

    build: Callable[[], nn.Module]  # a model with random weights (on the meta device: a skeleton)
    what: str  # the model, for messages
    spec: Callable[[nn.Module], ModelSpec]
    from_metadata: bool  # the file claims a shape: its parameter count is checked as well


def unknown_model_message(name: str) -> str:
    """An unknown built-in name, with the closest names."""
    names = (DEMO, *MODEL_NAMES)
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    return (
        f"unknown model {name!r}; {hint}choose one of {', '.join(names)}, a timm: or hf: "
        f"model, or a checkpoint path"
    )


def load_weights_file(path: Path, plain_plan: PlainPlan | None) -> tuple[nn.Module, ModelSpec]:
    """The model in the weights file ``path``: a vitexplorer checkpoint (its metadata decides
    what is built), else the plain state dict that ``plain_plan(shapes, path)`` describes (None:
    a plain state dict is refused, saying which layout it looks like). The model is allocated
    only once the file's tensors are known to fit it; whatever fails is one line."""
    state, meta = read_weights(path)
    try:
        return build(_file_plan(path, shapes_of(state), meta, plain_plan), state, file_label(path))
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


def check_weights_file(path: Path, plain_plan: PlainPlan | None) -> None:
    """What :func:`load_weights_file` would refuse that its header tells: the path is not a
    regular file, or (safetensors) its metadata is unsound or its tensors do not fit."""
    check_weights_path(path)
    if is_safetensors_file(path):
        shapes, meta = read_safetensors_header(path)
        check_plan(_file_plan(path, shapes, meta, plain_plan), shapes, file_label(path))


def _file_plan(
    path: Path,
    shapes: Mapping[str, tuple[int, ...]],
    meta: dict[str, Any] | None,
    plain_plan: PlainPlan | None,
) -> BuildPlan:
    """What to build for the file at ``path``, its tensors' ``shapes`` and metadata ``meta``."""
    source = file_label(path)
    if meta is not None:
        try:
            meta = check_checkpoint_metadata(meta)
        except ValueError as exc:
            raise WeightsFileError(f"{source} has invalid vitexplorer metadata: {exc}") from None
        arch = meta["architecture"]
        return family_module_for(arch).checkpoint_plan(arch, meta, f"file {path.name}")
    if plain_plan is not None:
        return plain_plan(shapes, path)
    layout = recognise_layout(shapes)
    if layout is not None:
        raise WeightsFileError(f"{source} has no vitexplorer metadata; {layout.describe()}")
    raise WeightsFileError(unknown_layout_message(source))


def check_plan(plan: BuildPlan, shapes: Mapping[str, Any], source: str) -> None:
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
        raise WeightsFileError(misfit_message(source, str(exc), shapes_of(shapes))) from None


def build(
    plan: BuildPlan, state: dict[str, torch.Tensor], source: str
) -> tuple[nn.Module, ModelSpec]:
    """The model of ``plan`` with the weights of ``state``, allocated only once they fit, and
    never initialised (see :func:`with_weights`)."""
    check_plan(plan, state, source)
    _check_number_kinds(plan, state, source)
    module = with_weights(plan.build, state)
    return module, plan.spec(module)


def _check_number_kinds(plan: BuildPlan, state: Mapping[str, torch.Tensor], source: str) -> None:
    """A WeightsFileError of one line when the file holds integers or booleans where the model
    has floating-point weights (which no model can be given)."""
    if all(tensor.is_floating_point() for tensor in state.values()):
        return  # the usual file: no skeleton to build
    with torch.device("meta"):
        wanted = plan.build().state_dict()
    for key, tensor in state.items():
        like = wanted.get(key)
        if like is not None and like.is_floating_point() and not tensor.is_floating_point():
            raise WeightsFileError(
                f"{source}: its {key} holds {str(tensor.dtype).removeprefix('torch.')} numbers "
                f"where {plan.what} has floating-point weights; it is not a weights file of "
                f"this model"
            )


def with_weights(make: Callable[[], nn.Module], state: Mapping[str, torch.Tensor]) -> nn.Module:
    """``make()``'s model holding the tensors of ``state``, which are known to fit it.

    The model is built on the meta device and takes the tensors as its own (``assign=True``,
    each copied once into memory of its own, in the dtype the model declares), so no random
    initialisation is computed only to be overwritten (issue 14: 0.56 s for a ViT-B/16); the
    buffers its ``__init__`` computes, which ``state`` does not hold, are computed as it does
    (:func:`~vitexplorer.core.models.skeleton.compute_buffers`). A model still left with a tensor on
    the meta device is built the ordinary way instead."""
    with skeleton():
        module = make()
    wanted = module.state_dict()
    module.load_state_dict({k: owned(v, wanted[k]) for k, v in state.items()}, assign=True)
    compute_buffers(module, make)
    if has_meta(module):
        module = make()
        module.load_state_dict(state)
    return module


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
            f"architecture {quoted(arch)} is unknown; expected one of {', '.join(MODEL_NAMES)} "
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
    if meta.get("crop_mode", "center") not in CROP_MODES:
        raise ValueError(
            f"crop_mode {quoted(meta['crop_mode'])} is not one of {', '.join(CROP_MODES)}"
        )
    if "interpolation" in meta and (
        not isinstance(meta["interpolation"], str) or meta["interpolation"] not in INTERPOLATIONS
    ):
        raise ValueError(
            f"interpolation {quoted(meta['interpolation'])} is not one of "
            f"{', '.join(INTERPOLATIONS)}"
        )
    return meta


def _check_config(arch: str, config: dict[str, Any]) -> tuple[int, int]:
    """The image size and class count of a checked ``config`` of ``arch``."""
    return family_module_for(arch).check_config(arch, config)


def check_config_keys(arch: str, config: dict[str, Any], allowed: tuple[str, ...]) -> None:
    """A ValueError naming the first setting of ``config`` that ``arch`` does not have."""
    unknown = [key for key in config if key not in allowed]
    if unknown:
        raise ValueError(
            f"unknown setting {quoted(unknown[0])}; a {arch} config has {', '.join(allowed)}"
        )


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


def quoted(value: object) -> str:
    """A name from a file for a message: quoted and short when it is a text."""
    if not isinstance(value, str):
        return show_value(value)
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "\u2026"


def save_checkpoint(
    path: str | Path,
    model: LoadedModel,
    extra: dict[str, Any] | None = None,
    timelapse: Any = None,
):
    """Save a model as safetensors with the metadata that :func:`load_model` reads back, and a
    :class:`~vitexplorer.core.training.timelapse.TimeLapse` of its training beside its weights."""
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
        "crop_mode": spec.crop_mode,
        **(extra or {}),
    }
    tensors = dict(model.module.state_dict())
    if timelapse is not None and timelapse.frames:
        meta[TIMELAPSE_KEY] = timelapse.metadata()
        tensors.update(timelapse.tensors())
    save_weights(path, tensors, meta)
