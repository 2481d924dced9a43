"""Fixtures of the command-line tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import TINY
from vitexplorer.core.models.loading import LoadedModel, load_model, save_checkpoint
from vitexplorer.core.models.vit import SmallViTConfig


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny small-ViT checkpoint (4x4 patches, 2 layers, 2 heads) with a non-trivial head."""
    torch.manual_seed(0)
    model = load_model("small_vit", "none", "cpu", small_config=TINY)
    torch.nn.init.normal_(model.module.head.weight, std=0.5)
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_checkpoint(path, model)
    return path


@pytest.fixture(scope="session")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny small-ViT checkpoint with ten anonymous classes and its own random head: the
    model fine-tuning starts from."""
    torch.manual_seed(0)
    model = load_model("small_vit", "none", "cpu", small_config=TINY)
    path = tmp_path_factory.mktemp("base") / "tiny.safetensors"
    save_checkpoint(path, model)
    return path


def distinct_small_vit(seed: int, patch: int = 8, depth: int = 2) -> LoadedModel:
    """A tiny small ViT (32 px, width 32, two heads) whose attention is far from uniform (its
    qkv weights drawn with std 0.5), so two seeds give heads and maps that differ clearly."""
    config = SmallViTConfig(
        image_size=32, patch_size=patch, width=32, depth=depth, heads=2, num_classes=10
    )
    torch.manual_seed(seed)
    model = load_model("small_vit", "none", "cpu", small_config=config)
    torch.nn.init.normal_(model.module.head.weight, std=0.5)  # classes that differ
    for block in model.module.blocks:
        torch.nn.init.normal_(block.attn.qkv.weight, std=0.5)
    return model
