"""Signed maps drawn truthfully: a method whose map's sign means something (integrated gradients,
CP-LRP, AttnLRP, occlusion: negative is evidence against the class) is marked ``signed`` in the
catalogue, and ``analyze`` draws its PNG on the diverging table CET-D1 with levels symmetric
around zero, its card naming the colour map; every other method is drawn as before (inferno,
from its minimum to its maximum)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vitexplorer.cli import main
from vitexplorer.core.explain.analysis import analyze_images
from vitexplorer.core.explain.maps import explanation_map
from vitexplorer.core.explain.method import MethodOptions, catalogue
from vitexplorer.core.models.loading import load_model, save_checkpoint
from vitexplorer.core.models.preprocessing import preprocess
from vitexplorer.core.render.colour_tables import DIVERGING, colour_table
from vitexplorer.core.render.overlay import render_overlay
from vitexplorer.core.render.scales import is_signed, symmetric, symmetric_range

SIGNED = {"integrated-gradients", "cp-lrp", "attnlrp", "occlusion"}
ALPHA = 0.55  # render_overlay's default opacity, as analyze draws


def test_the_catalogue_marks_the_signed_methods() -> None:
    assert {m.name for m in catalogue() if m.signed} == SIGNED
    assert all(is_signed(m.name) == (m.name in SIGNED) for m in catalogue())
    assert not is_signed("no such method")


def test_methods_json_says_which_are_signed(capsys) -> None:
    assert main(["methods", "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert {f["name"] for f in facts if f["signed"] is True} == SIGNED
    assert all(f["signed"] is False for f in facts if f["name"] not in SIGNED)


def test_symmetric_levels() -> None:
    assert symmetric((-0.696, 0.579)) == (-0.696, 0.696)
    assert symmetric((0.2, 0.5)) == (-0.5, 0.5)
    assert symmetric((-3.0, -1.0)) == (-3.0, 3.0)
    values = np.array([[0.25, -0.75], [np.nan, 0.5]], np.float32)
    assert symmetric_range(values) == pytest.approx((-0.75, 0.75))
    assert symmetric_range(np.zeros((2, 2))) == (0.0, 0.0)
    assert symmetric_range(np.full((2, 2), np.nan)) is None


@pytest.fixture(scope="module")
def tiny(checkpoint: Path):
    model = load_model(str(checkpoint), device="cpu")
    image = Image.fromarray(np.random.default_rng(3).integers(0, 256, (32, 32, 3), np.uint8))
    batch = preprocess(image, model.spec).unsqueeze(0)
    analysis = analyze_images(model, [image])[0]
    return model, batch, analysis


def test_the_flag_matches_the_maps(tiny) -> None:
    """Each signed method's map has negative values on a random tiny model; every other
    method's map never has (a relu, a clamp, an absolute value, a min-max scaling, softmax
    rows): the flag says what the maps are."""
    model, batch, analysis = tiny
    options = MethodOptions(path_steps=8, samples=4)
    seen = set()
    for method in catalogue():
        if method.applies(analysis.spec, model if method.needs_model else None):
            continue
        heat = explanation_map(method.name, options, analysis=analysis, model=model, batch=batch)
        heat = np.asarray(heat, np.float64)
        if method.signed:
            assert heat.min() < 0 < heat.max(), method.name
        else:
            assert heat.min() >= -1e-7, (method.name, heat.min())
        seen.add(method.name)
    assert SIGNED <= seen


def _analyze(capsys, out: Path, photo: Path, checkpoint: Path, *methods: str) -> None:
    flags = [word for name in methods for word in ("--method", name)]
    args = ["analyze", str(photo), "--model", str(checkpoint), *flags, "--out", str(out)]
    assert main([*args, "--path-steps", "8", "--device", "cpu"]) == 0
    capsys.readouterr()


def _patch_pixel(png: Path, picture: dict, grid: tuple[int, int], row: int, col: int):
    """The figure's pixel at the centre of patch (``row``, ``col``)."""
    area = picture["map_area"]
    y = area["top"] + int((row + 0.5) * area["height"] / grid[0])
    x = area["left"] + int((col + 0.5) * area["width"] / grid[1])
    with Image.open(png) as image:
        return np.asarray(image.convert("RGB"))[y, x].astype(int)


