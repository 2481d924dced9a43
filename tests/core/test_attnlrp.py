"""AttnLRP (Achtibat et al., ICML 2024) against lxt 2.x's efficient mode with zennit's gamma
rules on torchvision's ViT, done exactly as lxt's ViT example does it (``monkey_patch`` of
torchvision's vision_transformer, ``monkey_patch_zennit``, a ``LayerMapComposite`` of Gamma on
Conv2d and Linear, one image per backward); on every family; the model left as it was."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from tests.core.lrp_oracles import loaded, normalised_difference, state_of, vit_b_16
from tests.core.test_blocks import KINDS, tiny_model
from vitexplorer.core.explain.attribution import patch_sums
from vitexplorer.core.explain.maps import attribute
from vitexplorer.core.explain.method import MethodOptions

pytest.importorskip("lxt")
pytest.importorskip("zennit")


@contextmanager
def _lxt_importable() -> Iterator[None]:
    """lxt.efficient imports its BERT model, which imports find_pruneable_heads_and_indices
    from transformers.pytorch_utils; transformers 5 removed it, and nothing here calls it, so a
    stub under that name lets the import succeed (removed again afterwards)."""
    import transformers.pytorch_utils as pytorch_utils

    stubbed = not hasattr(pytorch_utils, "find_pruneable_heads_and_indices")
    if stubbed:
        pytorch_utils.find_pruneable_heads_and_indices = lambda *args, **kwargs: None
    try:
        yield
    finally:
        if stubbed:
            del pytorch_utils.find_pruneable_heads_and_indices


@contextmanager
def _restoring(classes: tuple, names=("forward", "original_forward", "backward")):
    """The classes' methods of these names as they were, after the block (lxt patches torch's
    own classes, nn.GELU, nn.LayerNorm, nn.MultiheadAttention, and zennit's BasicHook)."""
    saved = {(c, n): c.__dict__[n] for c in classes for n in names if n in c.__dict__}
    try:
        yield
    finally:
        for c in classes:
            for n in names:
                if (c, n) in saved:
                    setattr(c, n, saved[(c, n)])
                elif n in c.__dict__:
                    delattr(c, n)


@contextmanager
def lxt_patches() -> Iterator[None]:
    """lxt's patches of torchvision's ViT and of zennit within the block, as lxt's ViT
    example applies them, undone afterwards; vitexplorer's maps are computed outside it."""
    with _lxt_importable():
        from lxt.efficient import monkey_patch, monkey_patch_zennit
        from torchvision.models import vision_transformer
        from zennit.core import BasicHook

        with _restoring((nn.GELU, nn.LayerNorm, nn.MultiheadAttention, BasicHook)):
            monkey_patch(vision_transformer)
            monkey_patch_zennit()
            yield


@contextmanager
def lxt_attnlrp_patches() -> Iterator[None]:
    """lxt's AttnLRP patches for a transformers ViT (the rules of its language-model maps):
    its LayerNorm patch, the identity rule on transformers' GELU, its attention wrapper
    (``wrap_attention_forward``: the uniform rule on q k^T and weights @ v) around the eager
    attention, and zennit's hooks in lxt's gradient x input form; undone afterwards."""
    import transformers.models.vit.modeling_vit as modeling_vit
    from transformers.activations import GELUActivation

    with _lxt_importable():
        from lxt.efficient import monkey_patch_zennit
        from lxt.efficient.patches import (
            layer_norm_forward,
            non_linear_forward,
            patch_method,
            wrap_attention_forward,
        )
        from zennit.core import BasicHook

        eager = modeling_vit.eager_attention_forward
        with _restoring((nn.LayerNorm, GELUActivation, BasicHook)):
            patch_method(layer_norm_forward, nn.LayerNorm)
            patch_method(non_linear_forward, GELUActivation, keep_original=True)
            modeling_vit.eager_attention_forward = wrap_attention_forward(eager)
            monkey_patch_zennit()
            try:
                yield
            finally:
                modeling_vit.eager_attention_forward = eager


def lxt_relevance(
    module: nn.Module, images: torch.Tensor, targets, gamma, conv_gamma, patches=lxt_patches
):
    """lxt's ViT example, one image at a time: (batch, H, W) relevance summed over channels."""
    import zennit.rules as z_rules
    from zennit.composites import LayerMapComposite

    model = copy.deepcopy(module).eval()
    for param in model.parameters():
        param.requires_grad = False
    heatmaps = []
    with patches():
        for image, target in zip(images, targets, strict=True):
            composite = LayerMapComposite(
                [(nn.Conv2d, z_rules.Gamma(conv_gamma)), (nn.Linear, z_rules.Gamma(gamma))]
            )
            composite.register(model)
            x = image[None].clone().requires_grad_()
            y = model(x)
            y = y if isinstance(y, torch.Tensor) else y.logits
            y[0, int(target)].backward()
            composite.remove()
            heatmaps.append((x * x.grad).sum(1)[0].detach().numpy())
    return np.stack(heatmaps)


def _tiny_torchvision():
    from torchvision.models.vision_transformer import VisionTransformer

    torch.manual_seed(2)
    module = VisionTransformer(32, 8, num_layers=3, num_heads=2, hidden_dim=32, mlp_dim=64)
    module.heads.head = nn.Linear(32, 10)  # random: torchvision zeroes its head
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return loaded(module.eval())


