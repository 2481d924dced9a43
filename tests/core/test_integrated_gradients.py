"""Integrated gradients, proven against captum's ``IntegratedGradients`` (method
"gausslegendre", the rule vitexplorer uses) on a random timm ViT-Tiny and a random torchvision
ViT-B/16 with a random head, at batch 1 and 4; completeness (the map sums to the score's change
from the baseline) on every family, rectangular grids included; the baselines; progress, cancel
and the model left as it was."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tests.conftest import TINY, tiny_hf_config, tiny_spec
from vitexplorer.core.explain import gradient_sums
from vitexplorer.core.explain.attribution import patch_sums
from vitexplorer.core.explain.baselines import baseline_images, blur_kernel_size, gaussian_blur
from vitexplorer.core.explain.maps import attribute, explanation_map
from vitexplorer.core.explain.method import MethodCancelled, MethodOptions, get
from vitexplorer.core.explain.methods.integrated_gradients import path_points
from vitexplorer.core.models.capture import model_forward
from vitexplorer.core.models.loading import LoadedModel
from vitexplorer.core.models.vit import SmallViT

captum = pytest.importorskip("captum")
timm = pytest.importorskip("timm")

from captum.attr import IntegratedGradients  # noqa: E402

CPU = torch.device("cpu")


def normalised_difference(ours: np.ndarray, theirs: np.ndarray) -> float:
    """The largest absolute difference after dividing each by its largest absolute value."""
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    assert np.abs(theirs).max() > 0  # a reference of zeros could not tell a wrong map
    return float(np.abs(ours / np.abs(ours).max() - theirs / np.abs(theirs).max()).max())


def perturbed(module: nn.Module, seed: int = 0, scale: float = 0.05) -> nn.Module:
    """``module`` in eval mode, every parameter moved off its init (zero biases, a zero head)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=generator))
    return module.eval()


def timm_tiny_model(**changes) -> LoadedModel:
    """A random timm model at 32 px in 8 px patches, width 32, two layers and heads."""
    from vitexplorer.core.models.families import timm as family

    name = changes.pop("name", "vit_tiny_patch16_224")
    kwargs = dict(img_size=32, patch_size=8, depth=2, num_heads=2, embed_dim=32, num_classes=10)
    torch.manual_seed(0)
    module = perturbed(timm.create_model(name, pretrained=False, **{**kwargs, **changes}), 0, 0.2)
    return LoadedModel(module, family.spec_for(module, name, "random"), CPU)


def small_vit_model() -> LoadedModel:
    torch.manual_seed(0)
    module = SmallViT(TINY).eval()
    nn.init.normal_(module.head.weight, std=0.5)
    return LoadedModel(module, tiny_spec(), CPU)


def torchvision_tiny_model() -> LoadedModel:
    from torchvision.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    module = VisionTransformer(32, 8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64)
    nn.init.normal_(module.heads.head.weight, std=0.5)  # torchvision's head starts at zero
    return LoadedModel(module.eval(), tiny_spec(), CPU)


def hf_model() -> LoadedModel:
    import transformers

    from vitexplorer.core.models.families.hf_model import HFClassifier

    torch.manual_seed(0)
    inner = transformers.ViTForImageClassification(tiny_hf_config(num_labels=10))
    module = perturbed(HFClassifier(inner, "ViTForImageClassification", 32), 0, 0.2)
    return LoadedModel(module, tiny_spec(), CPU)


def checkpoint_model(path) -> LoadedModel:
    from vitexplorer.core.models.loading import load_model

    return load_model(str(path), "default", "cpu")


def wrapped_model() -> LoadedModel:
    import vitexplorer
    from tests.core.test_api_wrap import hand_vit

    wrapped = vitexplorer.wrap(
        hand_vit(),
        [f"blocks.{i}.attn" for i in range(2)],
        patch_size=8,
        image_size=32,
        device="cpu",
    )
    return wrapped.loaded


