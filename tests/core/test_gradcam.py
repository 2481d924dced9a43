"""Grad-CAM against its reference, pytorch-grad-cam's ``GradCAM`` with the ViT
``reshape_transform`` of its tutorial (the prefix tokens dropped, the patch tokens laid out on the
grid as channels), on torchvision's ViT-B/16 (``encoder.layers[-1].ln_1``) and small timm ViTs
(``blocks[-1].norm1``).

Two quantities are compared. On the patch grid, before any scaling or resizing: the reference's
``np.maximum(get_cam_image(activations, gradients), 0)`` on the activations and gradients its
``ActivationsAndGradients`` kept, against our map; both divided by their largest absolute value,
the largest difference must stay below 1e-5. And the reference's own output (min-max scaled and
resized to the input by cv2) against our map passed through its ``scale_cam_image``.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import timm
import torch
from torch import nn

from tests.conftest import TINY, tiny_hf_config, tiny_spec
from vitexplorer.core.explain.maps import attribute, explanation_map
from vitexplorer.core.explain.method import MethodOptions
from vitexplorer.core.models.families import timm as timm_family
from vitexplorer.core.models.loading import LoadedModel
from vitexplorer.core.models.spec import ModelSpec
from vitexplorer.core.models.vit import SmallViT

CPU = torch.device("cpu")


def normalised_gap(ours: np.ndarray, reference: np.ndarray) -> float:
    """The largest absolute difference once each is divided by its largest absolute value."""
    ours, reference = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
    assert np.abs(reference).max() > 0 and np.isfinite(ours).all()
    return float(np.abs(ours / np.abs(ours).max() - reference / np.abs(reference).max()).max())


def _reference(
    model: nn.Module,
    layer: nn.Module,
    images: torch.Tensor,
    targets: np.ndarray,
    prefix: int,
    grid: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray]:
    """pytorch-grad-cam's Grad-CAM: (the relu'd grid map before scaling, its final output)."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    def reshape_transform(tensor: torch.Tensor) -> torch.Tensor:  # the tutorial's, any prefix
        result = tensor[:, prefix:, :].reshape(tensor.size(0), *grid, tensor.size(2))
        return result.transpose(2, 3).transpose(1, 2)

    wanted = [ClassifierOutputTarget(int(t)) for t in targets]
    cam = GradCAM(model=model, target_layers=[layer], reshape_transform=reshape_transform)
    try:
        final = cam(input_tensor=images, targets=wanted)
        kept = cam.activations_and_grads
        activations, gradients = kept.activations[0].numpy(), kept.gradients[0].numpy()
        on_grid = np.maximum(cam.get_cam_image(images, layer, wanted, activations, gradients), 0)
    finally:
        cam.activations_and_grads.release()
        model.zero_grad(set_to_none=True)  # the reference's backward fills .grad
    return on_grid, final


def _compare(ours, reference: tuple[np.ndarray, np.ndarray], size: tuple[int, int]) -> None:
    from pytorch_grad_cam.utils.image import scale_cam_image

    on_grid, final = reference
    assert ours.shape == on_grid.shape and ours.dtype == np.float32
    scaled = scale_cam_image(ours, size)  # (width, height), as the reference resizes
    for index in range(len(ours)):
        assert normalised_gap(ours[index], on_grid[index]) < 1e-5
        assert normalised_gap(scaled[index], final[index]) < 1e-5


def _timm(seed: int = 0, **extra) -> LoadedModel:
    torch.manual_seed(seed)
    fields = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=10)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, **(fields | extra)).eval()
    with torch.no_grad():  # off the init's near-zero tokens and biases: gradients far from zero
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    spec = timm_family.spec_for(model, "vit_tiny_patch16_224", "random")
    return LoadedModel(model, spec, CPU)


@pytest.mark.parametrize(
    "extra",
    [{}, dict(reg_tokens=4, no_embed_class=True), dict(class_token=False, global_pool="avg")],
    ids=["cls", "registers", "no-prefix"],
)
def test_gradcam_equals_pytorch_grad_cam_on_small_timm_vits(extra) -> None:
    loaded = _timm(**extra)
    module = loaded.module
    prefix = module.num_prefix_tokens
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    for batch, target in ((images[:1], None), (images, None), (images, 7)):
        ours = attribute("gradcam", loaded, batch, MethodOptions(target_class=target))
        with torch.no_grad():
            predicted = module(batch).argmax(1).numpy()
        np.testing.assert_array_equal(ours.targets, predicted if target is None else [7] * 4)
        assert all(p.grad is None for p in module.parameters())
        reference = _reference(module, module.blocks[-1].norm1, batch, ours.targets, prefix, (4, 4))
        _compare(ours.maps, reference, (32, 32))
    # the class matters
    other = attribute("gradcam", loaded, images, MethodOptions(target_class=2)).maps
    assert normalised_gap(other[0], ours.maps[0]) > 1e-2


