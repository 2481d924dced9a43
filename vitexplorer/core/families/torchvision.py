"""torchvision's ``VisionTransformer`` (``vit_b_16`` ... ``vit_h_14``), by public names only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torchvision.models import VisionTransformer

from vitexplorer.core.families.base import (
    Part,
    ViTAdapter,
    resample_positions,
    reset_module_parameters,
)


class TorchvisionAdapter(ViTAdapter):
    family = "torchvision"
    module: VisionTransformer

    @classmethod
    def matches(cls, module: nn.Module) -> bool:
        return isinstance(module, VisionTransformer)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        m = self.module
        x = m.conv_proj(images)
        grid = (x.shape[-2], x.shape[-1])
        x = x.flatten(2).transpose(1, 2)  # (batch, patches, width), row-major
        x = torch.cat([m.class_token.expand(x.shape[0], -1, -1), x], dim=1)
        # another input size (a rectangle): the position embeddings resized to its grid
        positions = resample_positions(m.encoder.pos_embedding, grid, 1)
        return m.encoder.dropout(x + positions)

    def blocks(self) -> list[nn.Module]:
        return list(self.module.encoder.layers)

    def final_norm(self) -> nn.Module:
        return self.module.encoder.ln

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        x = tokens[:, 0]
        heads = self.module.heads
        if hasattr(heads, "pre_logits"):  # torchvision's optional representation layer
            x = heads.act(heads.pre_logits(x))
        return x

    def get_classifier(self) -> nn.Linear:
        return self.module.heads.head

    def set_classifier(self, head: nn.Linear) -> None:
        self.module.heads.head = head
        self.module.num_classes = head.out_features

    def attention_modules(self) -> list[nn.Module]:
        found = [layer.self_attention for layer in self.module.encoder.layers]
        for module in found:
            if module.in_proj_weight is None:
                raise ValueError("attention capture needs a packed qkv projection")
        return found

    def capturing_forward(self, attention: nn.Module, sink: Any) -> Callable[..., Any]:
        from vitexplorer.core.capture import explicit_attention

        assert isinstance(attention, nn.MultiheadAttention)

        def forward(query, key, value, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
            if not (query is key is value):
                raise RuntimeError("attention capture supports self-attention only")
            x = query if attention.batch_first else query.transpose(0, 1)
            out = explicit_attention(
                x,
                attention.in_proj_weight,
                attention.in_proj_bias,
                attention.out_proj.weight,
                attention.out_proj.bias,
                attention.num_heads,
                sink,
            )
            return (out if attention.batch_first else out.transpose(0, 1)), None

        return forward

    def position_embeddings(self) -> torch.Tensor:
        return self.module.encoder.pos_embedding[0]

    def patch_filters(self) -> torch.Tensor:
        return self.module.conv_proj.weight

    def reinitialise(self, part: nn.Module, std: float) -> None:
        reset_module_parameters(part, std, _reset_attention)

    def randomisation_groups(self) -> tuple[list[Part], list[nn.Module], list[Part]]:
        m = self.module
        head: list[Part] = [m.encoder.ln, m.heads]
        embedding: list[Part] = [m.conv_proj, m.class_token, m.encoder.pos_embedding]
        return head, self.blocks(), embedding


def _reset_attention(sub: nn.Module) -> bool:
    """What ``nn.MultiheadAttention`` does to reset itself (its method is private): Xavier for
    the packed projection, zero biases. Its output projection resets itself after it."""
    if not isinstance(sub, nn.MultiheadAttention) or sub.in_proj_weight is None:
        return False
    nn.init.xavier_uniform_(sub.in_proj_weight)
    if sub.in_proj_bias is not None:
        nn.init.constant_(sub.in_proj_bias, 0.0)
        nn.init.constant_(sub.out_proj.bias, 0.0)
    return True


ADAPTER = TorchvisionAdapter
