"""vitexplorer.wrap: one's own nn.Module ViT, its attention modules named, analysed and explained.

The oracle is the module itself: each layer's map is the softmax computed here by hand from the
module's weights and the tokens that entered it, and the logits are its own plain forward's."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import vitexplorer
from vitexplorer.core.models.capture import forward_with_attention
from vitexplorer.core.models.preprocessing import preprocess

SIZE, PATCH, WIDTH, HEADS, DEPTH, CLASSES = 32, 8, 32, 2, 2, 10
GRID = SIZE // PATCH


class HandAttention(nn.Module):
    """timm's shape, written out: softmax(q k^T * scale) v."""

    def __init__(self, dim: int, num_heads: int, factor: float = 1.0) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.factor = factor  # != 1: a module whose own softmax is not the one its scale says
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        attn = (q @ k.transpose(-2, -1)) * self.scale * self.factor
        attn = attn.softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, factor: float = 1.0) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = HandAttention(dim, num_heads, factor)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class HandViT(nn.Module):
    """A ViT of one's own: conv patches, a CLS token, learned positions, pre-norm blocks."""

    def __init__(self, factor: float = 1.0, prefix: int = 1) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, WIDTH, PATCH, PATCH)
        self.cls = nn.Parameter(torch.randn(1, prefix, WIDTH) * 0.5)
        self.pos = nn.Parameter(torch.randn(1, prefix + GRID * GRID, WIDTH) * 0.5)
        self.blocks = nn.ModuleList(Block(WIDTH, HEADS, factor) for _ in range(DEPTH))
        self.norm = nn.LayerNorm(WIDTH)
        self.head = nn.Linear(WIDTH, CLASSES)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.patch(images).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x)[:, 0])


def hand_vit(factor: float = 1.0, prefix: int = 1) -> HandViT:
    torch.manual_seed(0)
    model = HandViT(factor, prefix)
    for block in model.blocks:  # attention far from uniform
        nn.init.normal_(block.attn.qkv.weight, std=0.5)
    return model.eval()


def picture(seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)


def names() -> list[str]:
    return [f"blocks.{i}.attn" for i in range(DEPTH)]


def test_wrapped_maps_are_the_modules_softmax_by_hand() -> None:
    module = hand_vit()
    model = vitexplorer.wrap(module, names(), patch_size=PATCH, image_size=SIZE, device="cpu")
    assert model.module.inner is module  # the module itself, not a copy
    image = picture()
    analysis = model.analyze(image)
    assert analysis.attention.shape == (DEPTH, HEADS, 1 + GRID * GRID, 1 + GRID * GRID)

    # the tokens entering each attention module, in the module's own plain forward
    entered: list[torch.Tensor] = []
    hooks = [
        b.attn.register_forward_pre_hook(lambda m, a: entered.append(a[0])) for b in module.blocks
    ]
    batch = preprocess(Image.fromarray(image), model.spec).unsqueeze(0)
    assert torch.equal(batch[0], analysis.input)  # the input kept is the one the model saw
    with torch.no_grad():
        logits = module(batch)[0].numpy()
    for hook in hooks:
        hook.remove()
    for layer, (block, x) in enumerate(zip(module.blocks, entered, strict=True)):
        w, bias = block.attn.qkv.weight.detach().double(), block.attn.qkv.bias.detach().double()
        qkv = x[0].double() @ w.T + bias  # (tokens, 3 * width)
        head_dim = WIDTH // HEADS
        for h in range(HEADS):
            q = qkv[:, h * head_dim : (h + 1) * head_dim]
            k = qkv[:, WIDTH + h * head_dim : WIDTH + (h + 1) * head_dim]
            scores = (q @ k.T) / math.sqrt(head_dim)
            by_hand = torch.softmax(scores, dim=-1).numpy()
            np.testing.assert_allclose(analysis.attention[layer, h], by_hand, atol=1e-6)
    np.testing.assert_allclose(analysis.attention.sum(-1), 1.0, atol=1e-5)
    assert analysis.attention.std() > 0.01  # not uniform: the comparison can fail
    np.testing.assert_allclose(
        analysis.logits, logits, rtol=1e-6, atol=1e-6
    )  # capture changes nothing
    assert [p.name for p in analysis.predictions][:1] == [f"class {int(np.argmax(logits))}"]


