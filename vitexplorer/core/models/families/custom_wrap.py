"""Building a :class:`~vitexplorer.core.models.families.custom.WrappedViT` for
:func:`vitexplorer.wrap`: every argument checked, then one probe pass (:func:`check_capture`)
that runs the module once without and once with capture and refuses, in one line, named modules
whose outputs differ, run more than once or out of order, or self-attention left unnamed: what is
captured is then what the module computes."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from vitexplorer.core.io.images import MAX_PIXELS
from vitexplorer.core.models.capture import capturing_attention
from vitexplorer.core.models.families.custom import (
    SUPPORTED,
    WrappedViT,
    attention_kind,
    num_heads,
)
from vitexplorer.core.models.families.family import UnsupportedModel
from vitexplorer.core.models.spec import IMAGENET_MEAN, IMAGENET_STD, ModelSpec

PROBE_RTOL = 1e-4  # how close the captured pass's outputs must be to the module's own
PROBE_ATOL = 1e-5
MAX_MAPS_BYTES = 4 * 2**30  # float32 maps of one image: ViT-L/16 at 384 px takes 0.5 GiB


def _output(value: Any) -> torch.Tensor:
    """A module's output tensor (the first of a tuple, as ``nn.MultiheadAttention`` returns)."""
    return value[0] if isinstance(value, (tuple, list)) else value


def _other_attention(model: WrappedViT) -> list[tuple[str, nn.Module]]:
    """The modules of a supported attention shape that ``model`` does not name, by name."""
    named = {id(m) for m in model.attention}
    found = []
    for name, sub in model.inner.named_modules():
        if id(sub) in named:
            continue
        try:
            attention_kind(sub)
        except UnsupportedModel:
            continue
        found.append((name, sub))
    return found


def _noting(name: str, into: list[str]) -> Callable[..., None]:
    """A pre-hook that adds ``name`` to ``into`` when its module runs as self-attention (an
    ``nn.MultiheadAttention`` given one tensor as query and key; any call of the other kind),
    not when it pools or attends across (a latent query, another sequence)."""

    def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if isinstance(module, nn.MultiheadAttention):
            query = args[0] if args else kwargs.get("query")
            key = args[1] if len(args) > 1 else kwargs.get("key")
            if query is None or query is not key:
                return
        if name not in into:
            into.append(name)

    return hook


