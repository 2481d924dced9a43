"""The method dispatcher: every method's map, options checked with clear messages."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from tests.conftest import tiny_spec
from vitexplorer.core.explain.analysis import ImageAnalysis
from vitexplorer.core.explain.maps import explanation_map, method_explainer, model_explainer
from vitexplorer.core.explain.method import OPTIONS, MethodOptions, get, method_names
from vitexplorer.core.explain.relevance import relevance_map
from vitexplorer.core.explain.rollout import rollout_map
from vitexplorer.core.models.capture import forward_with_attention
from vitexplorer.core.models.loading import LoadedModel
from vitexplorer.core.models.spec import ModelSpec

SPEC = tiny_spec()


@dataclass(frozen=True)
class WideSpec(ModelSpec):
    """A 2x3 patch grid: no method may assume a square one."""

    @property
    def grid(self) -> tuple[int, int]:
        return 2, 3


def _analysis(attention: np.ndarray, spec: ModelSpec) -> ImageAnalysis:
    return ImageAnalysis(
        spec=spec,
        logits=np.zeros(10, np.float32),
        probabilities=np.full(10, 0.1, np.float32),
        attention=attention,
        predictions=[],
        seconds=0.0,
        display=np.zeros((32, 32, 3), np.uint8),
    )


@pytest.fixture
def wide() -> ImageAnalysis:
    rng = np.random.default_rng(0)
    raw = rng.random((2, 2, 7, 7)).astype(np.float32)
    return _analysis(raw / raw.sum(-1, keepdims=True), WideSpec(**vars(SPEC)))


@pytest.fixture
def model(tiny_small_vit: nn.Module) -> LoadedModel:
    return LoadedModel(tiny_small_vit, SPEC, torch.device("cpu"))


def _image() -> torch.Tensor:
    return torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def test_attention_reads_the_chosen_layer_head_and_token(wide: ImageAnalysis) -> None:
    options = MethodOptions(layer=0, head=1, token=4)
    got = explanation_map("attention", options, analysis=wide)
    assert got.shape == (2, 3) and got.dtype == np.float32
    np.testing.assert_array_equal(got, wide.attention[0, 1, 4, 1:].reshape(2, 3))
    mean_last = explanation_map("attention", MethodOptions(), analysis=wide)
    np.testing.assert_allclose(mean_last, wide.attention[1, :, 0, 1:].mean(0).reshape(2, 3))


def test_rollout_passes_its_options_on(wide: ImageAnalysis) -> None:
    options = MethodOptions(token=2, head_fusion="max", discard_ratio=0.5, start_layer=1)
    got = explanation_map("rollout", options, analysis=wide)
    assert got.shape == (2, 3) and got.dtype == np.float32
    expected = rollout_map(wide.attention, 2, (2, 3), 1, "max", 0.5, 1)
    np.testing.assert_array_equal(got, expected)
    assert not np.allclose(got, explanation_map("rollout", MethodOptions(token=2), analysis=wide))


@pytest.mark.slow
def test_every_method_from_a_model(model: LoadedModel) -> None:
    image = _image()
    _, attention = forward_with_attention(model.module, image)
    stored = _analysis(attention[0].numpy(), SPEC)
    options = MethodOptions(layer=1, head=0, target_class=3)
    for method in method_names():
        got = explanation_map(method, options, model=model, batch=image)
        assert got.shape == (4, 4) and got.dtype == np.float32
        if not get(method).needs_model:  # read from the stored attention alike
            np.testing.assert_array_equal(got, explanation_map(method, options, analysis=stored))
    np.testing.assert_array_equal(
        explanation_map("relevance", options, model=model, batch=image),
        relevance_map(model, image, 3).map,
    )


def test_explainers_compute_from_scratch(model: LoadedModel) -> None:
    image = _image()
    options = MethodOptions(token=5)
    expected = explanation_map("rollout", options, model=model, batch=image)
    np.testing.assert_array_equal(method_explainer("rollout", options)(model, image), expected)
    np.testing.assert_array_equal(model_explainer(model, "rollout", options)(image), expected)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"head_fusion": "median"}, "unknown head fusion 'median'"),
        ({"discard_ratio": 1.0}, "discard ratio 1.0 must be at least 0 and below 1"),
        ({"discard_ratio": -0.1}, "discard ratio"),
        ({"discard_ratio": float("nan")}, "discard ratio"),
        ({"token": -1}, "token must be at least 0"),
        ({"head": -1}, "head must be at least 0"),
        ({"layer": 1.5}, "layer must be a whole number"),
        ({"start_layer": -2}, "start layer must be at least 0"),
        ({"target_class": True}, "target class must be a whole number"),
    ],
)
def test_bad_options_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MethodOptions(**kwargs)


@pytest.mark.parametrize(
    ("method", "options", "message"),
    [
        ("saliency", MethodOptions(), "unknown method 'saliency'; use one of attention, rollout"),
        # the options hold indices (layer=2 is the third layer); messages count from 1
        (
            "attention",
            MethodOptions(layer=2),
            "layer 3 does not exist: the model has layers 1 to 2",
        ),
        ("attention", MethodOptions(layer=-3), "layer -3 does not exist"),
        ("attention", MethodOptions(head=2), "head 3 does not exist: the model has heads 1 to 2"),
        ("rollout", MethodOptions(token=7), "token 8 does not exist: the model has tokens 1 to 7"),
        (
            "rollout",
            MethodOptions(start_layer=2),
            "start layer 3 does not exist: the model has layers 1 to 2",
        ),
        ("relevance", MethodOptions(), "needs a model and a batch"),
    ],
)
def test_options_that_do_not_fit_the_model(
    wide: ImageAnalysis, method: str, options: MethodOptions, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        explanation_map(method, options, analysis=wide)


def test_relevance_options_are_checked(model: LoadedModel) -> None:
    image = _image()
    with pytest.raises(ValueError, match="CLS token \\(token 1\\) only, not token 4"):
        explanation_map("relevance", MethodOptions(token=3), model=model, batch=image)
    with pytest.raises(ValueError, match="target class 10 is outside 0..9"):
        explanation_map("relevance", MethodOptions(target_class=10), model=model, batch=image)
    with pytest.raises(ValueError, match="one image is explained at a time"):
        explanation_map("relevance", MethodOptions(), model=model, batch=image[0])
    with pytest.raises(ValueError, match="needs an analysis or a model"):
        explanation_map("attention", MethodOptions())
    with pytest.raises(ValueError, match="unknown method"):
        method_explainer("no-such-method", MethodOptions())
    with pytest.raises(ValueError, match="head 6 does not exist: the model has heads 1 to 2"):
        model_explainer(model, "attention", MethodOptions(head=5))  # index 5: head 6


def test_method_card_options() -> None:
    options = MethodOptions(head_fusion="min", discard_ratio=0.9, target_class=4)
    assert options.as_dict("rollout") == {
        "token": 0,
        "head_fusion": "min",
        "discard_ratio": 0.9,
        "start_layer": 0,
    }
    assert options.as_dict("relevance") == {"target_class": 4}
    assert options.as_dict()["layer"] == -1 and len(options.as_dict()) == len(OPTIONS)


def test_relevance_needs_a_classifier() -> None:
    from dataclasses import replace

    from vitexplorer.core.explain.method import MethodOptions

    encoder = replace(tiny_spec(), has_classifier=False, class_names=())
    with pytest.raises(ValueError, match="has no classifier, so there is no class score"):
        MethodOptions().check("relevance", encoder)
    MethodOptions().check("rollout", encoder)  # the rest works
    MethodOptions().check("attention", encoder)
