"""Occlusion against its oracles: a brute-force loop written plainly here (one occluded image a
forward) and Captum's ``Occlusion`` with a patch-sized window and stride, on a random timm ViT
and (slow) a random torchvision ViT-B/16; then every family, prefix tokens, rectangular grids,
progress and cancel, and a model left as it was."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from torch import nn

from tests.conftest import TINY, tiny_hf_config, tiny_spec
from vitexplorer.core.explain.baselines import baseline_images
from vitexplorer.core.explain.maps import attribute, explanation_map
from vitexplorer.core.explain.method import MethodCancelled, MethodOptions, get
from vitexplorer.core.explain.methods.occlusion import occlusion_maps
from vitexplorer.core.models.loading import LoadedModel
from vitexplorer.core.models.vit import SmallViT

timm = pytest.importorskip("timm")
captum_occlusion = pytest.importorskip("captum.attr").Occlusion

CPU = torch.device("cpu")
TIMM_TINY = dict(img_size=32, patch_size=8, depth=2, num_heads=2, embed_dim=32, num_classes=10)


def normalised_gap(ours: np.ndarray, reference: np.ndarray) -> float:
    """The issue's measure: the largest absolute difference once both are divided by their
    largest absolute value."""
    ours, reference = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
    assert np.abs(reference).max() > 1e-6  # a map of zeros would prove nothing
    return float(np.abs(ours / np.abs(ours).max() - reference / np.abs(reference).max()).max())


def brute_force(forward, images, targets, grid, fill) -> np.ndarray:
    """Occlusion by hand: for each image and patch, one forward of the image with that patch's
    pixels taken from ``fill``; the target's clean logit minus the occluded one."""
    rows, cols = grid
    ph, pw = images.shape[-2] // rows, images.shape[-1] // cols
    maps = np.zeros((len(images), rows, cols))
    with torch.inference_mode():
        for b, target in enumerate(targets):
            image = images[b : b + 1]
            clean = forward(image)[0, target].item()
            for r in range(rows):
                for c in range(cols):
                    hidden = image.clone()
                    window = (..., slice(r * ph, (r + 1) * ph), slice(c * pw, (c + 1) * pw))
                    hidden[window] = fill[b : b + 1][window]
                    maps[b, r, c] = clean - forward(hidden)[0, target].item()
    return maps


def captum_per_patch(forward, images, targets, grid, fill) -> np.ndarray:
    """Captum's Occlusion with a patch-sized window and stride: every pixel of a window holds
    the window's drop, so each patch's value is read from its pixels (their mean)."""
    rows, cols = grid
    ph, pw = images.shape[-2] // rows, images.shape[-1] // cols
    pixels = captum_occlusion(forward).attribute(
        images,
        sliding_window_shapes=(3, ph, pw),
        strides=(3, ph, pw),
        baselines=fill,
        target=torch.as_tensor(targets),
        perturbations_per_eval=16,
    )
    blocks = pixels.detach().double().reshape(len(images), 3, rows, ph, cols, pw)
    spread = blocks.amax(dim=(1, 3, 5)) - blocks.amin(dim=(1, 3, 5))
    assert spread.max() < 1e-9  # one value a patch, as the window puts it
    return blocks.mean(dim=(1, 3, 5)).numpy()


def timm_model(seed: int = 0, **extra) -> LoadedModel:
    from vitexplorer.core.models.families.timm import spec_for

    torch.manual_seed(seed)
    module = timm.create_model("vit_tiny_patch16_224", pretrained=False, **TIMM_TINY | extra)
    for p in module.parameters():  # off the init's zero biases and near-zero tokens
        p.data.add_(0.05 * torch.randn_like(p))
    module.eval()
    return LoadedModel(module, spec_for(module, "vit_tiny_patch16_224", "random"), CPU)


def tiny_small_vit_model(seed: int = 0) -> LoadedModel:
    torch.manual_seed(seed)
    module = SmallViT(TINY).eval()
    nn.init.normal_(module.head.weight, std=0.5)
    return LoadedModel(module, tiny_spec(), CPU)


def images_for(model: LoadedModel, count: int, seed: int = 1) -> torch.Tensor:
    size = model.spec.image_size
    return torch.randn(count, 3, size, size, generator=torch.Generator().manual_seed(seed))


