"""Hugging Face transformers' ViTs as vitexplorer sees them: the supported classes, the
:class:`HFClassifier` wrapper whose forward returns a logits tensor, and the adapter.

An HF model returns a ``ModelOutput``; vitexplorer calls ``module(images)`` and wants a logits
tensor, so the model is wrapped: its forward returns (batch, classes), or (batch, 0) for an image
tower without a classifier. Capture does not depend on ``attn_implementation``: each
self-attention module's forward is swapped for an explicit one (q/k/v projections, scaled scores
to the sink, weights @ v, output projection), as transformers' ``eager_attention_forward``
computes it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from vitexplorer.core.models.families.base import Part, ViTAdapter, reset_module_parameters
from vitexplorer.core.models.families.family import UnsupportedModel

if TYPE_CHECKING:
    from vitexplorer.core.models.blocks import BlockParts, Ops


@dataclass(frozen=True)
class Kind:
    """What vitexplorer knows of one supported transformers class."""

    model_type: str  # the config's model_type
    backbone: str  # the attribute holding the encoder model; "" when the model is the encoder
    pool: str  # "cls", "cls_dist" (DeiT's two heads), "cls_mean" (DINOv2's head), "cls_proj"
    classifier: bool  # whether the class has a classifier of its own


KINDS: dict[str, Kind] = {
    "ViTForImageClassification": Kind("vit", "vit", "cls", True),
    "ViTModel": Kind("vit", "", "cls", False),
    "DeiTForImageClassification": Kind("deit", "deit", "cls", True),
    "DeiTForImageClassificationWithTeacher": Kind("deit", "deit", "cls_dist", True),
    "DeiTModel": Kind("deit", "", "cls", False),
    "Dinov2ForImageClassification": Kind("dinov2", "dinov2", "cls_mean", True),
    "Dinov2Model": Kind("dinov2", "", "cls_mean", False),
    "Dinov2WithRegistersForImageClassification": Kind(
        "dinov2_with_registers", "dinov2_with_registers", "cls_mean", True
    ),
    "Dinov2WithRegistersModel": Kind("dinov2_with_registers", "", "cls_mean", False),
    "CLIPVisionModel": Kind("clip_vision_model", "", "cls", False),
    "CLIPVisionModelWithProjection": Kind("clip_vision_model", "vision_model", "cls_proj", False),
}
_WINDOWED = {
    "swin", "swinv2", "swin2sr", "donut-swin", "maskformer-swin", "nat", "dinat", "hiera",
    "focalnet", "pvt", "pvt_v2", "segformer", "mvit", "efficientformer", "levit",
}  # fmt: skip
_CONVOLUTIONAL = {"resnet", "convnext", "convnextv2", "regnet", "efficientnet", "mobilenet_v2"}


def unsupported_class(architecture: str, model_type: str | None = None) -> str:
    if model_type in _WINDOWED:
        return (
            f"{architecture} ({model_type}) uses windowed or hierarchical attention, which is not "
            f"a token-by-token matrix: windowed or hierarchical attention is not supported yet"
        )
    if model_type in _CONVOLUTIONAL:
        return f"{architecture} ({model_type}) is a convolutional network, not a ViT"
    return (
        f"{architecture} is not a Hugging Face model vitexplorer supports; supported: "
        f"{', '.join(KINDS)}"
    )


# --- the wrapper ---------------------------------------------------------------------------------


class HFClassifier(nn.Module):
    """An HF vision model whose forward returns a logits tensor (batch, classes).

    DeiT's distilled classifier averages two linear heads, one on the class token and one on the
    distillation token; that is one linear map of both tokens' features, so the wrapper holds it
    as one ``head`` (the two heads' weights side by side, halved) and fine-tuning replaces it
    whole. An image tower without a classifier returns (batch, 0) until a head is added."""

    def __init__(self, model: nn.Module, architecture: str, input_size: int) -> None:
        super().__init__()
        if architecture not in KINDS:
            raise UnsupportedModel(unsupported_class(architecture))
        self.model: Any = model  # its submodules are found by name: HF's classes differ
        self.architecture = architecture
        self.kind = KINDS[architecture]
        self.input_size = input_size  # the side of the images it is analysed at (px)
        self.head: nn.Linear | None = None  # the classifier, where the HF model holds none
        if self.kind.pool == "cls_dist":
            self.head = _fused_heads(model.cls_classifier, model.distillation_classifier)
            model.cls_classifier = nn.Identity()
            model.distillation_classifier = nn.Identity()

    @property
    def backbone(self) -> Any:
        """The encoder model (embeddings, layers, final norm)."""
        return getattr(self.model, self.kind.backbone) if self.kind.backbone else self.model

    @property
    def config(self) -> Any:
        return self.model.config

    @property
    def num_registers(self) -> int:
        return int(getattr(self.config, "num_register_tokens", 0) or 0)

    def forward_kwargs(self) -> dict[str, Any]:
        """Inputs of another size than the config's interpolate the position embeddings
        (DINOv2 always does)."""
        return (
            {} if self.kind.model_type.startswith("dinov2") else {"interpolate_pos_encoding": True}
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.kind.classifier and self.head is None:
            return self.model(pixel_values=images, **self.forward_kwargs()).logits
        out = self.backbone(pixel_values=images, **self.forward_kwargs())
        if self.head is None:
            return out.last_hidden_state.new_zeros((images.shape[0], 0))
        tokens = out.last_hidden_state
        if self.kind.model_type == "clip_vision_model":  # CLIP norms only the pooled token
            tokens = self.backbone.post_layernorm(tokens)
        return self.head(self.pool(tokens))

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        """The features the classifier reads, from the final norm's output."""
        pool = self.kind.pool
        if pool == "cls_dist":
            return torch.cat([tokens[:, 0], tokens[:, 1]], dim=-1)
        if pool == "cls_mean":
            patches = tokens[:, 1 + self.num_registers :]
            return torch.cat([tokens[:, 0], patches.mean(dim=1)], dim=-1)
        if pool == "cls_proj":
            return self.model.visual_projection(tokens[:, 0])
        return tokens[:, 0]

    @property
    def feature_width(self) -> int:
        """The width of what :meth:`pool` returns."""
        width = self.config.hidden_size
        if self.kind.pool in ("cls_dist", "cls_mean"):
            return 2 * width
        if self.kind.pool == "cls_proj":
            return self.model.visual_projection.out_features
        return width


def _fused_heads(cls_head: object, dist_head: object) -> nn.Linear | None:
    """One linear map equal to ``(cls_head(a) + dist_head(b)) / 2`` of ``cat(a, b)`` (its
    weights are written whole: none is initialised first)."""
    if not (isinstance(cls_head, nn.Linear) and isinstance(dist_head, nn.Linear)):
        return None
    width, classes = cls_head.in_features, cls_head.out_features
    head = nn.utils.skip_init(nn.Linear, 2 * width, classes, device=cls_head.weight.device)
    with torch.no_grad():
        head.weight.copy_(torch.cat([cls_head.weight, dist_head.weight], dim=1) / 2)
        head.bias.copy_((cls_head.bias + dist_head.bias) / 2)
    return head


class _MaskFree(nn.Module):
    """A CLIP encoder layer called as ``layer(tokens)`` (its forward wants a mask argument)."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.layer(tokens, None)


# --- the adapter ---------------------------------------------------------------------------------


class HFAdapter(ViTAdapter):
    family = "hf"
    module: HFClassifier

    @classmethod
    def matches(cls, module: nn.Module) -> bool:
        return isinstance(module, HFClassifier)

    @property
    def prefix_kinds(self) -> tuple[str, ...]:
        if self.module.kind.model_type == "deit":
            return ("cls", "dist")
        return ("cls",) + ("reg",) * self.module.num_registers

    @property
    def _clip(self) -> bool:
        return self.module.kind.model_type == "clip_vision_model"

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        backbone = self.module.backbone
        images = images.to(self.patch_filters().dtype)
        x = backbone.embeddings(images, **self.module.forward_kwargs())
        return backbone.pre_layrnorm(x) if self._clip else x

    def _layers(self) -> list[nn.Module]:
        backbone = self.module.backbone
        if self.module.kind.model_type.startswith("dinov2"):
            return list(backbone.encoder.layer)
        return list(backbone.encoder.layers if self._clip else backbone.layers)

    def blocks(self) -> list[nn.Module]:
        layers = self._layers()
        return [_MaskFree(layer) for layer in layers] if self._clip else layers

    def final_norm(self) -> nn.Module:
        backbone = self.module.backbone
        return backbone.post_layernorm if self._clip else backbone.layernorm

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.module.pool(tokens)

    def get_classifier(self) -> nn.Linear | None:
        if self.module.head is not None or not self.module.kind.classifier:
            return self.module.head
        head = self.module.model.classifier
        return head if isinstance(head, nn.Linear) else None

    def set_classifier(self, head: nn.Linear) -> None:
        m = self.module
        if m.kind.classifier and m.kind.pool != "cls_dist":
            m.model.classifier = head
            m.model.num_labels = head.out_features
            m.config.num_labels = head.out_features
        else:
            m.head = head

    def reset_classifier(self, num_classes: int) -> nn.Linear:
        """A zero-initialised classifier; an image tower without one gains one on its pooled
        features (CLIP: the projected embedding; DINOv2: class token and mean patch, as in
        HF's own DINOv2 classifier)."""
        if self.get_classifier() is not None:
            return super().reset_classifier(num_classes)
        device = self.patch_filters().device
        head = nn.Linear(self.module.feature_width, num_classes, device=device)
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)
        self.set_classifier(head)
        return head

    def attention_modules(self) -> list[nn.Module]:
        name = "self_attn" if self._clip else "attention"
        return [getattr(layer, name) for layer in self._layers()]

    def capturing_forward(self, attention: Any, sink: Any) -> Callable[..., Any]:
        # attention: an HF attention module, whose projections are found by name
        out_proj = attention.out_proj if self._clip else attention.o_proj
        scaling = attention.scale if self._clip else attention.scaling
        dropout = attention.dropout if self._clip else attention.attention_dropout
        head_dim = attention.head_dim

        def forward(hidden_states: torch.Tensor, attention_mask=None, **kwargs):
            # what the module's forward does with HF's eager_attention_forward, scores to the sink
            input_shape = hidden_states.shape[:-1]
            hidden_shape = (*input_shape, -1, head_dim)
            q = attention.q_proj(hidden_states).view(hidden_shape).transpose(1, 2)
            k = attention.k_proj(hidden_states).view(hidden_shape).transpose(1, 2)
            v = attention.v_proj(hidden_states).view(hidden_shape).transpose(1, 2)
            bias = attention_mask
            if bias is not None and bias.dtype == torch.bool:  # sdpa's masks: True attends
                bias = torch.zeros_like(bias, dtype=q.dtype).masked_fill_(
                    ~bias, torch.finfo(q.dtype).min
                )
            weights = sink.weights(q, k, scaling, scale_scores=True, bias=bias)
            if attention.training and dropout:
                weights = nn.functional.dropout(weights, p=dropout, training=True)
            out = torch.matmul(weights, v).transpose(1, 2).reshape(*input_shape, -1)
            return out_proj(out.contiguous()), weights

        return forward

    def block_parts(self, block: nn.Module) -> BlockParts:
        """A ViT/DeiT, DINOv2 or CLIP encoder layer: its two LayerNorms, q/k/v projections
        (the scale multiplies the scores, as transformers' eager attention does), output
        projection, DINOv2's layer scales and the MLP; DINOv2's SwiGLU MLP is refused."""
        from vitexplorer.core.models.blocks import BlockParts, check_norm, linear_of

        layer: Any = block.layer if isinstance(block, _MaskFree) else block
        if self._clip:
            attention, out, scaling = (
                layer.self_attn,
                layer.self_attn.out_proj,
                layer.self_attn.scale,
            )
            norms = (layer.layer_norm1, layer.layer_norm2)
        else:
            attention, out, scaling = (
                layer.attention,
                layer.attention.o_proj,
                layer.attention.scaling,
            )
            norms = (
                (layer.norm1, layer.norm2)
                if hasattr(layer, "norm1")
                else (layer.layernorm_before, layer.layernorm_after)
            )
        mlp = layer.mlp
        if not hasattr(mlp, "fc1"):
            raise UnsupportedModel(f"its MLP is {type(mlp).__name__} (gated), not fc1, act, fc2")
        scales = [
            getattr(getattr(layer, name, None), "lambda1", None)
            for name in ("layer_scale1", "layer_scale2")
        ]
        return BlockParts(
            norm1=check_norm(norms[0], "its first norm"),
            q=linear_of(attention.q_proj),
            k=linear_of(attention.k_proj),
            v=linear_of(attention.v_proj),
            num_heads=attention.q_proj.out_features // attention.head_dim,
            scale=scaling,
            scale_scores=True,
            out=linear_of(out),
            norm2=check_norm(norms[1], "its second norm"),
            fc1=linear_of(mlp.fc1),
            act=mlp.activation_fn,
            fc2=linear_of(mlp.fc2),
            ls1=scales[0],
            ls2=scales[1],
        )

    def explicit_head(self, tokens: torch.Tensor, ops: Ops) -> torch.Tensor:
        """The final norm and the pooling; CLIP's image-text projection through ``ops``."""
        x = ops.norm(self.final_norm(), tokens)
        if self.module.kind.pool == "cls_proj":
            projection = self.module.model.visual_projection
            return ops.linear(x[:, 0], projection.weight, projection.bias, role="projection")
        return self.module.pool(x)

    @torch.no_grad()
    def position_embeddings(self) -> torch.Tensor:
        """The position embeddings that images of the analysed size receive, (tokens, width):
        interpolated, as the model does, when that size is not the config's. DINOv2's register
        tokens receive none: their rows are zeros."""
        m = self.module
        embeddings = m.backbone.embeddings
        side = m.input_size
        patches = (side // m.config.patch_size) ** 2
        prefix = 2 if m.kind.model_type == "deit" else 1
        shape = (1, prefix + patches, m.config.hidden_size)
        probe = torch.empty(shape, device="meta")
        positions = embeddings.interpolate_pos_encoding(probe, side, side)[0]
        if m.num_registers:
            zeros = positions.new_zeros((m.num_registers, positions.shape[1]))
            positions = torch.cat([positions[:1], zeros, positions[1:]])
        return positions

    def patch_filters(self) -> torch.Tensor:
        embeddings = self.module.backbone.embeddings
        if self._clip:
            return embeddings.patch_embedding.weight
        return embeddings.patch_embeddings.projection.weight

    def reinitialise(self, part: nn.Module, std: float) -> None:
        layerscale = getattr(self.module.config, "layerscale_value", 1.0)

        def special(sub: nn.Module) -> bool:  # DINOv2's layer scale starts at its config value
            if type(sub).__name__.endswith("LayerScale"):
                nn.init.constant_(cast(torch.Tensor, sub.lambda1), layerscale)
                return True
            return False

        reset_module_parameters(part, std, special)

    def randomisation_groups(self) -> tuple[list[Part], list[nn.Module], list[Part]]:
        m = self.module
        backbone = m.backbone
        head: list[Part] = [self.final_norm()]
        classifier = self.get_classifier()
        if classifier is not None:
            head.append(classifier)
        if m.kind.pool == "cls_proj":
            head.append(m.model.visual_projection)
        if getattr(backbone, "pooler", None) is not None:  # a ViTModel built with its pooler
            head.append(backbone.pooler)
        embedding: list[Part] = [backbone.embeddings]
        if self._clip:
            embedding.append(backbone.pre_layrnorm)
        return head, self._layers(), embedding
