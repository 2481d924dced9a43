"""One numbering on the command line, and analyze's PNGs people can read: layers and heads are
typed and written from 1, a 0 is refused in one line, and a 32 px model's maps come out as
448 px figures whose patches are crisp blocks, with a labelled colour bar."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import json

import numpy as np
import pytest
import torch
from PIL import Image

from tests.core.test_cli import _image
from vitexplorer.cli import main
from vitexplorer.cli.common import colour_table
from vitexplorer.core.explain.maps import explanation_map
from vitexplorer.core.explain.method import MethodOptions
from vitexplorer.core.io.images import load_image
from vitexplorer.core.models.capture import forward_with_attention
from vitexplorer.core.models.loading import load_model
from vitexplorer.core.models.preprocessing import preprocess
from vitexplorer.core.render.figure import MIN_SIDE, render_figure, scale_for
from vitexplorer.core.render.numbering import card_parameters, index_of, shown
from vitexplorer.core.render.overlay import render_overlay
from vitexplorer.core.render.scales import tick_labels


def _analyze(checkpoint, photo, out, *extra: str) -> int:
    return main(["analyze", str(photo), "--model", str(checkpoint), "--out", str(out), *extra])


def _model_attention(checkpoint, photo) -> np.ndarray:
    """(layers, heads, tokens, tokens) straight from the model's captured forward pass."""
    model = load_model(str(checkpoint), device="cpu")
    batch = preprocess(load_image(photo), model.spec).unsqueeze(0)
    with torch.no_grad():
        _, captured = forward_with_attention(model.module, batch)
    return captured[0].float().numpy()


# --- the convention --------------------------------------------------------------------------


def test_numbers_people_give_become_indices_and_back():
    assert [index_of(n, "--layer", 12, "layer", from_end=True) for n in (1, 12, -1, -12)] == [
        0,
        11,
        11,
        0,
    ]
    assert [shown(i) for i in (0, 11, -1)] == [1, 12, -1]
    for bad in (0, 13, -13):
        with pytest.raises(ValueError) as caught:
            index_of(bad, "--layer", 12, "layer", from_end=True)
        assert str(caught.value) == (
            f"--layer {bad}: layers are numbered from 1; this model has layers 1 to 12 "
            f"(-1 is the last)"
        )
    with pytest.raises(ValueError, match="--head -1: heads are numbered from 1; this model has "
                       "heads 1 to 3"):  # fmt: skip
        index_of(-1, "--head", 3, "head")  # no counting from the end for heads
    # a card writes what the code holds (0-based) from 1; the mean of the heads stays null
    assert card_parameters({"layer": 0, "head": None, "token": 0, "start_layer": 2, "x": 0}) == {
        "layer": 1,
        "head": None,
        "token": 1,
        "start_layer": 3,
        "x": 0,
    }


# --- --layer and --head on the command line ---------------------------------------------------


def test_layer_0_is_refused_with_the_convention_and_the_range(checkpoint, tmp_path, capsys):
    photo = _image(tmp_path / "photo.png", (32, 32), seed=11)
    cases = {
        ("--layer", "0"): "--layer 0: layers are numbered from 1; this model has layers 1 to 2 "
        "(-1 is the last)",
        ("--layer", "3"): "--layer 3: layers are numbered from 1; this model has layers 1 to 2",
        ("--head", "0"): "--head 0: heads are numbered from 1; this model has heads 1 to 2",
        ("--start-layer", "0"): "--start-layer 0: layers are numbered from 1",
    }
    for (flag, value), message in cases.items():
        out = tmp_path / f"out{flag}{value}"
        method = "rollout" if flag == "--start-layer" else "attention"
        status = _analyze(checkpoint, photo, out, "--method", method, flag, value)
        err = capsys.readouterr().err
        assert status == 2, (flag, value, err)
        assert err.count("\n") == 1 and "Traceback" not in err
        assert err.startswith(f"vitexplorer: {message}"), err
        assert not out.exists() or not list(out.iterdir())  # nothing written


