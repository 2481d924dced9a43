"""The project's own small Vision Transformer.

A plain pre-norm ViT (Dosovitskiy et al. 2021): a convolutional patch embedding, a learnable CLS
token and position embeddings, encoder blocks of multi-head self-attention and a GELU MLP with
residuals, a final LayerNorm and a linear head on the CLS token. Attention runs through
``scaled_dot_product_attention``; ``core.capture`` swaps in an explicit computation when maps are
wanted.

For training from scratch it has dropout (after the attention's output projection, after the MLP's
activation and after its second layer) and stochastic depth (DropPath, Huang et al. 2016): each
block's residual branches are dropped for a whole sample with a probability that rises linearly
with depth, from 0 at the first block to ``drop_path`` at the last, as timm does. Both are
identity in eval mode, and both default to 0, so a checkpoint whose metadata predates them loads
as before (they add no weights).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from vitexplorer.core.io.values import check_whole, show_value

# Bounds on what any ViT may claim to be. Checkpoint metadata is untrusted: without bounds a tiny
# file could ask for a model of billions of parameters (the parameter count is also checked
# against the tensors in the file, but only after a cheap skeleton is built within these bounds).
MAX_IMAGE_SIZE = 4096  # pixels per side
MAX_PATCHES = 65536  # a 256x256 grid
MAX_WIDTH = 8192
MAX_DEPTH = 256
MAX_HEADS = 256
MAX_MLP_RATIO = 16.0
MAX_CLASSES = 100_000


def check_grid(image_size: int, patch_size: int) -> None:
    """Refuse more patches than :data:`MAX_PATCHES` (every token attends to every other)."""
    patches = (image_size // patch_size) ** 2
    if patches > MAX_PATCHES:
        raise ValueError(
            f"{image_size} px images in {patch_size} px patches make {patches} patches; "
            f"at most {MAX_PATCHES} are accepted"
        )


@dataclass(frozen=True)
class SmallViTConfig:
    """Architecture of a :class:`SmallViT`; stored beside its weights in checkpoints."""

    image_size: int = 224
    patch_size: int = 16
    width: int = 192
    depth: int = 6
    heads: int = 3
    num_classes: int = 10
    mlp_ratio: float = 4.0
    dropout: float = 0.0  # training only; no weights, so absent from older checkpoints' metadata
    drop_path: float = 0.0  # stochastic depth at the last block (linear from 0 at the first)

    def __post_init__(self) -> None:
        """Refuse, with one line, any setting that would fail or allocate without bound later.

        A checkpoint's metadata arrives here unchecked, so every field is checked for its type
        (a whole number is an ``int``, never a bool, float or string) and its range."""
        check_whole("image_size", self.image_size, 1, MAX_IMAGE_SIZE)
        check_whole("patch_size", self.patch_size, 1, self.image_size)
        check_whole("width", self.width, 1, MAX_WIDTH)
        check_whole("depth", self.depth, 1, MAX_DEPTH)
        check_whole("heads", self.heads, 1, min(MAX_HEADS, self.width))
        check_whole("num_classes", self.num_classes, 1, MAX_CLASSES)
        ratio = self.mlp_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)):
            raise ValueError(f"mlp_ratio must be a number, not {show_value(ratio)}")
        if not (math.isfinite(ratio) and 0 < ratio <= MAX_MLP_RATIO) or int(self.width * ratio) < 1:
            raise ValueError(
                f"mlp_ratio must be above 0 and at most {MAX_MLP_RATIO:g} (and leave the MLP at "
                f"least one unit wide), not {show_value(ratio)}"
            )
        for name in ("dropout", "drop_path"):
            rate = getattr(self, name)
            if isinstance(rate, bool) or not isinstance(rate, (int, float)):
                raise ValueError(f"{name} must be a number, not {show_value(rate)}")
            if not (math.isfinite(rate) and 0 <= rate < 1):
                raise ValueError(f"{name} must be at least 0 and below 1, not {show_value(rate)}")
        if self.image_size % self.patch_size:
            raise ValueError(
                f"image size {self.image_size} is not a multiple of patch size {self.patch_size}"
            )
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not divisible by {self.heads} heads")
        check_grid(self.image_size, self.patch_size)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @property
    def grid(self) -> tuple[int, int]:
        side = self.image_size // self.patch_size
        return side, side

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth: each sample's ``x`` (a residual branch) zeroed with probability
    ``rate``, the kept ones scaled by ``1 / (1 - rate)``; ``x`` itself when not training."""
    if not training or rate == 0.0:
        return x
    keep = 1.0 - rate
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask / keep


class DropPath(nn.Module):
    """:func:`drop_path` as a module (no weights)."""

    def __init__(self, rate: float = 0.0) -> None:
        super().__init__()
        self.rate = float(rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.rate, self.training)

    def extra_repr(self) -> str:
        return f"rate={self.rate:g}"


class SelfAttention(nn.Module):
    """Multi-head self-attention with a fused qkv projection, dropout after the projection."""

    def __init__(self, width: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.num_heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.proj_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, n, c)))


class EncoderBlock(nn.Module):
    """Pre-norm transformer block: x + attn(ln(x)), then x + mlp(ln(x)), each branch through
    stochastic depth. The MLP keeps its layers at indices 0 and 2 (the checkpoints' names);
    dropout follows the activation (inside index 1) and the second layer (index 3)."""

    def __init__(
        self,
        width: int,
        heads: int,
        mlp_ratio: float,
        dropout: float = 0.0,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        hidden = int(width * mlp_ratio)
        self.norm1 = nn.LayerNorm(width, eps=1e-6)
        self.attn = SelfAttention(width, heads, dropout)
        self.norm2 = nn.LayerNorm(width, eps=1e-6)
        activation: nn.Module = nn.GELU()
        if dropout:
            activation = nn.Sequential(nn.GELU(), nn.Dropout(dropout))
        self.mlp = nn.Sequential(
            nn.Linear(width, hidden), activation, nn.Linear(hidden, width), nn.Dropout(dropout)
        )
        self.drop_path = DropPath(drop_path_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class SmallViT(nn.Module):
    """A small ViT classifier; tokens are ``[CLS, patch_0, ..., patch_{N-1}]`` (row-major)."""

    num_prefix_tokens = 1

    def __init__(self, config: SmallViTConfig | None = None) -> None:
        super().__init__()
        self.config = config or SmallViTConfig()
        cfg = self.config
        gh, gw = cfg.grid
        self.patch_embed = nn.Conv2d(
            3, cfg.width, kernel_size=cfg.patch_size, stride=cfg.patch_size
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.width))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + gh * gw, cfg.width))
        rates = [cfg.drop_path * i / max(1, cfg.depth - 1) for i in range(cfg.depth)]
        self.blocks = nn.ModuleList(
            EncoderBlock(cfg.width, cfg.heads, cfg.mlp_ratio, cfg.dropout, rate) for rate in rates
        )
        self.norm = nn.LayerNorm(cfg.width, eps=1e-6)
        self.head = nn.Linear(cfg.width, cfg.num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(images).flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x)[:, 0])
