"""LeGrad against its reference, ``legrad-torch``'s ``LeWrapper.compute_legrad_clip`` on a random
OpenCLIP ViT, and against the paper's equations written out here on timm and torchvision ViTs.

Every comparison divides both maps by their largest absolute value (LeGrad's maps are min-max
scaled, so that value is 1) and asks for a largest difference below 1e-5.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

from tests.conftest import TINY, tiny_hf_config, tiny_spec
from vitexplorer.core.explain.maps import attribute, explanation_map
from vitexplorer.core.explain.method import MethodCancelled, MethodOptions
from vitexplorer.core.models.families import timm as timm_family
from vitexplorer.core.models.loading import LoadedModel
from vitexplorer.core.models.spec import ModelSpec
from vitexplorer.core.models.vit import SmallViT

CPU = torch.device("cpu")


def normalised_gap(ours: np.ndarray, reference: np.ndarray) -> float:
    """The largest absolute difference once each is divided by its largest absolute value."""
    ours, reference = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
    assert np.abs(reference).max() > 0 and np.isfinite(ours).all()
    return float(np.abs(ours / np.abs(ours).max() - reference / np.abs(reference).max()).max())


def _min_max(maps: torch.Tensor) -> torch.Tensor:
    flat = maps.flatten(1)
    low, high = flat.min(dim=1, keepdim=True)[0], flat.max(dim=1, keepdim=True)[0]
    return ((flat - low) / (high - low)).reshape(maps.shape)


# --- the reference: legrad-torch on a random OpenCLIP ViT ---------------------------------------


class _LND(nn.Module):
    """An OpenCLIP residual block (sequence first) seen as a (batch, tokens, width) block."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x.transpose(0, 1)).transpose(0, 1)


class _ClipScore(nn.Module):
    """An OpenCLIP image tower whose "classes" are text embeddings: the score LeGrad explains."""

    def __init__(self, visual: nn.Module, texts: torch.Tensor) -> None:
        super().__init__()
        self.visual = visual
        self.head = nn.Linear(texts.shape[1], texts.shape[0], bias=False)
        self.head.weight.data.copy_(texts)


def _clip_adapter(score: _ClipScore):
    """A test adapter saying what ``compute_legrad_clip`` computes at each layer: the tokens'
    mean, ``ln_post``, the projection, unit length, dotted with the text embedding."""
    from vitexplorer.core.models.families.base import ViTAdapter
    from vitexplorer.core.models.families.custom import _mha_forward

    visual = score.visual

    class ClipAdapter(ViTAdapter):
        family = "test-openclip"

        @classmethod
        def matches(cls, module):
            return False

        def embed(self, images):
            x = visual.conv1(images).flatten(2).transpose(1, 2)
            cls = visual.class_embedding.expand(x.shape[0], 1, -1).to(x.dtype)
            x = torch.cat([cls, x], dim=1) + visual.positional_embedding
            return visual.ln_pre(visual.patch_dropout(x))

        def blocks(self):
            return [_LND(block) for block in visual.transformer.resblocks]

        def final_norm(self):
            return nn.Identity()

        def pool(self, tokens):
            return F.normalize(visual.ln_post(tokens.mean(dim=1)) @ visual.proj, dim=-1)

        def get_classifier(self):
            return score.head

        def set_classifier(self, head):
            raise NotImplementedError

        def attention_modules(self):
            return [block.attn for block in visual.transformer.resblocks]

        def capturing_forward(self, attention, sink):
            return _mha_forward(attention, sink)

        def position_embeddings(self):
            raise NotImplementedError

        def patch_filters(self):
            raise NotImplementedError

        def randomisation_groups(self):
            raise NotImplementedError

    return ClipAdapter(score)


@pytest.fixture(scope="module")
def clip():
    import open_clip

    torch.manual_seed(0)
    model = open_clip.CLIP(
        embed_dim=16,
        vision_cfg=dict(layers=3, width=32, patch_size=8, image_size=32, head_width=16),
        text_cfg=dict(context_length=8, vocab_size=50, width=32, heads=2, layers=1),
    ).eval()
    texts = F.normalize(torch.randn(4, 16, generator=torch.Generator().manual_seed(3)), dim=-1)
    score = _ClipScore(copy.deepcopy(model.visual), texts).eval()
    spec = ModelSpec(
        name="openclip-test",
        display_name="a random OpenCLIP tower",
        weights="random",
        image_size=32,
        resize_size=32,
        patch_size=8,
        num_layers=3,
        num_heads=2,
        class_names=("a", "b", "c", "d"),
    )
    loaded = LoadedModel(score, spec, CPU, known_adapter=_clip_adapter(score))
    return model, texts, loaded


