"""Shared fixtures: tiny models of both kinds, so the suite runs in seconds on two CPU cores."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import hashlib
from pathlib import Path

import pytest
import torch
from torchvision.models.vision_transformer import VisionTransformer

from vitexplorer.core.models.vit import SmallViT, SmallViTConfig

TINY = SmallViTConfig(image_size=32, patch_size=8, width=32, depth=2, heads=2, num_classes=10)


def tiny_spec():  # a ModelSpec; core.models imports torchvision, kept lazy
    """The spec of both tiny models below: 32 px, 8 px patches (4x4), 2 layers, 2 heads, and
    10 classes named ``class 0`` .. ``class 9``."""
    from vitexplorer.core.models.spec import ModelSpec

    return ModelSpec(
        name="small_vit",
        display_name="tiny",
        weights="random",
        image_size=32,
        resize_size=32,
        patch_size=8,
        num_layers=2,
        num_heads=2,
        class_names=tuple(f"class {i}" for i in range(10)),
    )


@pytest.fixture
def tiny_small_vit() -> SmallViT:
    torch.manual_seed(0)
    return SmallViT(TINY).eval()


@pytest.fixture
def tiny_torchvision_vit() -> VisionTransformer:
    torch.manual_seed(0)
    model = VisionTransformer(
        image_size=32,
        patch_size=8,
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        mlp_dim=64,
        num_classes=10,
    )
    # torchvision zero-initialises the head; random values make the logit checks meaningful
    torch.nn.init.normal_(model.heads.head.weight, std=0.5)
    return model.eval()


@pytest.fixture(scope="session")
def vit_b_32_state(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A random ViT-B/32 state dict saved as torchvision names its downloads (name-sha256.pth)."""
    from vitexplorer.core.models.loading import load_model

    torch.manual_seed(0)
    state = load_model("vit_b_32", "none", "cpu").module.state_dict()
    torch.nn.init.normal_(state["heads.head.weight"], std=0.02)
    folder = tmp_path_factory.mktemp("weights")
    raw = folder / "raw.pth"
    torch.save(state, raw)
    digest = hashlib.sha256(raw.read_bytes()).hexdigest()[:8]
    path = folder / f"vit_b_32-{digest}.pth"
    raw.rename(path)
    return path, state


COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (40, 60, 220), "grey": (128,) * 3}


def write_colour_dataset(
    root: Path, per_class: int, classes: tuple[str, ...] = ("red", "green", "blue"), size: int = 16
) -> Path:
    """A folder of class subfolders, each class one noisy colour: an easy, real dataset."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in classes:
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            noise = rng.normal(0, 30, (size, size, 3))
            pixels = np.clip(np.array(COLOURS[name]) + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    return root


def write_colour_splits(root: Path) -> Path:
    """train/ and test/ with two classes of noisy 32 px colours (8 and 4 images a class)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", 8), ("test", 4)):
        for name, colour in (("blue", (20, 40, 220)), ("red", (220, 30, 20))):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = np.clip(rng.normal(colour, 25, (32, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:02d}.png")
    return root


@pytest.fixture
def colour_dataset(tmp_path: Path) -> Path:
    """Three classes of 20 noisy 16x16 colour images, no train/test split."""
    return write_colour_dataset(tmp_path / "colours", 20)


def tiny_hf_config(kind: str = "ViTConfig", **changes):
    """A tiny transformers config of ``kind`` (32 px, 8 px patches, width 32, two layers, two
    heads), for tests of the Hugging Face family; ``changes`` override any field."""
    import transformers

    fields = dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=32,
        patch_size=8,
    )
    return getattr(transformers, kind)(**{**fields, **changes})


# where load_model finds what torchvision's default weights are (tests replace it)
TV_DOWNLOAD = "vitexplorer.core.models.families.torchvision.default_weights_download"


@pytest.fixture
def no_dns(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """No network in this process: every name lookup fails as it does offline; the hosts looked
    up are listed (to count the connection attempts)."""
    import socket

    lookups: list[str] = []

    def unresolved(host, *args, **kwargs):
        lookups.append(host)
        raise socket.gaierror(-3, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", unresolved)
    return lookups
