"""The contract every method of the catalogue keeps, checked the same way for each: its options
round-trip through the command line, its title names every option, its card counts from 1, and
the dispatcher and the explorer's cache compute its map for a tiny model."""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import fields, replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import tiny_spec
from vitexplorer.cli.methods import add_method_options, method_options
from vitexplorer.core.explain.analysis import analyze_image
from vitexplorer.core.explain.card import map_card, map_facts
from vitexplorer.core.explain.maps import MapCache, explanation_map, map_job, model_matrix
from vitexplorer.core.explain.method import OPTION, MethodOptions, catalogue, get, method_names
from vitexplorer.core.models.loading import LoadedModel
from vitexplorer.core.models.preprocessing import preprocess
from vitexplorer.core.render.numbering import shown

METHODS = [m.name for m in catalogue()]

# for each option, a value other than its default (0-based, as the code holds it) that exists in
# the tiny model (2 layers, 2 heads, 17 tokens, 10 classes)
OTHER = {
    "layer": 0,
    "head": 1,
    "token": 5,
    "head_fusion": "max",
    "discard_ratio": 0.5,
    "start_layer": 1,
    "target_class": 3,
    "occlude": "token",
    "baseline": "blur",
    "gamma": 0.5,
    "conv_gamma": 0.25,
    "attention_rule": "attnlrp",
    "path_steps": 7,
    "samples": 3,
    "noise": 0.25,
    "noise_seed": 4,
}


def typed(name: str, value: object) -> str:
    """``value`` as a person types it on the command line (from 1 where people count so)."""
    option = OPTION[name]
    if option.counted_from_1:
        return str(shown(value))
    return str(value)


@pytest.fixture
def model(tiny_small_vit) -> LoadedModel:
    return LoadedModel(tiny_small_vit, tiny_spec(), torch.device("cpu"))


@pytest.fixture
def picture() -> Image.Image:
    pixels = np.random.default_rng(3).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def test_every_option_is_a_field_of_the_one_options_class():
    assert [f.name for f in fields(MethodOptions)] == list(OPTION)
    for option in OPTION.values():
        assert getattr(MethodOptions(), option.name) == option.default


def test_every_method_file_is_found_and_described():
    assert {"attention", "rollout", "relevance"} <= set(METHODS)
    assert len(set(METHODS)) == len(METHODS) == len(method_names())
    for method in catalogue():
        assert method.label and method.summary and method.help and method.tip
        assert method.compute is not None
        assert set(method.options) <= set(OPTION)
        assert not (method.needs_backward and not method.needs_model)


@pytest.mark.parametrize("method", METHODS)
def test_options_round_trip_through_the_command_line(method: str):
    parser = argparse.ArgumentParser()
    add_method_options(parser)
    given = [name for name in get(method).options if OPTION[name].flag is not None]
    argv = ["--method", method]
    for name in given:
        argv += [OPTION[name].flag, typed(name, OTHER[name])]
    parsed = parser.parse_args(argv)
    assert parsed.method == [method]
    chosen = method_options(parsed, tiny_spec(), [method])
    for name in given:
        assert getattr(chosen, name) == OTHER[name], name
    for name in set(OPTION) - set(given):  # what was not typed keeps its default
        if OPTION[name].flag is not None:
            default = getattr(MethodOptions(), name)
            if OPTION[name].from_end:  # -1, the last layer, resolved to its place
                default %= tiny_spec().num_layers
            assert getattr(chosen, name) == default, name


@pytest.mark.parametrize("method", METHODS)
def test_the_title_names_every_option(method: str, model: LoadedModel, picture):
    analysis = analyze_image(model, picture)
    heat = np.arange(16, dtype=np.float32).reshape(4, 4)
    described = get(method)
    base = MethodOptions()
    title = map_facts(method, base, analysis, heat)["title"]
    assert title.startswith(method)
    for name in described.options:
        changed = replace(base, **{name: OTHER[name]})
        other = map_facts(method, changed, analysis, heat)["title"]
        assert other != title, f"{method}'s title does not change with {name}"


@pytest.mark.parametrize("method", METHODS)
def test_the_card_counts_from_1(method: str, model: LoadedModel, picture):
    analysis = analyze_image(model, picture)
    heat = np.arange(16, dtype=np.float32).reshape(4, 4)
    options = MethodOptions(**{name: OTHER[name] for name in get(method).options})
    facts = SimpleNamespace(spec=model.spec, weights_file=None, device="cpu")
    card = map_card(facts, method, options, analysis, heat, "photo.png")
    assert card["method"] == method
    assert set(card["parameters"]) == set(get(method).options)
    for name, value in card["parameters"].items():
        expected = shown(OTHER[name]) if OPTION[name].counted_from_1 else OTHER[name]
        assert value == expected, name
    if get(method).class_specific:
        assert card["target"]["index"] == OTHER["target_class"]
        assert card["target"]["name"] == "class 3" and card["target"]["predicted"] is (
            analysis.predictions[0].index == 3
        )


@pytest.mark.parametrize("method", METHODS)
def test_dispatcher_and_cache_compute_the_map_for_a_tiny_model(
    method: str, model: LoadedModel, picture
):
    analysis = analyze_image(model, picture)
    batch = preprocess(picture, model.spec).unsqueeze(0)
    options = MethodOptions()
    heat = explanation_map(method, options, analysis=analysis, model=model, batch=batch)
    assert heat.shape == model.spec.grid == (4, 4) and heat.dtype == np.float32
    assert np.isfinite(heat).all() and np.ptp(heat) > 0  # a map that ranks the patches

    # the explorer: the same map from the cache (the worker's job first, where it has one)
    cache = MapCache()
    job = map_job(method, options, analysis)
    assert (job is None) == (not get(method).needs_model)
    if job is not None:
        assert cache.map("k", analysis, method, options) is None  # not computed yet
        matrix = model_matrix(job.method, model, batch, job.options)
        whole = (17, 17) if get(method).per_token else model.spec.grid  # else the CLS map
        assert matrix.shape == whole and np.isfinite(matrix).all()
        cache.store("k", job, matrix)
    shown_map = cache.map("k", analysis, method, options)
    np.testing.assert_allclose(shown_map, heat, rtol=1e-4, atol=1e-6)


def test_the_descriptions_import_no_torch():
    code = (
        "import sys\n"
        "from vitexplorer.core.explain.method import catalogue\n"
        "from vitexplorer.cli.methods import method_help\n"
        "assert len(catalogue()) >= 3 and method_help()\n"
        "print('torch' in sys.modules, 'numpy' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]
