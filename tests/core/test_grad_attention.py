"""Attention times its gradient, checked against a hand computation with torch.autograd: the
tiny SmallViT run by hand with the last layer's softmax kept in the graph."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests.conftest import tiny_spec
from vitexplorer.core.explain.maps import explanation_map
from vitexplorer.core.explain.method import MethodOptions
from vitexplorer.core.models.loading import LoadedModel


def _by_hand(module, images: torch.Tensor, target: int | None) -> tuple[np.ndarray, int]:
    """mean_heads(relu(dA * A))[0, 1:] of the last block, the forward written out here."""
    x = module.patch_embed(images).flatten(2).transpose(1, 2)
    x = torch.cat([module.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + module.pos_embed
    kept = None
    for index, block in enumerate(module.blocks):
        attn = block.attn
        h = block.norm1(x)
        b, n, c = h.shape
        qkv = attn.qkv(h).reshape(b, n, 3, attn.num_heads, c // attn.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
        if index == len(module.blocks) - 1:
            kept = weights
        out = (weights @ v).transpose(1, 2).reshape(b, n, c)
        x = x + attn.proj(out)
        x = x + block.mlp(block.norm2(x))
    logits = module.head(module.norm(x)[:, 0])[0]
    target = int(logits.argmax()) if target is None else target
    (grad,) = torch.autograd.grad(logits[target], kept)
    weighted = torch.relu(grad[0] * kept[0]).mean(dim=0)  # (tokens, tokens)
    return weighted[0, 1:].detach().double().numpy(), target


@pytest.mark.parametrize("target", [None, 4])
def test_grad_attention_is_the_last_layers_attention_times_its_gradient(tiny_small_vit, target):
    torch.manual_seed(5)
    with torch.no_grad():  # a head with spread weights: the gradients are far from zero
        tiny_small_vit.head.weight.normal_(0, 1.0)
    model = LoadedModel(tiny_small_vit, tiny_spec(), torch.device("cpu"))
    images = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    expected, _ = _by_hand(tiny_small_vit, images, target)
    assert np.abs(expected).max() > 1e-6  # a test that could not fail otherwise
    options = MethodOptions(target_class=target)
    heat = explanation_map("grad-attention", options, model=model, batch=images)
    assert heat.shape == (4, 4) and heat.dtype == np.float32
    np.testing.assert_allclose(heat.ravel(), expected, rtol=1e-4, atol=1e-8)
    # the class matters: another class's map differs
    other = explanation_map(
        "grad-attention", MethodOptions(target_class=7), model=model, batch=images
    )
    assert not np.allclose(other, heat)


def test_grad_attention_explains_the_cls_token_and_needs_a_classifier(tiny_small_vit):
    from dataclasses import replace

    spec = tiny_spec()
    with pytest.raises(ValueError, match="CLS token .token 1. only, not token 3"):
        MethodOptions(token=2).check("grad-attention", spec)
    encoder = replace(spec, has_classifier=False)
    with pytest.raises(ValueError, match="no classifier.*attention and rollout work"):
        MethodOptions().check("grad-attention", encoder)
