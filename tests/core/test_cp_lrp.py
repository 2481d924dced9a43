"""CP-LRP (Ali et al., ICML 2022) against a forward written here by hand with the attention
weights and the LayerNorms' deviation detached, on a small timm ViT and a random torchvision
ViT-B/16; on every family, any prefix tokens, rectangular grids and batches; the model left as
it was."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.core.lrp_oracles import loaded, normalised_difference, state_of, vit_b_16
from tests.core.test_blocks import KINDS, tiny_model
from vitexplorer.core.explain.attribution import patch_sums
from vitexplorer.core.explain.maps import attribute
from vitexplorer.core.explain.method import MethodOptions, get

timm = pytest.importorskip("timm")


def _ln(norm: torch.nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    """A LayerNorm with its standard deviation detached."""
    mean = x.mean(-1, keepdim=True)
    std = ((x - mean) ** 2).mean(-1, keepdim=True).add(norm.eps).sqrt()
    return (x - mean) / std.detach() * norm.weight + norm.bias


def _attention(x, qkv_w, qkv_b, proj, heads):
    b, n, c = x.shape
    d = c // heads
    q, k, v = F.linear(x, qkv_w, qkv_b).reshape(b, n, 3, heads, d).permute(2, 0, 3, 1, 4)
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), dim=-1).detach()
    return proj((weights @ v).transpose(1, 2).reshape(b, n, c))


def torchvision_by_hand(m, images: torch.Tensor) -> torch.Tensor:
    x = m.conv_proj(images).flatten(2).transpose(1, 2)
    x = torch.cat([m.class_token.expand(len(x), -1, -1), x], dim=1) + m.encoder.pos_embedding
    for layer in m.encoder.layers:
        a = layer.self_attention
        x = x + _attention(_ln(layer.ln_1, x), a.in_proj_weight, a.in_proj_bias, a.out_proj, 12)
        x = x + layer.mlp(_ln(layer.ln_2, x))
    return m.heads(_ln(m.encoder.ln, x)[:, 0])


def timm_by_hand(m, images: torch.Tensor) -> torch.Tensor:
    x = m._pos_embed(m.patch_embed(images))
    for block in m.blocks:
        a = block.attn
        x = x + _attention(_ln(block.norm1, x), a.qkv.weight, a.qkv.bias, a.proj, a.num_heads)
        x = x + block.mlp(_ln(block.norm2, x))
    return m.head(_ln(m.norm, x)[:, 0])


def by_hand(forward, module, images: torch.Tensor, targets: np.ndarray) -> np.ndarray:
    """Gradient x input of each image's target logit, summed over the channels, plain autograd."""
    inputs = images.clone().requires_grad_(True)
    logits = forward(module, inputs)
    score = logits.gather(1, torch.as_tensor(targets)[:, None]).sum()
    (gradient,) = torch.autograd.grad(score, inputs)
    return (inputs * gradient).sum(1).detach().numpy()


def _small_timm():
    torch.manual_seed(3)
    module = timm.create_model(
        "vit_tiny_patch16_224",
        pretrained=False,
        img_size=32,
        patch_size=8,
        embed_dim=48,
        depth=3,
        num_heads=3,
        num_classes=10,
    ).eval()
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return loaded(module)


@pytest.mark.parametrize("batch", [1, 4])
def test_cp_lrp_equals_detaching_by_hand_on_a_small_timm_vit(batch: int) -> None:
    model = _small_timm()
    images = torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(batch))
    result = attribute("cp-lrp", model, images, MethodOptions())
    theirs = by_hand(timm_by_hand, model.module, images, result.targets)
    assert result.pixels is not None and result.pixels.shape == (batch, 32, 32)
    assert normalised_difference(result.pixels, theirs) < 1e-5
    with torch.no_grad():
        predicted = model.module(images).argmax(1).numpy()
    assert (result.targets == predicted).all()


