"""vitexplorer's own :class:`~vitexplorer.core.vit.SmallViT`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from vitexplorer.core.families.base import Part, ViTAdapter, resample_positions
from vitexplorer.core.vit import SelfAttention, SmallViT


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
        return [block.attn for block in self.module.blocks]

    def capturing_forward(self, attention: nn.Module, sink: Any) -> Callable[..., Any]:
        from vitexplorer.core.capture import explicit_attention

        assert isinstance(attention, SelfAttention)

        def forward(x: torch.Tensor) -> torch.Tensor:
            return explicit_attention(
                x,
                attention.qkv.weight,
                attention.qkv.bias,
                attention.proj.weight,
                attention.proj.bias,
                attention.num_heads,
                sink,
            )

        return forward

    def position_embeddings(self) -> torch.Tensor:
        return self.module.pos_embed[0]

    def patch_filters(self) -> torch.Tensor:
        return self.module.patch_embed.weight

    def randomisation_groups(self) -> tuple[list[Part], list[nn.Module], list[Part]]:
        m = self.module
        return [m.norm, m.head], list(m.blocks), [m.patch_embed, m.cls_token, m.pos_embed]


ADAPTER = SmallViTAdapter
