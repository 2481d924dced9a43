"""timm's ViTs through their adapter: capture with fused attention on, the parts fine-tuning
and the analytics use, and every way of loading one (tiny random configurations, no network)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from torch import nn

timm = pytest.importorskip("timm")

from timm.utils import AttentionExtract  # noqa: E402

from vitexplorer.cli import main  # noqa: E402
from vitexplorer.core.evaluate.sanity import randomisation_steps  # noqa: E402
from vitexplorer.core.explain.structure import patch_filters, position_embeddings  # noqa: E402
from vitexplorer.core.models import loading as models  # noqa: E402
from vitexplorer.core.models.capture import forward_with_attention  # noqa: E402
from vitexplorer.core.models.checkpoint import WeightsFileError  # noqa: E402
from vitexplorer.core.models.download import (  # noqa: E402
    DownloadCancelled,
    DownloadError,
    WeightsUnavailableError,
)
from vitexplorer.core.models.families import timm as family  # noqa: E402
from vitexplorer.core.models.families.family import UnsupportedModel  # noqa: E402
from vitexplorer.core.models.families.registry import adapter_for  # noqa: E402
from vitexplorer.core.training.finetune_model import SplitViT, trainable_counts, with_new_head  # noqa: E402

TINY = dict(img_size=32, patch_size=8, depth=2, num_heads=2, embed_dim=32, num_classes=10)
VARIANTS: dict[str, tuple[str, dict, tuple[str, ...]]] = {
    "vit": ("vit_tiny_patch16_224", {}, ("cls",)),
    "distilled": ("deit_tiny_distilled_patch16_224", {}, ("cls", "dist")),
    "registers": (
        "vit_small_patch14_reg4_dinov2",
        dict(reg_tokens=4, no_embed_class=True, init_values=1e-5),
        ("cls", "reg", "reg", "reg", "reg"),
    ),
    "no_cls": ("vit_tiny_patch16_224", dict(class_token=False, global_pool="avg"), ()),
    "map_head": ("vit_tiny_patch16_224", dict(class_token=False, global_pool="map"), ()),
    "rectangular": ("vit_tiny_patch16_224", dict(img_size=(32, 48)), ("cls",)),
    "qk_norm": (
        "vit_tiny_patch16_224",
        dict(qk_norm=True, scale_attn_norm=True, qkv_bias=False),
        ("cls",),
    ),
}


def _tiny(variant: str, seed: int = 0) -> nn.Module:
    name, extra, _ = VARIANTS[variant]
    torch.manual_seed(seed)
    model = timm.create_model(name, pretrained=False, **{**TINY, **extra}).eval()
    for p in model.parameters():  # off the init's near-zero tokens and zero biases
        p.data.add_(0.05 * torch.randn_like(p))
    return model


def _images(model: nn.Module, n: int = 2) -> torch.Tensor:
    height, width = model.patch_embed.img_size
    return torch.randn(n, 3, height, width, generator=torch.Generator().manual_seed(1))


def _timm_eager_maps(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """timm's own attention with its explicit softmax path (fused_attn off), by its own tool."""
    eager = copy.deepcopy(model)
    for module in eager.modules():
        if hasattr(module, "fused_attn"):
            module.fused_attn = False
    maps = AttentionExtract(eager, names=["blocks.*.attn.attn_drop"], method="hook")(images)
    return torch.stack(list(maps.values()), dim=1)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_capture_equals_timm_eager_attention_with_fused_attention_on(variant: str) -> None:
    model, kinds = _tiny(variant), VARIANTS[variant][2]
    adapter = adapter_for(model)
    assert adapter.family == "timm" and adapter.prefix_kinds == kinds
    assert all(block.attn.fused_attn for block in model.blocks)  # timm's default, left alone
    images = _images(model)
    with torch.no_grad():
        plain = model(images)
    logits, maps = forward_with_attention(model, images)
    torch.testing.assert_close(logits, plain, atol=1e-5, rtol=0)
    rows, cols = model.patch_embed.grid_size
    tokens = len(kinds) + rows * cols
    assert maps.shape == (2, 2, 2, tokens, tokens)
    torch.testing.assert_close(maps.sum(-1), torch.ones(2, 2, 2, tokens), atol=1e-5, rtol=0)
    torch.testing.assert_close(maps, _timm_eager_maps(model, images), atol=1e-6, rtol=1e-5)
    assert all("forward" not in vars(block.attn) for block in model.blocks)  # restored