def test_wrapped_model_explains_with_every_method() -> None:
    model = vitexplorer.wrap(
        hand_vit(),
        names(),
        patch_size=PATCH,
        image_size=SIZE,
        class_names=[f"thing {i}" for i in range(CLASSES)],
        device="cpu",
    )
    analysis = model.analyze(picture())
    attention = vitexplorer.explain(analysis, "attention", layer=1, head=2)
    np.testing.assert_allclose(
        attention.map, analysis.attention[0, 1, 0, 1:].reshape(GRID, GRID), rtol=1e-6
    )
    rollout = vitexplorer.explain(analysis, "rollout")
    assert rollout.map.shape == (GRID, GRID) and np.isfinite(rollout.map).all()
    relevance = vitexplorer.explain(analysis, "relevance", target_class="thing 3")
    assert relevance.map.shape == (GRID, GRID) and relevance.map.max() > 0
    assert relevance.card["target"]["name"] == "thing 3"
    assert relevance.card["model"]["architecture"] == "custom"
    assert relevance.card["model"]["weights"] == {
        "label": "the module's own",
        "file": None,
        "sha256": None,
        "note": "a module wrapped with vitexplorer.wrap: its parameters are in memory, no file",
    }
    # the module's parameters have no .grad left by the backward pass
    assert all(p.grad is None for p in model.module.parameters())


def test_modules_given_as_objects_and_by_name_agree() -> None:
    module = hand_vit()
    by_name = vitexplorer.wrap(module, names(), patch_size=PATCH, image_size=SIZE, device="cpu")
    objects = [b.attn for b in module.blocks]
    by_object = vitexplorer.wrap(module, objects, patch_size=PATCH, image_size=SIZE, device="cpu")
    a, b = by_name.analyze(picture()), by_object.analyze(picture())
    np.testing.assert_array_equal(a.attention, b.attention)


def test_multihead_attention_equals_torchvisions_capture(tiny_torchvision_vit) -> None:
    """nn.MultiheadAttention named in a torchvision ViT: the same maps as its family's capture."""
    module = tiny_torchvision_vit
    attention = [f"encoder.layers.encoder_layer_{i}.self_attention" for i in range(DEPTH)]
    model = vitexplorer.wrap(module, attention, patch_size=PATCH, image_size=SIZE, device="cpu")
    analysis = model.analyze(picture())
    batch = analysis.input.unsqueeze(0)
    logits, maps = forward_with_attention(module, batch)
    np.testing.assert_allclose(analysis.attention, maps[0].numpy(), atol=1e-6)
    np.testing.assert_allclose(analysis.logits, logits[0].numpy(), atol=1e-6)


def test_timm_attention_equals_timms_capture() -> None:
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    module = timm.create_model(
        "vit_tiny_patch16_224",
        pretrained=False,
        img_size=SIZE,
        patch_size=PATCH,
        depth=DEPTH,
        num_heads=HEADS,
        embed_dim=WIDTH,
        num_classes=CLASSES,
    ).eval()
    for p in module.parameters():
        p.data.add_(0.05 * torch.randn_like(p))
    attention = [f"blocks.{i}.attn" for i in range(DEPTH)]
    model = vitexplorer.wrap(module, attention, patch_size=PATCH, image_size=SIZE, device="cpu")
    analysis = model.analyze(picture())
    batch = analysis.input.unsqueeze(0)
    logits, maps = forward_with_attention(module, batch)  # timm's own family
    np.testing.assert_allclose(analysis.attention, maps[0].numpy(), atol=1e-6)
    np.testing.assert_allclose(analysis.logits, logits[0].numpy(), atol=1e-5)


