"""One's own ``nn.Module`` ViT, its attention modules named: the family of :func:`vitexplorer.wrap`.

A module of one's own is held in a :class:`WrappedViT` that records which submodules are its
self-attention, first layer first. Two shapes of attention are captured, each by running the
module's own computation explicitly so that the softmax it takes is the one kept:

- a timm-like ``Attention``: ``qkv`` and ``proj`` (each a module mapping the last axis), an int
  ``num_heads``, optionally ``scale`` (default ``head_dim ** -0.5``), ``q_norm``, ``k_norm``,
  ``attn_drop``, ``norm`` and ``proj_drop``; it computes ``softmax(q k^T * scale) v``;
- ``torch.nn.MultiheadAttention`` used as self-attention (query, key and value one tensor), with
  its packed input projection, no ``bias_k``/``bias_v`` and no ``add_zero_attn``.

How one is built and checked (a probe pass with and without capture) is
:mod:`vitexplorer.core.models.families.custom_wrap`. Only the attention is known of such a
module, so the parts the analytics, fine-tuning and the sanity check need (its embedding,
blocks, classifier) are refused in one line each, and so is a forward at another input size
than its own.

Its adapter is registered with :func:`~vitexplorer.core.models.families.registry.register_adapter`
when this file is imported (a :class:`WrappedViT` cannot exist before), so a bare wrapped module
is recognised too, and no message of the other families changes until then.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from vitexplorer.core.models.capture import Sink, explicit_attention
from vitexplorer.core.models.families.base import Part, ViTAdapter
from vitexplorer.core.models.families.family import UnsupportedModel
from vitexplorer.core.models.families.registry import register_adapter

SUPPORTED = (
    "a timm-like Attention (qkv and proj modules, an int num_heads, optionally scale) or "
    "torch.nn.MultiheadAttention (packed in_proj, no bias_k/bias_v, no add_zero_attn)"
)


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
            'analyse the image with aspect="crop"'
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

    def block_parts(self, block: nn.Module) -> Any:
        raise self._unknown("the block parts")

    def position_embeddings(self) -> torch.Tensor | None:
        raise self._unknown("the position embedding")

    def patch_filters(self) -> torch.Tensor:
        raise self._unknown("the patch embedding")

    def randomisation_groups(self) -> tuple[list[Part], list[nn.Module], list[Part]]:
        raise self._unknown("the parts to randomise")


register_adapter(CustomAdapter)  # found for a bare WrappedViT too