def _bar_pixel(png: Path, picture: dict, fraction: float):
    """The colour bar's pixel at ``fraction`` of its height from the bottom."""
    from vitexplorer.core.render.figure import BAR_GAP, BAR_WIDTH

    area = picture["map_area"]
    x = area["left"] + area["width"] + BAR_GAP + BAR_WIDTH // 2
    y = area["top"] + area["height"] - 1 - int(fraction * (area["height"] - 1))
    with Image.open(png) as image:
        return np.asarray(image.convert("RGB"))[y, x].astype(int)


def test_analyze_draws_integrated_gradients_on_a_diverging_symmetric_scale(
    capsys, tmp_path: Path, checkpoint: Path
) -> None:
    # a 32 px photo (the model's input as it is) of one grey per 8 px patch, so that the
    # colour a patch is drawn in can be read back from the figure
    greys = np.random.default_rng(5).integers(60, 200, (4, 4))
    photo = tmp_path / "grey.png"
    Image.fromarray(
        np.repeat(np.repeat(greys, 8, 0), 8, 1)[..., None].repeat(3, 2).astype(np.uint8)
    ).save(photo)
    out = tmp_path / "out"
    _analyze(capsys, out, photo, checkpoint, "integrated-gradients", "rollout")

    heat = np.load(out / "grey.integrated-gradients.npy")
    card = json.loads((out / "grey.integrated-gradients.json").read_text())
    picture = card["picture"]
    largest = float(np.abs(heat).max())
    assert heat.min() < 0 < heat.max()
    assert picture["colour_scale"] == pytest.approx([-largest, largest])  # symmetric, not min..max
    assert picture["colour_map"].startswith(DIVERGING) and "symmetric" in picture["colour_map"]

    png = out / "grey.integrated-gradients.png"
    grid = heat.shape
    lut = colour_table(DIVERGING)
    low = np.unravel_index(np.argmin(heat), grid)
    high = np.unravel_index(np.argmax(heat), grid)
    middle = np.unravel_index(np.argmin(np.abs(heat)), grid)
    blue = _patch_pixel(png, picture, grid, *low)
    red = _patch_pixel(png, picture, grid, *high)
    assert blue[2] > blue[0] + 20, blue  # the most negative patch: blue-ish
    if heat[high] > 0.9 * largest:  # the strongest end of the scale: red
        assert red[0] > red[2] + 20, red
    for at, pixel in (
        (low, blue),
        (high, red),
        (middle, _patch_pixel(png, picture, grid, *middle)),
    ):
        index = int(np.rint((heat[at] + largest) / (2 * largest) * 255))
        expected = np.rint((1 - ALPHA) * greys[at] + ALPHA * lut[index].astype(np.float32))
        assert np.abs(pixel - expected).max() <= 1, (at, pixel, expected)
    # the bar: blue at the bottom (-m), CET-D1's near-white middle at zero, red at the top (+m)
    bottom, centre, top = (_bar_pixel(png, picture, f) for f in (0.0, 0.5, 1.0))
    assert bottom[2] > 200 and bottom[0] < 60, bottom
    assert centre.min() > 220 and centre.max() - centre.min() < 15, centre
    assert top[0] > 180 and top[2] < 30, top

    # an unsigned method beside it: drawn as before, inferno from its minimum to its maximum
    rollout = np.load(out / "grey.rollout.npy")
    rolled = json.loads((out / "grey.rollout.json").read_text())["picture"]
    assert "colour_map" not in rolled
    assert rolled["colour_scale"] == pytest.approx([rollout.min(), rollout.max()])
    dark = np.unravel_index(np.argmin(rollout), rollout.shape)
    pixel = _patch_pixel(out / "grey.rollout.png", rolled, rollout.shape, *dark)
    inferno = colour_table()[0].astype(np.float32)
    expected = np.rint((1 - ALPHA) * greys[dark] + ALPHA * inferno)
    assert np.abs(pixel - expected).max() <= 1, pixel