class Doubled(nn.Module):
    """A model that runs one attention module twice."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = hand_vit()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.inner(images)
        return self.inner(images)


class Dicts(HandViT):
    def __init__(self) -> None:
        super().__init__()

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:  # type: ignore[override]
        return {"logits": super().forward(images)}


def patched() -> HandViT:
    model = hand_vit()
    attn = model.blocks[0].attn
    attn.forward = lambda x: HandAttention.forward(attn, x)  # someone's patch, kept
    return model


@pytest.mark.parametrize(
    ("make", "attention", "options", "words"),
    [
        (hand_vit, ["blocks.0.norm1"], {}, "a LayerNorm is not an attention module"),
        (hand_vit, ["blocks.0.attn", "blocks.9.attn"], {}, "has no submodule 'blocks.9.attn'"),
        (hand_vit, [], {}, "attention must list each layer's self-attention module"),
        (hand_vit, "blocks.0.attn", {}, "attention must list each layer's self-attention module"),
        (hand_vit, ["blocks.0.attn", "blocks.0.attn"], {}, "names 'blocks.0.attn' twice"),
        (hand_vit, [nn.MultiheadAttention(8, 2)], {}, "is not a submodule of the module"),
        (lambda: hand_vit(factor=2.0), names(), {}, "does not compute softmax(q k^T * scale) v"),
        (hand_vit, names(), {"num_prefix": 2}, "make 18; check num_prefix"),
        (hand_vit, names(), {"patch_size": 5}, "not a whole number of 5 px patches"),
        (hand_vit, names(), {"image_size": 0}, "image_size must be a whole number of at least"),
        (hand_vit, names(), {"class_names": ["a", "b"]}, "class_names must be 10 texts"),
        (hand_vit, names(), {"std": (1, 0, 1)}, "std must be above 0"),
        (hand_vit, names(), {"device": "tpu"}, "unknown device 'tpu'"),
        (hand_vit, names()[:1], {}, "leaves out 'blocks.1.attn'"),
        (hand_vit, names()[::-1], {}, "run in the order 2, 1 of the list"),
        (
            Doubled,
            [f"inner.blocks.{i}.attn" for i in range(DEPTH)],
            {},
            "runs 2 times in one forward pass",
        ),
        (lambda: "not a module", names(), {}, "wrap takes a torch.nn.Module, not str"),
        (patched, names(), {}, "has its forward replaced on the instance"),
        (Dicts, names(), {}, "the module returns a dict, not a tensor of logits"),
        (hand_vit, names(), {"patch_size": 2, "image_size": 512}, "would take 64.0 GiB"),
        (hand_vit, names(), {"patch_size": 1, "image_size": 20000}, "megapixel limit"),
    ],
)
def test_what_cannot_be_captured_is_one_line(make, attention, options, words) -> None:
    settings = {"patch_size": PATCH, "image_size": SIZE, "device": "cpu", **options}
    with pytest.raises(vitexplorer.VitexplorerError) as caught:
        vitexplorer.wrap(make(), attention, **settings)
    message = str(caught.value)
    assert words in message
    assert "\n" not in message and "Traceback" not in message


def test_wrapped_module_is_refused_keep_aspect_on_another_grid() -> None:
    model = vitexplorer.wrap(hand_vit(), names(), patch_size=PATCH, image_size=SIZE, device="cpu")
    wide = np.zeros((SIZE, 2 * SIZE, 3), dtype=np.uint8)
    with pytest.raises(vitexplorer.VitexplorerError, match="runs at its own input size only"):
        model.analyze(wide, aspect="keep")
    square = model.analyze(np.zeros((SIZE, SIZE, 3), dtype=np.uint8), aspect="keep")
    assert square.grid == (GRID, GRID)


class Masked(nn.Module):
    """One MultiheadAttention called with a mask, which the capture does not reproduce."""

    def __init__(self) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, WIDTH, PATCH, PATCH)
        self.mha = nn.MultiheadAttention(WIDTH, HEADS, batch_first=True)
        self.head = nn.Linear(WIDTH, CLASSES)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.patch(images).flatten(2).transpose(1, 2)
        mask = torch.zeros(x.shape[1], x.shape[1])
        return self.head(self.mha(x, x, x, attn_mask=mask)[0].mean(1))


def test_a_mask_at_run_time_is_refused_in_one_line() -> None:
    torch.manual_seed(0)
    with pytest.raises(vitexplorer.VitexplorerError, match="called with attn_mask") as caught:
        vitexplorer.wrap(
            Masked().eval(), ["mha"], patch_size=PATCH, image_size=SIZE, num_prefix=0, device="cpu"
        )
    assert "\n" not in str(caught.value)


class EncoderViT(nn.Module):
    """A ViT built of torch's own nn.TransformerEncoder (whose eval fast path skips the
    attention modules' forward), without prefix tokens: mean pooling."""

    def __init__(self) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, WIDTH, PATCH, PATCH)
        layer = nn.TransformerEncoderLayer(WIDTH, HEADS, 2 * WIDTH, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, DEPTH, enable_nested_tensor=False)
        self.head = nn.Linear(WIDTH, CLASSES)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.patch(images).flatten(2).transpose(1, 2)
        return self.head(self.encoder(x).mean(1))


