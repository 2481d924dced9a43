"""The substrate of the propagation methods: every family's blocks as one explicit, pre-norm
forward whose operations a rule set may override.

Every model here is a pre-norm ViT: ``x = x + ls1(attn(norm1(x)))``, then
``x = x + ls2(mlp(norm2(x)))``, then the final norm, the pooling and the classifier. A family's
adapter describes one block's parts (:class:`BlockParts`: its norms, the q/k/v and output
projections as weight and bias, the heads and the scale, the layer scales, the MLP's two layers
and its activation) through ``ViTAdapter.block_parts``; :func:`block_forward` computes the block
from them with the operations of an :class:`Ops`. The default :class:`Ops` computes the plain
forward (equal to the model's own within float rounding); a rule set (LRP's rules: CP-LRP,
AttnLRP, Chefer et al.'s propagation) subclasses it and changes what the backward pass of some
operations computes, the forward values staying the same.

A block the shape above cannot express (timm's q/k norms, a norm after the attention, a gated
attention, a SwiGLU MLP, a post-norm block) makes ``block_parts`` raise ``UnsupportedModel``
with one line that names the part.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from vitexplorer.core.models.families.family import UnsupportedModel

if TYPE_CHECKING:
    from vitexplorer.core.models.families.base import ViTAdapter

Linear = tuple[torch.Tensor, torch.Tensor | None]  # (weight (out, in), bias (out,) or None)


@dataclass(frozen=True)
class BlockParts:
    """One pre-norm block, by its parts (the tensors are the module's own parameters)."""

    norm1: nn.Module  # the norm before the attention (a LayerNorm)
    q: Linear  # the query projection (a packed qkv projection split in three)
    k: Linear
    v: Linear
    num_heads: int
    scale: float  # 1 / sqrt(head width) as the family's code has it
    scale_scores: bool  # True: the scale multiplies q k^T (HF); False: it multiplies q first
    out: Linear  # the attention's output projection
    norm2: nn.Module  # the norm before the MLP
    fc1: Linear
    act: Callable[[torch.Tensor], torch.Tensor]  # the MLP's activation (a module or function)
    fc2: Linear
    ls1: torch.Tensor | None = None  # layer scale of the attention branch (width,), or None
    ls2: torch.Tensor | None = None  # layer scale of the MLP branch


class Ops:
    """The operations of the explicit forward; this class computes the plain forward. A rule
    set overrides some of them (same values, another backward). ``role`` names which linear
    layer is computed: "q", "k", "v", "out", "fc1", "fc2", "pre_logits", "projection" or
    "head" (the classifier)."""

    def embed(self, adapter: ViTAdapter, images: torch.Tensor) -> torch.Tensor:
        """The tokens entering the first block (the adapter's own embedding)."""
        return adapter.embed(images)

    def norm(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return module(x)

    def linear(
        self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, role: str = ""
    ) -> torch.Tensor:
        return F.linear(x, weight, bias)

    def act(self, fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return fn(x)

    def scores(
        self, q: torch.Tensor, k: torch.Tensor, scale: float, scale_scores: bool
    ) -> torch.Tensor:
        """``q k^T`` scaled: (batch, heads, tokens, tokens)."""
        kt = k.transpose(-2, -1)
        return torch.matmul(q, kt) * scale if scale_scores else torch.matmul(q * scale, kt)

    def softmax(self, scores: torch.Tensor) -> torch.Tensor:
        return scores.softmax(dim=-1)

    def mix(self, weights: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """The attention weights times the values: (batch, heads, tokens, head width)."""
        return torch.matmul(weights, v)

    def residual(self, x: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
        return x + branch

    def layer_scale(self, x: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        return x * gamma


def block_forward(parts: BlockParts, x: torch.Tensor, ops: Ops) -> torch.Tensor:
    """One pre-norm block of ``x`` (batch, tokens, width) computed with ``ops``."""
    b, n, _ = x.shape
    h = ops.norm(parts.norm1, x)

    def heads(t: torch.Tensor) -> torch.Tensor:  # (b, n, heads*d) -> (b, heads, n, d)
        return t.reshape(b, n, parts.num_heads, -1).transpose(1, 2)

    q = heads(ops.linear(h, *parts.q, role="q"))
    k = heads(ops.linear(h, *parts.k, role="k"))
    v = heads(ops.linear(h, *parts.v, role="v"))
    weights = ops.softmax(ops.scores(q, k, parts.scale, parts.scale_scores))
    mixed = ops.mix(weights, v).transpose(1, 2).reshape(b, n, -1)
    branch = ops.linear(mixed, *parts.out, role="out")
    if parts.ls1 is not None:
        branch = ops.layer_scale(branch, parts.ls1)
    x = ops.residual(x, branch)
    h = ops.act(parts.act, ops.linear(ops.norm(parts.norm2, x), *parts.fc1, role="fc1"))
    branch = ops.linear(h, *parts.fc2, role="fc2")
    if parts.ls2 is not None:
        branch = ops.layer_scale(branch, parts.ls2)
    return ops.residual(x, branch)


def model_block_parts(adapter: ViTAdapter) -> list[BlockParts]:
    """Every block's parts, first first; ``UnsupportedModel`` (one line) where a block has
    parts the pre-norm shape cannot express."""
    return [adapter.block_parts(block) for block in adapter.blocks()]


def explicit_forward(
    adapter: ViTAdapter, images: torch.Tensor, ops: Ops | None = None, any_size: bool = False
) -> torch.Tensor:
    """The logits (batch, classes) computed part by part with ``ops``: the adapter's embedding
    (through ``ops.embed``), every block through :func:`block_forward`, the final norm through
    ``ops.norm`` and the pooling (``adapter.explicit_head``), the classifier through
    ``ops.linear``. Any input size the adapter's embedding accepts works (``any_size`` is
    accepted for symmetry with ``model_forward``; the embedding resizes the position embeddings
    to the input's grid). Without a classifier: (batch, 0)."""
    ops = ops or Ops()
    parts = model_block_parts(adapter)  # refuse before any work
    x = ops.embed(adapter, images)
    for block in parts:
        x = block_forward(block, x, ops)
    features = adapter.explicit_head(x, ops)
    head = adapter.get_classifier()
    if head is None:
        return features.new_zeros((features.shape[0], 0))
    return ops.linear(features, head.weight, head.bias, role="head")


def patch_embedding(adapter: ViTAdapter) -> nn.Conv2d:
    """The convolution that embeds the patches (the module holding ``patch_filters``)."""
    filters = adapter.patch_filters()
    for module in adapter.module.modules():
        if isinstance(module, nn.Conv2d) and module.weight is filters:
            return module
    raise UnsupportedModel(f"the patch embedding of a {type(adapter.module).__name__} is unknown")


def split_packed(weight: torch.Tensor, bias: torch.Tensor | None) -> tuple[Linear, Linear, Linear]:
    """A packed qkv projection (3*width, in) as its query, key and value projections."""
    ws = weight.chunk(3, dim=0)
    bs: tuple[Any, ...] = bias.chunk(3, dim=0) if bias is not None else (None, None, None)
    return (ws[0], bs[0]), (ws[1], bs[1]), (ws[2], bs[2])


def linear_of(module: nn.Module) -> Linear:
    """A linear module's (weight, bias)."""
    return module.weight, module.bias  # type: ignore[return-value]


def check_norm(module: nn.Module, where: str) -> nn.Module:
    """``module`` when it is a LayerNorm (the rules need its mean and deviation), or refuse."""
    if isinstance(module, nn.LayerNorm):
        return module
    raise UnsupportedModel(f"{where} is a {type(module).__name__}, not a LayerNorm")


def check_identity(module: Any, where: str) -> None:
    """Refuse a part that is present where the pre-norm block has none."""
    if module is not None and not isinstance(module, (nn.Identity, nn.Dropout)):
        raise UnsupportedModel(
            f"{where} is a {type(module).__name__}, a part the pre-norm block the propagation "
            f"methods describe does not have"
        )