FAMILIES = {
    "small_vit": small_vit_model,
    "torchvision": torchvision_tiny_model,
    "timm": timm_tiny_model,
    "timm distilled": lambda: timm_tiny_model(name="deit_tiny_distilled_patch16_224"),
    "timm registers": lambda: timm_tiny_model(reg_tokens=4, no_embed_class=True),
    "timm pooled": lambda: timm_tiny_model(class_token=False, global_pool="avg"),
    "hf": hf_model,
    "wrapped": wrapped_model,
}
"""The tiny model of every family; each prefix-token layout (CLS, CLS and distillation, CLS and
four registers, none with mean pooling)."""


def images_for(model: LoadedModel, batch: int, grid: tuple[int, int] | None = None, seed: int = 1):
    rows, cols = grid or model.spec.grid
    patch = model.spec.patch_size
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, rows * patch, cols * patch, generator=generator)


def captum_ig(
    model: LoadedModel, images: torch.Tensor, baselines: torch.Tensor, targets, steps: int
) -> np.ndarray:
    """captum's attributions summed over the colour channels, (batch, H, W)."""
    explainer = IntegratedGradients(model.module)
    attributions = explainer.attribute(
        images,
        baselines=baselines,
        target=torch.as_tensor(targets),
        n_steps=steps,
        method="gausslegendre",
    )
    return attributions.detach().sum(dim=1).numpy()


def independent_baseline(model: LoadedModel, images: torch.Tensor, kind: str) -> torch.Tensor:
    """The baseline written out here: black through the normalisation, zeros, or the image
    blurred by torchvision's own ``gaussian_blur`` (sigma one patch)."""
    from torchvision.transforms.functional import gaussian_blur as tv_blur

    if kind == "mean":
        return torch.zeros_like(images)
    if kind == "black":
        mean, std = torch.tensor(model.spec.mean), torch.tensor(model.spec.std)
        return ((0 - mean) / std).view(1, 3, 1, 1).expand_as(images).clone()
    sigma = float(model.spec.patch_size)
    height, width = images.shape[-2:]
    sizes = [blur_kernel_size(sigma, width), blur_kernel_size(sigma, height)]
    return tv_blur(images, sizes, [sigma, sigma])


def check_against_captum(model: LoadedModel, batch: int, baseline: str, steps: int) -> float:
    images = images_for(model, batch)
    options = MethodOptions(path_steps=steps, baseline=baseline)
    ours = attribute("integrated-gradients", model, images, options)
    start = independent_baseline(model, images, baseline)
    theirs = captum_ig(model, images, start, ours.targets, steps)
    with torch.no_grad():
        predicted = model.module(images).argmax(dim=1).numpy()
    assert (ours.targets == predicted).all()  # no class given: each image's predicted class
    for index in range(batch):  # each image alone, as it is shown
        difference = normalised_difference(ours.pixels[index], theirs[index])
        assert difference < 1e-5, (index, difference)
    np.testing.assert_allclose(ours.maps, patch_sums(ours.pixels, model.spec.grid), atol=1e-6)
    return normalised_difference(ours.pixels, theirs)


# --- the oracle ----------------------------------------------------------------------------------


def test_the_path_is_captums_gauss_legendre_rule() -> None:
    from captum.attr._utils.approximation_methods import approximation_parameters

    for steps in (1, 4, 50):
        sizes, alphas = approximation_parameters("gausslegendre")
        ours_alphas, ours_sizes = path_points(steps)
        np.testing.assert_allclose(ours_alphas, alphas(steps), rtol=0, atol=1e-15)
        np.testing.assert_allclose(ours_sizes, sizes(steps), rtol=0, atol=1e-15)
        assert abs(sum(ours_sizes) - 1.0) < 1e-12 and 0 < min(ours_alphas) <= max(ours_alphas) < 1


