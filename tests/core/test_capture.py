"""Attention capture: exact logits, normalised rows, maps equal to an independent computation."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from vitexplorer.core.models.capture import (
    attention_modules,
    capturing_attention,
    forward_with_attention,
)

KINDS = ["tiny_small_vit", "tiny_torchvision_vit"]


@pytest.fixture(params=KINDS)
def model(request: pytest.FixtureRequest) -> nn.Module:
    return request.getfixturevalue(request.param)


def _images(batch: int = 3) -> torch.Tensor:
    return torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def test_logits_unchanged_by_capture(model: nn.Module) -> None:
    images = _images()
    with torch.inference_mode():
        plain = model(images)
    captured, _ = forward_with_attention(model, images)
    assert (plain - captured).abs().max().item() <= 1e-5


def test_shape_and_rows_sum_to_one(model: nn.Module) -> None:
    _, attention = forward_with_attention(model, _images())
    assert attention.shape == (3, 2, 2, 17, 17)  # batch, layers, heads, 1 + 4x4 tokens
    assert attention.dtype == torch.float32
    assert (attention.sum(-1) - 1).abs().max().item() <= 1e-5
    assert attention.min().item() >= 0
    # not uniform: a random ViT still attends unevenly, so rows differ from 1/17
    assert (attention - 1 / 17).abs().max().item() > 1e-3


def _attention_inputs(model: nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
    """The tensors entering each attention module, recorded with plain forward hooks."""
    seen: list[torch.Tensor] = []
    hooks = [
        m.register_forward_hook(lambda _m, args, _out: seen.append(args[0].detach()))
        for m in attention_modules(model)
    ]
    try:
        with torch.inference_mode():
            model(images)
    finally:
        for h in hooks:
            h.remove()
    return seen


def _qk_weights(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    if isinstance(module, nn.MultiheadAttention):
        w, b = module.in_proj_weight, module.in_proj_bias
    else:
        w, b = module.qkv.weight, module.qkv.bias
    c = w.shape[1]
    return w[:c], b[:c], w[c : 2 * c], b[c : 2 * c]


@torch.no_grad()
def test_maps_equal_independent_computation(model: nn.Module) -> None:
    """Queries and keys from the block's own projection weights, scaled dot product, softmax."""
    images = _images()
    _, attention = forward_with_attention(model, images)
    inputs = _attention_inputs(model, images)
    for layer, (module, x) in enumerate(zip(attention_modules(model), inputs, strict=True)):
        wq, bq, wk, bk = _qk_weights(module)
        heads = module.num_heads
        for head in range(heads):
            d = x.shape[-1] // heads
            rows = slice(head * d, (head + 1) * d)
            q = x @ wq[rows].T + bq[rows]
            k = x @ wk[rows].T + bk[rows]
            expected = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), dim=-1)
            torch.testing.assert_close(attention[:, layer, head], expected, atol=1e-6, rtol=1e-5)


def test_original_forward_restored_even_after_error(model: nn.Module) -> None:
    images = _images(1)
    with pytest.raises(ZeroDivisionError), capturing_attention(model):
        raise ZeroDivisionError
    assert all("forward" not in vars(m) for m in attention_modules(model))
    with torch.inference_mode():
        out = model(images)
    assert out.shape == (1, 10)


def test_capture_twice_gives_identical_maps(model: nn.Module) -> None:
    images = _images(2)
    first = forward_with_attention(model, images)[1].clone()
    second = forward_with_attention(model, images)[1]
    assert torch.equal(first, second)


def test_model_without_attention_is_refused() -> None:
    with pytest.raises(ValueError, match="no attention layers"):
        forward_with_attention(nn.Linear(3, 3), torch.zeros(1, 3))
