"""A bare state dict's family, read off its keys and shapes: and the way to open it, said."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision.models.vision_transformer import VisionTransformer

from tests.conftest import TINY, tiny_hf_config
from vitexplorer.cli import main
from vitexplorer.core.models.checkpoint import WeightsFileError
from vitexplorer.core.models.families.layouts import recognise_layout
from vitexplorer.core.models.loading import load_model
from vitexplorer.core.models.vit import SmallViT


def _shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


@pytest.mark.slow
def test_timm_layouts() -> None:
    timm = pytest.importorskip("timm")
    plain = recognise_layout(_shapes(timm.create_model("vit_tiny_patch16_224")))
    assert plain is not None and plain.family == "timm"
    assert (plain.width, plain.depth, plain.patch, plain.image_size) == (192, 12, 16, 224)
    assert plain.num_classes == 1000 and plain.prefix == ("cls",)
    assert "--model timm:vit_tiny_patch16_224" in plain.describe()
    distilled = recognise_layout(_shapes(timm.create_model("deit_tiny_distilled_patch16_224")))
    assert distilled.prefix == ("cls", "dist") and "deit_tiny_distilled_patch16_224" in (
        distilled.describe()
    )
    registers = recognise_layout(
        _shapes(timm.create_model("vit_small_patch14_reg4_dinov2", img_size=56))
    )
    assert registers.prefix == ("cls", "reg", "reg", "reg", "reg")
    assert registers.image_size == 56 and registers.num_classes is None
    assert "no classifier, CLS + 4 registers" in registers.describe()


def test_torchvision_small_vit_and_hugging_face_layouts() -> None:
    tv = VisionTransformer(32, 8, num_layers=2, num_heads=2, hidden_dim=768, mlp_dim=64)
    found = recognise_layout(_shapes(tv))
    assert found.family == "torchvision" and (found.depth, found.image_size) == (2, 32)
    assert "--model vit_b_8" in found.describe()
    small = recognise_layout(_shapes(SmallViT(TINY)))
    assert small.family == "vitexplorer small" and (small.width, small.depth) == (32, 2)
    transformers = pytest.importorskip("transformers")
    config = tiny_hf_config(num_hidden_layers=3, num_labels=5)
    hf = recognise_layout(_shapes(transformers.ViTForImageClassification(config)))
    assert hf.family == "Hugging Face" and (hf.width, hf.depth, hf.num_classes) == (32, 3, 5)
    assert "hf:FOLDER" in hf.describe()


def test_unknown_layout_is_none() -> None:
    assert recognise_layout({"weight": (3, 3), "bias": (3,)}) is None


@pytest.mark.slow
def test_a_timm_file_given_to_the_wrong_architecture_says_what_it_is(
    tmp_path: Path, capsys
) -> None:
    timm = pytest.importorskip("timm")
    model = timm.create_model(
        "vit_tiny_patch16_224", img_size=32, patch_size=8, depth=2, num_classes=3
    )
    path = tmp_path / "tiny.pth"
    torch.save(model.state_dict(), path)
    for name in ("small_vit", "vit_b_16", str(path)):
        with pytest.raises(WeightsFileError, match="looks like a timm ViT"):
            load_model(name, str(path), "cpu")
    image = Path(__file__).parents[2] / "vitexplorer" / "resources" / "sample.png"
    args = ["analyze", str(image), "--model", "vit_b_16", "--weights", str(path)]
    assert main([*args, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "looks like a timm ViT (width 192, depth 2, patch 8" in err
    # no timm model has that shape by name: no made-up name is suggested
    assert "--model timm:NAME --weights FILE" in err
