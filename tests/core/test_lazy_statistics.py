"""Issue 14: an analysis computes the head statistics only when something uses them (``analyze``
never does), and then the same numbers as before."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from tests.conftest import TINY
from vitexplorer.core.explain.analysis import analyze_image
from vitexplorer.core.explain.head_stats import head_statistics
from vitexplorer.core.models.loading import load_model


def test_head_statistics_are_computed_on_first_use_and_kept(monkeypatch) -> None:
    from vitexplorer.core.explain import analysis as module

    torch.manual_seed(0)
    model = load_model("small_vit", "none", "cpu", small_config=TINY)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 48, 3), np.uint8))
    calls = []
    monkeypatch.setattr(
        module, "head_statistics", lambda *a: calls.append(a) or head_statistics(*a)
    )
    analysis = analyze_image(model, image)
    assert calls == []  # the forward pass alone
    stats = analysis.statistics
    spec = analysis.spec
    expected = head_statistics(analysis.attention, spec.grid, 1, spec.patch_size)
    np.testing.assert_array_equal(stats.distance, expected.distance)
    np.testing.assert_array_equal(stats.entropy, expected.entropy)
    np.testing.assert_array_equal(stats.prefix_share, expected.prefix_share)
    assert analysis.statistics is stats and len(calls) == 1  # kept, not computed again
