"""Building a model that is about to take a weights file's tensors without initialising it first
(issue 14: a ViT-B/16's random initialisation costs 0.56 s of CPU, a ViT-H/14's 3.9 s, only to be
overwritten).

The model is built on the meta device (:func:`skeleton`: no memory; whatever initialisation runs
computes nothing) and takes the state dict's tensors with ``load_state_dict(..., assign=True)``;
:func:`owned` gives each one memory of its own in the model's dtype, so the weights are the same
bits, in the same kind of memory, as when they were copied into an initialised model (a file's
tensors can sit at any offset of one buffer, and unaligned memory sends the CPU's kernels down
other paths: logits that differ in the last bit). A buffer that the state dict does not hold
(position ids, a relative-position index: computed by ``__init__``) is left on the meta device;
:func:`compute_buffers` computes it as ``__init__`` does, by building the model once more with
only its parameters on the meta device.

Both rely on hooks on torch's registration of parameters and buffers (``torch.nn.modules.
module.register_module_parameter_registration_hook`` and its buffer twin), registered once at
import and never removed, so no other thread ever sees torch's tables of hooks change while it
builds a module; they act only in a thread inside one of these blocks.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.nn.modules.module import (
    register_module_buffer_registration_hook,
    register_module_parameter_registration_hook,
)
from torch.utils.hooks import RemovableHandle

# per thread: mode (None outside a block; "assign": modules built get the assigning pre-hook;
# "parameters": new parameters go to the meta device), hooked (module -> its pre-hook's handle)
_state = threading.local()


@contextmanager
def skeleton(assign_loads: bool = False) -> Iterator[None]:
    """Modules built in this thread inside the block live on the meta device.

    With ``assign_loads``, ``load_state_dict`` on those modules, called inside the block, takes
    the state dict's tensors (each :func:`owned`, in its parameter's or buffer's dtype) instead
    of copying them into meta tensors, which would keep nothing: for a library that builds a
    model and loads its weights in one call (timm's ``create_model(pretrained=True)``). Whatever
    it does not load stays on the meta device; :func:`has_meta` tells."""
    with _mode("assign" if assign_loads else None), torch.device("meta"):
        yield


def owned(tensor: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``tensor`` copied into memory of its own; a float tensor in ``like``'s dtype."""
    dtype = like.dtype if tensor.is_floating_point() else tensor.dtype
    return tensor.to(dtype, copy=True)


def has_meta(module: nn.Module) -> bool:
    """Whether a parameter or buffer of ``module`` is still on the meta device."""
    return any(t.is_meta for t in (*module.parameters(), *module.buffers()))


def compute_buffers(module: nn.Module, make: Callable[[], nn.Module]) -> None:
    """The buffers of ``module`` (built by ``make`` in a :func:`skeleton`) still on the meta
    device, as its ``__init__`` computes them: ``make()`` once more, with each parameter moved
    to the meta device as it is registered (nothing initialised; only the short-lived empty
    tensors that ``__init__`` creates are allocated). Nothing is done when none is left."""
    missing = [name for name, buffer in module.named_buffers() if buffer.is_meta]
    if not missing:
        return
    with _mode("parameters"):
        donor = dict(make().named_buffers())
    for name in missing:
        computed = donor.get(name)
        if computed is not None and not computed.is_meta:
            owner, _, leaf = name.rpartition(".")
            setattr(module.get_submodule(owner), leaf, computed)  # its persistence is kept


@contextmanager
def _mode(mode: str | None) -> Iterator[None]:
    outer, outer_hooked = getattr(_state, "mode", None), getattr(_state, "hooked", {})
    _state.mode, _state.hooked = mode, {}
    try:
        yield
    finally:
        for handle in _state.hooked.values():
            handle.remove()
        _state.mode, _state.hooked = outer, outer_hooked


def _on_parameter(module: nn.Module, name: str, param: Any) -> nn.Parameter | None:
    """torch's parameter registration hook, in a thread inside a block: in a :func:`skeleton`
    with ``assign_loads``, each module that registers a parameter gets the :func:`_assigning`
    pre-hook; in :func:`compute_buffers`' build, each new parameter goes to the meta device."""
    mode = getattr(_state, "mode", None)
    if mode == "assign":
        _hook(module)
    if mode == "parameters" and type(param) is nn.Parameter and not param.is_meta:
        return nn.Parameter(param.detach().to("meta"), requires_grad=param.requires_grad)
    return None


def _on_buffer(module: nn.Module, name: str, buffer: Any) -> None:
    """torch's buffer registration hook: a module that holds only buffers is loaded by
    assignment too, in a :func:`skeleton` with ``assign_loads``."""
    if getattr(_state, "mode", None) == "assign":
        _hook(module)


def _hook(module: nn.Module) -> None:
    if module not in _state.hooked:
        _state.hooked[module] = module.register_load_state_dict_pre_hook(_assigning)


def _assigning(
    module: nn.Module, state_dict: dict[str, Any], prefix: str, local_metadata: dict, *_: Any
) -> None:
    """A load-state-dict pre-hook: ``module``'s own tensors are taken (owned copies), not copied
    into. ``state_dict`` is torch's copy for this module and ``assign_to_params_buffers`` the
    key that ``load_state_dict(assign=True)`` sets in ``local_metadata``: both documented in
    ``nn.Module._load_from_state_dict``. A tensor of another shape is left as it is, for torch's
    own message."""
    own = {**module._parameters, **module._buffers}
    for name, tensor in own.items():
        value = state_dict.get(prefix + name)
        if tensor is not None and isinstance(value, torch.Tensor) and value.shape == tensor.shape:
            state_dict[prefix + name] = owned(value, tensor)
    local_metadata["assign_to_params_buffers"] = True


_HOOKS: tuple[RemovableHandle, ...] = (
    # torch documents that the hook may return a replacement; its annotation says None
    register_module_parameter_registration_hook(_on_parameter),  # type: ignore[arg-type]
    register_module_buffer_registration_hook(_on_buffer),
)


def with_weights(make: Callable[[], nn.Module], state: Mapping[str, torch.Tensor]) -> nn.Module:
    """``make()``'s model holding the tensors of ``state``, which are known to fit it.

    The model is built on the meta device and takes the tensors as its own (``assign=True``,
    each copied once into memory of its own, in the dtype the model declares), so no random
    initialisation is computed only to be overwritten (issue 14: 0.56 s for a ViT-B/16); the
    buffers its ``__init__`` computes, which ``state`` does not hold, are computed as it does
    (:func:`compute_buffers`). A model still left with a tensor on
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
