"""chefer-lrp against its oracle (tests/core/chefer_reference.py: Chefer et al.'s CVPR 2021
relprop rebuilt as per-module classes, image by image) on random timm and torchvision ViTs with
random heads, at batch 1 and 4; then every family, rectangular grids, progress and cancel, and
the model left as it was."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import tiny_hf_config, tiny_spec
from tests.core import chefer_reference as reference
from vitexplorer.core.explain.maps import attribute, explanation_map
from vitexplorer.core.explain.method import MethodCancelled, MethodOptions, get
from vitexplorer.core.models.loading import LoadedModel

timm = pytest.importorskip("timm")

CPU = torch.device("cpu")


def normalised_difference(ours: np.ndarray, theirs: np.ndarray) -> float:
    """The largest absolute difference of each image's maps, each divided by its max |value|."""
    worst = 0.0
    for a, b in zip(ours.reshape(len(ours), -1), theirs.reshape(len(theirs), -1), strict=True):
        a = a.astype(np.float64) / np.abs(a).max()
        b = b.astype(np.float64) / np.abs(b).max()
        worst = max(worst, float(np.abs(a - b).max()))
    return worst


def _randomised(module: torch.nn.Module, seed: int, spread: float = 0.05) -> torch.nn.Module:
    """Every parameter moved off its init (near-zero tokens, zero biases, a zero head)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(spread * torch.randn(p.shape, generator=generator))
    return module.eval()


def _timm(seed: int = 0, **changes) -> torch.nn.Module:
    kwargs = dict(img_size=32, patch_size=8, depth=3, num_heads=2, embed_dim=32, num_classes=10)
    torch.manual_seed(seed)
    name = changes.pop("name", "vit_tiny_patch16_224")
    return _randomised(timm.create_model(name, pretrained=False, **{**kwargs, **changes}), seed)


def _loaded_timm(module: torch.nn.Module, name: str = "vit_tiny_patch16_224") -> LoadedModel:
    from vitexplorer.core.models.families import timm as family

    return LoadedModel(module, family.spec_for(module, name, "random"), CPU)


def _images(n: int, height: int = 32, width: int = 32, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, height, width, generator=torch.Generator().manual_seed(seed))


def _check_against_reference(
    model: LoadedModel, ref: reference.Reference, images: torch.Tensor, target, start: int
) -> float:
    """The normalised difference of our maps and the reference's, one class for all images
    (None: each image's predicted class)."""
    grid = None
    rows, cols = model.spec.grid
    if images.shape[-2:] != (rows * model.spec.patch_size, cols * model.spec.patch_size):
        grid = (images.shape[-2] // model.spec.patch_size, images.shape[-1] // model.spec.patch_size)
    expected, chosen, _ = reference.reference_maps(ref, images, [target] * len(images), start)
    options = MethodOptions(start_layer=start, target_class=target)
    result = attribute("chefer-lrp", model, images, options, grid)
    assert list(result.targets) == chosen
    assert np.abs(expected.numpy()).max() > 1e-6  # maps that are not zero: the test can fail
    assert result.maps.shape == (len(images), *(grid or model.spec.grid))
    return normalised_difference(result.maps, expected.numpy())


@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("start", [0, 1])
def test_equals_the_reference_on_a_small_timm_vit(batch: int, start: int) -> None:
    module = _timm(seed=3)
    model = _loaded_timm(module)
    images = _images(batch)
    for target in (None, 7):
        difference = _check_against_reference(
            model, reference.from_timm(module), images, target, start
        )
        assert difference < 1e-5, difference


def test_equals_the_reference_on_a_rectangular_grid() -> None:
    module = _timm(seed=4)
    model = _loaded_timm(module)
    images = _images(2, 24, 48)  # a 3x6 grid on a 4x4 model: the positions are resampled
    ref = reference.from_timm(module, embed=model.adapter.embed)
    difference = _check_against_reference(model, ref, images, None, 0)
    assert difference < 1e-5, difference


@pytest.mark.slow
@pytest.mark.parametrize("batch", [1, 4])
def test_equals_the_reference_on_torchvision_vit_b_16(batch: int) -> None:
    import torchvision

    from vitexplorer.core.models.families.torchvision import spec_for

    torch.manual_seed(0)
    module = torchvision.models.vit_b_16(weights=None)
    torch.nn.init.normal_(module.heads.head.weight, std=0.02)  # torchvision zeroes the head
    torch.nn.init.normal_(module.heads.head.bias, std=0.02)
    module.eval()
    model = LoadedModel(module, spec_for("vit_b_16", module, "random"), CPU)
    images = _images(batch, 224, 224)
    difference = _check_against_reference(
        model, reference.from_torchvision(module), images, None, 1
    )
    assert difference < 1e-5, difference


@pytest.mark.slow
@pytest.mark.parametrize("batch", [1, 4])
def test_equals_the_reference_on_timm_vit_tiny_at_224(batch: int) -> None:
    torch.manual_seed(0)
    module = _randomised(
        timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=1000), 0, 0.02
    )
    model = _loaded_timm(module)
    images = _images(batch, 224, 224)
    difference = _check_against_reference(
        model, reference.from_timm(module), images, None, 1
    )
    assert difference < 1e-5, difference