@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize(("gamma", "conv_gamma"), [(0.05, 100.0), (0.25, 0.1)])
def test_attnlrp_equals_lxt_on_a_small_torchvision_vit(batch, gamma, conv_gamma):
    model = _tiny_torchvision()
    images = torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(batch))
    options = MethodOptions(gamma=gamma, conv_gamma=conv_gamma)
    ours = attribute("attnlrp", model, images, options)
    theirs = lxt_relevance(model.module, images, ours.targets, gamma, conv_gamma)
    assert normalised_difference(ours.pixels, theirs) < 1e-5
    with torch.no_grad():
        assert (ours.targets == model.module(images).argmax(1).numpy()).all()


def test_the_lxt_oracle_notices_a_wrong_gamma():
    forwards = (nn.GELU.forward, nn.LayerNorm.forward, nn.MultiheadAttention.forward)
    model = _tiny_torchvision()
    images = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    ours = attribute("attnlrp", model, images, MethodOptions(gamma=0.05, conv_gamma=100.0))
    for gamma, conv_gamma in [(0.5, 100.0), (0.05, 0.1)]:
        theirs = lxt_relevance(model.module, images, ours.targets, gamma, conv_gamma)
        assert normalised_difference(ours.pixels, theirs) > 1e-3
    # lxt's patches of torch's classes are undone
    assert (nn.GELU.forward, nn.LayerNorm.forward, nn.MultiheadAttention.forward) == forwards
    assert not hasattr(nn.GELU, "original_forward")


@pytest.mark.slow
def test_attnlrp_equals_lxt_on_vit_b_16():
    model = vit_b_16()
    images = torch.randn(4, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    options = MethodOptions()  # gamma 0.05, conv_gamma 100
    for batch in (images[:1], images):
        ours = attribute("attnlrp", model, batch, options)
        theirs = lxt_relevance(model.module, batch, ours.targets, 0.05, 100.0)
        assert normalised_difference(ours.pixels, theirs) < 1e-5
        assert ours.maps.shape == (len(batch), 14, 14)


@pytest.mark.parametrize("kind", KINDS)
def test_attnlrp_runs_on_every_family_and_leaves_the_model_as_it_was(kind: str) -> None:
    module = tiny_model(kind)
    module.train()
    model = loaded(module)
    before = state_of(module)
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = module.eval()(images)
    module.train()
    result = attribute("attnlrp", model, images, MethodOptions(target_class=4))
    assert result.maps.shape == (2, 4, 4) and result.pixels.shape == (2, 32, 32)
    assert np.isfinite(result.pixels).all() and np.abs(result.pixels).max() > 0
    assert np.allclose(result.maps, patch_sums(result.pixels, (4, 4)), atol=1e-5)
    assert (result.targets == 4).all()
    assert state_of(module) == before
    with torch.no_grad():
        assert torch.equal(module.eval()(images), logits)
    alone = attribute("attnlrp", model, images[1:], MethodOptions(target_class=4))
    assert normalised_difference(alone.pixels[0], result.pixels[1]) < 1e-5
    cp = attribute("cp-lrp", model, images, MethodOptions(target_class=4))
    assert normalised_difference(cp.pixels, result.pixels) > 1e-3  # the gamma rules matter


@pytest.mark.parametrize("kind", ["torchvision", "timm pooling", "hf clip"])
def test_attnlrp_on_a_rectangular_grid(kind: str) -> None:
    model = loaded(tiny_model(kind))
    rectangle = torch.randn(1, 3, 48, 24, generator=torch.Generator().manual_seed(4))
    result = attribute("attnlrp", model, rectangle, MethodOptions(), grid=(6, 3))
    assert result.maps.shape == (1, 6, 3) and np.abs(result.maps).max() > 0


def test_attnlrp_refuses_a_swiglu_model_in_one_line() -> None:
    timm = pytest.importorskip("timm")
    module = timm.create_model(
        "vit_tiny_patch16_224", img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2,
        num_classes=10, mlp_layer=timm.layers.SwiGLU,
    ).eval()  # fmt: skip
    with pytest.raises(ValueError, match="attnlrp needs the parts") as caught:
        attribute("attnlrp", loaded(module), torch.randn(1, 3, 32, 32), MethodOptions())
    assert "\n" not in str(caught.value) and "SwiGLU" in str(caught.value)


@pytest.mark.parametrize("batch", [1, 4])
def test_the_attnlrp_attention_rule_equals_lxt_on_a_transformers_vit(batch: int) -> None:
    """lxt's own attention wrapper and zennit's gamma on every linear layer (the projections
    are modules in transformers' ViT) against ``attention_rule="attnlrp"``."""
    from tests.conftest import tiny_hf_config
    from vitexplorer.core.models.families.hf_model import HFClassifier

    transformers = pytest.importorskip("transformers")
    torch.manual_seed(5)
    config = tiny_hf_config(num_labels=10, num_hidden_layers=3)
    config._attn_implementation = "eager"
    inner = transformers.ViTForImageClassification(config).eval()
    with torch.no_grad():
        for p in inner.parameters():
            p.add_(0.1 * torch.randn_like(p))
    model = loaded(HFClassifier(inner, "ViTForImageClassification", 32))
    images = torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(batch))
    options = MethodOptions(gamma=0.1, conv_gamma=100.0, attention_rule="attnlrp")
    ours = attribute("attnlrp", model, images, options)

    theirs = lxt_relevance(inner, images, ours.targets, 0.1, 100.0, lxt_attnlrp_patches)
    assert normalised_difference(ours.pixels, theirs) < 1e-5
    cp = attribute("attnlrp", model, images, replace(options, attention_rule="cp"))
    assert normalised_difference(cp.pixels, ours.pixels) > 1e-3  # the rules differ
