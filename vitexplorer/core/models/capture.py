"""One forward pass that returns the logits and every layer's and head's attention.

torchvision's ``EncoderBlock`` calls ``nn.MultiheadAttention`` with ``need_weights=False`` and our
own :class:`~vitexplorer.core.models.vit.SelfAttention` uses fused
``scaled_dot_product_attention``, so the attention probabilities never exist in a plain forward.
For the analysed pass only, each attention module's ``forward`` is replaced by an explicit
computation built from the module's own weights (one qkv projection, scaled softmax kept as the
map, weights @ v, output projection), and the original is restored afterwards. Each family's
adapter (``core/models/families``) knows its attention modules and builds their explicit
forward. This costs about the same as the plain forward, unlike recomputing q and k in a hook or
asking the module for averaged weights.

The functions here take a model's adapter (``LoadedModel.adapter``, decided once at load) or a
bare module, whose family is then found from its type (:func:`adapter_of`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from vitexplorer.core.models.families.base import ViTAdapter

MAPS_BUDGET = 256 * 2**20  # bytes of float32 maps one captured forward pass of a batch may hold


def images_per_pass(layers: int, heads: int, tokens: int, most: int | None = None) -> int:
    """How many images one captured forward pass takes so that their float32 attention maps
    (``layers`` x ``heads`` x ``tokens`` squared each) stay within :data:`MAPS_BUDGET`: at least
    one, at most ``most``."""
    fit = max(1, MAPS_BUDGET // max(layers * heads * tokens * tokens * 4, 1))
    return fit if most is None else min(most, fit)


class Sink:
    """Where an explicit attention forward sends its queries and keys: :meth:`weights` returns
    the attention probabilities the forward then uses; a subclass decides what is kept."""

    def softmax(self, scores: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def weights(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        scale: float,
        *,
        scale_scores: bool = False,
        bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``softmax(q k^T * scale + bias)`` over the last axis. The scale multiplies the
        queries, or with ``scale_scores`` the scores (the order the model's own code uses, so
        the maps round as the library's do)."""
        kt = k.transpose(-2, -1)
        scores = torch.matmul(q, kt) * scale if scale_scores else torch.matmul(q * scale, kt)
        if bias is not None:
            scores = scores + bias
        return self.softmax(scores)