@pytest.mark.slow
def test_layer_1_is_the_first_layer_and_head_1_the_first_head(checkpoint, tmp_path, capsys):
    photo = _image(tmp_path / "photo.png", (40, 32), seed=12)
    attention = _model_attention(checkpoint, photo)  # index 0 is the first layer
    for extra, expected, parameters in [
        (["--layer", "1"], attention[0, :, 0, 1:].mean(0), {"layer": 1, "head": None}),
        (["--layer", "1", "--head", "1"], attention[0, 0, 0, 1:], {"layer": 1, "head": 1}),
        (["--layer", "2", "--head", "2"], attention[1, 1, 0, 1:], {"layer": 2, "head": 2}),
        (["--layer", "-2"], attention[0, :, 0, 1:].mean(0), {"layer": 1, "head": None}),
        ([], attention[1, :, 0, 1:].mean(0), {"layer": 2, "head": None}),  # -1: the last
    ]:
        out = tmp_path / "_".join(["out", *extra])
        assert _analyze(checkpoint, photo, out, "--method", "attention", *extra) == 0
        written = np.load(out / "photo.attention.npy")
        np.testing.assert_allclose(written, expected.reshape(4, 4), rtol=1e-5, atol=1e-7)
        card = json.loads((out / "photo.attention.json").read_text())
        assert card["parameters"] == {**parameters, "token": 1}, extra  # resolved, from 1
        head = "mean of heads" if parameters["head"] is None else f"head {parameters['head']} of 2"
        assert card["title"] == (
            f"attention · layer {parameters['layer']} of 2, {head} · the CLS token"
        )
        assert card["map"]["axes"] == ["axis 0: patch rows 1..4", "axis 1: patch columns 1..4"]
    facts = json.loads((out / "photo.json").read_text())
    assert facts["attention_axes"] == [
        "axis 0: layers 1..2",
        "axis 1: heads 1..2",
        "axis 2: query tokens 1..17 (tokens 1 to 1 are the prefix tokens, then the patches "
        "row by row)",
        "axis 3: key tokens 1..17",
    ]
    np.testing.assert_allclose(np.load(out / "photo.attention_all.npy"), attention, atol=1e-6)
    capsys.readouterr()


# --- analyze's PNGs ----------------------------------------------------------------------------


@pytest.mark.slow
def test_a_32_px_models_png_is_448_px_with_crisp_patches(checkpoint, tmp_path, capsys):
    grey = tmp_path / "grey.png"  # one colour: every pixel of a patch's block must be equal
    Image.new("RGB", (32, 32), (120, 130, 140)).save(grey)
    out = tmp_path / "out"
    assert _analyze(checkpoint, grey, out, "--method", "attention", "--method", "rollout") == 0
    model = load_model(str(checkpoint), device="cpu")
    assert model.spec.image_size == 32 and model.spec.grid == (4, 4)
    for method in ("attention", "rollout"):
        card = json.loads((out / f"grey.{method}.json").read_text())
        picture = card["picture"]
        with Image.open(out / f"grey.{method}.png") as png:
            figure = np.asarray(png.convert("RGB"))
        assert max(figure.shape[:2]) >= MIN_SIDE
        area = picture["map_area"]
        assert area["width"] == area["height"] == 448 and picture["scale"] == 14
        shown_map = figure[
            area["top"] : area["top"] + 448, area["left"] : area["left"] + 448
        ].astype(int)
        # nearest-neighbour: each 8 px patch is one flat 112 x 112 block
        blocks = shown_map.reshape(4, 112, 4, 112, 3)
        assert (blocks == blocks[:, :1, :, :1, :]).all(), method
        heat = np.load(out / f"grey.{method}.npy")
        one_pixel_each = np.full((4, 4, 3), (120, 130, 140), np.uint8)  # the grey crop, 4 x 4
        expected = render_overlay(one_pixel_each, heat, colour_table())
        np.testing.assert_array_equal(blocks[:, 0, :, 0], expected)  # each block its patch's
        # the colour bar and its labels sit beside the map, the title above it
        assert area["top"] > 30 and figure.shape[1] > area["left"] + 448 + 40
        assert card["picture"]["colour_scale"] == [float(heat.min()), float(heat.max())]
    # the .npy holds the map as computed, untouched by the drawing
    options = MethodOptions(layer=-1)
    analysis_map = explanation_map(
        "attention", options, model=model, batch=preprocess(load_image(grey), model.spec)[None]
    )
    np.testing.assert_array_equal(np.load(out / "grey.attention.npy"), analysis_map)
    assert np.load(out / "grey.attention.npy").dtype == np.float32
    capsys.readouterr()


