"""An image analysed at its own aspect ratio: a rectangular patch grid, position embeddings
resized to it as timm resizes them, for every family; the square path unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import TINY, tiny_hf_config, tiny_spec
from vitexplorer.core.analysis import analyze_image
from vitexplorer.core.capture import forward_with_attention
from vitexplorer.core.data import aspect_grid, display_crop, preprocess
from vitexplorer.core.families import adapter_for
from vitexplorer.core.families.base import resample_positions
from vitexplorer.core.families.small_vit import spec_for as small_vit_spec
from vitexplorer.core.models import LoadedModel
from vitexplorer.core.vit import SmallViT

timm = pytest.importorskip("timm")
transformers = pytest.importorskip("transformers")


def test_the_grid_keeps_the_proportions_and_the_patch_count() -> None:
    spec = tiny_spec()  # 4x4 = 16 patches
    assert aspect_grid(300, 200, spec) == (3, 5)
    assert aspect_grid(200, 300, spec) == (5, 3)
    assert aspect_grid(100, 100, spec) == (4, 4)
    assert aspect_grid(10_000, 10, spec) == (2, 8)  # cut to 4:1, as the preprocessing cuts it
    image = Image.new("RGB", (300, 200), (10, 200, 30))
    batch = preprocess(image, spec, keep_aspect=True)
    assert batch.shape == (3, 3 * 8, 5 * 8)
    display = display_crop(image, spec, keep_aspect=True)
    assert display.shape[0] * 5 == display.shape[1] * 3  # the grid's proportions exactly
    assert preprocess(image, spec).shape == (3, 32, 32)  # the square crop as before


def test_resampled_positions_equal_timms() -> None:
    positions = torch.randn(1, 1 + 7 * 7, 12)
    ours = resample_positions(positions, (5, 9), 1)
    theirs = timm.layers.resample_abs_pos_embed(positions, new_size=[5, 9], num_prefix_tokens=1)
    assert torch.allclose(ours, theirs, atol=1e-6)
    assert resample_positions(positions, (7, 7), 1) is positions


def _tiny_models() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    from torchvision.models.vision_transformer import VisionTransformer

    tv = VisionTransformer(32, 8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64)
    torch.nn.init.normal_(tv.heads.head.weight, std=0.5)
    config = tiny_hf_config(num_labels=10)
    from vitexplorer.core.families.hf_model import HFClassifier

    hf = HFClassifier(
        transformers.ViTForImageClassification(config), "ViTForImageClassification", 32
    )
    kwargs = dict(img_size=32, patch_size=8, depth=2, num_heads=2, embed_dim=32, num_classes=10)
    return {
        "small_vit": SmallViT(TINY),
        "torchvision": tv,
        "timm": timm.create_model("vit_tiny_patch16_224", **kwargs),
        "timm registers": timm.create_model(
            "vit_tiny_patch16_224", reg_tokens=2, no_embed_class=True, **kwargs
        ),
        "hf": hf,
    }


@pytest.mark.parametrize("kind", ["small_vit", "torchvision", "timm", "timm registers", "hf"])
def test_the_parts_equal_the_forward_and_accept_rectangles(kind: str) -> None:
    module = _tiny_models()[kind].eval()
    adapter = adapter_for(module)
    square = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        assert torch.allclose(adapter.forward_parts(square), module(square), atol=1e-5)
        rectangle = torch.randn(2, 3, 24, 48)  # a 3x6 grid
        logits, attention = forward_with_attention(module, rectangle, any_size=True)
    prefix = adapter.num_prefix_tokens
    assert attention.shape[-1] == prefix + 3 * 6
    assert torch.allclose(attention.sum(-1), torch.ones(()), atol=1e-5)
    with torch.inference_mode():
        assert torch.allclose(logits, adapter.forward_parts(rectangle), atol=1e-5)
        if kind.startswith("timm"):  # timm's own dynamic-size model, same weights
            dynamic = timm.create_model(
                "vit_tiny_patch16_224",
                dynamic_img_size=True,
                img_size=32,
                patch_size=8,
                depth=2,
                num_heads=2,
                embed_dim=32,
                num_classes=10,
                **({"reg_tokens": 2, "no_embed_class": True} if "registers" in kind else {}),
            ).eval()
            dynamic.load_state_dict(module.state_dict())
            assert torch.allclose(logits, dynamic(rectangle), atol=1e-5)
        if kind == "hf":  # transformers' own interpolate_pos_encoding
            assert torch.allclose(logits, module(rectangle), atol=1e-5)


def test_analysis_at_the_image_aspect_ratio() -> None:
    torch.manual_seed(1)
    model = LoadedModel(SmallViT(TINY).eval(), small_vit_spec(TINY, "random"), torch.device("cpu"))
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (60, 120, 3), np.uint8))
    wide = analyze_image(model, image, keep_aspect=True)
    assert wide.spec.grid == aspect_grid(120, 60, model.spec) == (3, 6)
    assert wide.attention.shape == (2, 2, 1 + 18, 1 + 18)
    assert wide.statistics.distance.shape == (2, 2)
    assert model.spec.grid == (4, 4)  # the model's own spec is untouched
    square = analyze_image(model, image)
    assert square.spec.grid == (4, 4) and square.attention.shape[-1] == 17


def test_analyze_keep_aspect_on_the_command_line(tmp_path, capsys) -> None:  # noqa: ANN001
    import json

    from vitexplorer.cli import main
    from vitexplorer.core.models import save_checkpoint

    torch.manual_seed(2)
    model = LoadedModel(SmallViT(TINY).eval(), small_vit_spec(TINY, "random"), torch.device("cpu"))
    checkpoint = tmp_path / "tiny.safetensors"
    save_checkpoint(checkpoint, model)
    image = tmp_path / "wide.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 255, (40, 120, 3), np.uint8)).save(image)
    out = tmp_path / "out"
    args = ["analyze", str(image), "--model", str(checkpoint), "--out", str(out)]
    assert main([*args, "--aspect", "keep", "--method", "rollout", "--method", "relevance"]) == 0
    facts = json.loads((out / "wide.json").read_text())
    grid = aspect_grid(120, 40, model.spec)
    assert facts["grid"] == list(grid) == [2, 7]
    assert np.load(out / "wide.attention.npy").shape[-1] == 1 + 14
    for method in ("rollout", "relevance"):
        assert np.load(out / f"wide.{method}.npy").shape == grid
        card = json.loads((out / f"wide.{method}.json").read_text())
        assert card["input"] == {"aspect": "keep", "grid": [2, 7]}
    assert main([*args, "--aspect", "crop"]) == 0
    assert json.loads((out / "wide.json").read_text())["grid"] == [4, 4]


def test_stats_keep_aspect_averages_each_image_on_its_own_grid(tmp_path, capsys) -> None:  # noqa: ANN001
    import json

    from vitexplorer.cli import main
    from vitexplorer.core.explain import average_statistics
    from vitexplorer.core.models import save_checkpoint

    torch.manual_seed(4)
    model = LoadedModel(SmallViT(TINY).eval(), small_vit_spec(TINY, "random"), torch.device("cpu"))
    checkpoint = tmp_path / "tiny.safetensors"
    save_checkpoint(checkpoint, model)
    rng = np.random.default_rng(5)
    images = []
    for name, shape in (("wide.png", (40, 120, 3)), ("tall.png", (90, 30, 3))):
        images.append(tmp_path / name)
        Image.fromarray(rng.integers(0, 255, shape, np.uint8)).save(images[-1])
    out = tmp_path / "out"
    args = ["stats", *map(str, images), "--model", str(checkpoint), "--out", str(out)]
    assert main([*args, "--aspect", "keep"]) == 0
    card = json.loads((out / "head_stats.json").read_text())
    assert card["input"] == {"aspect": "keep"}
    expected = average_statistics(
        [analyze_image(model, Image.open(p).convert("RGB"), True).statistics for p in images]
    )
    first = (out / "head_stats.csv").read_text().splitlines()[1].split(",")
    assert float(first[2]) == pytest.approx(float(expected.distance[0, 0]), abs=1e-4)