@pytest.mark.parametrize(("batch", "baseline"), [(1, "black"), (1, "mean"), (4, "blur")])
def test_equals_captum_on_a_random_timm_vit_tiny(batch: int, baseline: str) -> None:
    from vitexplorer.core.models.families import timm as family

    torch.manual_seed(0)  # ViT-Tiny's width, heads and patches, at 64 px and 4 layers (CPU time)
    tiny = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=64, depth=4)
    module = perturbed(tiny, 3)
    model = LoadedModel(module, family.spec_for(module, "vit_tiny_patch16_224", "random"), CPU)
    assert check_against_captum(model, batch, baseline, steps=8) < 1e-5


@pytest.fixture(scope="module")
def vit_b_16() -> LoadedModel:
    """A random torchvision ViT-B/16 with a random head (torchvision zero-initialises it, and
    every gradient would be zero)."""
    import torchvision

    from vitexplorer.core.models.families.torchvision import spec_for

    torch.manual_seed(0)
    module = torchvision.models.vit_b_16(weights=None).eval()
    nn.init.normal_(module.heads.head.weight, std=0.02)
    return LoadedModel(module, spec_for("vit_b_16", module, "random"), CPU)


@pytest.mark.slow
@pytest.mark.parametrize(("batch", "steps"), [(1, 3), (4, 2)])  # few steps: CPU time
def test_equals_captum_on_a_random_torchvision_vit_b_16(vit_b_16, batch: int, steps: int) -> None:
    assert check_against_captum(vit_b_16, batch, "black", steps) < 1e-5


# --- completeness, every family ------------------------------------------------------------------


def score_change(model: LoadedModel, images, starts, targets, any_size: bool) -> np.ndarray:
    with torch.no_grad():
        ends = model_forward(model.adapter, images, any_size)
        begins = model_forward(model.adapter, starts, any_size)
    rows = torch.arange(len(targets))
    return (ends - begins)[rows, torch.as_tensor(targets)].numpy()


@pytest.mark.parametrize("baseline", ["black", "mean", "blur"])
def test_the_map_adds_up_to_the_scores_change_from_the_baseline(baseline: str) -> None:
    model = small_vit_model()
    images = images_for(model, 2)
    options = MethodOptions(path_steps=48, baseline=baseline, target_class=3)
    result = attribute("integrated-gradients", model, images, options)
    change = score_change(model, images, baseline_images(model, images, baseline), [3, 3], False)
    assert np.abs(change).min() > 0.05  # a change worth explaining
    np.testing.assert_allclose(result.pixels.sum(axis=(1, 2)), change, rtol=2e-4, atol=1e-5)
    np.testing.assert_allclose(result.maps.sum(axis=(1, 2)), change, rtol=2e-4, atol=1e-5)
    # with a single step the rule is far off: the test sees the integral
    rough = attribute(
        "integrated-gradients",
        model,
        images,
        MethodOptions(path_steps=1, baseline=baseline, target_class=3),
    )
    assert np.abs(rough.pixels.sum(axis=(1, 2)) - change).max() > 1e-3


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_family_any_prefix_and_a_rectangular_grid(family: str) -> None:
    model = FAMILIES[family]()
    grids = [None] if family == "wrapped" else [None, (3, 5)]
    for grid in grids:
        any_size = grid is not None
        images = images_for(model, 2, grid)
        # the wrapped model's attention is sharp (qkv weights of std 0.5): a longer path
        options = MethodOptions(path_steps=80 if family == "wrapped" else 24)
        result = attribute("integrated-gradients", model, images, options, grid=grid)
        rows, cols = grid or model.spec.grid
        assert result.maps.shape == (2, rows, cols) and result.maps.dtype == np.float32
        assert result.pixels.shape == (2, *images.shape[-2:])
        np.testing.assert_allclose(result.maps, patch_sums(result.pixels, (rows, cols)), atol=1e-6)
        starts = baseline_images(model, images, "black")
        change = score_change(model, images, starts, result.targets, any_size)
        assert np.abs(change).max() > 1e-3
        # the quadrature's error is within half a percent (a lost factor is not)
        np.testing.assert_allclose(result.pixels.sum(axis=(1, 2)), change, rtol=5e-3, atol=1e-4)
        single = explanation_map(
            "integrated-gradients", options, model=model, batch=images[1:], grid=grid
        )
        np.testing.assert_allclose(single, result.maps[1], rtol=1e-4, atol=1e-6)


