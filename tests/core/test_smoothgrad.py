"""SmoothGrad, proven against captum's ``NoiseTunnel(Saliency)`` (``nt_type="smoothgrad"``)
fed the same noise, on a random timm ViT-Tiny and a random torchvision ViT-B/16 with a random
head, at batch 1 and 4; the noise (seeded, never the global random state, the paper's scale);
every family and a rectangular grid; progress, cancel and the model left as it was.

How captum gets our noise: ``NoiseTunnel._add_noise_to_input(input, stdev, n)`` returns
``input.repeat_interleave(n, 0) + torch.normal(0, stdev)`` (image by image, each image's ``n``
copies together); the test replaces it by ``input.repeat_interleave(n, 0) + ours``, where
``ours`` is :func:`smoothgrad_noise` (the noise vitexplorer adds, in that order). captum takes
one stdev for a whole batch, vitexplorer one per image (its range), so the stdev is ours too."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import tiny_spec
from tests.core.test_integrated_gradients import (
    CPU,
    FAMILIES,
    images_for,
    normalised_difference,
    perturbed,
    small_vit_model,
    timm_tiny_model,
    vit_b_16,  # noqa: F401  (the module's fixture: a random ViT-B/16 with a random head)
)
from vitexplorer.core.explain import gradient_sums
from vitexplorer.core.explain.attribution import input_gradients, patch_sums
from vitexplorer.core.explain.maps import attribute, explanation_map
from vitexplorer.core.explain.method import MethodCancelled, MethodOptions, get
from vitexplorer.core.explain.methods.smoothgrad import noise_draws, smoothgrad_noise
from vitexplorer.core.models.loading import LoadedModel

captum = pytest.importorskip("captum")
timm = pytest.importorskip("timm")

from captum.attr import NoiseTunnel, Saliency  # noqa: E402


def captum_smoothgrad(
    model: LoadedModel, images: torch.Tensor, options: MethodOptions, targets, monkeypatch
) -> np.ndarray:
    """captum's SmoothGrad fed our noise, summed over the colour channels: (batch, H, W)."""
    noise = smoothgrad_noise(images, options.samples, options.noise, options.noise_seed)

    def ours(input: torch.Tensor, stdev: float, samples: int) -> torch.Tensor:
        assert samples == options.samples and input.shape[0] * samples == noise.shape[0]
        return input.repeat_interleave(samples, dim=0) + noise

    monkeypatch.setattr(NoiseTunnel, "_add_noise_to_input", staticmethod(ours))
    tunnel = NoiseTunnel(Saliency(model.module))
    attributions = tunnel.attribute(
        images,
        nt_type="smoothgrad",
        nt_samples=options.samples,
        stdevs=1.0,  # not used: the noise is ours
        target=torch.as_tensor(targets),
    )
    return attributions.detach().sum(dim=1).numpy()


def check_against_captum(
    model: LoadedModel, batch: int, samples: int, monkeypatch, plain: bool = True
) -> float:
    images = images_for(model, batch)
    options = MethodOptions(samples=samples, noise=0.2, noise_seed=7)
    ours = attribute("smoothgrad", model, images, options)
    with torch.no_grad():
        predicted = model.module(images).argmax(dim=1).numpy()
    assert (ours.targets == predicted).all()  # no class given: each image's predicted class
    theirs = captum_smoothgrad(model, images, options, ours.targets, monkeypatch)
    for index in range(batch):
        difference = normalised_difference(ours.pixels[index], theirs[index])
        assert difference < 1e-5, (index, difference)
    np.testing.assert_allclose(ours.maps, patch_sums(ours.pixels, model.spec.grid), atol=1e-6)
    if plain:  # the noise matters: without it the map is another (the plain gradient's)
        gradient = attribute("smoothgrad", model, images, MethodOptions(samples=1, noise=0.0))
        assert normalised_difference(gradient.pixels, ours.pixels) > 1e-2
    return normalised_difference(ours.pixels, theirs)


# --- the oracle ----------------------------------------------------------------------------------


@pytest.mark.parametrize("batch", [1, 4])
def test_equals_captum_on_a_random_timm_vit_tiny(batch: int, monkeypatch) -> None:
    from vitexplorer.core.models.families import timm as family

    torch.manual_seed(0)  # ViT-Tiny's width, heads and patches, at 64 px and 4 layers (CPU time)
    tiny = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=64, depth=4)
    module = perturbed(tiny, 3)
    model = LoadedModel(module, family.spec_for(module, "vit_tiny_patch16_224", "random"), CPU)
    assert check_against_captum(model, batch, 6, monkeypatch) < 1e-5