def test_capture_honours_an_attention_mask() -> None:
    model = _tiny("vit")
    images = _images(model)
    mask = torch.rand(17, 17, generator=torch.Generator().manual_seed(2)) > 0.3
    mask |= torch.eye(17, dtype=torch.bool)  # every token sees itself
    with torch.no_grad():
        plain = model(images, attn_mask=mask)
    from vitexplorer.core.models.capture import capturing_attention

    with torch.no_grad(), capturing_attention(model) as sink:
        captured = model(images, attn_mask=mask)
    torch.testing.assert_close(captured, plain, atol=1e-5, rtol=0)
    assert (sink.result()[..., ~mask] == 0).all()


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["vit", "distilled", "no_cls", "map_head", "registers"])
def test_split_forward_equals_the_model_and_a_new_head_starts_at_zero(variant: str) -> None:
    model = _tiny(variant)
    images = _images(model)
    with torch.no_grad():
        plain = model(images)
        for train_blocks in (0, 1, 2):  # head, last:1, none
            split = SplitViT(model, train_blocks)
            torch.testing.assert_close(split(images), plain, atol=1e-5, rtol=0)
    spec = family.spec_for(model, VARIANTS[variant][0], "random")
    loaded = models.LoadedModel(model, spec, torch.device("cpu"))
    tuned = with_new_head(loaded, ("a", "b", "c"), "fine-tuned")
    assert tuned.spec.class_names == ("a", "b", "c") and tuned.spec.config["num_classes"] == 3
    with torch.no_grad():
        assert torch.equal(model(images), torch.zeros(2, 3))
        split = SplitViT(model, 1)
        for p in split.head.parameters():
            p.add_(torch.randn_like(p))
        torch.testing.assert_close(split(images), model(images), atol=1e-5, rtol=0)
    trained = {id(p) for p in split.trainable_parameters()}
    after_pool = [model.fc_norm, model.attn_pool, model.head, getattr(model, "head_dist", None)]
    assert all(id(p) in trained for m in after_pool if m is not None for p in m.parameters())


def test_models_without_a_classifier() -> None:
    from vitexplorer.core.models.families.timm_adapter import head_kind

    torch.manual_seed(0)
    dino = timm.create_model("vit_small_patch14_reg4_dinov2", pretrained=False, **TINY | {
        "num_classes": 0, "reg_tokens": 4, "patch_size": 8})  # fmt: skip
    adapter = adapter_for(dino)
    assert adapter.get_classifier() is None
    spec = family.spec_for(dino, "vit_small_patch14_reg4_dinov2", "random")
    assert not spec.has_classifier and spec.class_names == () and spec.config["num_classes"] == 0
    with pytest.raises(TypeError, match="no classifier"):
        SplitViT(dino, 0)
    images = _images(dino)
    features, maps = forward_with_attention(dino.eval(), images)
    assert features.shape == (2, 32) and maps.shape[-1] == 1 + 4 + 16
    loaded = models.LoadedModel(dino, spec, torch.device("cpu"))
    tuned = with_new_head(loaded, ("x", "y"), "fine-tuned")  # a linear probe on DINO features
    assert tuned.spec.config["num_classes"] == 2 and adapter.get_classifier() is not None
    assert trainable_counts(dino)[1] == 32
    # a CLIP tower's head projects into the text space: it is no classifier (on the meta device)
    for name, kind in [("vit_base_patch16_clip_224.openai", "projection"),
                       ("vit_base_patch16_clip_224.openai_ft_in1k", "classifier")]:  # fmt: skip
        with torch.device("meta"):
            tower = timm.create_model(name, pretrained=False)
        assert head_kind(tower) == kind
        spec = family.spec_for(tower, name, "random")
        assert spec.has_classifier == (kind == "classifier")
        if kind == "projection":  # kept in a checkpoint's config apart from the classes
            assert (spec.config["num_classes"], spec.config["projection"]) == (0, 512)
            assert family.TimmFamily().check_config("timm:" + name, spec.config) == (224, 0)