def _reference(model: nn.Module, texts: torch.Tensor, image: torch.Tensor) -> np.ndarray:
    """``LeWrapper(model, layer_index=0).compute_legrad_clip``: (prompts, 32, 32), every layer."""
    from legrad import LeWrapper

    wrapped = LeWrapper(copy.deepcopy(model), layer_index=0)
    return wrapped.compute_legrad_clip(texts, image)[0].detach().numpy()


def _as_reference(ours: np.ndarray, patch: int = 8) -> np.ndarray:
    """Our grid maps as the reference shows them: bilinear upsampling, then min-max."""
    pixels = F.interpolate(torch.from_numpy(ours)[:, None], scale_factor=patch, mode="bilinear")
    return _min_max(pixels[:, 0]).numpy()


def test_legrad_equals_legrad_torch_on_an_openclip_tower(clip) -> None:
    """Batch 1 for each of four text "classes" (the reference runs the four as one batch of
    prompts), then a batch of four images against the reference one image at a time."""
    model, texts, loaded = clip
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    reference = _reference(model, texts, images[:1])
    for target in range(4):
        ours = attribute("legrad", loaded, images[:1], MethodOptions(target_class=target))
        assert ours.maps.shape == (1, 4, 4) and int(ours.targets[0]) == target
        assert normalised_gap(_as_reference(ours.maps)[0], reference[target]) < 1e-5
    batch = attribute("legrad", loaded, images, MethodOptions(target_class=2))
    for index in range(4):
        one = _reference(model, texts[2:3], images[index : index + 1])[0]
        assert normalised_gap(_as_reference(batch.maps)[index], one) < 1e-5
    # a class's map is its own
    assert normalised_gap(_as_reference(batch.maps[:1])[0], reference[0]) > 1e-2


# --- the paper's equations, written out on timm and torchvision ViTs ----------------------------


def _timm_layers(model: nn.Module, images: torch.Tensor):
    """A timm ViT's forward by hand: each layer's tokens and its softmax map in the graph."""
    x = model.norm_pre(model._pos_embed(model.patch_embed(images)))
    tokens, maps = [], []
    for block in model.blocks:
        attn = block.attn
        h = block.norm1(x)
        b, n, c = h.shape
        qkv = attn.qkv(h).reshape(b, n, 3, attn.num_heads, c // attn.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        weights = torch.softmax((q * attn.scale) @ k.transpose(-2, -1), dim=-1)
        maps.append(weights)
        out = attn.proj((weights @ v).transpose(1, 2).reshape(b, n, c))
        x = x + block.ls1(out)
        x = x + block.ls2(block.mlp(block.norm2(x)))
        tokens.append(x)
    return tokens, maps, lambda z: model.forward_head(model.norm(z))


def _torchvision_layers(model: nn.Module, images: torch.Tensor):
    """A torchvision ViT's forward by hand: each layer's tokens and its softmax map."""
    x = model._process_input(images)
    x = torch.cat([model.class_token.expand(x.shape[0], -1, -1), x], dim=1)
    x = x + model.encoder.pos_embedding
    tokens, maps = [], []
    for block in model.encoder.layers:
        mha = block.self_attention
        h = block.ln_1(x)
        b, n, c = h.shape
        heads = mha.num_heads
        qkv = F.linear(h, mha.in_proj_weight, mha.in_proj_bias).reshape(b, n, 3, heads, -1)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
        maps.append(weights)
        out = F.linear((weights @ v).transpose(1, 2).reshape(b, n, c), *_out(mha))
        x = x + out
        x = x + block.mlp(block.ln_2(x))
        tokens.append(x)
    return tokens, maps, lambda z: model.heads(model.encoder.ln(z)[:, 0])


def _out(mha: nn.MultiheadAttention) -> tuple[torch.Tensor, torch.Tensor]:
    return mha.out_proj.weight, mha.out_proj.bias


def _by_hand(layers_of, model, images, prefix: int, target=None, start: int = 0):
    """E = minmax(mean_l mean_heads mean_rows relu(d s_l / d A_l))[:, prefix:], each image."""
    tokens, maps, score = layers_of(model, images.clone().requires_grad_(True))
    logits = score(tokens[-1])
    targets = logits.argmax(1) if target is None else torch.full((len(images),), target)
    total = 0
    for layer in range(start, len(tokens)):
        chosen = score(tokens[layer]).gather(1, targets[:, None]).sum()
        (grad,) = torch.autograd.grad(chosen, maps[layer], retain_graph=True)
        total = total + grad.clamp(min=0).mean(dim=1).mean(dim=1)[:, prefix:]
    side = math.isqrt(total.shape[1])
    return logits.detach(), _min_max(total.reshape(-1, side, side).detach()).numpy()


def _timm(seed: int = 0, **extra) -> LoadedModel:
    torch.manual_seed(seed)
    fields = dict(img_size=32, patch_size=8, embed_dim=32, depth=3, num_heads=2, num_classes=10)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, **(fields | extra)).eval()
    with torch.no_grad():  # off the init's near-zero tokens and biases: gradients far from zero
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    spec = timm_family.spec_for(model, "vit_tiny_patch16_224", "random")
    return LoadedModel(model, spec, CPU)