def test_gradcam_equals_pytorch_grad_cam_on_a_rectangle_and_tiny_torchvision(
    tiny_torchvision_vit,
) -> None:
    loaded = _timm(dynamic_img_size=True)
    images = torch.randn(2, 3, 32, 48, generator=torch.Generator().manual_seed(3))
    ours = attribute("gradcam", loaded, images, MethodOptions(), grid=(4, 6))
    reference = _reference(
        loaded.module, loaded.module.blocks[-1].norm1, images, ours.targets, 1, (4, 6)
    )
    _compare(ours.maps, reference, (48, 32))
    one = explanation_map("gradcam", MethodOptions(), model=loaded, batch=images[:1], grid=(4, 6))
    assert normalised_gap(one, reference[0][0]) < 1e-5

    module = tiny_torchvision_vit
    tiny = LoadedModel(module, tiny_spec(), CPU)
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    ours = attribute("gradcam", tiny, images, MethodOptions(target_class=1))
    layer = module.encoder.layers[-1].ln_1
    _compare(ours.maps, _reference(module, layer, images, ours.targets, 1, (4, 4)), (32, 32))


@pytest.mark.slow
def test_gradcam_equals_pytorch_grad_cam_on_vit_b_16() -> None:
    from torchvision.models import vit_b_16

    torch.manual_seed(0)
    module = vit_b_16(weights=None).eval()
    nn.init.normal_(module.heads.head.weight, std=0.02)  # torchvision's zero head: no gradient
    spec = ModelSpec(
        name="vit_b_16",
        display_name="ViT-B/16",
        weights="random",
        image_size=224,
        resize_size=224,
        patch_size=16,
        num_layers=12,
        num_heads=12,
        class_names=tuple(f"class {i}" for i in range(1000)),
    )
    loaded = LoadedModel(module, spec, CPU)
    images = torch.randn(4, 3, 224, 224, generator=torch.Generator().manual_seed(5))
    ours = attribute("gradcam", loaded, images, MethodOptions())
    first = attribute("gradcam", loaded, images[:1], MethodOptions())
    assert all(p.grad is None for p in module.parameters())
    layer = module.encoder.layers[-1].ln_1
    reference = _reference(module, layer, images, ours.targets, 1, (14, 14))
    _compare(ours.maps, reference, (224, 224))
    assert normalised_gap(first.maps[0], reference[0][0]) < 1e-5


# --- every family, the model left as it was, refusals -------------------------------------------


def test_gradcam_runs_on_every_family(tmp_path, checkpoint) -> None:
    import transformers

    from vitexplorer.core.models.loading import load_model

    torch.manual_seed(0)
    hf = transformers.ViTForImageClassification(tiny_hf_config(num_labels=10)).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(0.2 * torch.randn_like(p))
    hf.save_pretrained(tmp_path / "hf")
    torch.manual_seed(0)
    small = SmallViT(TINY).eval()
    nn.init.normal_(small.head.weight, std=0.5)
    distilled = timm.create_model(
        "deit_tiny_distilled_patch16_224",
        pretrained=False,
        **dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=10),
    ).eval()
    with torch.no_grad():
        for p in distilled.parameters():
            p.add_(0.1 * torch.randn_like(p))
    dspec = timm_family.spec_for(distilled, "deit_tiny_distilled_patch16_224", "random")
    hf_loaded = load_model(f"hf:{tmp_path / 'hf'}", "default", "cpu")
    saved = load_model(str(checkpoint), device="cpu")
    models = {  # the model, its last block's first norm (the reference's target), prefix tokens
        "small_vit": (LoadedModel(small, tiny_spec(), CPU), small.blocks[-1].norm1, 1),
        "hf": (hf_loaded, hf_loaded.adapter.blocks()[-1].layernorm_before, 1),
        "checkpoint": (saved, saved.module.blocks[-1].norm1, 1),
        "distilled": (LoadedModel(distilled, dspec, CPU), distilled.blocks[-1].norm1, 2),
    }
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    for name, (loaded, layer, prefix) in models.items():
        ours = attribute("gradcam", loaded, images, MethodOptions(target_class=3))
        assert ours.maps.shape == (2, 4, 4), name
        assert np.isfinite(ours.maps).all() and ours.maps.max() > 0, name
        reference = _reference(loaded.module, layer, images, ours.targets, prefix, (4, 4))
        _compare(ours.maps, reference, (32, 32))


def test_gradcam_leaves_the_model_as_it_was() -> None:
    loaded = _timm()
    module = loaded.module
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        before = module(images)
    module.train()
    attribute("gradcam", loaded, images, MethodOptions())
    assert module.training and all(p.grad is None for p in module.parameters())
    norm = module.blocks[-1].norm1
    assert not norm._forward_hooks and not norm._backward_hooks
    module.eval()
    with torch.no_grad():
        torch.testing.assert_close(module(images), before)
    # an error in the middle (a class the model does not have) still removes the hook
    with pytest.raises(ValueError, match="target class 99 is outside 0..9"):
        from vitexplorer.core.explain.methods.gradcam import gradcam_parts

        gradcam_parts(loaded, images, target_class=99)
    assert not norm._forward_hooks and not module.training


def test_gradcam_refuses_what_it_cannot_explain() -> None:
    import vitexplorer

    loaded = _timm()
    wrapped = vitexplorer.wrap(
        copy.deepcopy(loaded.module),
        [f"blocks.{i}.attn" for i in range(2)],
        patch_size=8,
        image_size=32,
        device="cpu",
    ).loaded
    with pytest.raises(ValueError, match="gradcam needs the last block's first norm") as error:
        attribute("gradcam", wrapped, torch.randn(1, 3, 32, 32), MethodOptions())
    assert "\n" not in str(error.value)
    from dataclasses import replace

    encoder = replace(tiny_spec(), has_classifier=False)
    with pytest.raises(ValueError, match="no classifier"):
        MethodOptions().check("gradcam", encoder)
