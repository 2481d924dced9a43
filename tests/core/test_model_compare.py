"""Two models side by side (core.model_compare): a model against itself differs by exactly zero,
the head table agrees with statistics computed here by hand, and models with different grids
are compared resampled to the image, with a message that says so."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from tests.core.conftest import distinct_small_vit
from vitexplorer.core.explain.analysis import analyze_image
from vitexplorer.core.explain.head_stats import HeadStatistics
from vitexplorer.core.explain.maps import explanation_map
from vitexplorer.core.explain.method import MethodOptions, method_names
from vitexplorer.core.explain.model_compare import (
    DIFFERENCE,
    HEAD_STATISTICS,
    comparability,
    compare_maps,
    counterpart_token,
    distance_units_note,
    head_changes,
    head_changes_csv,
    mean_head_changes,
    pair_maps,
    shared_levels,
    symmetric_levels,
)
from vitexplorer.core.models.feed import WHOLE
from vitexplorer.core.models.preprocessing import preprocess
from vitexplorer.core.render.figure import render_figure
from vitexplorer.core.render.overlay import normalise


def _image(seed: int, size: tuple[int, int] = (50, 40)) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


@pytest.fixture(scope="module")
def before():
    return distinct_small_vit(0)


@pytest.fixture(scope="module")
def after():
    return distinct_small_vit(1)


def _batch(model, image: Image.Image) -> torch.Tensor:
    return preprocess(image, model.spec).unsqueeze(0)


@pytest.mark.parametrize("method", method_names())
def test_a_model_against_itself_differs_by_exactly_zero(before, method: str) -> None:
    image = _image(1)
    # two analyses, two relevance passes: the same model run twice, not one map reused
    analyses = analyze_image(before, image), analyze_image(before, image)
    batches = _batch(before, image), _batch(before, image)
    options = MethodOptions(layer=0, head=1) if method == "attention" else MethodOptions()
    result = pair_maps(method, options, *analyses, models=(before, before), batches=batches)
    assert result.a.shape == (4, 4) and result.resampled_to is None
    assert result.a.any() and np.array_equal(result.a, result.b)
    assert np.array_equal(result.difference, np.zeros((4, 4), np.float32))
    assert result.difference_levels == (0.0, 0.0)
    assert result.notes == ()
    # and the maps are the project's own, unchanged
    expected = explanation_map(
        method, options, analysis=analyses[0], model=before, batch=batches[0]
    )
    assert np.array_equal(result.a, expected)


def test_the_difference_is_b_minus_a_on_one_shared_scale(before, after) -> None:
    image = _image(2)
    a, b = analyze_image(before, image), analyze_image(after, image)
    result = pair_maps("rollout", MethodOptions(token=5), a, b)
    map_a = explanation_map("rollout", MethodOptions(token=5), analysis=a)
    map_b = explanation_map("rollout", MethodOptions(token=5), analysis=b)
    assert np.array_equal(result.difference, map_b - map_a) and result.difference.any()
    both = np.concatenate([map_a.ravel(), map_b.ravel()])
    assert result.levels == (float(both.min()), float(both.max()))
    largest = float(np.abs(map_b - map_a).max())
    assert result.difference_levels == (-largest, largest)
    assert "B minus A" in DIFFERENCE and "before" not in DIFFERENCE  # neutral unless related


def test_levels_ignore_what_is_not_finite() -> None:
    assert shared_levels(np.array([1.0, np.nan]), np.array([[-2.0, np.inf]])) == (-2.0, 1.0)
    assert shared_levels(np.array([np.nan])) is None
    assert symmetric_levels(np.array([0.5, -0.75, np.nan])) == (-0.75, 0.75)


def test_different_grids_are_compared_resampled_to_the_image(before) -> None:
    finer = distinct_small_vit(3, patch=4)  # 8x8 patches where ``before`` has 4x4
    image = _image(3, (50, 40))
    a, b = analyze_image(before, image), analyze_image(finer, image)
    check = comparability(a.spec, b.spec)
    assert not check.same_grid and check.same_prefix and not check.token_for_token
    assert check.message == (
        "model A has a 4x4 grid with 1 prefix token, model B 8x8 with 1: the maps are "
        "compared resampled to the image (bilinear)"
    )
    result = pair_maps("attention", MethodOptions(layer=-1), a, b)
    assert a.display.shape[:2] == (40, 40)  # the 40x40 centre crop of a 50x40 image
    assert result.resampled_to == (40, 40)
    assert result.a.shape == result.b.shape == result.difference.shape == (40, 40)
    assert result.notes == (check.message,)  # the CLS token needs no note
    # bilinear with half-pixel centres, done here with torch directly
    raw = explanation_map("attention", MethodOptions(layer=-1), analysis=b)
    expected = F.interpolate(
        torch.from_numpy(raw).double()[None, None], size=(40, 40), mode="bilinear"
    )[0, 0].numpy()
    np.testing.assert_allclose(result.b, expected, rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(result.difference, result.b - result.a)
    # a clicked patch is carried to the same place in the image, and the note says where
    result = pair_maps("attention", MethodOptions(token=1 + 2 * 4 + 3), a, b)  # row 3, col 4
    assert result.notes[1] == (
        "model A's query patch row 3, col 4 of 4x4 is model B's patch row 5, col 7 of 8x8, "
        "the patch under its centre (the upper left one: the centre falls on a border between "
        "B's patches)"
    )


def test_maps_of_different_shapes_need_a_size() -> None:
    with pytest.raises(ValueError, match="compare only resampled to the image"):
        compare_maps(np.zeros((4, 4)), np.zeros((8, 8)))
    result = compare_maps(np.ones((2, 2)), np.zeros((4, 4)), size=(6, 6))
    assert result.difference.shape == (6, 6) and np.allclose(result.difference, -1.0)


def test_counterpart_tokens(before) -> None:
    spec = before.spec  # 4x4, one prefix token
    fine = replace(spec, patch_size=4)  # 8x8
    coarse = replace(spec, patch_size=16)  # 2x2
    assert counterpart_token(0, spec, fine) == (0, "")  # CLS is CLS
    assert counterpart_token(7, spec, spec) == (7, "")  # one grid: the same token
    # a patch of the 8x8 grid lies inside one patch of the 4x4 grid: no border to settle
    token, note = counterpart_token(1 + 5 * 8 + 2, fine, spec)  # row 6, col 3
    assert token == 1 + 2 * 4 + 1  # row 3, col 2
    assert note.endswith("is model B's patch row 3, col 2 of 4x4, the patch under its centre")
    assert counterpart_token(1 + 3 * 4 + 3, spec, coarse)[0] == 1 + 1 * 2 + 1  # corner to corner
    # two prefix tokens in B (a register): patches keep their place, their numbers shift
    registers = replace(spec, num_prefix_tokens=2, prefix_kinds=("cls", "reg"))
    assert counterpart_token(1 + 6, spec, registers) == (2 + 6, "")
    check = comparability(spec, registers)
    assert check.same_grid and not check.same_prefix
    assert check.message == (
        "model A has a 4x4 grid with 1 prefix token, model B 4x4 with 2: the maps are "
        "compared patch for patch, but token numbers differ (the first patch is token 2 in A, "
        "3 in B)"
    )
    with pytest.raises(ValueError, match="model A's token 2 is register 1, and model B has 1"):
        counterpart_token(1, registers, spec)


def test_centre_crops_of_different_shares_are_named(before) -> None:
    cropping = replace(before.spec, resize_size=36)  # its central 32 of 36 px
    check = comparability(before.spec, cropping)
    assert check.token_for_token
    assert check.message == (
        "the two models crop the image differently (A its central 32 of 32 px, B 32 of 36), "
        "so their maps cover different parts of it"
    )
    assert comparability(before.spec, cropping, feed=WHOLE).message == ""


def test_distances_in_different_input_sizes_are_named(before) -> None:
    larger = replace(before.spec, image_size=64, resize_size=64)  # an 8x8 grid of 8 px
    assert distance_units_note(before.spec, before.spec) == ""
    assert distance_units_note(before.spec, larger) == (
        "mean attention distances are in each model's own input pixels, and model A sees 32 px "
        "where model B sees 64: their change mixes the two units"
    )


def _statistics_by_hand(attention: np.ndarray, rows: int, cols: int, patch: int) -> np.ndarray:
    """(layers, heads, 3): mean attention distance, entropy, prefix share, from loops."""
    layers, heads, tokens, _ = attention.shape
    prefix = tokens - rows * cols
    out = np.zeros((layers, heads, 3))
    centres = [(r, c) for r in range(rows) for c in range(cols)]
    for layer in range(layers):
        for head in range(heads):
            distances, entropies, shares = [], [], []
            for i, (ri, ci) in enumerate(centres):
                row = attention[layer, head, prefix + i].astype(np.float64)
                weighted = 0.0
                for j, (rj, cj) in enumerate(centres):
                    weighted += row[prefix + j] * patch * np.hypot(ri - rj, ci - cj)
                distances.append(weighted)
                entropies.append(-sum(p * np.log(p) for p in row if p > 0))
                shares.append(row[:prefix].sum())
            out[layer, head] = np.mean(distances), np.mean(entropies), np.mean(shares)
    return out


@pytest.mark.slow
def test_head_changes_match_statistics_computed_by_hand(before, after) -> None:
    images = [_image(10), _image(11, (32, 48))]
    pairs = [(analyze_image(before, im), analyze_image(after, im)) for im in images]
    by_hand = [
        np.mean([_statistics_by_hand(p[side].attention, 4, 4, 8) for p in pairs], axis=0)
        for side in (0, 1)
    ]
    for sort_by in HEAD_STATISTICS:
        changes = mean_head_changes(
            [p[0].statistics for p in pairs], [p[1].statistics for p in pairs], sort_by
        )
        assert sorted((c.layer, c.head) for c in changes) == [(0, 0), (0, 1), (1, 0), (1, 1)]
        for change in changes:
            np.testing.assert_allclose(change.a, by_hand[0][change.layer, change.head], rtol=2e-5)
            np.testing.assert_allclose(change.b, by_hand[1][change.layer, change.head], rtol=2e-5)
        k = HEAD_STATISTICS.index(sort_by)
        hand_changes = (by_hand[1] - by_hand[0])[..., k]
        order = np.argsort(-np.abs(hand_changes), axis=None, kind="stable")
        assert [(c.layer, c.head) for c in changes] == [divmod(int(i), 2) for i in order]
        first = changes[0]
        assert first.change(sort_by) == pytest.approx(hand_changes.flat[order[0]], rel=1e-4)


def test_head_changes_csv_from_1_with_the_change_and_the_images() -> None:
    stats_a = HeadStatistics(
        distance=np.array([[10.0, 20.0]]),
        entropy=np.array([[1.0, 2.0]]),
        prefix_share=np.array([[0.1, 0.2]]),
    )
    stats_b = HeadStatistics(
        distance=np.array([[11.0, 14.0]]),
        entropy=np.array([[1.5, 2.0]]),
        prefix_share=np.array([[0.4, 0.2]]),
    )
    by_distance = head_changes(stats_a, stats_b)
    assert [(c.layer, c.head) for c in by_distance] == [(0, 1), (0, 0)]  # |-6| before |+1|
    assert [(c.layer, c.head) for c in head_changes(stats_a, stats_b, "entropy")] == [
        (0, 0),
        (0, 1),
    ]
    assert head_changes_csv(by_distance, 3).splitlines() == [
        "layer,head,mean_distance_a_px,mean_distance_b_px,mean_distance_change_px,"
        "entropy_a_nats,entropy_b_nats,entropy_change_nats,prefix_share_a,prefix_share_b,"
        "prefix_share_change,images",
        "1,2,20.0000,14.0000,-6.0000,2.00000,2.00000,0.00000,0.20000,0.20000,0.00000,3",
        "1,1,10.0000,11.0000,1.0000,1.00000,1.50000,0.50000,0.10000,0.40000,0.30000,3",
    ]
    with pytest.raises(ValueError, match="unknown head statistic 'size'"):
        head_changes(stats_a, stats_b, "size")


def test_models_with_other_layers_or_heads_get_no_head_table(before) -> None:
    deeper = distinct_small_vit(4, depth=3)
    image = _image(4)
    a, b = analyze_image(before, image), analyze_image(deeper, image)
    with pytest.raises(ValueError) as caught:
        head_changes(a.statistics, b.statistics)
    assert str(caught.value) == (
        "model A has 2 layers of 2 heads, model B 3 of 2: the head table pairs heads by layer "
        "and number, so it needs the same layers and heads in both"
    )
    # the maps still compare: the last layer of each, the same grid
    result = pair_maps("attention", MethodOptions(layer=-1), a, b)
    assert result.resampled_to is None and result.notes == ()


def test_a_scale_of_no_width_is_drawn_in_the_middle_colour() -> None:
    assert normalise(np.array([[0.0, 1.0]]), levels=(0.0, 0.0)).tolist() == [[0.5, 0.5]]
    assert normalise(np.array([[-1.0, 0.0, 3.0]]), levels=(-2.0, 2.0)).tolist() == [
        [0.25, 0.5, 1.0]
    ]
    lut = np.stack([np.arange(256)] * 3, axis=1).astype(np.uint8)  # grey ramp
    display = np.zeros((8, 8, 3), np.uint8)
    figure = render_figure(display, np.zeros((2, 2)), lut, "zero", min_side=8, levels=(0, 0))
    assert figure.levels == (0.0, 0.0)
    left, top, width, height = figure.map_box
    picture = np.asarray(figure.image)
    middle = round(0.55 * 128)  # lut[128] blended at 0.55 over black
    assert (picture[top : top + height, left : left + width] == middle).all()
    # the colour bar too
    bar = picture[top + 1 : top + height - 1, left + width + 14 + 2 : left + width + 14 + 18]
    assert (bar == 128).all()