def test_structure_and_sanity_parts() -> None:
    for variant in ("vit", "distilled", "registers", "map_head"):
        model = _tiny(variant)
        kinds = VARIANTS[variant][2]
        steps = randomisation_steps(model)
        assert [name for name, _ in steps] == ["head", "block 2", "block 1", "embedding"]
        seen = []
        for _, parts in steps:
            for part in parts:
                seen += [id(part)] if isinstance(part, nn.Parameter) else map(id, part.parameters())
        assert sorted(seen) == sorted(id(p) for p in model.parameters()), variant
        assert patch_filters(model).shape == (32, 3, 8, 8)
        # registers (no_embed_class) have no position embedding: only the patches' are learned
        prefix = 0 if model.no_embed_class else len(kinds)
        assert position_embeddings(model).shape == (prefix + 16, 32)


def test_unsupported_models_are_refused_in_one_line() -> None:
    with pytest.raises(UnsupportedModel, match="windowed or hierarchical attention is not sup"):
        models.check_model_source("timm:swin_tiny_patch4_window7_224", "none")
    with pytest.raises(UnsupportedModel, match="ParallelThingsBlock, not timm's plain Attention"):
        models.load_model("timm:vit_small_patch16_18x2_224", "none", "cpu")
    with pytest.raises(ValueError, match="did you mean timm:vit_tiny_patch16_224"):
        models.load_model("timm:vit_tiny_patch16_244", "none", "cpu")
    with pytest.raises(ValueError, match="no pretrained tag 'nope'; its tags are augreg"):
        models.check_model_source("timm:vit_tiny_patch16_224.nope", "none")
    with pytest.raises(ValueError, match="outside timm"):
        models.load_model("timm:hf-hub:someone/model", "none", "cpu")


def test_load_by_name_with_random_weights() -> None:
    loaded = models.load_model("timm:test_vit", "none", "cpu")
    spec = loaded.spec
    assert (spec.family, spec.name, spec.weights) == (
        "timm",
        "timm:test_vit",
        "random initialisation",
    )
    assert (spec.image_size, spec.patch_size, spec.grid, spec.num_layers) == (160, 16, (10, 10), 6)
    # timm's pretrained_cfg: mean and std 0.5, bicubic, crop_pct 0.95 -> floor(160 / 0.95)
    assert (spec.mean, spec.std, spec.interpolation, spec.resize_size) == (
        (0.5,) * 3, (0.5,) * 3, "bicubic", 168)  # fmt: skip
    assert spec.class_names[:2] == ("tench", "goldfish") and len(spec.class_names) == 1000
    assert spec.config == {"model_name": "test_vit.r160_in1k", "num_classes": 1000, "img_size": 160}
    assert loaded.weights_file is None


@pytest.fixture(scope="module")
def test_vit_32(tmp_path_factory: pytest.TempPathFactory) -> tuple[nn.Module, Path, Path]:
    """timm's test_vit at 32 px with 10 classes, saved as timm saves its state dicts."""
    torch.manual_seed(3)
    model = timm.create_model("test_vit", pretrained=False, img_size=32, num_classes=10).eval()
    for p in model.parameters():
        p.data.add_(0.05 * torch.randn_like(p))
    folder = tmp_path_factory.mktemp("timm")
    torch.save(model.state_dict(), folder / "weights.pth")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, folder / "w.safetensors")
    return model, folder / "weights.pth", folder / "w.safetensors"


@pytest.mark.slow
@pytest.mark.parametrize("index", [1, 2])
def test_a_weights_file_in_timm_layout_loads(test_vit_32, index: int) -> None:
    model, path = test_vit_32[0], test_vit_32[index]
    models.check_model_source("timm:test_vit", str(path))
    loaded = models.load_model("timm:test_vit", str(path), "cpu")
    assert loaded.spec.weights == f"file {path.name}" and loaded.weights_file == path.resolve()
    assert (loaded.spec.image_size, loaded.spec.num_classes) == (32, 10)
    images = _images(model)
    with torch.no_grad():
        assert torch.equal(loaded.module(images), model(images))