def targets_of(model: LoadedModel, images: torch.Tensor) -> list[int]:
    with torch.inference_mode():
        return model.module(images).argmax(dim=1).tolist()


def fill_for(model: LoadedModel, images: torch.Tensor, kind: str) -> torch.Tensor:
    """The baseline written out independently: black normalised, zeros, or torchvision's
    Gaussian blur (sigma one patch, kernel 3 sigma each way, reflected)."""
    if kind == "mean":
        return torch.zeros_like(images)
    if kind == "black":
        mean = torch.tensor(model.spec.mean)[:, None, None]
        std = torch.tensor(model.spec.std)[:, None, None]
        return ((torch.zeros_like(images) - mean) / std).float()
    sigma = float(model.spec.patch_size)
    height, width = images.shape[-2:]
    sizes = [2 * min(math.ceil(3 * sigma), side - 1) + 1 for side in (width, height)]
    return TF.gaussian_blur(images, sizes, [sigma, sigma])


# --- the oracles -------------------------------------------------------------------------------


@pytest.mark.parametrize("baseline", ["black", "mean", "blur"])
@pytest.mark.parametrize("count", [1, 4])
def test_pixels_equal_the_brute_force_loop_and_captum_on_a_timm_vit(count, baseline):
    model = timm_model()
    images = images_for(model, count)
    targets = targets_of(model, images)
    fill = fill_for(model, images, baseline)
    result = attribute("occlusion", model, images, MethodOptions(baseline=baseline))
    assert result.maps.shape == (count, 4, 4) and result.maps.dtype == np.float32
    assert result.targets.tolist() == targets and result.pixels is None
    loop = brute_force(model.module, images, targets, (4, 4), fill)
    assert normalised_gap(result.maps, loop) < 1e-5
    reference = captum_per_patch(model.module, images, targets, (4, 4), fill)
    assert normalised_gap(result.maps, reference) < 1e-5
    assert normalised_gap(loop, reference) < 1e-5


def test_a_chosen_class_is_explained_and_another_class_differs():
    model = timm_model()
    images = images_for(model, 2)
    fill = fill_for(model, images, "black")
    three = attribute("occlusion", model, images, MethodOptions(target_class=3))
    assert three.targets.tolist() == [3, 3]
    assert (
        normalised_gap(three.maps, brute_force(model.module, images, [3, 3], (4, 4), fill)) < 1e-5
    )
    seven = attribute("occlusion", model, images, MethodOptions(target_class=7))
    assert normalised_gap(seven.maps, three.maps) > 1e-2


def test_the_baselines_mean_what_they_say():
    model = timm_model()
    images = images_for(model, 2)
    spec = model.spec
    black = baseline_images(model, images, "black")
    # an all-black picture put through the model's normalisation
    raw = torch.zeros(3, 32, 32)
    expected = TF.normalize(raw, list(spec.mean), list(spec.std))
    torch.testing.assert_close(black, expected.expand_as(images), atol=1e-6, rtol=0)
    assert (baseline_images(model, images, "mean") == 0).all()
    blur = baseline_images(model, images, "blur")
    torch.testing.assert_close(blur, fill_for(model, images, "blur"), atol=1e-5, rtol=0)
    assert blur.std() < images.std() / 2  # smoothed: the pixel noise mostly gone
    with pytest.raises(ValueError, match="unknown baseline 'grey'; use one of black, mean, blur"):
        baseline_images(model, images, "grey")


@pytest.mark.slow
@pytest.mark.parametrize("count", [1, 4])
def test_pixels_equal_the_loop_and_captum_on_a_random_torchvision_vit_b_16(count):
    """ViT-B/16 (12 layers of width 768) at 64 px, a 4x4 grid, to keep the loop's single-image
    forwards affordable on a CPU: random weights, the zero-initialised head given random ones."""
    import torchvision

    from vitexplorer.core.models.families.torchvision import spec_for

    torch.manual_seed(0)
    module = torchvision.models.vit_b_16(weights=None, image_size=64).eval()
    nn.init.normal_(module.heads.head.weight, std=0.02)
    model = LoadedModel(module, spec_for("vit_b_16", module, "random"), CPU)
    images = images_for(model, count)
    targets = targets_of(model, images)
    fill = fill_for(model, images, "black")
    result = attribute("occlusion", model, images, MethodOptions())
    assert result.maps.shape == (count, 4, 4)
    loop = brute_force(module, images, targets, (4, 4), fill)
    assert normalised_gap(result.maps, loop) < 1e-5
    reference = captum_per_patch(module, images, targets, (4, 4), fill)
    assert normalised_gap(result.maps, reference) < 1e-5


