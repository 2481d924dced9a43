"""render_overlay: heat map normalisation, block upsampling, colouring and blending."""

from __future__ import annotations

import numpy as np
import pytest

from vitexplorer.core.render.overlay import normalise, render_overlay, upsample_blocks


def _lut() -> np.ndarray:
    """A table whose colour says its index: (i, 255 - i, 10)."""
    i = np.arange(256)
    return np.stack([i, 255 - i, np.full(256, 10)], axis=1).astype(np.uint8)


def test_two_by_two_heat_on_black_gives_alpha_times_lut_per_block():
    black = np.zeros((4, 4, 3), np.uint8)
    heat = np.array([[0.0, 1.0], [2.0, 3.0]])  # normalised: 0, 1/3, 2/3, 1 -> lut 0, 85, 170, 255
    out = render_overlay(black, heat, _lut(), alpha=0.4)
    assert out.shape == (4, 4, 3) and out.dtype == np.uint8
    # 0.4 * (0, 255, 10) = (0, 102, 4); 0.4 * (85, 170, 10) = (34, 68, 4);
    # 0.4 * (170, 85, 10) = (68, 34, 4); 0.4 * (255, 0, 10) = (102, 0, 4)
    expected = {(0, 0): (0, 102, 4), (0, 1): (34, 68, 4), (1, 0): (68, 34, 4), (1, 1): (102, 0, 4)}
    for (r, c), colour in expected.items():
        block = out[2 * r : 2 * r + 2, 2 * c : 2 * c + 2]
        assert (block == np.array(colour, np.uint8)).all(), (r, c, block)


def test_blend_over_a_grey_image():
    grey = np.full((2, 2, 3), 100, np.uint8)
    heat = np.array([[0.0, 5.0]])
    out = render_overlay(grey, heat, _lut(), alpha=0.5)
    # left: 0.5 * 100 + 0.5 * (0, 255, 10) = (50, 177.5, 55) -> 178 rounds half to even
    assert out[:, 0].tolist() == [[50, 178, 55]] * 2
    # right: 0.5 * 100 + 0.5 * (255, 0, 10) = (177.5, 50, 55)
    assert out[:, 1].tolist() == [[178, 50, 55]] * 2


def test_constant_heat_maps_to_the_first_lut_colour():
    image = np.full((3, 5, 3), 200, np.uint8)
    out = render_overlay(image, np.full((2, 2), 0.7), _lut(), alpha=0.25)
    # 0.75 * 200 + 0.25 * (0, 255, 10) = (150, 213.75, 152.5) -> (150, 214, 152)
    assert (out == np.array([150, 214, 152], np.uint8)).all()


def test_alpha_zero_returns_the_image_and_alpha_one_the_colours():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    heat = rng.random((3, 3))
    out = render_overlay(image, heat, _lut(), alpha=0.0)
    assert np.array_equal(out, image)
    assert out is not image
    full = render_overlay(image, heat, _lut(), alpha=1.0)
    levels = np.rint((heat - heat.min()) / (heat.max() - heat.min()) * 255).astype(int)
    assert np.array_equal(full, _lut()[np.repeat(np.repeat(levels, 2, 0), 2, 1)])


def test_uneven_sizes_use_index_mapping():
    # 5 pixel rows over 2 grid rows: y * 2 // 5 = 0, 0, 0, 1, 1; 3 columns over 3 cells: identity
    index = upsample_blocks(np.array([[1, 2, 3], [4, 5, 6]]), 5, 3)
    assert index.tolist() == [[1, 2, 3]] * 3 + [[4, 5, 6]] * 2
    out = render_overlay(np.zeros((5, 3, 3), np.uint8), np.array([[0.0], [1.0]]), _lut(), 1.0)
    assert (out[:3] == _lut()[0]).all() and (out[3:] == _lut()[255]).all()


def test_lut_alpha_column_scales_the_blend():
    lut = np.concatenate([_lut(), np.full((256, 1), 51, np.uint8)], axis=1)  # 51 / 255 = 0.2
    out = render_overlay(np.zeros((2, 2, 3), np.uint8), np.array([[1.0, 2.0]]), lut, alpha=0.5)
    # effective alpha 0.1: left 0.1 * (0, 255, 10) = (0, 25.5, 1) -> (0, 26, 1)
    assert out[0, 0].tolist() == [0, 26, 1]
    assert out[0, 1].tolist() == [26, 0, 1]


def test_normalise_handles_constant_and_non_finite_maps():
    assert normalise(np.full((2, 2), 3.0)).tolist() == [[0.0, 0.0], [0.0, 0.0]]
    assert normalise(np.array([[np.nan, 1.0], [3.0, 2.0]])).tolist() == [[0.0, 0.0], [1.0, 0.5]]
    assert normalise(np.full((1, 2), np.nan)).tolist() == [[0.0, 0.0]]


@pytest.mark.parametrize(
    ("display", "heat", "lut", "alpha"),
    [
        (np.zeros((4, 4), np.uint8), np.ones((2, 2)), _lut(), 0.5),
        (np.zeros((4, 4, 3), np.float32), np.ones((2, 2)), _lut(), 0.5),
        (np.zeros((4, 4, 3), np.uint8), np.ones(4), _lut(), 0.5),
        (np.zeros((4, 4, 3), np.uint8), np.ones((2, 2)), np.zeros((256, 2), np.uint8), 0.5),
        (np.zeros((4, 4, 3), np.uint8), np.ones((2, 2)), _lut(), 1.5),
    ],
)
def test_bad_arguments_are_refused(display, heat, lut, alpha):
    with pytest.raises(ValueError):
        render_overlay(display, heat, lut, alpha)


def _per_pixel_blend(display, heat, lut, alpha=0.55, levels=None):
    """The blend as it was first written (issue 14 made it per patch): every pixel gets its
    own copy of its patch's colour and weight, then the same float32 arithmetic."""
    height, width = display.shape[:2]
    scaled = upsample_blocks(normalise(heat, levels), height, width)
    index = np.rint(scaled * (len(lut) - 1)).astype(np.intp)
    colours = lut[index].astype(np.float32)
    weight = np.full((height, width, 1), alpha, dtype=np.float32)
    if lut.shape[1] == 4:
        weight = weight * colours[..., 3:] / 255.0
    blended = display.astype(np.float32) * (1.0 - weight) + colours[..., :3] * weight
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("size", [(448, 448), (748, 748), (300, 517), (7, 5)])
@pytest.mark.parametrize("alpha_column", [False, True])
@pytest.mark.parametrize("levels", [None, (0.2, 0.6), (0.3, 0.3)])
def test_the_blend_per_patch_gives_the_same_pixels_as_per_pixel(size, alpha_column, levels):
    rng = np.random.default_rng(sum(size))
    display = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    heat = rng.random((14, 14)).astype(np.float32)
    heat[3, 4] = np.nan  # counts as the minimum
    lut = rng.integers(0, 256, (256, 4 if alpha_column else 3), dtype=np.uint8)
    for alpha in (0.55, 0.3, 1.0):
        expected = _per_pixel_blend(display, heat, lut, alpha, levels)
        np.testing.assert_array_equal(render_overlay(display, heat, lut, alpha, levels), expected)
