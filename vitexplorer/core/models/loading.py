"""Loading a model: :func:`load_model` turns a name (a family's model, the demo, a vitexplorer
checkpoint) and its weights into a :class:`LoadedModel`, which carries the adapter its family
decided at load. The family (found in :mod:`vitexplorer.core.models.families.registry`) knows how
its models are built and where their weights come from; what the families share lies below
this module: building from files (:mod:`~vitexplorer.core.models.building`), checkpoint
metadata (:mod:`~vitexplorer.core.models.metadata`), downloads
(:mod:`~vitexplorer.core.models.download`) and building without initialisation
(:mod:`~vitexplorer.core.models.skeleton`).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from vitexplorer.core.io.paths import expand_user
from vitexplorer.core.models import spec as specs
from vitexplorer.core.models.building import (
    check_plan,
    check_weights_file,
    file_plan,
    load_weights_file,
)
from vitexplorer.core.models.checkpoint import (
    TIMELAPSE_KEY,
    file_label,
    is_safetensors_file,
    read_safetensors_header,
    read_weights,
    save_weights,
    shapes_of,
)
from vitexplorer.core.models.download import (
    CancelCheck,
    ProgressCallback,
    WeightsDownload,
    WeightsUnavailableError,
)
from vitexplorer.core.models.families.registry import (
    SMALL_VIT,
    family_for,
    implementation,
    info_for,
    prefixed_names,
)
from vitexplorer.core.models.metadata import (
    CHECKPOINT_FORMAT,
)
from vitexplorer.core.models.spec import (
    DEMO,
    DEMO_LABEL,
    DEMO_RANDOM_LABEL,
    MODEL_NAMES,
    ModelSpec,
)
from vitexplorer.core.models.vit import SmallViTConfig

if TYPE_CHECKING:
    from vitexplorer.core.models.families.base import ViTAdapter
    from vitexplorer.core.models.families.family import Family


@dataclass
class LoadedModel:
    """A model ready for inference: the module (eval mode, on ``device``), its spec and its
    family's adapter (:attr:`adapter`), decided once."""

    module: nn.Module
    spec: ModelSpec
    device: torch.device
    weights_file: Path | None = None  # where the parameters were read from; None when random
    # the adapter its family gave it at load; None: found from the module when first asked
    known_adapter: ViTAdapter | None = field(default=None, repr=False, compare=False)

    @property
    def adapter(self) -> ViTAdapter:
        """How capture, fine-tuning and the checks see the module: the adapter its family
        decided at load (:func:`load_model`); for a LoadedModel made by hand from a bare module
        (a test, a copy), the family is found once, the first time it is asked."""
        if self.known_adapter is None or self.known_adapter.module is not self.module:
            from vitexplorer.core.models.families.registry import adapter_for

            self.known_adapter = adapter_for(self.module)
        return self.known_adapter


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


def family_of(name: str) -> Family:
    """The family that loads the model name ``name``: a ValueError of one line for an unknown
    name, or naming the extra to install when the family's library is missing."""
    family = family_for(name)
    if family is None:
        raise ValueError(unknown_model_message(name))
    return family


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


def default_download(name: str, weights: str = "default") -> WeightsDownload | None:
    """The default weights that loading ``name`` with ``weights`` would fetch from the network,
    described without network access; None when it needs none (random weights, a file, a
    family without downloads) or when the model cannot be loaded at all (:func:`load_model`
    then says why, as for any other model problem)."""
    info = info_for(name)
    if weights != "default" or is_weights_path(name) or (info is not None and not info.downloads):
        return None
    try:
        return family_of(name).default_download(name)
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
            family_of(SMALL_VIT).check_source(SMALL_VIT, weights)
    elif is_weights_path(name):
        check_own_weights(name, weights)
        check_weights_file(Path(name), None)
    else:
        family_of(name).check_source(name, weights)


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
        module, spec, weights_file = family_of(name).load(
            name,
            weights,
            allow_download=allow_download,
            progress=progress,
            cancelled=cancelled,
            shape=small_config,
        )
    target = device if isinstance(device, torch.device) else resolve_device(device)
    if target.type == "cuda":  # refused in one line rather than out of memory half way
        from vitexplorer.core.training.estimate import check_model_fits

        check_model_fits(spec.name, module, target)
    if weights_file is not None:
        weights_file = expand_user(weights_file).resolve()
    module = module.eval().to(target)
    info = info_for(spec.name)  # the architecture: its family built the module
    adapter = implementation(info).adapter(module) if info is not None else None
    return LoadedModel(module, spec, target, weights_file, adapter)


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
    plan = file_plan(path, shapes, meta, None)
    check_plan(plan, shapes, file_label(path))
    module = plan.build()
    return module, plan.spec(module).randomised()


def unknown_model_message(name: str) -> str:
    """An unknown built-in name, with the closest names."""
    names = (DEMO, *MODEL_NAMES)
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    return (
        f"unknown model {name!r}; {hint}choose one of {', '.join(names)}, a {prefixed_names()} "
        f"model, or a checkpoint path"
    )


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