def test_a_vitexplorer_checkpoint(checkpoint) -> None:
    model = checkpoint_model(checkpoint)
    images = images_for(model, 1)
    result = attribute("integrated-gradients", model, images, MethodOptions(path_steps=32))
    change = score_change(
        model, images, baseline_images(model, images, "black"), result.targets, False
    )
    np.testing.assert_allclose(result.pixels.sum(axis=(1, 2)), change, rtol=1e-3, atol=1e-4)


def test_a_wrapped_model_refuses_another_grid_in_one_line() -> None:
    model = wrapped_model()
    with pytest.raises(ValueError) as caught:
        attribute(
            "integrated-gradients",
            model,
            images_for(model, 1, (3, 5)),
            MethodOptions(),
            grid=(3, 5),
        )
    assert "\n" not in str(caught.value) and "aspect" in str(caught.value)


# --- the baselines -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["black", "mean", "blur"])
def test_the_baselines(kind: str) -> None:
    model = small_vit_model()
    for grid in ((4, 4), (3, 5), (1, 6)):  # a one-patch-high strip: the kernel is cut
        images = images_for(model, 2, grid)
        ours = baseline_images(model, images, kind)
        assert ours.shape == images.shape and ours.dtype == images.dtype
        torch.testing.assert_close(
            ours, independent_baseline(model, images, kind), atol=1e-6, rtol=1e-5
        )
    if kind == "blur":  # a flat image stays flat (the kernel sums to 1); detail is gone
        flat = torch.full((1, 3, 32, 32), 0.7)
        torch.testing.assert_close(baseline_images(model, flat, kind), flat)
        assert ours.std() < 0.5 * images.std()
    with pytest.raises(ValueError, match="unknown baseline 'white'; use one of black, mean, blur"):
        baseline_images(model, images, "white")


def test_the_blur_is_gaussian() -> None:
    impulse = torch.zeros(1, 1, 41, 41)
    impulse[0, 0, 20, 20] = 1.0
    blurred = gaussian_blur(impulse, 3.0)[0, 0]
    assert abs(float(blurred.sum()) - 1.0) < 1e-6
    y, x = torch.meshgrid(torch.arange(41.0) - 20, torch.arange(41.0) - 20, indexing="ij")
    variance = float((blurred * y**2).sum())
    assert 8.8 < variance < 9.0  # sigma 3; the kernel cut at 3 sigmas each way loses a little
    assert abs(float((blurred * x**2).sum()) - variance) < 1e-5


# --- the model left as it was, progress and cancel ------------------------------------------------


def test_the_model_is_left_as_it_was() -> None:
    model = timm_tiny_model()
    module = model.module
    images = images_for(model, 2)
    with torch.no_grad():
        before = module(images)
    module.train()  # a model in training mode: explained in eval mode, left in training mode
    states = {name: p.detach().clone() for name, p in module.named_parameters()}
    attribute("integrated-gradients", model, images, MethodOptions(path_steps=3))
    assert module.training and all(m.training for m in module.modules())
    assert all(p.grad is None for p in module.parameters())
    assert all(torch.equal(p, states[name]) for name, p in module.named_parameters())
    assert not any("forward" in vars(m) for m in module.modules())
    module.eval()
    with torch.no_grad():
        torch.testing.assert_close(module(images), before, rtol=0, atol=0)


