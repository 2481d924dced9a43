"""One's own ``nn.Module`` ViT, its attention modules named: the family of :func:`vitexplorer.wrap`.

A module of one's own is held in a :class:`WrappedViT` that records which submodules are its
self-attention, first layer first. Two shapes of attention are captured, each by running the
module's own computation explicitly so that the softmax it takes is the one kept:

- a timm-like ``Attention``: ``qkv`` and ``proj`` (each a module mapping the last axis), an int
  ``num_heads``, optionally ``scale`` (default ``head_dim ** -0.5``), ``q_norm``, ``k_norm``,
  ``attn_drop``, ``norm`` and ``proj_drop``; it computes ``softmax(q k^T * scale) v``;
- ``torch.nn.MultiheadAttention`` used as self-attention (query, key and value one tensor), with
  its packed input projection, no ``bias_k``/``bias_v`` and no ``add_zero_attn``.

:func:`check_capture` runs the module once with and once without capture and refuses, in one
line, named modules whose outputs differ: what is captured is then what the module computes.
Only the attention is known of such a module, so the parts the analytics, fine-tuning and the
sanity check need (its embedding, blocks, classifier) are refused in one line each, and so is a
forward at another input size than its own.

This family is listed in :data:`vitexplorer.core.models.families.FAMILY_MODULES` under its own
module name, so it is asked only once this file has been imported (a :class:`WrappedViT` cannot
exist before), and no message of the other families changes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from vitexplorer.core.io.images import MAX_PIXELS
from vitexplorer.core.models.capture import Sink, capturing_attention, explicit_attention
from vitexplorer.core.models.families.base import Part, UnsupportedModel, ViTAdapter
from vitexplorer.core.models.spec import IMAGENET_MEAN, IMAGENET_STD, ModelSpec

SUPPORTED = (
    "a timm-like Attention (qkv and proj modules, an int num_heads, optionally scale) or "
    "torch.nn.MultiheadAttention (packed in_proj, no bias_k/bias_v, no add_zero_attn)"
)
PROBE_RTOL = 1e-4  # how close the captured pass's outputs must be to the module's own
PROBE_ATOL = 1e-5
MAX_MAPS_BYTES = 4 * 2**30  # float32 maps of one image: ViT-L/16 at 384 px takes 0.5 GiB


class WrappedViT(nn.Module):
    """``inner``, a ViT of one's own, with its self-attention modules named, first layer first."""

    def __init__(self, inner: nn.Module, attention: Sequence[nn.Module], num_prefix: int) -> None:
        super().__init__()
        self.inner = inner
        self._attention = list(attention)  # a plain list: inner already registers them
        self.num_prefix = num_prefix

    @property
    def attention(self) -> list[nn.Module]:
        return list(self._attention)

    def forward(self, images: torch.Tensor) -> Any:
        """``inner(images)``, with torch's fused fast path for ``nn.TransformerEncoderLayer``
        off (it would skip the attention modules' forward in eval mode, so nothing would be
        captured); the flag is torch's, global, and set back as it was."""
        fastpath = getattr(torch.backends, "mha", None)
        if fastpath is None or not fastpath.get_fastpath_enabled():
            return self.inner(images)
        fastpath.set_fastpath_enabled(False)
        try:
            return self.inner(images)
        finally:
            fastpath.set_fastpath_enabled(True)


def attention_kind(module: nn.Module) -> str:
    """``"mha"`` or ``"timm"``: which supported shape ``module`` has; else UnsupportedModel."""
    if isinstance(module, nn.MultiheadAttention):
        if not module._qkv_same_embed_dim or module.in_proj_weight is None:
            raise UnsupportedModel(
                "its MultiheadAttention has separate key and value sizes (kdim/vdim); "
                f"supported: {SUPPORTED}"
            )
        if module.bias_k is not None or module.add_zero_attn:
            raise UnsupportedModel(
                f"its MultiheadAttention adds bias_k/bias_v or a zero key; supported: {SUPPORTED}"
            )
        return "mha"
    qkv, proj = getattr(module, "qkv", None), getattr(module, "proj", None)
    heads = getattr(module, "num_heads", None)
    if (
        isinstance(qkv, nn.Module)
        and isinstance(proj, nn.Module)
        and isinstance(heads, int)
        and not isinstance(heads, bool)
        and heads > 0
    ):
        return "timm"
    raise UnsupportedModel(
        f"a {type(module).__name__} is not an attention module vitexplorer can capture; "
        f"supported: {SUPPORTED}"
    )


def num_heads(module: nn.Module) -> int:
    """The heads of a supported attention module."""
    heads = module.num_heads
    assert isinstance(heads, int)
    return heads


class _Recorder(Sink):
    """Hands the scores on to ``sink`` and keeps the probabilities it returns (for the weights
    ``nn.MultiheadAttention`` returns when asked)."""

    def __init__(self, sink: Any) -> None:
        self.sink = sink
        self.last: torch.Tensor | None = None

    def softmax(self, scores: torch.Tensor) -> torch.Tensor:
        self.last = self.sink.softmax(scores)
        return self.last

    def weights(self, q: torch.Tensor, k: torch.Tensor, scale: float, **kwargs: Any) -> Any:
        self.last = self.sink.weights(q, k, scale, **kwargs)
        return self.last