def test_a_mismatched_file_names_the_mismatch(test_vit_32, tmp_path: Path) -> None:
    state = dict(test_vit_32[0].state_dict())
    state["blocks.0.attn.qkv.weight"] = torch.zeros(3, 3)
    del state["norm.weight"]
    path = tmp_path / "bad.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, path)
    for check in (models.check_model_source, lambda *a: models.load_model(*a, "cpu")):
        with pytest.raises(WeightsFileError) as err:
            check("timm:test_vit", str(path))
        message = str(err.value)
        assert "\n" not in message and "do not fit timm's test_vit" in message
        assert "blocks.0.attn.qkv.weight: file (3, 3)" in message and "norm.weight" in message


@pytest.mark.slow
def test_analyze_on_the_command_line(test_vit_32, tmp_path: Path) -> None:
    image = tmp_path / "photo.png"
    pixels = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(image)
    out = tmp_path / "out"
    args = ["analyze", str(image), "--model", "timm:test_vit", "--weights", str(test_vit_32[2])]
    assert main([*args, "--out", str(out), "--device", "cpu"]) == 0
    attention = np.load(out / "photo.attention.npy")
    assert attention.shape == (6, 2, 5, 5)
    np.testing.assert_allclose(attention.sum(-1), 1.0, atol=1e-5)
    facts = json.loads((out / "photo.json").read_text())
    assert facts["model"] == "timm:test_vit" and facts["grid"] == [2, 2]
    assert facts["prefix_tokens"] == ["CLS"] and len(facts["predictions"]) == 5


@pytest.mark.slow
def test_a_fine_tuned_checkpoint_loads_back(test_vit_32, tmp_path: Path) -> None:
    for name, build in [
        ("test_vit", lambda: copy.deepcopy(test_vit_32[0])),
        ("deit_tiny_distilled_patch16_224", lambda: timm.create_model(
            "deit_tiny_distilled_patch16_224", img_size=32).eval()),
    ]:  # fmt: skip
        module = build()
        base = models.LoadedModel(
            module, family.spec_for(module, name, "random"), torch.device("cpu")
        )
        tuned = with_new_head(base, ("cat", "dog"), "fine-tuned")
        with torch.no_grad():
            for p in SplitViT(tuned.module, 0).head.parameters():
                p.add_(torch.randn_like(p))
        path = tmp_path / f"{name}.safetensors"
        models.save_checkpoint(path, tuned)
        models.check_model_source(str(path))
        back = models.load_model(str(path), device="cpu")
        assert back.spec.class_names == ("cat", "dog") and back.spec.name == f"timm:{name}"
        assert back.spec.prefix_kinds == adapter_for(module).prefix_kinds
        images = _images(module)
        with torch.no_grad():
            torch.testing.assert_close(back.module(images), module(images), atol=1e-6, rtol=0)


def test_checkpoint_config_is_checked() -> None:
    good = {"model_name": "test_vit", "num_classes": 2, "img_size": 32}
    assert family.TimmFamily().check_config("timm:test_vit", good) == (32, 2)
    for bad, words in [
        ({**good, "depth": 3}, "unknown setting 'depth'"),
        ({**good, "model_name": "vit_tiny_patch16_224"}, "is not the architecture"),
        ({**good, "num_classes": -1}, "num_classes must be from 0"),
        ({**good, "img_size": 30}, "not a whole"),
        ({**good, "projection": 0, "num_classes": 0}, "projection must be from 1"),
    ]:
        with pytest.raises(ValueError, match=words):
            family.TimmFamily().check_config("timm:test_vit", bad)


