"""The explorer's maps per method, without Qt: rollout cached per option, relevance by class."""

from __future__ import annotations

import numpy as np
import pytest

from vitexplorer.core.explain import explorer_maps
from vitexplorer.core.explain.analysis import Prediction
from vitexplorer.core.explain.explorer_maps import MapCache, MethodChoice, method_map
from vitexplorer.core.explain.rollout import rollout_map
from vitexplorer.core.explorer.session import Selection


class FakeSpec:
    grid = (2, 3)  # rectangular on purpose
    num_prefix_tokens = 1
    num_layers = 3
    class_names = ("cat", "dog", "owl")


class FakeAnalysis:
    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        logits = rng.normal(size=(3, 2, 7, 7))
        self.attention = (np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)).astype(np.float32)
        self.spec = FakeSpec()
        self.predictions = [Prediction(1, "dog", 0.7), Prediction(0, "cat", 0.2)]


def test_each_method_gives_its_map_over_the_rectangular_grid():
    analysis, cache = FakeAnalysis(0), MapCache()
    selection = Selection(layer=2, head=1, token=4)
    attention = method_map("a", analysis, selection, MethodChoice("attention"), cache)
    np.testing.assert_array_equal(attention, analysis.attention[2, 1, 4, 1:].reshape(2, 3))
    choice = MethodChoice("rollout", "min", 0.5, 1)
    rollout = method_map("a", analysis, selection, choice, cache)
    np.testing.assert_allclose(
        rollout, rollout_map(analysis.attention, 4, (2, 3), 1, "min", 0.5, 1), rtol=1e-6
    )
    relevance = MethodChoice("relevance")
    assert method_map("a", analysis, selection, relevance, cache) is None  # not computed yet
    matrix = np.arange(49, dtype=np.float32).reshape(7, 7)  # R: row i is token i's relevance
    cache.set_relevance("a", 1, matrix)  # class 1 is the predicted one
    # relevance follows the selected token, as rollout does: token 4's row over the patches
    shown = method_map("a", analysis, selection, relevance, cache)
    np.testing.assert_array_equal(shown, matrix[4, 1:].reshape(2, 3))
    cls = method_map("a", analysis, Selection(2, 1, 0), relevance, cache)
    np.testing.assert_array_equal(cls, matrix[0, 1:].reshape(2, 3))
    assert method_map("a", analysis, selection, MethodChoice("relevance", target=0), cache) is None


def test_rollout_layers_are_computed_once_per_image_and_option(monkeypatch):
    calls: list[tuple] = []
    real = explorer_maps.rollout_layers

    def counting(*args, **kwargs):
        calls.append(args[1:])
        return real(*args, **kwargs)

    monkeypatch.setattr(explorer_maps, "rollout_layers", counting)
    analysis, cache = FakeAnalysis(1), MapCache(keep=2)
    for token in range(7):  # clicks on every token: one computation
        cache.rollout("a", analysis, MethodChoice("rollout"), token)
    assert len(calls) == 1
    cache.rollout("a", analysis, MethodChoice("rollout", "max"), 0)
    cache.rollout("a", analysis, MethodChoice("rollout"), 0)  # still kept
    assert len(calls) == 2
    cache.rollout("a", analysis, MethodChoice("rollout", "min"), 0)  # evicts max, used least lately
    cache.rollout("a", analysis, MethodChoice("rollout"), 0)  # mean is kept
    assert len(calls) == 3
    cache.rollout("a", analysis, MethodChoice("rollout", "max"), 0)
    assert len(calls) == 4
    cache.forget("a")
    cache.rollout("a", analysis, MethodChoice("rollout", "max"), 0)
    assert len(calls) == 5
    cache.rollout("a", FakeAnalysis(2), MethodChoice("rollout", "max"), 0)  # a new analysis
    assert len(calls) == 6


def test_forget_drops_one_images_relevance_or_all():
    cache = MapCache()
    analysis = FakeAnalysis(0)
    cache.set_relevance("a", 0, np.ones((7, 7)))
    cache.set_relevance("b", 0, np.ones((7, 7)))
    cache.forget("a")
    assert cache.relevance("a", 0, 0, analysis) is None
    assert cache.relevance("b", 0, 0, analysis) is not None
    cache.forget()
    assert cache.relevance("b", 0, 0, analysis) is None


def test_choice_describes_itself_and_its_parameters():
    analysis = FakeAnalysis(0)
    selection = Selection(layer=1, head=None, token=3)
    assert MethodChoice().describe(selection, analysis) == "attention · layer 2, mean of heads"
    rollout = MethodChoice("rollout", "max", 0.25, 2)
    assert rollout.describe(selection, analysis) == (
        "rollout · max of heads, 25% discarded, from layer 3"
    )
    assert rollout.parameters(selection, analysis) == {
        "token": 3, "head_fusion": "max", "discard_ratio": 0.25, "start_layer": 2,
    }  # fmt: skip
    relevance = MethodChoice("relevance")
    assert relevance.describe(selection, analysis) == "relevance for 'dog' (predicted)"
    assert relevance.parameters(selection, analysis) == {"target_class": 1, "token": 3}
    assert MethodChoice("relevance", target=2).describe(selection, analysis) == (
        "relevance for 'owl'"
    )
    with pytest.raises(ValueError, match="method"):
        MethodChoice("saliency")
    with pytest.raises(ValueError, match="discard"):
        MethodChoice("rollout", discard_ratio=1.0)


def test_analysis_carries_the_head_statistics_of_its_attention(tiny_small_vit):
    import torch
    from PIL import Image

    from tests.conftest import TINY
    from vitexplorer.core.explain.analysis import analyze_image
    from vitexplorer.core.explain.head_stats import head_statistics
    from vitexplorer.core.models.families.small_vit import spec_for as small_vit_spec
    from vitexplorer.core.models.loading import LoadedModel

    model = LoadedModel(tiny_small_vit, small_vit_spec(TINY, "test"), torch.device("cpu"))
    pixels = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    analysis = analyze_image(model, Image.fromarray(pixels))
    expected = head_statistics(analysis.attention, (4, 4), 1, 8)
    np.testing.assert_array_equal(analysis.statistics.distance, expected.distance)
    np.testing.assert_array_equal(analysis.statistics.entropy, expected.entropy)
    np.testing.assert_array_equal(analysis.statistics.prefix_share, expected.prefix_share)
