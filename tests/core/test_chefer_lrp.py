"""chefer-lrp against its oracle (tests/core/chefer_reference.py: Chefer et al.'s CVPR 2021
relprop rebuilt as per-module classes, image by image) on random timm and torchvision ViTs with
random heads, at batch 1 and 4; then every family, rectangular grids, progress and cancel, and
the model left as it was."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import tiny_spec
from tests.core import chefer_reference as reference
from tests.core.test_blocks import KINDS, tiny_model
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
        grid = (
            images.shape[-2] // model.spec.patch_size,
            images.shape[-1] // model.spec.patch_size,
        )
    expected, chosen, _ = reference.reference_maps(ref, images, [target] * len(images), start)
    options = MethodOptions(start_layer=start, target_class=target)
    result = attribute("chefer-lrp", model, images, options, grid)
    assert list(result.targets) == chosen
    assert np.abs(expected.numpy()).max() > 1e-6  # maps that are not zero: the test can fail
    assert result.maps.shape == (len(images), *(grid or model.spec.grid))
    return normalised_difference(result.maps, expected.numpy())


@pytest.mark.parametrize(("batch", "start", "target"), [(1, 0, None), (4, 1, 7)])
def test_equals_the_reference_on_a_small_timm_vit(batch: int, start: int, target) -> None:
    module = _timm(seed=3)
    model = _loaded_timm(module)
    ref = reference.from_timm(module)
    difference = _check_against_reference(model, ref, _images(batch), target, start)
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
    difference = _check_against_reference(model, reference.from_timm(module), images, None, 1)
    assert difference < 1e-5, difference


def test_equals_the_reference_on_a_pooling_timm_vit() -> None:
    """No class token: the average pool's z-rule and the mean of the rollout's rows."""
    module = _timm(seed=5, class_token=False, global_pool="avg")
    model = _loaded_timm(module)
    difference = _check_against_reference(model, reference.from_timm(module), _images(3), 2, 0)
    assert difference < 1e-5, difference


def test_equals_the_reference_on_a_small_torchvision_vit(tiny_torchvision_vit) -> None:
    module = _randomised(tiny_torchvision_vit, 6)
    model = LoadedModel(module, tiny_spec(), CPU)
    ref = reference.from_torchvision(module)
    difference = _check_against_reference(model, ref, _images(3), None, 0)
    assert difference < 1e-5, difference


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in module.state_dict().items()}


@pytest.mark.parametrize("kind", KINDS)
def test_every_family_batches_as_one_image_at_a_time_and_is_left_as_it_was(kind: str) -> None:
    module = tiny_model(kind)
    module.train()  # the method runs in eval mode and gives the mode back
    model = LoadedModel(module, tiny_spec(), CPU)
    images = _images(2)
    before, weights = _plain(module, images), _state(module)
    options = MethodOptions(target_class=3)
    together = attribute("chefer-lrp", model, images, options).maps
    assert together.shape == (2, 4, 4) and together.dtype == np.float32
    assert np.isfinite(together).all() and (np.abs(together) > 0).any()
    alone = attribute("chefer-lrp", model, images[1:], options).maps
    assert normalised_difference(together[1:], alone) < 1e-5
    assert module.training
    assert all(p.grad is None for p in module.parameters())
    assert "forward" not in vars(module) and all("forward" not in vars(m) for m in module.modules())
    after = _state(module)
    assert all(torch.equal(after[name], weights[name]) for name in weights)
    torch.testing.assert_close(_plain(module, images), before, rtol=0, atol=0)


def _plain(module: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    was = module.training
    module.eval()
    with torch.no_grad():
        logits = module(images)
    module.train(was)
    return logits


@pytest.mark.parametrize("kind", ["torchvision", "timm registers", "hf vit"])
def test_a_rectangular_grid_on_every_family(kind: str) -> None:
    model = LoadedModel(tiny_model(kind), tiny_spec(), CPU)
    images = _images(2, 24, 48)
    heat = explanation_map(
        "chefer-lrp", MethodOptions(), model=model, batch=images[:1], grid=(3, 6)
    )
    assert heat.shape == (3, 6) and np.isfinite(heat).all() and (heat != 0).any()
    maps = attribute("chefer-lrp", model, images, MethodOptions(), (3, 6)).maps
    assert normalised_difference(maps[:1], heat[None]) < 1e-5


def test_the_class_and_the_start_layer_change_the_map() -> None:
    model = _loaded_timm(_timm(seed=7))
    images = _images(1)
    first = explanation_map("chefer-lrp", MethodOptions(target_class=1), model=model, batch=images)
    other = explanation_map("chefer-lrp", MethodOptions(target_class=2), model=model, batch=images)
    later = explanation_map(
        "chefer-lrp", MethodOptions(target_class=1, start_layer=2), model=model, batch=images
    )
    assert normalised_difference(first[None], other[None]) > 1e-3
    assert normalised_difference(first[None], later[None]) > 1e-3
    relevance = explanation_map(
        "relevance", MethodOptions(target_class=1), model=model, batch=images
    )
    assert normalised_difference(first[None], relevance[None]) > 1e-3  # not the ICCV rule


def test_progress_counts_three_passes_and_cancel_leaves_the_model() -> None:
    module = _timm(seed=8)
    model = _loaded_timm(module)
    seen: list[tuple[int, int]] = []
    attribute(
        "chefer-lrp", model, _images(2), MethodOptions(), None, lambda d, t: seen.append((d, t))
    )
    assert seen == [(1, 3), (2, 3), (3, 3)]

    def cancel(done: int, total: int) -> None:
        if done == 2:
            raise MethodCancelled

    module.train()
    with pytest.raises(MethodCancelled):
        attribute("chefer-lrp", model, _images(2), MethodOptions(), None, cancel)
    assert module.training and all(p.grad is None for p in module.parameters())


def test_what_it_cannot_explain_is_refused_in_one_line() -> None:
    qk_norm = _loaded_timm(_timm(seed=9, qk_norm=True))
    with pytest.raises(ValueError, match=r"chefer-lrp cannot propagate relevance through") as err:
        explanation_map("chefer-lrp", MethodOptions(), model=qk_norm, batch=_images(1))
    assert "\n" not in str(err.value) and "relevance" in str(err.value)
    with pytest.raises(ValueError, match="start layer 4 does not exist"):
        explanation_map(
            "chefer-lrp",
            MethodOptions(start_layer=3),
            model=_loaded_timm(_timm()),
            batch=_images(1),
        )
    with pytest.raises(ValueError, match="target class 12 is outside 0..9"):
        explanation_map(
            "chefer-lrp",
            MethodOptions(target_class=12),
            model=_loaded_timm(_timm()),
            batch=_images(1),
        )


def test_the_catalogue_describes_it() -> None:
    method = get("chefer-lrp")
    assert method.options == ("target_class", "start_layer") and method.cost == 3
    assert not method.per_token and method.only_cls and method.requires_classifier
    assert "CVPR 2021" in method.paper and "--start-layer 2" in method.help
