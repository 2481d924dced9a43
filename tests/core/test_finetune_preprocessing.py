"""A fine-tuned model is analysed with the preprocessing it was trained with (issue 21): the
training images are fitted by ``datasets.fit_image`` (the short side to the input size, then the
centre), whatever the base model's own crop (timm's squash, a crop_pct below 1)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from vitexplorer.core.models import loading as models
from vitexplorer.core.models.preprocessing import preprocess
from vitexplorer.core.training.datasets import fit_image
from vitexplorer.core.training.finetune_model import with_new_head

timm = pytest.importorskip("timm")


@pytest.mark.parametrize("crop_mode", ["squash", "center", "border"])
def test_a_fine_tune_is_analysed_as_it_was_trained(crop_mode: str) -> None:
    from vitexplorer.core.models.families import timm as family

    torch.manual_seed(0)
    module = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=2,
        num_heads=2, embed_dim=32, num_classes=10,
    )  # fmt: skip
    spec = family.spec_for(module, "vit_tiny_patch16_224", "random")
    spec = replace(spec, crop_mode=crop_mode, resize_size=36)  # the base's own crop (crop_pct 0.9)
    tuned = with_new_head(models.LoadedModel(module, spec, torch.device("cpu")), ("a", "b"), "t")
    pixels = np.random.default_rng(3).integers(0, 256, (45, 70, 3), dtype=np.uint8)
    seen = preprocess(Image.fromarray(pixels), tuned.spec)
    mean = torch.tensor(tuned.spec.mean).view(3, 1, 1)
    std = torch.tensor(tuned.spec.std).view(3, 1, 1)
    trained = np.array(fit_image(pixels, tuned.spec.image_size, tuned.spec.interpolation))
    expected = torch.from_numpy(trained).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(seen * std + mean, expected, atol=1e-6, rtol=0)
    if crop_mode != "center":  # the base's own preprocessing sees another picture
        base = preprocess(Image.fromarray(pixels), spec) * std + mean
        assert (base - expected).abs().max() > 0.05
