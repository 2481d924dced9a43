"""``analyze`` with a method that attributes to pixels: ``<stem>.<method>.pixels.npy`` (the
model's input height x width) beside the grid map (its sum over each patch), in the image's file
set, the card saying which is which. A tiny Attributor registered here (its pixel map is the
input's first channel) stands in for the real methods."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tests.core.test_cli import _image
from vitexplorer.cli import main
from vitexplorer.core.explain import method as catalogue_module
from vitexplorer.core.explain.attribution import (
    Attribution,
    Attributor,
    grid_of,
    patch_sums,
    plain_logits,
    resolve_targets,
)
from vitexplorer.core.explain.card import GRID_OF_PIXELS
from vitexplorer.core.explain.method import Method, MethodOptions, register
from vitexplorer.core.io.images import load_image
from vitexplorer.core.models.feed import CROP, WHOLE
from vitexplorer.core.models.loading import load_model
from vitexplorer.core.models.preprocessing import preprocess

FAKE = "first-channel"


class FirstChannel(Attributor):
    """A known pixel map: each image's first input channel; the grid map its patch sums."""

    def attribute(self, model, batch, options, grid=None, progress=None) -> Attribution:
        chosen, any_size = grid_of(model, grid)
        logits = plain_logits(model, batch, any_size)
        targets = resolve_targets(logits, options.target_class).cpu().numpy()
        pixels = batch[:, 0].detach().float().cpu().numpy()
        return Attribution(patch_sums(pixels, chosen), targets, pixels)


@pytest.fixture
def first_channel() -> Iterator[Method]:
    """The fake method in the catalogue for one test, taken out after it."""
    method = register(
        Method(
            name=FAKE,
            label="First channel",
            summary="a test's fake attribution: the input's first channel",
            tip="",
            help_title="",
            help="",
            options=("target_class",),
            needs_model=True,
            class_specific=True,
            only_cls=True,
            requires_classifier=True,
            per_token=False,
            pixels=True,
            cost=1,
            compute=FirstChannel(),
            order=999,
        )
    )
    yield method
    catalogue_module._REGISTRY.pop(FAKE, None)


def _analyze(checkpoint: Path, image: Path, out: Path, *extra: str) -> int:
    return main(
        ["analyze", str(image), "--model", str(checkpoint), "--out", str(out),
         "--method", FAKE, "--method", "attention", *extra]
    )  # fmt: skip


@pytest.mark.parametrize(
    ("size", "aspect", "shape"), [((50, 40), "crop", (32, 32)), ((60, 36), "keep", (24, 40))]
)
def test_analyze_writes_the_pixel_map_beside_its_patch_sums(
    first_channel, checkpoint, tmp_path, capsys, size, aspect, shape
):
    photo = _image(tmp_path / "in" / "photo.png", size, seed=4)
    out = tmp_path / "out"
    status = _analyze(checkpoint, photo, out, "--aspect", aspect)
    assert status == 0, capsys.readouterr().err
    model = load_model(str(checkpoint), device="cpu")
    feed = WHOLE if aspect == "keep" else CROP
    expected = preprocess(load_image(photo), model.spec, feed)[0].numpy()
    assert expected.shape == shape

    pixels = np.load(out / f"photo.{FAKE}.pixels.npy")
    assert pixels.dtype == np.float32 and pixels.shape == shape
    np.testing.assert_allclose(pixels, expected, rtol=0, atol=1e-6)
    grid = np.load(out / f"photo.{FAKE}.npy")
    rows, cols = shape[0] // 8, shape[1] // 8
    assert grid.shape == (rows, cols)
    sums = expected.reshape(rows, 8, cols, 8).sum(axis=(1, 3))
    np.testing.assert_allclose(grid, sums, rtol=1e-5, atol=1e-5)

    card = json.loads((out / f"photo.{FAKE}.json").read_text())
    assert card["pixels"]["file"] == f"photo.{FAKE}.pixels.npy"
    assert card["pixels"]["shape"] == list(shape) and card["pixels"]["dtype"] == "float32"
    assert f"{shape[0]}x{shape[1]}" in card["pixels"]["meaning"]
    assert card["map"]["meaning"] == GRID_OF_PIXELS
    assert card["map"]["shape"] == [rows, cols]
    listed = {entry["name"]: entry["bytes"] for entry in card["files"]}
    size_on_disk = (out / f"photo.{FAKE}.pixels.npy").stat().st_size
    assert listed[f"photo.{FAKE}.pixels.npy"] == size_on_disk
    facts = json.loads((out / "photo.json").read_text())  # the image's card names it too
    assert f"photo.{FAKE}.pixels.npy" in {entry["name"] for entry in facts["files"]}

    # a method that reads the attention keeps its files and card as before: no pixel map
    attention_card = json.loads((out / "photo.attention.json").read_text())
    assert "pixels" not in attention_card and "meaning" not in attention_card["map"]
    assert not (out / "photo.attention.pixels.npy").exists()


def test_the_grid_map_equals_the_dispatchers_single_map(first_channel, checkpoint, tmp_path):
    """``explain_methods`` takes the attribution's one pass: its grid map is the one the
    dispatcher gives for the same image and class."""
    from vitexplorer.cli.analyze import explain_methods
    from vitexplorer.core.explain.analysis import analyze_image
    from vitexplorer.core.explain.maps import explanation_map

    photo = _image(tmp_path / "photo.png", (40, 40), seed=5)
    model = load_model(str(checkpoint), device="cpu")
    image = load_image(photo)
    analysis = analyze_image(model, image)
    options = MethodOptions(target_class=3)
    found = explain_methods(model, image, photo, analysis, [FAKE], options)[FAKE]
    batch = preprocess(image, model.spec).unsqueeze(0)
    single = explanation_map(FAKE, options, model=model, batch=batch)
    np.testing.assert_allclose(found.heat, single, rtol=1e-6)
    assert found.pixels is not None and found.pixels.shape == (32, 32)
    assert found.card["target"]["index"] == 3


def test_a_pixel_map_of_the_wrong_size_is_refused(first_channel, checkpoint, tmp_path, capsys):
    """A method whose pixel map is not the input's size is a bug, said in one line per image."""

    class Wrong(FirstChannel):
        def attribute(self, model, batch, options, grid=None, progress=None) -> Attribution:
            found = super().attribute(model, batch, options, grid, progress)
            return Attribution(found.maps, found.targets, found.pixels[:, :16])

    catalogue_module._REGISTRY[FAKE] = replace(first_channel, compute=Wrong())
    photo = _image(tmp_path / "in" / "photo.png", (40, 40), seed=6)
    status = _analyze(checkpoint, photo, tmp_path / "out")
    err = capsys.readouterr().err
    assert status == 1
    assert f"the {FAKE} method gave a 16x32 pixel map for a 32x32 input" in err
    assert "Traceback" not in err