class AttentionSink(Sink):
    """Collects each layer's attention straight into one preallocated array.

    The scores are computed into their layer's place in that array and the softmax is taken
    there in place: neither stacking the layers afterwards nor a scores tensor per layer is
    needed. Each of those cost, on the CPU, about as much as the rest of the explicit
    attention's extra work together (at batch 8 of a ViT-B, 15 MB of fresh memory per layer).
    """

    def __init__(self, num_layers: int) -> None:
        self.num_layers = num_layers
        self.maps: torch.Tensor | None = None  # (layers, batch, heads, tokens, tokens)
        self.filled = 0

    def _slot(self, like: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        """The next layer's place in the array, of ``shape`` and ``like``'s dtype and device."""
        if (
            self.maps is None
            or self.maps.shape[1:] != shape
            or self.maps.dtype != like.dtype
            or self.maps.device != like.device
        ):
            self.maps = like.new_empty((self.num_layers, *shape))
            self.filled = 0
        if self.filled >= self.num_layers:
            raise RuntimeError("more attention layers ran than the model has")
        self.filled += 1
        return self.maps[self.filled - 1]

    def softmax(self, scores: torch.Tensor) -> torch.Tensor:
        """Softmax of ``scores`` over the last axis, written into the next layer's slot."""
        out = self._slot(scores, tuple(scores.shape))
        torch.softmax(scores, dim=-1, out=out)
        return out

    def weights(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        scale: float,
        *,
        scale_scores: bool = False,
        bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if (
            torch.is_grad_enabled()
            or torch.is_autocast_enabled(q.device.type)
            or q.dtype != k.dtype
            or (bias is not None and bias.dtype != q.dtype)
        ):
            # out= takes part in neither autograd nor autocast nor type promotion
            return super().weights(q, k, scale, scale_scores=scale_scores, bias=bias)
        shape = (*torch.broadcast_shapes(q.shape[:-2], k.shape[:-2]), q.shape[-2], k.shape[-2])
        out = self._slot(q, shape)
        kt = k.transpose(-2, -1)
        if scale_scores:
            torch.matmul(q, kt, out=out).mul_(scale)
        else:
            torch.matmul(q * scale, kt, out=out)
        if bias is not None:
            out.add_(bias)
        torch.softmax(out, dim=-1, out=out)
        return out

    def result(self) -> torch.Tensor:
        """All layers' maps as (batch, layers, heads, tokens, tokens)."""
        if self.maps is None or self.filled != self.num_layers:
            raise RuntimeError(f"captured {self.filled} of {self.num_layers} attention layers")
        return self.maps.transpose(0, 1)


def explicit_attention(
    x: torch.Tensor,
    qkv_weight: torch.Tensor,
    qkv_bias: torch.Tensor | None,
    out_weight: torch.Tensor,
    out_bias: torch.Tensor | None,
    num_heads: int,
    sink: Sink,
) -> torch.Tensor:
    """Self-attention of ``x`` (batch, tokens, width); its (batch, heads, T, T) map goes to sink."""
    b, n, c = x.shape
    head_dim = c // num_heads
    qkv = F.linear(x, qkv_weight, qkv_bias).reshape(b, n, 3, num_heads, head_dim)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
    weights = sink.weights(q, k, 1.0 / math.sqrt(head_dim))
    out = (weights @ v).transpose(1, 2).reshape(b, n, c)
    return F.linear(out, out_weight, out_bias)


def adapter_of(model: nn.Module | ViTAdapter) -> ViTAdapter:
    """``model`` itself when it is an adapter; for a bare module (no LoadedModel carries its
    adapter: a test's module, the time-lapse's model in training), its family's, found from its
    type."""
    from vitexplorer.core.models.families.base import ViTAdapter
    from vitexplorer.core.models.families.registry import adapter_for

    return model if isinstance(model, ViTAdapter) else adapter_for(model)


def attention_modules(model: nn.Module | ViTAdapter) -> list[nn.Module]:
    """The model's self-attention modules, first layer first (its family's adapter knows them)."""
    return adapter_of(model).attention_modules()


@contextmanager
def capturing_attention(model: nn.Module | ViTAdapter, sink: Any = None) -> Iterator[Any]:
    """Within the block, a forward of the model (``model``, or the module of the adapter
    ``model``) hands each layer's attention scores to the sink's ``softmax`` (by default an
    :class:`AttentionSink`, which writes them into one preallocated array; relevance passes one
    that keeps them in the autograd graph)."""
    from vitexplorer.core.models.families.family import UnsupportedModel

    try:
        adapter = adapter_of(model)
    except UnsupportedModel as exc:
        name = type(model).__name__
        raise ValueError(f"{name} has no attention layers that can be captured: {exc}") from exc
    modules = adapter.attention_modules()
    if not modules:
        name = type(adapter.module).__name__
        raise ValueError(f"{name} has no attention layers that can be captured")
    if sink is None:
        sink = AttentionSink(len(modules))
    for module in modules:
        module.forward = adapter.capturing_forward(module, sink)
    try:
        yield sink
    finally:
        for module in modules:
            del module.forward  # the instance attribute; the class's forward shows through again


@torch.inference_mode()
def forward_with_attention(
    model: nn.Module | ViTAdapter, images: torch.Tensor, any_size: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (batch, classes) and attention (batch, layers, heads, tokens, tokens).

    ``any_size`` runs the model part by part through its family's adapter, so an input of
    another size than the model's (a rectangle at the image's own aspect ratio) works: the
    position embeddings are resized to its grid."""
    with capturing_attention(model) as sink:
        logits = model_forward(model, images, any_size)
    return logits, sink.result()


def model_forward(
    model: nn.Module | ViTAdapter, images: torch.Tensor, any_size: bool = False
) -> torch.Tensor:
    """``model(images)`` (an adapter's module's), or with ``any_size`` the same computed by the
    family's adapter at any input size."""
    if any_size:
        return adapter_of(model).forward_parts(images)
    from vitexplorer.core.models.families.base import ViTAdapter

    module = model.module if isinstance(model, ViTAdapter) else model
    return module(images)