def _refuse_extras(name: str, given: dict[str, Any]) -> None:
    """A RuntimeError of one line when the module is called with a mask or other inputs."""
    extras = [key for key, value in given.items() if value is not None and value is not False]
    if extras:
        raise RuntimeError(
            f"the {name} was called with {', '.join(extras)}; vitexplorer captures plain "
            f"self-attention without masks only"
        )


def _timm_forward(attention: nn.Module, sink: Any) -> Callable[..., Any]:
    """timm's ``Attention.forward`` computed explicitly, the softmax taken by ``sink``."""
    a: Any = attention
    heads = num_heads(attention)
    identity = nn.Identity()

    def forward(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        _refuse_extras(
            type(attention).__name__, {f"argument {i + 2}": v for i, v in enumerate(args)}
        )
        _refuse_extras(type(attention).__name__, kwargs)
        b, n, _ = x.shape
        qkv = a.qkv(x)
        head_dim = qkv.shape[-1] // (3 * heads)
        q, k, v = qkv.reshape(b, n, 3, heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        q, k = getattr(a, "q_norm", identity)(q), getattr(a, "k_norm", identity)(k)
        scale = getattr(a, "scale", None)
        scale = float(head_dim**-0.5 if scale is None else scale)
        weights = getattr(a, "attn_drop", identity)(sink.weights(q, k, scale))
        out = (weights @ v).transpose(1, 2).reshape(b, n, heads * head_dim)
        out = a.proj(getattr(a, "norm", identity)(out))
        return getattr(a, "proj_drop", identity)(out)

    return forward


def _mha_forward(attention: nn.MultiheadAttention, sink: Any) -> Callable[..., Any]:
    """``nn.MultiheadAttention`` as self-attention, computed explicitly (as torchvision's family
    does), returning the weights too when asked (averaged over the heads by default, as it does)."""

    def forward(
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        need_weights: bool = True,
        attn_mask: torch.Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        _refuse_extras(
            "MultiheadAttention",
            {"key_padding_mask": key_padding_mask, "attn_mask": attn_mask, "is_causal": is_causal},
        )
        if not (query is key is value):
            raise RuntimeError("attention capture supports self-attention only")
        x = query if attention.batch_first or query.ndim == 2 else query.transpose(0, 1)
        recorder = _Recorder(sink)
        out = explicit_attention(
            x,
            attention.in_proj_weight,
            attention.in_proj_bias,
            attention.out_proj.weight,
            attention.out_proj.bias,
            attention.num_heads,
            recorder,
        )
        out = out if attention.batch_first else out.transpose(0, 1)
        weights = recorder.last if need_weights else None
        if weights is not None and average_attn_weights:
            weights = weights.mean(dim=1)
        return out, weights

    return forward


class CustomAdapter(ViTAdapter):
    """A :class:`WrappedViT`: its attention is known, nothing else of it."""

    family = "custom"
    module: WrappedViT

    @classmethod
    def matches(cls, module: nn.Module) -> bool:
        return isinstance(module, WrappedViT)

    def _unknown(self, what: str) -> UnsupportedModel:
        name = type(self.module.inner).__name__
        return UnsupportedModel(
            f"{what} of a wrapped {name} is not known to vitexplorer (only its attention is); "
            f"analyze and explain work, the analytics, fine-tuning and the sanity check do not"
        )

    @property
    def prefix_kinds(self) -> tuple[str, ...]:
        return ("cls",) * self.module.num_prefix

    def forward_parts(self, images: torch.Tensor) -> torch.Tensor:
        raise UnsupportedModel(
            f"a wrapped {type(self.module.inner).__name__} runs at its own input size only; "
            f"analyse the image without keep_aspect"
        )

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        raise self._unknown("the embedding")

    def blocks(self) -> list[nn.Module]:
        raise self._unknown("the blocks")

    def final_norm(self) -> nn.Module:
        raise self._unknown("the final norm")

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        raise self._unknown("the pooling")

    def get_classifier(self) -> nn.Linear | None:
        raise self._unknown("the classifier")

    def set_classifier(self, head: nn.Linear) -> None:
        raise self._unknown("the classifier")

    def attention_modules(self) -> list[nn.Module]:
        return self.module.attention

    def capturing_forward(self, attention: nn.Module, sink: Any) -> Callable[..., Any]:
        if attention_kind(attention) == "mha":
            assert isinstance(attention, nn.MultiheadAttention)
            return _mha_forward(attention, sink)
        return _timm_forward(attention, sink)

    def position_embeddings(self) -> torch.Tensor | None:
        raise self._unknown("the position embedding")

    def patch_filters(self) -> torch.Tensor:
        raise self._unknown("the patch embedding")

    def randomisation_groups(self) -> tuple[list[Part], list[nn.Module], list[Part]]:
        raise self._unknown("the parts to randomise")


ADAPTER = CustomAdapter


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


# --- building one: what vitexplorer.wrap asks for -------------------------------------------------


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
