"""The substrate of the propagation methods: every family's blocks described as one pre-norm
block, and the explicit forward with the plain operations equal to the model's own logits."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.conftest import TINY, tiny_hf_config
from vitexplorer.core.models.blocks import (
    BlockParts,
    Ops,
    explicit_forward,
    model_block_parts,
    patch_embedding,
)
from vitexplorer.core.models.families.family import UnsupportedModel
from vitexplorer.core.models.families.registry import adapter_for
from vitexplorer.core.models.vit import SmallViT

timm = pytest.importorskip("timm")
transformers = pytest.importorskip("transformers")

TIMM = dict(img_size=32, patch_size=8, depth=2, num_heads=2, embed_dim=32, num_classes=10)
TIMM_KINDS = {
    "timm": ("vit_tiny_patch16_224", {}),
    "timm layer scale": ("vit_tiny_patch16_224", dict(init_values=0.5)),
    "timm distilled": ("deit_tiny_distilled_patch16_224", {}),
    "timm registers": ("vit_tiny_patch16_224", dict(reg_tokens=2, no_embed_class=True)),
    "timm pooling": ("vit_tiny_patch16_224", dict(class_token=False, global_pool="avg")),
}
HF_KINDS = {
    "hf vit": ("ViTForImageClassification", "ViTConfig", dict(num_labels=10)),
    "hf deit": ("DeiTForImageClassificationWithTeacher", "DeiTConfig", dict(num_labels=10)),
    "hf dinov2": ("Dinov2ForImageClassification", "Dinov2Config", dict(num_labels=10)),
    "hf dinov2 registers": (
        "Dinov2WithRegistersModel",
        "Dinov2WithRegistersConfig",
        dict(num_register_tokens=2),
    ),
    "hf clip": ("CLIPVisionModelWithProjection", "CLIPVisionConfig", dict(projection_dim=16)),
}
KINDS = ["small_vit", "torchvision", *TIMM_KINDS, *HF_KINDS]


def _shake(model: nn.Module) -> nn.Module:
    """Parameters off their initial values (zero biases, unit norms, zero heads)."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def tiny_model(kind: str, seed: int = 0) -> nn.Module:
    """A tiny random model of ``kind`` (32 px, 8 px patches, width 32, two layers, two heads)."""
    torch.manual_seed(seed)
    if kind == "small_vit":
        return _shake(SmallViT(TINY))
    if kind == "torchvision":
        from torchvision.models.vision_transformer import VisionTransformer

        return _shake(VisionTransformer(32, 8, 2, 2, 32, 64, num_classes=10))
    if kind in TIMM_KINDS:
        name, extra = TIMM_KINDS[kind]
        return _shake(timm.create_model(name, pretrained=False, **TIMM, **extra))
    from vitexplorer.core.models.families.hf_model import HFClassifier

    cls, config_kind, extra = HF_KINDS[kind]
    if "Dinov2" in config_kind:
        extra = {**extra, "mlp_ratio": 2}
    config = tiny_hf_config(config_kind, **extra)
    model = HFClassifier(getattr(transformers, cls)(config), cls, 32)
    if adapter_for(model).get_classifier() is None:  # an image tower: a classifier added
        adapter_for(model).reset_classifier(10)
    return _shake(model)


@pytest.mark.parametrize("kind", KINDS)
def test_the_explicit_forward_equals_the_models_own(kind: str) -> None:
    model = tiny_model(kind)
    adapter = adapter_for(model)
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        own = model(images)
        ours = explicit_forward(adapter, images, Ops())
    assert own.shape == ours.shape == (2, 10)
    assert torch.allclose(ours, own, atol=1e-5, rtol=0), (ours - own).abs().max()
    parts = model_block_parts(adapter)
    assert len(parts) == 2 and all(isinstance(p, BlockParts) for p in parts)
    assert patch_embedding(adapter).weight is adapter.patch_filters()


@pytest.mark.parametrize("kind", ["small_vit", "torchvision", "timm registers", "hf vit"])
def test_the_explicit_forward_takes_a_rectangular_grid(kind: str) -> None:
    model = tiny_model(kind)
    adapter = adapter_for(model)
    rectangle = torch.randn(2, 3, 24, 48, generator=torch.Generator().manual_seed(2))  # 3x6
    with torch.no_grad():
        own = adapter.forward_parts(rectangle)
        ours = explicit_forward(adapter, rectangle, Ops(), any_size=True)
    assert torch.allclose(ours, own, atol=1e-5, rtol=0)


def test_a_rule_set_changes_what_the_ops_compute() -> None:
    """The forward really runs through the ops: a changed softmax changes the logits."""

    class Uniform(Ops):
        def softmax(self, scores: torch.Tensor) -> torch.Tensor:
            return torch.full_like(scores, 1.0 / scores.shape[-1])

    model = tiny_model("timm")
    images = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        plain = explicit_forward(adapter_for(model), images)
        uniform = explicit_forward(adapter_for(model), images, Uniform())
    assert (plain - uniform).abs().max() > 1e-3


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (dict(qk_norm=True), "q_norm is a LayerNorm"),
        (dict(scale_attn_norm=True), "norm after the heads is a LayerNorm"),
        (dict(scale_mlp_norm=True), "MLP's norm is a LayerNorm"),
        (dict(mlp_layer=timm.layers.SwiGLU), "MLP is SwiGLU"),
        (dict(global_pool="map"), "attention pool"),
    ],
)
def test_parts_the_block_cannot_express_are_refused_in_one_line(extra: dict, says: str) -> None:
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, **TIMM, **extra).eval()
    with pytest.raises(UnsupportedModel, match=says) as caught:
        explicit_forward(adapter_for(model), torch.randn(1, 3, 32, 32))
    assert "\n" not in str(caught.value)


def test_a_swiglu_dinov2_and_a_wrapped_model_are_refused() -> None:
    from vitexplorer.core.models.families.hf_model import HFClassifier

    config = tiny_hf_config("Dinov2Config", use_swiglu_ffn=True, num_labels=3)
    dino = HFClassifier(
        transformers.Dinov2ForImageClassification(config), "Dinov2ForImageClassification", 32
    )
    with pytest.raises(UnsupportedModel, match="gated"):
        model_block_parts(adapter_for(dino))
    from vitexplorer.core.models.families.custom import WrappedViT

    inner = tiny_model("timm")
    wrapped = WrappedViT(inner, [b.attn for b in inner.blocks], 1)
    with pytest.raises(UnsupportedModel, match="wrapped VisionTransformer") as caught:
        explicit_forward(adapter_for(wrapped), torch.randn(1, 3, 32, 32))
    assert "\n" not in str(caught.value)