def test_progress_after_each_pass_and_the_chunks_change_nothing(monkeypatch) -> None:
    model = small_vit_model()
    images = images_for(model, 2)
    options = MethodOptions(path_steps=5)
    whole = attribute("integrated-gradients", model, images, options)
    monkeypatch.setattr(gradient_sums, "points_per_pass", lambda model, grid: 3)
    calls: list[tuple[int, int]] = []
    chunked = attribute(
        "integrated-gradients",
        model,
        images,
        options,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]  # 2 images x 5 steps in passes of 3
    np.testing.assert_allclose(chunked.pixels, whole.pixels, rtol=1e-5, atol=1e-7)


def test_cancel_stops_and_leaves_the_model_as_it_was(monkeypatch) -> None:
    model = small_vit_model()
    model.module.train()
    monkeypatch.setattr(gradient_sums, "points_per_pass", lambda model, grid: 2)
    calls: list[int] = []

    def cancel_at_the_second(done: int, total: int) -> None:
        calls.append(done)
        if done == 2:
            raise MethodCancelled()

    with pytest.raises(MethodCancelled):
        attribute(
            "integrated-gradients",
            model,
            images_for(model, 1),
            MethodOptions(path_steps=8),
            progress=cancel_at_the_second,
        )
    assert calls == [1, 2]  # stopped at once
    assert model.module.training and all(p.grad is None for p in model.module.parameters())


# --- the description and bad input ----------------------------------------------------------------


def test_the_description_and_its_cost() -> None:
    method = get("integrated-gradients")
    assert method.pixels and not method.per_token and method.only_cls
    assert method.requires_classifier and method.class_specific and method.needs_backward
    assert method.options == ("target_class", "path_steps", "baseline")
    assert method.passes(MethodOptions(path_steps=50)) == 100
    assert method.cost_words(MethodOptions(path_steps=20)) == "2 per path step (40 at 20)"
    assert "Gauss-Legendre" in method.help and "Gauss-Legendre" in method.summary


def test_bad_options_and_input_are_refused_in_one_line() -> None:
    from dataclasses import replace

    for bad, words in (
        (dict(path_steps=0), "path steps 0 must be from 1 to 10000"),
        (dict(path_steps=2.5), "path steps must be a whole number"),
        (dict(baseline="white"), "unknown baseline 'white'; use one of black, mean, blur"),
    ):
        with pytest.raises(ValueError) as caught:
            MethodOptions(**bad)
        assert str(caught.value) == words or str(caught.value).startswith(words)
        assert "\n" not in str(caught.value)
    model = small_vit_model()
    with pytest.raises(ValueError, match=r"^target class 12 is outside 0..9$"):
        attribute(
            "integrated-gradients", model, images_for(model, 1), MethodOptions(target_class=12)
        )
    from vitexplorer.core.explain.methods.integrated_gradients import integrated_gradients

    with pytest.raises(ValueError, match=r"^target class 12 is outside 0..9$"):  # no dispatcher
        integrated_gradients(model, images_for(model, 1), MethodOptions(target_class=12))
    with pytest.raises(ValueError, match=r"is \(batch, 3, 32, 32\), not \(1, 3, 24, 32\)$"):
        attribute("integrated-gradients", model, torch.zeros(1, 3, 24, 32), MethodOptions())
    encoder = replace(tiny_spec(), has_classifier=False)
    with pytest.raises(ValueError, match="no classifier.*integrated-gradients"):
        MethodOptions().check("integrated-gradients", encoder)


@pytest.mark.parametrize("method", ["integrated-gradients", "smoothgrad"])
def test_the_same_maps_inside_inference_mode(method: str) -> None:
    """A caller inside ``torch.inference_mode`` (a worker's) gets the same maps."""
    model = small_vit_model()
    images = images_for(model, 2)
    options = MethodOptions(path_steps=3, samples=2)
    outside = attribute(method, model, images, options)
    with torch.inference_mode():
        inside = attribute(method, model, images.clone(), options)
    assert np.abs(outside.pixels).max() > 0
    np.testing.assert_allclose(inside.pixels, outside.pixels, rtol=1e-6, atol=1e-8)