def test_render_figure_keeps_large_crops_and_labels_a_flat_map():
    rng = np.random.default_rng(0)
    display = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
    heat = rng.random((14, 14)).astype(np.float32) * 0.006 + 0.018
    lut = np.stack([np.arange(256)] * 3, axis=1).astype(np.uint8)
    figure = render_figure(display, heat, lut, "attention · layer 12 of 12, head 1 of 12")
    assert figure.scale == scale_for(224, 224) == 2 and figure.map_box[2:] == (448, 448)
    assert figure.levels == (float(heat.min()), float(heat.max()))
    flat = render_figure(display, np.full((14, 14), 0.02, np.float32), lut, "flat")
    assert flat.levels == (pytest.approx(0.02), pytest.approx(0.02))
    big = render_figure(np.zeros((512, 384, 3), np.uint8), heat, lut, "x")
    assert big.scale == 1 and big.map_box[2:] == (384, 512)


def test_a_long_title_wraps_and_an_undecodable_name_is_drawn():
    display = np.zeros((32, 32, 3), np.uint8)
    heat = np.arange(16, dtype=np.float32).reshape(4, 4)
    lut = np.stack([np.arange(256)] * 3, axis=1).astype(np.uint8)
    title = "relevance for " + repr("a very long class name " * 6) + " · the CLS token"
    figure = render_figure(display, heat, lut, title, "caf\udce9-\udcff.png " + "m" * 300)
    assert figure.image.width < 700  # wrapped and cut to the figure, not widened by the text
    assert figure.map_box[1] > 60  # several title lines above the map


# --- tick labels ---------------------------------------------------------------------------------


def test_tick_labels_tell_close_values_apart():
    ticks = tick_labels(0.018, 0.024)
    labels = [text for _, text in ticks]
    assert labels == ["0.018", "0.020", "0.022", "0.024"]
    assert len(set(labels)) == len(labels)
    for value, text in ticks:
        assert 0.018 <= value <= 0.024 and float(text) == pytest.approx(value)


@pytest.mark.parametrize(
    ("low", "high"),
    [(0.018, 0.024), (0.0181, 0.0189), (1e-6, 3e-6), (0, 1), (-0.5, 0.5), (3.1, 3.2),
     (0, 2e6), (0.999, 1.001), (123.4, 123.5), (1e-9, 1.1e-9)],
)  # fmt: skip
def test_tick_labels_are_distinct_ordered_and_inside(low, high):
    for count in (2, 3, 5, 8):
        ticks = tick_labels(low, high, count)
        values = [v for v, _ in ticks]
        labels = [t for _, t in ticks]
        assert len(ticks) >= 2, (low, high, count)
        assert values == sorted(values) and len(set(labels)) == len(labels), labels
        assert all(low - 1e-12 <= v <= high + 1e-12 for v in values)
        assert all(float(t) == pytest.approx(v, rel=1e-6, abs=1e-12) for v, t in ticks), labels


def test_tick_labels_small_values_use_scientific_notation_and_edge_cases():
    assert [t for _, t in tick_labels(1e-6, 3e-6, 3)] == ["1e-6", "2e-6", "3e-6"]
    assert tick_labels(0.02, 0.02) == [(0.02, "0.02000")]
    assert tick_labels(0.0, float("nan")) == [] and tick_labels(1.0, 0.0) == []
    assert [t for _, t in tick_labels(-1e-17, 1.0, 3)] == ["0.0", "0.5", "1.0"]  # never "-0.0"