@pytest.mark.parametrize(
    "extra",
    [{}, dict(reg_tokens=4, no_embed_class=True), dict(class_token=False, global_pool="avg")],
    ids=["cls", "registers", "no-prefix"],
)
def test_legrad_is_the_papers_equations_on_small_timm_vits(extra) -> None:
    loaded = _timm(**extra)
    prefix = loaded.module.num_prefix_tokens
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    for batch, target in ((images[:1], None), (images, None), (images, 7)):
        logits, expected = _by_hand(_timm_layers, loaded.module, batch, prefix, target)
        ours = attribute("legrad", loaded, batch, MethodOptions(target_class=target))
        assert ours.maps.shape == expected.shape and ours.maps.dtype == np.float32
        wanted = logits.argmax(1).numpy() if target is None else np.full(len(batch), target)
        np.testing.assert_array_equal(ours.targets, wanted)
        for index in range(len(batch)):
            assert normalised_gap(ours.maps[index], expected[index]) < 1e-5
        assert ours.maps.min() == 0.0 and ours.maps.max() == 1.0
    # the start layer leaves the first layers out of the mean, and that changes the map
    _, late = _by_hand(_timm_layers, loaded.module, images[:1], prefix, start=2)
    ours = attribute("legrad", loaded, images[:1], MethodOptions(start_layer=2)).maps
    assert normalised_gap(ours[0], late[0]) < 1e-5
    assert normalised_gap(ours[0], expected[0]) > 1e-3


@pytest.mark.slow
def test_legrad_is_the_papers_equations_on_vit_b_16() -> None:
    from torchvision.models import vit_b_16

    torch.manual_seed(0)
    module = vit_b_16(weights=None).eval()
    nn.init.normal_(module.heads.head.weight, std=0.02)  # torchvision's zero head: no gradient
    spec = ModelSpec(
        name="vit_b_16",
        display_name="ViT-B/16",
        weights="random",
        image_size=224,
        resize_size=224,
        patch_size=16,
        num_layers=12,
        num_heads=12,
        class_names=tuple(f"class {i}" for i in range(1000)),
    )
    loaded = LoadedModel(module, spec, CPU)
    images = torch.randn(4, 3, 224, 224, generator=torch.Generator().manual_seed(4))
    logits, expected = _by_hand(_torchvision_layers, module, images, 1)  # image by image
    with torch.no_grad():
        torch.testing.assert_close(logits, module(images), atol=1e-4, rtol=1e-4)
    for batch in (images[:1], images):
        ours = attribute("legrad", loaded, batch, MethodOptions())
        for index in range(len(batch)):
            assert normalised_gap(ours.maps[index], expected[index]) < 1e-5
    assert all(p.grad is None for p in module.parameters())


# --- every family, rectangles, progress, cancel, the model left as it was -----------------------


def _small_vit() -> LoadedModel:
    torch.manual_seed(0)
    module = SmallViT(TINY).eval()
    nn.init.normal_(module.head.weight, std=0.5)
    return LoadedModel(module, tiny_spec(), CPU)


