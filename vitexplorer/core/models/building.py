"""Building the model a weights file describes, only once its tensors are known to fit: a
:class:`BuildPlan` (from a checkpoint's metadata, through its family, or from a plain state
dict's shapes) is built on the meta device and held against the file first."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vitexplorer.core.models import skeleton
from vitexplorer.core.models.checkpoint import (
    WeightsFileError,
    check_fits,
    check_weights_path,
    file_label,
    is_safetensors_file,
    read_safetensors_header,
    read_weights,
    shapes_of,
    state_numel,
)
from vitexplorer.core.models.families.layouts import (
    misfit_message,
    recognise_layout,
    unknown_layout_message,
)
from vitexplorer.core.models.families.registry import implementation, info_for
from vitexplorer.core.models.metadata import check_checkpoint_metadata
from vitexplorer.core.models.spec import ModelSpec

# A plain state dict's plan, from its tensors' shapes and its path (see load_weights_file)
PlainPlan = Callable[[Mapping[str, tuple[int, ...]], Path], "BuildPlan"]


@dataclass(frozen=True)
class BuildPlan:
    """How to build the model that a weights file describes, checked against it first."""

    build: Callable[[], nn.Module]  # a model with random weights (on the meta device: a skeleton)
    what: str  # the model, for messages
    spec: Callable[[nn.Module], ModelSpec]
    from_metadata: bool  # the file claims a shape: its parameter count is checked as well


def load_weights_file(path: Path, plain_plan: PlainPlan | None) -> tuple[nn.Module, ModelSpec]:
    """The model in the weights file ``path``: a vitexplorer checkpoint (its metadata decides
    what is built), else the plain state dict that ``plain_plan(shapes, path)`` describes (None:
    a plain state dict is refused, saying which layout it looks like). The model is allocated
    only once the file's tensors are known to fit it; whatever fails is one line."""
    state, meta = read_weights(path)
    try:
        return build(file_plan(path, shapes_of(state), meta, plain_plan), state, file_label(path))
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
        check_plan(file_plan(path, shapes, meta, plain_plan), shapes, file_label(path))


def file_plan(
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
        info = info_for(arch)
        assert info is not None  # checked with the metadata
        return implementation(info).checkpoint_plan(arch, meta, f"file {path.name}")
    if plain_plan is not None:
        return plain_plan(shapes, path)
    layout = recognise_layout(shapes)
    if layout is not None:
        raise WeightsFileError(f"{source} has no vitexplorer metadata; {layout.describe()}")
    raise WeightsFileError(unknown_layout_message(source))


def check_plan(plan: BuildPlan, shapes: Mapping[str, Any], source: str) -> None:
    """Build ``plan`` on the meta device (no memory) and hold it against the file's tensors."""
    with torch.device("meta"):
        model = plan.build()
    if plan.from_metadata:
        implied, held = state_numel(model.state_dict()), state_numel(shapes)
        if implied != held:
            raise WeightsFileError(
                f"{source}: its metadata describes a {plan.what} of {implied:,} parameters but "
                f"the file holds {held:,}; the metadata does not match the weights"
            )
    try:
        check_fits(model, shapes, plan.what)
    except WeightsFileError as exc:
        raise WeightsFileError(misfit_message(source, str(exc), shapes_of(shapes))) from None


def build(
    plan: BuildPlan, state: dict[str, torch.Tensor], source: str
) -> tuple[nn.Module, ModelSpec]:
    """The model of ``plan`` with the weights of ``state``, allocated only once they fit, and
    never initialised (see :func:`~vitexplorer.core.models.skeleton.with_weights`)."""
    check_plan(plan, state, source)
    _check_number_kinds(plan, state, source)
    module = skeleton.with_weights(plan.build, state)
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


def class_names_for(num_classes: int, imagenet: list[str]) -> tuple[str, ...]:
    """``imagenet``'s names for a head of as many classes, else ``class 0``, ``class 1``..."""
    if num_classes == len(imagenet):
        return tuple(imagenet)
    return tuple(f"class {i}" for i in range(num_classes))