@pytest.mark.slow
def test_default_weights_come_from_timms_cache_only(test_vit_32, tmp_path, monkeypatch) -> None:
    import huggingface_hub

    with pytest.raises(WeightsUnavailableError, match="not downloaded"):
        models.load_model("timm:test_vit", "default", "cpu", allow_download=False)
    offer = family.default_weights_download("timm:test_vit")
    assert not offer.cached and offer.url.endswith("timm/test_vit.r160_in1k/resolve/main/"
                                                   "model.safetensors")  # fmt: skip

    def offline(*args, **kwargs):
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", offline)
    with pytest.raises(WeightsUnavailableError) as err:
        models.load_model("timm:test_vit", "default", "cpu")
    assert "\n" not in str(err.value) and "name resolution" in str(err.value)

    torch.manual_seed(4)
    pretrained = timm.create_model("test_vit", pretrained=False).eval()
    cached = tmp_path / "model.safetensors"
    save_file(pretrained.state_dict(), cached)
    seen: list[tuple[int, int]] = []

    def download(repo, filename, *, revision=None, tqdm_class=None):
        assert (repo, filename) == ("timm/test_vit.r160_in1k", "model.safetensors")
        bar = tqdm_class(total=10)
        bar.update(4)
        bar.update(6)
        return str(cached)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", lambda *a, **k: None)
    loaded = models.load_model(
        "timm:test_vit", "default", "cpu", progress=lambda *a: seen.append(a)
    )
    assert seen == [(4, 10), (10, 10)] and loaded.weights_file == cached.resolve()
    assert loaded.spec.weights == "timm test_vit.r160_in1k"
    images = torch.randn(1, 3, 160, 160)
    with torch.no_grad():
        assert torch.equal(loaded.module(images), pretrained(images))
    with pytest.raises(DownloadCancelled):
        models.load_model("timm:test_vit", "default", "cpu", cancelled=lambda: True)

    # once in the cache, no download is tried at all
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: str(cached))
    again = models.load_model("timm:test_vit", "default", "cpu", allow_download=False)
    assert family.default_weights_download("timm:test_vit").cached
    with torch.no_grad():
        assert torch.equal(again.module(images), pretrained(images))


def test_default_weights_offline_say_no_network_at_once(monkeypatch, no_dns) -> None:
    """The hub unreachable (no name resolution): one connection attempt, not the hub client's
    minute of retries, and a message that says there is no network."""

    from huggingface_hub import constants

    lookups = no_dns
    with pytest.raises(WeightsUnavailableError) as err:
        models.load_model("timm:test_vit", "default", "cpu")
    message = str(err.value)
    assert message.startswith("no network (the Hugging Face hub cannot be reached: ")
    assert "name resolution" in message and "--weights FILE" in message and "\n" not in message
    assert "timm's test_vit.r160_in1k weights are not in the cache (" in message
    assert "models--timm--test_vit.r160_in1k)" in message
    assert 1 <= len(lookups) <= 2 and set(lookups) == {"huggingface.co"}
    cause = err.value.__cause__  # what the app's worker recognises: a download without network
    assert isinstance(cause, DownloadError) and cause.kind == "network"
    assert "name resolution" in str(cause)

    lookups.clear()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(WeightsUnavailableError, match=r"no network \(.*HF_HUB_OFFLINE"):
        models.load_model("timm:test_vit", "default", "cpu")
    assert lookups == []


def test_the_structure_of_a_model_whose_prefix_tokens_have_no_position_embedding() -> None:
    """timm keeps registers (and, with no_embed_class, the class token) out of pos_embed: the
    analytics' structure reads the patches' embeddings alone."""
    import timm

    from vitexplorer.core.explain.structure import model_structure
    from vitexplorer.core.models.families.registry import adapter_for

    module = timm.create_model(
        "vit_tiny_patch16_224",
        img_size=32,
        patch_size=8,
        depth=1,
        num_heads=2,
        embed_dim=32,
        reg_tokens=2,
        no_embed_class=True,
    ).eval()
    adapter = adapter_for(module)
    assert adapter.num_prefix_tokens == 3 and len(adapter.position_embeddings()) == 16
    similarity, components, shares = model_structure(module, (4, 4), 3, count=4)
    assert similarity.shape == (4, 4, 4, 4)
    assert np.allclose([similarity[r, c, r, c] for r in range(4) for c in range(4)], 1.0)
