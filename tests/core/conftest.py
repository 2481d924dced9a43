"""Fixtures of the command-line tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import TINY
from vitexplorer.core.models import load_model, save_checkpoint


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
