"""The time estimate: a measured step's time times the run's steps, plus its forward passes."""

from __future__ import annotations

import math

import pytest
import torch

from vitexplorer.core.models.loading import load_model
from vitexplorer.core.models.vit import SmallViTConfig
from vitexplorer.core.training.estimate import (
    FORWARD_SHARE,
    measure_step,
    run_seconds,
    subset_sizes,
)


def test_subset_sizes_split_as_the_engine_does():
    sizes = subset_sizes(10, 5000, 1000, 0.1)
    assert (sizes.train, sizes.val, sizes.test) == (45_000, 5_000, 10_000)
    assert subset_sizes(3, 1, 2, 0.5).val == 0  # one image per class: it trains
    assert subset_sizes(3, 10, 2, 0.0).train == 30


def test_the_estimate_scales_with_images_and_epochs():
    step = 0.25
    sizes = subset_sizes(10, 5000, 1000, 0.1)
    # 50 epochs of ceil(45,000 / 128) = 352 steps; 40 validation and 79 test batches
    expected = step * (50 * 352 + FORWARD_SHARE * (50 * 40 + 79))
    assert run_seconds(step, 128, sizes, 50) == pytest.approx(expected)
    assert expected / 3600 == pytest.approx(1.27, abs=0.01)  # 1 h 16 min at 0.25 s a step
    # twice the epochs: twice the training and validation, the same test
    double = run_seconds(step, 128, sizes, 100)
    assert double - 2 * expected == pytest.approx(-step * FORWARD_SHARE * 79)
    # ten times the images per class: about ten times the run
    ten = run_seconds(step, 128, subset_sizes(10, 50_000, 10_000, 0.1), 50)
    assert ten / expected == pytest.approx(10, rel=0.01)
    # the step's time scales it all
    assert run_seconds(2 * step, 128, sizes, 50) == pytest.approx(2 * expected)


@pytest.mark.slow
def test_measure_step_times_real_steps_and_trains_the_model():
    shape = SmallViTConfig(image_size=32, patch_size=8, width=32, depth=2, heads=2, num_classes=10)
    torch.manual_seed(0)
    model = load_model("small_vit", "none", "cpu", small_config=shape)
    before = model.module.head.weight.detach().clone()
    seconds = measure_step(model.module, 8, 32, 10, model.device, steps=2)
    assert math.isfinite(seconds) and seconds > 0
    assert not torch.equal(before, model.module.head.weight)  # three optimiser steps were taken


def test_measure_step_stops_when_cancelled():
    from vitexplorer.core.training.estimate import MeasureCancelled

    shape = SmallViTConfig(image_size=32, patch_size=8, width=32, depth=2, heads=2, num_classes=10)
    model = load_model("small_vit", "none", "cpu", small_config=shape)
    with pytest.raises(MeasureCancelled):
        measure_step(model.module, 8, 32, 10, model.device, cancelled=lambda: True)