def test_legrad_on_a_rectangular_grid_is_the_equations_there() -> None:
    loaded = _timm(dynamic_img_size=True)
    images = torch.randn(2, 3, 32, 48, generator=torch.Generator().manual_seed(5))
    tokens, maps, score = _timm_layers(loaded.module, images.clone().requires_grad_(True))
    logits = score(tokens[-1])
    total = 0
    for layer in range(3):
        chosen = score(tokens[layer]).gather(1, logits.argmax(1)[:, None]).sum()
        (grad,) = torch.autograd.grad(chosen, maps[layer], retain_graph=True)
        total = total + grad.clamp(min=0).mean(dim=(1, 2))[:, 1:]
    expected = _min_max(total.reshape(2, 4, 6).detach()).numpy()
    ours = attribute("legrad", loaded, images, MethodOptions(), grid=(4, 6))
    assert ours.maps.shape == (2, 4, 6)
    for index in range(2):
        assert normalised_gap(ours.maps[index], expected[index]) < 1e-5
    one = explanation_map("legrad", MethodOptions(), model=loaded, batch=images[:1], grid=(4, 6))
    assert normalised_gap(one, expected[0]) < 1e-5


def test_legrad_runs_on_every_family(tmp_path, tiny_torchvision_vit, checkpoint) -> None:
    import transformers

    from vitexplorer.core.models.loading import load_model

    torch.manual_seed(0)
    hf = transformers.ViTForImageClassification(tiny_hf_config(num_labels=10)).eval()
    hf.save_pretrained(tmp_path / "hf")
    models = {
        "small_vit": _small_vit(),
        "torchvision": LoadedModel(tiny_torchvision_vit, tiny_spec(), CPU),
        "hf": load_model(f"hf:{tmp_path / 'hf'}", "default", "cpu"),
        "checkpoint": load_model(str(checkpoint), device="cpu"),
        "distilled": _distilled(),
    }
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    for name, loaded in models.items():
        ours = attribute("legrad", loaded, images, MethodOptions(target_class=3))
        assert ours.maps.shape == (2, 4, 4), name
        assert np.isfinite(ours.maps).all() and ours.maps.max() == 1.0, name
        assert not np.allclose(ours.maps[0], ours.maps[1]), name


def _distilled() -> LoadedModel:
    torch.manual_seed(0)
    model = timm.create_model(
        "deit_tiny_distilled_patch16_224",
        pretrained=False,
        img_size=32,
        patch_size=8,
        embed_dim=32,
        depth=2,
        num_heads=2,
        num_classes=10,
    ).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    spec = timm_family.spec_for(model, "deit_tiny_distilled_patch16_224", "random")
    return LoadedModel(model, spec, CPU)


def test_legrad_reports_progress_leaves_the_model_as_it_was_and_cancels() -> None:
    loaded = _timm()
    module = loaded.module
    module.train()  # a model in training mode stays in it
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        before = module.eval()(images)
    module.train()
    calls: list[tuple[int, int]] = []
    attribute(
        "legrad", loaded, images, MethodOptions(start_layer=1), progress=lambda *c: calls.append(c)
    )
    assert calls == [(1, 2), (2, 2)]
    assert module.training and all(p.grad is None for p in module.parameters())
    assert all("forward" not in vars(block.attn) for block in module.blocks)

    def cancel(done: int, total: int) -> None:
        raise MethodCancelled

    with pytest.raises(MethodCancelled):
        attribute("legrad", loaded, images, MethodOptions(), progress=cancel)
    assert module.training and all("forward" not in vars(b.attn) for b in module.blocks)
    with torch.no_grad():
        torch.testing.assert_close(module.eval()(images), before)


def test_legrad_refuses_what_it_cannot_explain() -> None:
    import vitexplorer

    loaded = _timm()
    wrapped = vitexplorer.wrap(
        copy.deepcopy(loaded.module),
        [f"blocks.{i}.attn" for i in range(3)],
        patch_size=8,
        image_size=32,
        device="cpu",
    ).loaded
    images = torch.randn(1, 3, 32, 32)
    with pytest.raises(ValueError, match="legrad needs each layer's tokens") as error:
        attribute("legrad", wrapped, images, MethodOptions())
    assert "\n" not in str(error.value)
    from dataclasses import replace

    encoder = replace(tiny_spec(), has_classifier=False)
    with pytest.raises(ValueError, match="no classifier"):
        MethodOptions().check("legrad", encoder)
    with pytest.raises(ValueError, match="start layer 5 does not exist"):
        MethodOptions(start_layer=4).check("legrad", tiny_spec())