@pytest.mark.slow
@pytest.mark.parametrize(("batch", "samples"), [(1, 3), (4, 2)])  # few samples: CPU time
def test_equals_captum_on_a_random_torchvision_vit_b_16(
    vit_b_16: LoadedModel,  # noqa: F811
    batch: int,
    samples: int,
    monkeypatch,
) -> None:
    assert check_against_captum(vit_b_16, batch, samples, monkeypatch, plain=False) < 1e-5


def test_the_map_is_the_mean_absolute_gradient_summed_over_the_channels() -> None:
    """By hand: each noisy copy's gradient from input_gradients, |.|, mean, channel sum."""
    model = small_vit_model()
    images = images_for(model, 2)
    options = MethodOptions(samples=5, noise=0.1, noise_seed=3, target_class=4)
    noise = smoothgrad_noise(images, 5, 0.1, 3).view(2, 5, 3, 32, 32)
    expected = []
    for index in range(2):
        copies = images[index : index + 1] + noise[index]
        _, _, gradient = input_gradients(model, copies, 4)
        expected.append(gradient.abs().mean(dim=0).sum(dim=0).numpy())
    result = attribute("smoothgrad", model, images, options)
    np.testing.assert_allclose(result.pixels, np.stack(expected), rtol=1e-5, atol=1e-7)
    assert (result.targets == 4).all()
    other = attribute(
        "smoothgrad",
        model,
        images,
        MethodOptions(samples=5, noise=0.1, noise_seed=3, target_class=7),
    )
    assert normalised_difference(other.pixels, result.pixels) > 1e-2  # the class matters


# --- the noise -----------------------------------------------------------------------------------


def test_the_noise_is_seeded_and_scaled_by_each_images_range() -> None:
    images = images_for(small_vit_model(), 2)
    images[1] *= 3.0  # the second image's range is three times the first's
    state = torch.random.get_rng_state()
    noise = smoothgrad_noise(images, 40, 0.25, seed=11).view(2, 40, -1)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global generator untouched
    for index in range(2):
        spread = float(images[index].max() - images[index].min())
        assert abs(float(noise[index].std()) / (0.25 * spread) - 1.0) < 0.01
        assert abs(float(noise[index].mean())) < 0.01 * spread
    torch.testing.assert_close(
        noise, smoothgrad_noise(images, 40, 0.25, seed=11).view(2, 40, -1), rtol=0, atol=0
    )  # made again, the same
    assert not torch.allclose(noise, smoothgrad_noise(images, 40, 0.25, seed=12).view(2, 40, -1))
    # each image's noise comes from its own generator: the same alone as in the batch
    alone = smoothgrad_noise(images[1:], 40, 0.25, seed=11).view(1, 40, -1)
    torch.testing.assert_close(alone[0], noise[1], rtol=0, atol=0)
    spreads = [float(image.max() - image.min()) for image in images]
    unit = [noise[index] / (0.25 * spreads[index]) for index in range(2)]
    torch.testing.assert_close(unit[1], unit[0], rtol=1e-5, atol=1e-5)  # the same draws, scaled
    first = next(noise_draws(images[0], 0.25, 11))
    torch.testing.assert_close(first.flatten(), noise[0, 0], rtol=0, atol=0)


def test_seeds_batches_and_repeats() -> None:
    model = small_vit_model()
    images = images_for(model, 3)
    options = MethodOptions(samples=4, noise_seed=5)
    batch = attribute("smoothgrad", model, images, options)
    again = attribute("smoothgrad", model, images, options)
    np.testing.assert_array_equal(batch.pixels, again.pixels)
    alone = explanation_map("smoothgrad", options, model=model, batch=images[2:])
    np.testing.assert_allclose(alone, batch.maps[2], rtol=1e-5, atol=1e-7)
    other = attribute("smoothgrad", model, images, MethodOptions(samples=4, noise_seed=6))
    assert normalised_difference(other.pixels, batch.pixels) > 1e-3


# --- every family --------------------------------------------------------------------------------


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_family_any_prefix_and_a_rectangular_grid(family: str) -> None:
    model = FAMILIES[family]()
    grids = [None] if family == "wrapped" else [None, (3, 5)]
    options = MethodOptions(samples=3, noise=0.1, target_class=2)
    for grid in grids:
        any_size = grid is not None
        images = images_for(model, 2, grid)
        result = attribute("smoothgrad", model, images, options, grid=grid)
        rows, cols = grid or model.spec.grid
        assert result.maps.shape == (2, rows, cols) and result.maps.dtype == np.float32
        np.testing.assert_allclose(result.maps, patch_sums(result.pixels, (rows, cols)), atol=1e-6)
        noise = smoothgrad_noise(images, 3, 0.1, 0).view(2, 3, *images.shape[1:])
        for index in range(2):  # the same by hand through the family's forward
            _, _, gradient = input_gradients(model, images[index] + noise[index], 2, any_size)
            expected = gradient.abs().mean(dim=0).sum(dim=0).numpy()
            assert np.abs(expected).max() > 0
            np.testing.assert_allclose(result.pixels[index], expected, rtol=1e-4, atol=1e-7)