@pytest.mark.slow
def test_cp_lrp_equals_detaching_by_hand_on_vit_b_16() -> None:
    model = vit_b_16()
    images = torch.randn(4, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    for batch in (images[:1], images):
        result = attribute("cp-lrp", model, batch, MethodOptions(target_class=7))
        theirs = by_hand(torchvision_by_hand, model.module, batch, result.targets)
        assert (result.targets == 7).all()
        assert normalised_difference(result.pixels, theirs) < 1e-5
        assert result.maps.shape == (len(batch), 14, 14)


def test_the_oracle_notices_a_missing_detach() -> None:
    """Without the detaches (plain gradient x input) the maps differ clearly."""
    model = _small_timm()
    images = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    result = attribute("cp-lrp", model, images, MethodOptions())

    def plain(m, x):
        return m(x)

    assert (
        normalised_difference(result.pixels, by_hand(plain, model.module, images, result.targets))
        > 1e-2
    )


@pytest.mark.parametrize("kind", KINDS)
def test_cp_lrp_runs_on_every_family_and_leaves_the_model_as_it_was(kind: str) -> None:
    module = tiny_model(kind)
    module.train()  # left in training mode: the method must restore it
    model = loaded(module)
    before = state_of(module)
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = module.eval()(images)
    module.train()
    result = attribute("cp-lrp", model, images, MethodOptions(target_class=3))
    assert result.maps.shape == (2, 4, 4) and result.maps.dtype == np.float32
    assert np.isfinite(result.pixels).all() and np.abs(result.pixels).max() > 0
    assert np.allclose(result.maps, patch_sums(result.pixels, (4, 4)), atol=1e-6)
    assert (result.targets == 3).all()
    assert state_of(module) == before
    with torch.no_grad():
        assert torch.equal(module.eval()(images), logits)
    # each image on its own gives its row of the batch
    alone = attribute("cp-lrp", model, images[1:], MethodOptions(target_class=3))
    assert normalised_difference(alone.pixels[0], result.pixels[1]) < 1e-5


@pytest.mark.parametrize("kind", ["small_vit", "timm registers", "hf deit"])
def test_cp_lrp_on_a_rectangular_grid(kind: str) -> None:
    model = loaded(tiny_model(kind))
    rectangle = torch.randn(2, 3, 24, 48, generator=torch.Generator().manual_seed(4))
    result = attribute("cp-lrp", model, rectangle, MethodOptions(), grid=(3, 6))
    assert result.maps.shape == (2, 3, 6) and result.pixels.shape == (2, 24, 48)
    assert np.abs(result.maps).max() > 0


def test_a_model_without_the_block_parts_is_refused_in_one_line() -> None:
    module = timm.create_model(
        "vit_tiny_patch16_224", img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2,
        num_classes=10, qk_norm=True,
    ).eval()  # fmt: skip
    model = loaded(module)
    with pytest.raises(ValueError, match="cp-lrp needs the parts of a pre-norm ViT") as caught:
        attribute("cp-lrp", model, torch.randn(1, 3, 32, 32), MethodOptions())
    words = str(caught.value)
    assert "\n" not in words and "q_norm" in words and "rollout" in words
    assert get("cp-lrp").compute.refusal(model) == words
    assert get("cp-lrp").compute.refusal(loaded(tiny_model("timm"))) is None


def test_a_wrapped_model_is_refused_in_one_line() -> None:
    from vitexplorer.core.models.families.custom import WrappedViT

    inner = tiny_model("timm")
    wrapped = loaded(WrappedViT(inner, [block.attn for block in inner.blocks], 1))
    for method in ("cp-lrp", "attnlrp"):
        with pytest.raises(ValueError, match=f"{method} needs the parts") as caught:
            attribute(method, wrapped, torch.randn(1, 3, 32, 32), MethodOptions())
        assert "\n" not in str(caught.value) and "wrapped VisionTransformer" in str(caught.value)
