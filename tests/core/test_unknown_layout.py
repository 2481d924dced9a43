"""A state dict of an architecture vitexplorer does not know (a public CIFAR-10 ViT with key
names of its own, made up here): opened alone or under any model name, one line that says no
name will load it, which layouts do, and that a module of one's own is not supported."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from vitexplorer.core.models import loading as models
from vitexplorer.core.models.checkpoint import WeightsFileError
from vitexplorer.core.models.families.registry import TORCHVISION_VITS


@pytest.fixture
def cifar_vit(tmp_path: Path) -> Path:
    """Keys as lucidrains' vit-pytorch names them: none of vitexplorer's layouts."""
    torch.manual_seed(0)
    state = {
        "to_patch_embedding.1.weight": torch.randn(32, 3 * 4 * 4),
        "pos_embedding": torch.randn(1, 65, 32),
        "cls_token": torch.randn(1, 1, 32),
        "transformer.layers.0.0.fn.to_qkv.weight": torch.randn(96, 32),
        "transformer.layers.0.1.fn.net.0.weight": torch.randn(64, 32),
        "mlp_head.1.weight": torch.randn(10, 32),
    }
    path = tmp_path / "cifar_vit.safetensors"
    save_file(state, path)
    return path


def _says_what_loads(message: str) -> None:
    assert "\n" not in message
    assert "no --model NAME will load it" in message
    for layout in ("torchvision's ViTs", "timm:NAME", "hf:FOLDER", "small_vit"):
        assert layout in message
    assert all(name in message for name in TORCHVISION_VITS)
    assert "A module of your own is not supported" in message
    assert "choose the architecture" not in message  # the advice every name then defeated


def test_opened_alone(cifar_vit: Path) -> None:
    with pytest.raises(WeightsFileError) as err:
        models.load_model(str(cifar_vit), device="cpu")
    message = str(err.value)
    assert message.startswith("cifar_vit.safetensors has no vitexplorer metadata")
    _says_what_loads(message)


@pytest.mark.parametrize("name", ["vit_b_16", "timm:vit_tiny_patch16_224"])
def test_under_a_model_name(cifar_vit: Path, name: str) -> None:
    pytest.importorskip("timm")
    with pytest.raises(WeightsFileError) as err:
        models.load_model(name, str(cifar_vit), "cpu")
    message = str(err.value)
    assert message.startswith("cifar_vit.safetensors: the weights do not fit")
    assert "unexpected key(s)" in message  # what did not fit comes first
    _says_what_loads(message)


@pytest.mark.slow
def test_a_known_layout_under_the_wrong_name_keeps_its_own_message(tmp_path: Path) -> None:
    """A torchvision file under a timm name matches a layout: no 'no name will load it'."""
    pytest.importorskip("timm")
    from torchvision.models import vit_b_32

    path = tmp_path / "tv.safetensors"
    save_file(vit_b_32().state_dict(), path)
    with pytest.raises(WeightsFileError) as err:
        models.load_model("timm:vit_tiny_patch16_224", str(path), "cpu")
    assert "do not fit" in str(err.value) and "no --model NAME" not in str(err.value)


def test_under_a_hugging_face_folder(cifar_vit: Path, tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(
        image_size=32, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        patch_size=8, intermediate_size=64, num_labels=3,
    )  # fmt: skip
    transformers.ViTForImageClassification(config).save_pretrained(tmp_path / "vit")
    with pytest.raises(WeightsFileError) as err:
        models.load_model(f"hf:{tmp_path / 'vit'}", str(cifar_vit), "cpu")
    assert str(err.value).startswith("cifar_vit.safetensors: the weights do not fit")
    _says_what_loads(str(err.value))