# --- tokens ------------------------------------------------------------------------------------


def zeroing_forward(module: nn.Module, token: int | None):
    """timm's own forward with token ``token`` of its embedding (after the position embedding,
    before the blocks: ``norm_pre``'s output) set to zero; None: the plain forward."""

    def forward(images: torch.Tensor) -> torch.Tensor:
        def hook(_module, _inputs, output):
            if token is None:
                return output
            output = output.clone()
            output[:, token] = 0.0
            return output

        handle = module.norm_pre.register_forward_hook(hook)
        try:
            return module(images)
        finally:
            handle.remove()

    return forward


@pytest.mark.parametrize(
    ("extra", "prefix"),
    [
        ({}, 1),
        (dict(reg_tokens=2, no_embed_class=True), 3),
        (dict(class_token=False, global_pool="avg"), 0),
    ],
    ids=["cls", "registers", "pooling"],
)
@pytest.mark.parametrize("count", [1, 4])
def test_tokens_equal_a_loop_that_zeroes_each_patch_token_in_timms_forward(extra, prefix, count):
    model = timm_model(**extra)
    assert model.adapter.num_prefix_tokens == prefix
    images = images_for(model, count)
    targets = targets_of(model, images)
    result = attribute("occlusion", model, images, MethodOptions(occlude="token"))
    loop = np.zeros((count, 4, 4))
    with torch.inference_mode():
        for b, target in enumerate(targets):
            clean = zeroing_forward(model.module, None)(images[b : b + 1])[0, target]
            for patch in range(16):
                hidden = zeroing_forward(model.module, prefix + patch)(images[b : b + 1])
                loop[b].flat[patch] = (clean - hidden[0, target]).item()
    assert normalised_gap(result.maps, loop) < 1e-5
    # tokens are not pixels: the two maps differ
    pixels = attribute("occlusion", model, images, MethodOptions(occlude="pixels"))
    assert normalised_gap(result.maps, pixels.maps) > 1e-2


@pytest.mark.parametrize("name", ["deit_tiny_distilled_patch16_224", "registers"])
def test_token_occlusion_leaves_the_prefix_tokens_untouched(name):
    if name == "registers":
        model = timm_model(reg_tokens=4, no_embed_class=True)
    else:
        from vitexplorer.core.models.families.timm import spec_for

        torch.manual_seed(0)
        module = timm.create_model(name, pretrained=False, **TIMM_TINY).eval()
        model = LoadedModel(module, spec_for(module, name, "random"), CPU)
    prefix = model.adapter.num_prefix_tokens
    assert prefix == (2 if name.startswith("deit") else 5)
    images = images_for(model, 2)
    with torch.inference_mode():
        clean = model.adapter.embed(images)
    entered: list[torch.Tensor] = []
    handle = model.module.blocks[0].register_forward_pre_hook(
        lambda _m, args: entered.append(args[0].clone())
    )
    try:
        occlusion_maps(model, images, occlude="token", chunk=5)
    finally:
        handle.remove()
    copies = torch.cat(entered[1:])  # the first is the clean pass
    assert len(copies) == 2 * 16
    for index, copy in enumerate(copies):
        image, patch = divmod(index, 16)
        expected = clean[image].clone()
        expected[prefix + patch] = 0.0
        torch.testing.assert_close(copy, expected, atol=0, rtol=0)
        assert copy[prefix + patch].abs().max() == 0  # the patch's token is zero
        torch.testing.assert_close(copy[:prefix], clean[image, :prefix], atol=0, rtol=0)


# --- grids, families ---------------------------------------------------------------------------


