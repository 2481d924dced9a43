"""The explorer's maps per method, without Qt: rollout cached per option, relevance by class
(one cache for every method of the catalogue, :class:`vitexplorer.core.explain.maps.MapCache`)."""

from __future__ import annotations

import numpy as np
import pytest

from vitexplorer.core.explain import rollout as core_rollout
from vitexplorer.core.explain.analysis import Prediction
from vitexplorer.core.explain.card import card_options
from vitexplorer.core.explain.maps import MapCache, caption, map_job
from vitexplorer.core.explain.method import MapChoice, MethodOptions
from vitexplorer.core.explain.rollout import rollout_map
from vitexplorer.core.explorer.session import Selection


class FakeSpec:
    grid = (2, 3)  # rectangular on purpose
    num_prefix_tokens = 1
    num_layers = 3
    class_names = ("cat", "dog", "owl")


def MethodChoice(method="attention", head_fusion="mean", discard_ratio=0.0, start_layer=0,
                 target=None) -> MapChoice:  # fmt: skip
    """The method bar's choice, as the explorer's old ``MethodChoice`` was built."""
    options = MethodOptions(
        head_fusion=head_fusion,
        discard_ratio=discard_ratio,
        start_layer=start_layer,
        target_class=target,
    )
    return MapChoice(method, options)


def method_map(key, analysis, selection, choice, cache):
    return cache.map(key, analysis, choice.method, choice.at(selection))


def set_relevance(cache, key, target, matrix, analysis):
    job = map_job("relevance", MethodOptions(target_class=target), analysis)
    cache.store(key, job, matrix)


def relevance(cache, key, target, token, analysis):
    options = MethodOptions(target_class=target, token=token)
    return cache.map(key, analysis, "relevance", options)


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
    set_relevance(cache, "a", 1, matrix, analysis)  # class 1 is the predicted one
    # relevance follows the selected token, as rollout does: token 4's row over the patches
    shown = method_map("a", analysis, selection, relevance, cache)
    np.testing.assert_array_equal(shown, matrix[4, 1:].reshape(2, 3))
    cls = method_map("a", analysis, Selection(2, 1, 0), relevance, cache)
    np.testing.assert_array_equal(cls, matrix[0, 1:].reshape(2, 3))
    assert method_map("a", analysis, selection, MethodChoice("relevance", target=0), cache) is None


def test_rollout_layers_are_computed_once_per_image_and_option(monkeypatch):
    calls: list[tuple] = []
    real = core_rollout.rollout_layers

    def counting(*args, **kwargs):
        calls.append(args[1:])
        return real(*args, **kwargs)

    monkeypatch.setattr(core_rollout, "rollout_layers", counting)
    analysis, cache = FakeAnalysis(1), MapCache(keep=2)
    for token in range(7):  # clicks on every token: one computation
        method_map("a", analysis, Selection(0, None, token), MethodChoice("rollout"), cache)
    assert len(calls) == 1
    method_map("a", analysis, Selection(0, None, 0), MethodChoice("rollout", "max"), cache)
    method_map("a", analysis, Selection(0, None, 0), MethodChoice("rollout"), cache)  # still kept
    assert len(calls) == 2
    evicting = MethodChoice("rollout", "min")  # evicts max, used least lately
    method_map("a", analysis, Selection(0, None, 0), evicting, cache)
    method_map("a", analysis, Selection(0, None, 0), MethodChoice("rollout"), cache)  # mean is kept
    assert len(calls) == 3
    method_map("a", analysis, Selection(0, None, 0), MethodChoice("rollout", "max"), cache)
    assert len(calls) == 4
    cache.forget("a")
    method_map("a", analysis, Selection(0, None, 0), MethodChoice("rollout", "max"), cache)
    assert len(calls) == 5
    new = FakeAnalysis(2)  # a new analysis
    method_map("a", new, Selection(0, None, 0), MethodChoice("rollout", "max"), cache)
    assert len(calls) == 6


def test_forget_drops_one_images_relevance_or_all():
    cache = MapCache()
    analysis = FakeAnalysis(0)
    set_relevance(cache, "a", 0, np.ones((7, 7)), analysis)
    set_relevance(cache, "b", 0, np.ones((7, 7)), analysis)
    cache.forget("a")
    assert relevance(cache, "a", 0, 0, analysis) is None
    assert relevance(cache, "b", 0, 0, analysis) is not None
    cache.forget()
    assert relevance(cache, "b", 0, 0, analysis) is None


def test_choice_describes_itself_and_its_parameters():
    analysis = FakeAnalysis(0)
    selection = Selection(layer=1, head=None, token=3)

    def describe(choice):
        return caption(choice.method, choice.at(selection), analysis)

    def parameters(choice):
        return card_options(choice.method, choice.at(selection))

    assert describe(MethodChoice()) == "attention · layer 2, mean of heads"
    rollout = MethodChoice("rollout", "max", 0.25, 2)
    assert describe(rollout) == "rollout · max of heads, 25% discarded, from layer 3"
    assert parameters(rollout) == {
        "token": 3, "head_fusion": "max", "discard_ratio": 0.25, "start_layer": 2,
    }  # fmt: skip
    relevance = MethodChoice("relevance")
    assert describe(relevance) == "relevance for 'dog' (predicted)"
    # the class as chosen (None: the predicted one, which the card's target names), and the
    # token the app followed
    assert parameters(relevance) == {"target_class": None, "token": 3}
    assert parameters(MethodChoice("relevance", target=2)) == {"target_class": 2, "token": 3}
    assert describe(MethodChoice("relevance", target=2)) == "relevance for 'owl'"
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