def test_a_vitexplorer_checkpoint(checkpoint) -> None:
    from vitexplorer.core.models.loading import load_model

    model = load_model(str(checkpoint), "default", "cpu")
    heat = explanation_map(
        "smoothgrad", MethodOptions(samples=2), model=model, batch=images_for(model, 1)
    )
    assert heat.shape == (4, 4) and np.isfinite(heat).all() and (heat > 0).all()


# --- the model left as it was, progress and cancel ------------------------------------------------


def test_the_model_is_left_as_it_was() -> None:
    model = timm_tiny_model()
    module = model.module
    images = images_for(model, 2)
    with torch.no_grad():
        before = module(images)
    module.train()
    attribute("smoothgrad", model, images, MethodOptions(samples=3))
    assert module.training and all(m.training for m in module.modules())
    assert all(p.grad is None for p in module.parameters())
    assert not any("forward" in vars(m) for m in module.modules())
    module.eval()
    with torch.no_grad():
        torch.testing.assert_close(module(images), before, rtol=0, atol=0)


def test_progress_after_each_pass_and_the_chunks_change_nothing(monkeypatch) -> None:
    model = small_vit_model()
    images = images_for(model, 3)
    options = MethodOptions(samples=3, noise_seed=2)
    whole = attribute("smoothgrad", model, images, options)
    monkeypatch.setattr(gradient_sums, "points_per_pass", lambda model, grid: 2)
    calls: list[tuple[int, int]] = []
    chunked = attribute(
        "smoothgrad",
        model,
        images,
        options,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls == [(done, 5) for done in range(1, 6)]  # 3 images x 3 samples in passes of 2
    np.testing.assert_allclose(chunked.pixels, whole.pixels, rtol=1e-5, atol=1e-7)


def test_cancel_stops_and_leaves_the_model_as_it_was(monkeypatch) -> None:
    model = small_vit_model()
    model.module.train()
    monkeypatch.setattr(gradient_sums, "points_per_pass", lambda model, grid: 1)
    calls: list[int] = []

    def cancel(done: int, total: int) -> None:
        calls.append(done)
        raise MethodCancelled()

    with pytest.raises(MethodCancelled):
        attribute(
            "smoothgrad", model, images_for(model, 1), MethodOptions(samples=6), progress=cancel
        )
    assert calls == [1]
    assert model.module.training and all(p.grad is None for p in model.module.parameters())


# --- the description and bad input ----------------------------------------------------------------


def test_the_description_and_its_cost() -> None:
    method = get("smoothgrad")
    assert method.pixels and not method.per_token and method.only_cls
    assert method.requires_classifier and method.class_specific and method.needs_backward
    assert method.options == ("target_class", "samples", "noise", "noise_seed")
    assert method.passes(MethodOptions(samples=25)) == 50
    assert method.cost_words(MethodOptions(samples=10)) == "2 per sample (20 at 10)"
    assert "summed over the colour channels" in method.help


def test_bad_options_and_input_are_refused_in_one_line() -> None:
    from dataclasses import replace

    for bad, words in (
        (dict(samples=0), "samples 0 must be from 1 to 10000"),
        (dict(noise=-0.1), "noise -0.1 must be from 0 to 10"),
        (dict(noise=float("nan")), "noise must be a finite number, not nan"),
        (dict(noise_seed=-1), "noise seed -1 must be from 0 to"),
    ):
        with pytest.raises(ValueError) as caught:
            MethodOptions(**bad)
        assert str(caught.value).startswith(words) and "\n" not in str(caught.value)
    model = small_vit_model()
    with pytest.raises(ValueError, match=r"^target class 10 is outside 0..9$"):
        attribute("smoothgrad", model, images_for(model, 1), MethodOptions(target_class=10))
    with pytest.raises(ValueError, match=r"^the batch holds no image; give at least one$"):
        attribute("smoothgrad", model, torch.zeros(0, 3, 32, 32), MethodOptions())
    encoder = replace(tiny_spec(), has_classifier=False)
    with pytest.raises(ValueError, match="no classifier.*smoothgrad"):
        MethodOptions().check("smoothgrad", encoder)