@pytest.mark.parametrize("occlude", ["pixels", "token"])
def test_a_rectangular_grid_runs_the_any_size_forward(occlude):
    model = timm_model()
    images = torch.randn(2, 3, 24, 48, generator=torch.Generator().manual_seed(4))  # 3x6
    result = attribute("occlusion", model, images, MethodOptions(occlude=occlude), grid=(3, 6))
    assert result.maps.shape == (2, 3, 6)
    forward = model.adapter.forward_parts
    with torch.inference_mode():
        targets = forward(images).argmax(1).tolist()
    assert result.targets.tolist() == targets
    if occlude == "pixels":
        expected = brute_force(forward, images, targets, (3, 6), fill_for(model, images, "black"))
        assert normalised_gap(result.maps, expected) < 1e-5
    else:  # timm's own dynamic-size model, the same weights, each token zeroed in its forward
        dynamic = timm.create_model(
            "vit_tiny_patch16_224", pretrained=False, dynamic_img_size=True, **TIMM_TINY
        ).eval()
        dynamic.load_state_dict(model.module.state_dict())
        expected = np.zeros((2, 3, 6))
        with torch.inference_mode():
            for b, target in enumerate(targets):
                clean = dynamic(images[b : b + 1])[0, target]
                for patch in range(18):
                    hidden = zeroing_forward(dynamic, 1 + patch)(images[b : b + 1])
                    expected[b].flat[patch] = (clean - hidden[0, target]).item()
        assert normalised_gap(result.maps, expected) < 1e-5
    # the single-image dispatcher gives the first image's map
    single = explanation_map(
        "occlusion", MethodOptions(occlude=occlude), model=model, batch=images[:1], grid=(3, 6)
    )
    np.testing.assert_allclose(single, result.maps[0], rtol=1e-4, atol=1e-6)


def _torchvision_model() -> LoadedModel:
    from torchvision.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    module = VisionTransformer(32, 8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64)
    nn.init.normal_(module.heads.head.weight, std=0.5)
    return LoadedModel(module.eval(), replace(tiny_spec(), num_prefix_tokens=1), CPU)


def _hf_model() -> LoadedModel:
    import transformers

    from vitexplorer.core.models.families.hf_model import HFClassifier

    torch.manual_seed(0)
    inner = transformers.ViTForImageClassification(tiny_hf_config(num_labels=10))
    module = HFClassifier(inner, "ViTForImageClassification", 32).eval()
    model = LoadedModel(module, tiny_spec(), CPU)
    nn.init.normal_(model.adapter.get_classifier().weight, std=0.5)
    return model


def _checkpoint_model(checkpoint) -> LoadedModel:
    from vitexplorer.core.models.loading import load_model

    return load_model(str(checkpoint), "none", "cpu")


@pytest.mark.parametrize("family", ["small_vit", "torchvision", "hf", "checkpoint"])
@pytest.mark.parametrize("occlude", ["pixels", "token"])
def test_every_family_square_and_rectangular(family, occlude, checkpoint):
    model = {
        "small_vit": tiny_small_vit_model,
        "torchvision": _torchvision_model,
        "hf": _hf_model,
        "checkpoint": lambda: _checkpoint_model(checkpoint),
    }[family]()
    images = images_for(model, 2)
    targets = targets_of(model, images)
    result = attribute("occlusion", model, images, MethodOptions(occlude=occlude))
    assert result.maps.shape == (2, 4, 4) and np.isfinite(result.maps).all()
    assert result.targets.tolist() == targets
    if occlude == "pixels":  # the module's own forward, by hand
        fill = fill_for(model, images, "black")
        expected = brute_force(model.module, images, targets, (4, 4), fill)
        assert normalised_gap(result.maps, expected) < 1e-5
    else:
        assert np.ptp(result.maps) > 0
    wide = torch.randn(1, 3, 24, 40, generator=torch.Generator().manual_seed(5))  # 3x5
    rectangle = attribute("occlusion", model, wide, MethodOptions(occlude=occlude), grid=(3, 5))
    assert rectangle.maps.shape == (1, 3, 5) and np.isfinite(rectangle.maps).all()
    assert np.ptp(rectangle.maps) > 0


