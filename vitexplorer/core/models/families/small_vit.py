"""vitexplorer's own :class:`~vitexplorer.core.models.vit.SmallViT`: its adapter, and how it is
loaded (random with a chosen shape, or a vitexplorer checkpoint)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from vitexplorer.core.models.building import (
    BuildPlan,
    check_weights_file,
    class_names_for,
    load_weights_file,
)
from vitexplorer.core.models.checkpoint import WeightsFileError, file_label
from vitexplorer.core.models.download import CancelCheck, ProgressCallback
from vitexplorer.core.models.families.base import Part, ViTAdapter, resample_positions
from vitexplorer.core.models.families.family import Family
from vitexplorer.core.models.families.layouts import recognise_layout
from vitexplorer.core.models.families.registry import SMALL_VIT, family_named
from vitexplorer.core.models.metadata import apply_metadata, check_config_keys
from vitexplorer.core.models.spec import RANDOM, ModelSpec
from vitexplorer.core.models.vit import SelfAttention, SmallViT, SmallViTConfig

if TYPE_CHECKING:
    from vitexplorer.core.models.blocks import BlockParts


class SmallViTAdapter(ViTAdapter):
    family = "small_vit"
    module: SmallViT

    @classmethod
    def matches(cls, module: nn.Module) -> bool:
        return isinstance(module, SmallViT)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        m = self.module
        x = m.patch_embed(images)
        grid = (x.shape[-2], x.shape[-1])
        x = x.flatten(2).transpose(1, 2)
        x = torch.cat([m.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return x + resample_positions(m.pos_embed, grid, 1)  # any grid, a rectangle too

    def blocks(self) -> list[nn.Module]:
        return list(self.module.blocks)

    def final_norm(self) -> nn.Module:
        return self.module.norm

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens[:, 0]

    def get_classifier(self) -> nn.Linear:
        return self.module.head

    def set_classifier(self, head: nn.Linear) -> None:
        self.module.head = head
        self.module.config = replace(self.module.config, num_classes=head.out_features)

    def attention_modules(self) -> list[nn.Module]:
        return [cast(nn.Module, block.attn) for block in self.module.blocks]

    def capturing_forward(self, attention: nn.Module, sink: Any) -> Callable[..., Any]:
        from vitexplorer.core.models.capture import explicit_attention

        assert isinstance(attention, SelfAttention)

        def forward(x: torch.Tensor) -> torch.Tensor:
            out = explicit_attention(
                x,
                attention.qkv.weight,
                attention.qkv.bias,
                attention.proj.weight,
                attention.proj.bias,
                attention.num_heads,
                sink,
            )
            # identity in eval mode, where analysis runs; dropout as in training otherwise
            drop = getattr(attention, "proj_drop", None)
            return out if drop is None else drop(out)

        return forward

    def block_parts(self, block: nn.Module) -> BlockParts:
        """An ``EncoderBlock``: norm1, the packed qkv projection, norm2, the MLP (its
        activation with the dropout after it, an identity in eval mode)."""
        from vitexplorer.core.models.blocks import BlockParts, check_norm, linear_of, split_packed

        attention = cast(SelfAttention, block.attn)
        q, k, v = split_packed(attention.qkv.weight, attention.qkv.bias)
        mlp = cast(nn.Sequential, block.mlp)
        head_dim = attention.qkv.out_features // 3 // attention.num_heads
        return BlockParts(
            norm1=check_norm(cast(nn.Module, block.norm1), "its norm1"),
            q=q,
            k=k,
            v=v,
            num_heads=attention.num_heads,
            scale=head_dim**-0.5,
            scale_scores=False,
            out=linear_of(attention.proj),
            norm2=check_norm(cast(nn.Module, block.norm2), "its norm2"),
            fc1=linear_of(mlp[0]),
            act=mlp[1],
            fc2=linear_of(mlp[2]),
        )

    def position_embeddings(self) -> torch.Tensor:
        return self.module.pos_embed[0]

    def patch_filters(self) -> torch.Tensor:
        return self.module.patch_embed.weight

    def randomisation_groups(self) -> tuple[list[Part], list[nn.Module], list[Part]]:
        m = self.module
        return [m.norm, m.head], list(m.blocks), [m.patch_embed, m.cls_token, m.pos_embed]


# --- loading: SmallViTFamily, at the end ------------------------------------------------------


def file_plan(shapes: Mapping[str, tuple[int, ...]], path: Path) -> BuildPlan:
    """A plain state dict cannot be a small ViT's weights: it does not record the shape."""
    source = file_label(path)
    layout = recognise_layout(shapes)
    looks = f"; {layout.describe()}" if layout is not None else ""
    if layout is not None and layout.family != "vitexplorer small":
        raise WeightsFileError(f"{source} is not a small ViT checkpoint{looks}")
    raise WeightsFileError(
        f"{source} is a plain state dict; a small ViT needs a vitexplorer checkpoint "
        f"(.safetensors with metadata), which records its depth, width and heads{looks}"
    )


def spec_for(config: SmallViTConfig, weights: str) -> ModelSpec:
    """The spec of a small ViT of shape ``config``."""
    return ModelSpec(
        name=SMALL_VIT,
        display_name=f"Small ViT ({config.depth}x{config.width}, /{config.patch_size})",
        weights=weights,
        image_size=config.image_size,
        resize_size=config.image_size,
        patch_size=config.patch_size,
        num_layers=config.depth,
        num_heads=config.heads,
        class_names=class_names_for(config.num_classes, []),
        config=config.to_dict(),
    )


class SmallViTFamily(Family):
    """vitexplorer's own small ViT: "default" and "none" are random (its trained weights are
    checkpoints, which record its shape); a file must be a vitexplorer checkpoint."""

    info = family_named("small_vit")
    adapter_type = SmallViTAdapter

    def check_source(self, name: str, weights: str) -> None:
        """What :meth:`load` would refuse that can be found out cheaply."""
        if weights not in ("default", "none"):
            check_weights_file(Path(weights), file_plan)

    def load(
        self,
        name: str,
        weights: str,
        *,
        allow_download: bool = True,
        progress: ProgressCallback | None = None,
        cancelled: CancelCheck | None = None,
        shape: SmallViTConfig | None = None,
    ) -> tuple[nn.Module, ModelSpec, Path | None]:
        """The small ViT: random of ``shape`` (the default shape without one), or ``weights``,
        a vitexplorer checkpoint."""
        if weights in ("default", "none"):
            config = shape or SmallViTConfig()
            return SmallViT(config), spec_for(config, RANDOM).randomised(), None
        path = Path(weights)
        return (*load_weights_file(path, file_plan), path)

    def check_config(self, arch: str, config: dict[str, Any]) -> tuple[int, int]:
        """The image size and class count of a checkpoint's ``config``; every field is checked."""
        check_config_keys(arch, config, SmallViTConfig.field_names())
        small = SmallViTConfig(**config)
        return small.image_size, small.num_classes

    def checkpoint_plan(self, arch: str, meta: dict[str, Any], label: str) -> BuildPlan:
        """An untrained small ViT shaped by a vitexplorer checkpoint's checked metadata."""
        config = SmallViTConfig(**meta["config"])
        spec = apply_metadata(spec_for(config, label), meta)
        return BuildPlan(lambda: SmallViT(config), spec.display_name, lambda module: spec, True)