def test_transformer_encoder_maps_are_torchs_own_weights() -> None:
    """Each layer's map equals what nn.MultiheadAttention itself returns as its weights for the
    tokens that entered it; torch's fast-path flag is as it was."""
    torch.manual_seed(0)
    module = EncoderViT().eval()
    for layer in module.encoder.layers:
        nn.init.normal_(layer.self_attn.in_proj_weight, std=0.5)
    attention = [f"encoder.layers.{i}.self_attn" for i in range(DEPTH)]
    flag = torch.backends.mha.get_fastpath_enabled()
    model = vitexplorer.wrap(
        module, attention, patch_size=PATCH, image_size=SIZE, num_prefix=0, device="cpu"
    )
    analysis = model.analyze(picture())
    assert torch.backends.mha.get_fastpath_enabled() == flag
    assert analysis.attention.shape == (DEPTH, HEADS, GRID * GRID, GRID * GRID)
    entered: list[torch.Tensor] = []
    hooks = [
        layer.self_attn.register_forward_pre_hook(lambda m, a: entered.append(a[0]))
        for layer in module.encoder.layers
    ]
    batch = analysis.input.unsqueeze(0)
    with torch.no_grad():
        torch.backends.mha.set_fastpath_enabled(False)
        try:
            module(batch)
        finally:
            torch.backends.mha.set_fastpath_enabled(flag)
        for hook in hooks:
            hook.remove()
        for i, (layer, x) in enumerate(zip(module.encoder.layers, entered, strict=True)):
            _, weights = layer.self_attn(x, x, x, need_weights=True, average_attn_weights=False)
            # float32 rounding: torch projects q, k and v in another order than one packed matmul
            np.testing.assert_allclose(
                analysis.attention[i], weights[0].numpy(), rtol=1e-5, atol=1e-6
            )
    assert analysis.attention.std() > 0.01
    assert vitexplorer.explain(analysis, "relevance").map.shape == (GRID, GRID)


class Pooled(HandViT):
    """A ViT whose CLS is replaced by attention pooling: a learned query attends to the tokens
    through an nn.MultiheadAttention that is not self-attention (and is not named)."""

    def __init__(self) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.randn(1, 1, WIDTH))
        self.pool = nn.MultiheadAttention(WIDTH, HEADS, batch_first=True)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.patch(images).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        for block in self.blocks:
            x = block(x)
        query = self.query.expand(x.shape[0], -1, -1)
        return self.head(self.pool(query, x, x, need_weights=False)[0][:, 0])


def test_an_attention_pool_that_is_not_self_attention_may_stay_unnamed() -> None:
    torch.manual_seed(0)
    model = vitexplorer.wrap(
        Pooled().eval(), names(), patch_size=PATCH, image_size=SIZE, device="cpu"
    )
    analysis = model.analyze(picture())
    assert analysis.attention.shape == (DEPTH, HEADS, 1 + GRID * GRID, 1 + GRID * GRID)
    np.testing.assert_allclose(analysis.attention.sum(-1), 1.0, atol=1e-5)