def test_overlay_of_a_signed_map_puts_zero_in_the_middle() -> None:
    """The overlay itself (what analyze blends): on symmetric levels a zero is CET-D1's middle
    colour, -m its blue end and +m its red end, whatever the map's own minimum."""
    lut = colour_table(DIVERGING)
    heat = np.array([[-0.2, 0.0, 0.6]], np.float32)
    display = np.zeros((1, 3, 3), np.uint8)
    drawn = render_overlay(display, heat, lut, alpha=1.0, levels=symmetric_range(heat))
    expected = lut[[int(np.rint(0.4 / 1.2 * 255)), 128, 255]]
    np.testing.assert_array_equal(drawn[0], expected)
    own = render_overlay(display, heat, lut, alpha=1.0)  # its own range: -0.2 the blue end
    np.testing.assert_array_equal(own[0, 0], lut[0])


def test_a_signed_map_of_zeros_is_drawn_neutral() -> None:
    """A signed map that is all zero (nothing for or against) takes the neutral middle colour,
    never an end."""
    from vitexplorer.core.render.figure import render_figure

    lut = colour_table(DIVERGING)
    heat = np.zeros((2, 2), np.float32)
    display = np.zeros((16, 16, 3), np.uint8)
    figure = render_figure(display, heat, lut, "t", levels=symmetric_range(heat))
    left, top, width, height = figure.map_box
    pixel = np.asarray(figure.image)[top + height // 2, left + width // 2].astype(int)
    assert np.abs(pixel - np.rint(ALPHA * lut[128].astype(np.float32))).max() <= 1


def test_compare_draws_a_signed_method_on_one_symmetric_diverging_scale(
    capsys, tmp_path: Path, checkpoint: Path
) -> None:
    """``compare``: model A's and B's maps of a signed method share one scale, symmetric around
    zero, on CET-D1 (as the app's model comparison draws them); their cards say so."""
    other = tmp_path / "other.safetensors"
    model = load_model(str(checkpoint), device="cpu")
    with torch.no_grad():
        model.module.head.weight.mul_(-1.0)  # B: the classes' evidence turned round
    save_checkpoint(other, model)
    photo = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (32, 32, 3), np.uint8)).save(photo)
    out = tmp_path / "out"
    args = ["compare", str(photo), "--model", str(checkpoint), "--model", str(other)]
    args += ["--method", "integrated-gradients", "--path-steps", "4", "--out", str(out)]
    assert main([*args, "--device", "cpu"]) == 0
    capsys.readouterr()
    a = np.load(out / "noise.integrated-gradients.A.npy")
    b = np.load(out / "noise.integrated-gradients.B.npy")
    largest = float(max(np.abs(a).max(), np.abs(b).max()))
    for side in ("A", "B"):
        card = json.loads((out / f"noise.integrated-gradients.{side}.json").read_text())
        assert card["picture"]["colour_scale"] == pytest.approx([-largest, largest])
        scales = card["comparison"]["colour_scales"]
        assert scales["A and B"] == pytest.approx([-largest, largest])
        assert scales["A and B colour_map"].startswith(DIVERGING)
    rollout_args = [*args[:6], "--method", "rollout", "--out", str(tmp_path / "rollout")]
    assert main([*rollout_args, "--device", "cpu"]) == 0  # unsigned: as before
    capsys.readouterr()
    card = json.loads((tmp_path / "rollout" / "noise.rollout.A.json").read_text())
    maps = [np.load(tmp_path / "rollout" / f"noise.rollout.{s}.npy") for s in ("A", "B")]
    low, high = min(m.min() for m in maps), max(m.max() for m in maps)
    assert card["picture"]["colour_scale"] == pytest.approx([low, high])
    assert "A and B colour_map" not in card["comparison"]["colour_scales"]