def test_a_wrapped_model_occludes_pixels_and_refuses_tokens_in_one_line():
    import vitexplorer

    timm_loaded = timm_model()
    attention = [f"blocks.{i}.attn" for i in range(2)]
    spec = timm_loaded.spec  # the same normalisation: the same black baseline
    wrapped = vitexplorer.wrap(
        timm_loaded.module,
        attention,
        patch_size=8,
        image_size=32,
        mean=spec.mean,
        std=spec.std,
        device="cpu",
    ).loaded
    images = images_for(wrapped, 2)
    result = attribute("occlusion", wrapped, images, MethodOptions())
    expected = attribute("occlusion", timm_loaded, images, MethodOptions())
    np.testing.assert_allclose(result.maps, expected.maps, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError) as refused:
        attribute("occlusion", wrapped, images, MethodOptions(occlude="token"))
    message = str(refused.value)
    assert "\n" not in message and "occlusion of tokens" in message
    assert wrapped.spec.display_name in message and "--occlude pixels" in message


def test_a_model_without_a_classifier_is_refused():
    spec = replace(tiny_spec(), has_classifier=False)
    with pytest.raises(ValueError, match="no classifier.*attention and rollout work"):
        MethodOptions().check("occlusion", spec)


# --- progress, cancel, the model left as it was ------------------------------------------------


def test_progress_counts_the_occluded_copies_chunk_by_chunk():
    model = tiny_small_vit_model()
    images = images_for(model, 2)
    calls: list[tuple[int, int]] = []
    chunked = occlusion_maps(
        model, images, progress=lambda done, total: calls.append((done, total)), chunk=5
    )
    assert calls == [(d, 32) for d in (5, 10, 15, 20, 25, 30, 32)]
    whole = occlusion_maps(model, images, chunk=32)
    single = occlusion_maps(model, images, chunk=1)
    np.testing.assert_allclose(chunked.maps, whole.maps, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(single.maps, whole.maps, rtol=1e-5, atol=1e-6)
    # the dispatcher reports too, ending at every patch of every image
    seen: list[tuple[int, int]] = []
    attribute("occlusion", model, images, MethodOptions(), progress=lambda *a: seen.append(a))
    assert seen and seen[-1] == (32, 32) and all(t == 32 for _, t in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_a_cancel_stops_it_and_leaves_the_model_as_it_was():
    model = tiny_small_vit_model()
    model.module.train()  # a model in training mode comes back in training mode
    images = images_for(model, 2)
    calls: list[int] = []

    def cancel(done: int, total: int) -> None:
        calls.append(done)
        if len(calls) == 2:
            raise MethodCancelled

    with pytest.raises(MethodCancelled):
        occlusion_maps(model, images, progress=cancel, chunk=4)
    assert calls == [4, 8]  # no forward after the cancel
    assert model.module.training


def test_the_model_is_left_as_it_was():
    model = timm_model()
    module = model.module
    images = images_for(model, 2)
    state = {k: v.clone() for k, v in module.state_dict().items()}
    with torch.inference_mode():
        before = module(images)
    for occlude in ("pixels", "token"):
        attribute("occlusion", model, images, MethodOptions(occlude=occlude))
    assert not module.training
    assert all(p.grad is None for p in module.parameters())
    assert all("forward" not in vars(m) for m in module.modules())  # no forward left patched
    for key, value in module.state_dict().items():
        assert torch.equal(value, state[key]), key
    with torch.inference_mode():
        torch.testing.assert_close(module(images), before, atol=0, rtol=0)


def test_the_description():
    described = get("occlusion")
    spec = tiny_spec()
    assert described.passes(MethodOptions(), spec) == 16
    assert described.cost_words(spec=spec) == "1 per patch (16 on 4x4)"
    assert not described.pixels and not described.per_token and described.class_specific
    assert "logit" in described.help and "logit" in described.explains
    title = described.make_title(
        {"occlude": "token", "baseline": "blur"}, spec, {"name": "cat", "predicted": True}
    )
    assert title == "occlusion for 'cat' (predicted) · tokens zeroed · logit drop"
    caption = described.make_caption({"occlude": "pixels", "baseline": "blur"}, spec, None)
    assert caption == "occlusion · pixels → blur"