@torch.inference_mode()
def check_capture(model: WrappedViT, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits and captured maps of ``images`` through ``model``, once every named attention
    module is known to give the same output captured as in its own forward, each called once.

    A ValueError of one line otherwise: the module's own computation is not the softmax
    attention that vitexplorer recomputes (another scale, a bias, rotary positions...), so a
    map from it would not be the module's."""
    modules = model.attention
    plain: dict[int, list[torch.Tensor]] = {id(m): [] for m in modules}

    def keep(into: dict[int, list[torch.Tensor]]) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            into[id(module)].append(_output(output).detach().clone())

        return hook

    captured: dict[int, list[torch.Tensor]] = {id(m): [] for m in modules}
    order: list[int] = []  # the modules' ids in the order they ran
    left_out: list[str] = []  # attention modules not named that ran as self-attention
    handles = [m.register_forward_hook(keep(plain)) for m in modules]
    handles += [m.register_forward_pre_hook(lambda m, a: order.append(id(m))) for m in modules]
    for name, other in _other_attention(model):
        handles.append(other.register_forward_pre_hook(_noting(name, left_out), with_kwargs=True))
    try:
        expected = _output(model(images))
    finally:
        for handle in handles:
            handle.remove()
    if not isinstance(expected, torch.Tensor):
        raise ValueError(
            f"the module returns a {type(expected).__name__}, not a tensor of logits; wrap a "
            f"module that returns (batch, classes) logits"
        )
    if left_out:
        raise ValueError(
            f"attention leaves out {left_out[0]!r}, which runs as self-attention in the "
            f"forward pass; name every layer's self-attention module, first layer first"
        )
    for layer, module in enumerate(modules, start=1):
        runs = len(plain[id(module)])
        if runs != 1:
            raise ValueError(
                f"attention module {layer} ({type(module).__name__}) runs {runs} times in one "
                f"forward pass; vitexplorer captures modules that each run once, one per layer"
            )
    ran = [next(i for i, m in enumerate(modules, 1) if id(m) == o) for o in order]
    if ran != sorted(ran):
        raise ValueError(
            f"the attention modules run in the order {', '.join(map(str, ran))} of the list; "
            f"list them first layer first"
        )
    handles = [m.register_forward_hook(keep(captured)) for m in modules]
    try:
        with capturing_attention(model) as sink:
            logits = _output(model(images))
        maps = sink.result()
    except RuntimeError as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ValueError(f"its attention could not be captured: {first}") from None
    finally:
        for handle in handles:
            handle.remove()
    for layer, module in enumerate(modules, start=1):
        want, got = plain[id(module)][0], captured[id(module)][0]
        if want.shape != got.shape or not torch.allclose(
            got.float(), want.float(), rtol=PROBE_RTOL, atol=PROBE_ATOL
        ):
            gap = (
                float((got.float() - want.float()).abs().max())
                if want.shape == got.shape
                else float("nan")
            )
            raise ValueError(
                f"attention module {layer} ({type(module).__name__}) does not compute "
                f"softmax(q k^T * scale) v as vitexplorer recomputes it (outputs differ by "
                f"{gap:.3g}), so its maps would not be the module's; supported: {SUPPORTED}"
            )
    if not torch.allclose(logits.float(), expected.float(), rtol=PROBE_RTOL, atol=PROBE_ATOL):
        raise ValueError("the module's output changes when its attention is captured")
    return logits, maps


# --- the arguments ---------------------------------------------------------------------------


def _whole(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be a whole number of at least {minimum}, not {value!r}")
    return value


def _channels(name: str, values: Sequence[float], positive: bool) -> tuple[float, float, float]:
    try:
        numbers = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        numbers = ()
    if len(numbers) != 3 or not all(math.isfinite(v) for v in numbers):
        raise ValueError(f"{name} must be three numbers, one per colour channel, not {values!r}")
    if positive and min(numbers) <= 0:
        raise ValueError(f"{name} must be above 0 for every channel, not {values!r}")
    return numbers[0], numbers[1], numbers[2]


def resolve_attention(module: nn.Module, attention: Sequence[str | nn.Module]) -> list[nn.Module]:
    """The attention modules of ``module`` that ``attention`` names (names in
    ``named_modules()`` or the modules), each a supported kind; else one line."""
    if isinstance(attention, (str, nn.Module)) or not attention:
        raise ValueError(
            "attention must list each layer's self-attention module, first layer first (names "
            "or modules), e.g. [f'blocks.{i}.attn' for i in range(depth)]"
        )
    owned = {id(sub): name for name, sub in module.named_modules()}
    found: list[nn.Module] = []
    for item in attention:
        if isinstance(item, str):
            try:
                sub = module.get_submodule(item)
            except AttributeError:
                names = [name for name, _ in module.named_modules() if name][:5]
                raise ValueError(
                    f"the module has no submodule {item!r} (its first are {', '.join(names)})"
                ) from None
        elif isinstance(item, nn.Module):
            sub = item
            if id(sub) not in owned:
                raise ValueError(
                    f"a {type(sub).__name__} in attention is not a submodule of the module"
                )
        else:
            raise ValueError(f"attention lists names or modules, not {type(item).__name__}")
        if any(sub is other for other in found):
            raise ValueError(f"attention names {owned.get(id(sub), item)!r} twice")
        if "forward" in vars(sub):
            raise ValueError(
                f"attention {owned.get(id(sub), item)!r} has its forward replaced on the "
                f"instance; capture replaces it too and would lose yours: wrap the module "
                f"before patching it, or patch its class"
            )
        try:
            attention_kind(sub)
        except UnsupportedModel as exc:
            raise UnsupportedModel(f"attention {owned.get(id(sub), item)!r}: {exc}") from None
        found.append(sub)
    heads = {num_heads(sub) for sub in found}
    if len(heads) != 1:
        raise ValueError(f"the attention modules have different head counts: {sorted(heads)}")
    return found


def wrap_module(
    module: nn.Module,
    attention: Sequence[str | nn.Module],
    *,
    patch_size: int,
    image_size: int,
    num_prefix: int = 1,
    class_names: Sequence[str] | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    name: str = "",
    device: torch.device | None = None,
) -> tuple[WrappedViT, ModelSpec]:
    """``module`` held so that vitexplorer captures its attention (see :func:`vitexplorer.wrap`),
    in eval mode on ``device``, and its spec: every argument checked and one probe pass
    (:func:`check_capture`) run first; a ValueError of one line otherwise."""
    if not isinstance(module, nn.Module):
        raise ValueError(f"wrap takes a torch.nn.Module, not {type(module).__name__}")
    patch = _whole("patch_size", patch_size, 1)
    size = _whole("image_size", image_size, patch)
    if size * size > MAX_PIXELS:
        raise ValueError(
            f"image_size {size} is {size * size / 1e6:.0f} megapixels, more than the "
            f"{MAX_PIXELS / 1e6:.0f} megapixel limit of an image"
        )
    if size % patch:
        raise ValueError(f"image_size {size} is not a whole number of {patch} px patches")
    prefix = _whole("num_prefix", num_prefix, 0)
    means, stds = _channels("mean", mean, False), _channels("std", std, True)
    found = resolve_attention(module, attention)
    grid = size // patch
    expected = prefix + grid * grid
    nbytes = len(found) * num_heads(found[0]) * expected * expected * 4
    if nbytes > MAX_MAPS_BYTES:  # refused before the probe pass allocates them
        raise ValueError(
            f"one image's attention maps would take {nbytes / 2**30:.1f} GiB ({expected} tokens in "
            f"{len(found)} layers); more than {MAX_MAPS_BYTES / 2**30:.0f} GiB: check "
            f"image_size and patch_size"
        )
    target = device or torch.device("cpu")
    wrapped = WrappedViT(module, found, prefix).eval().to(target)
    probe = torch.Generator().manual_seed(0)
    images = torch.randn((1, 3, size, size), generator=probe).to(target)
    logits, maps = check_capture(wrapped, images)
    if logits.ndim != 2 or logits.shape[0] != 1:
        raise ValueError(
            f"the module returns a {tuple(logits.shape)} tensor for one image; wrap a module "
            f"that returns (batch, classes) logits"
        )
    tokens = maps.shape[-1]
    if tokens != expected:
        raise ValueError(
            f"the module's attention runs over {tokens} tokens, but {prefix} prefix token(s) "
            f"and a {size} px image in {patch} px patches make {expected}; check num_prefix, "
            f"patch_size and image_size"
        )
    classes = int(logits.shape[1])
    if class_names is None:
        names = tuple(f"class {i}" for i in range(classes))
    else:
        names = tuple(class_names)
        if len(names) != classes or not all(isinstance(n, str) for n in names):
            raise ValueError(
                f"class_names must be {classes} texts, one per output of the module, not "
                f"{len(names)} names"
            )
    spec = ModelSpec(
        name="custom",
        display_name=name or type(module).__name__,
        weights="the module's own",
        image_size=size,
        resize_size=size,
        patch_size=patch,
        num_layers=len(found),
        num_heads=num_heads(found[0]),
        class_names=names,
        num_prefix_tokens=prefix,
        mean=means,
        std=stds,
        family="custom",
        has_classifier=classes > 0,
    )
    return wrapped, spec
