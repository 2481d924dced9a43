"""What the views draw: raw attention, rollout and head statistics, checked against numbers
worked out by hand and against independent computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vitexplorer.core.explain.head_stats import (
    HeadStatistics,
    attention_entropy,
    average_statistics,
    head_statistics,
    mean_attention_distance,
    prefix_share,
)
from vitexplorer.core.explain.rollout import (
    discard_count,
    fuse_heads,
    rollout_layers,
    rollout_map,
    rollout_matrix,
    rollout_row,
)
from vitexplorer.core.explain.tokens import (
    attention_map,
    attention_matrix,
    head_maps,
    patch_for_token,
    token_for_patch,
)
from vitexplorer.core.models.capture import forward_with_attention


@pytest.fixture
def attention() -> np.ndarray:
    """(layers=2, heads=2, tokens=1+2x3, tokens): a non-square 2x3 grid behind one CLS token."""
    rng = np.random.default_rng(0)
    raw = rng.random((2, 2, 7, 7)).astype(np.float32)
    return raw / raw.sum(-1, keepdims=True)


def test_token_and_patch_round_trip_on_a_non_square_grid() -> None:
    grid = (2, 3)
    assert token_for_patch(0, 0, grid, 1) == 1
    assert token_for_patch(1, 2, grid, 1) == 6
    assert token_for_patch(1, 0, grid, 2) == 5  # two prefix tokens (CLS + distillation)
    assert patch_for_token(0, grid, 1) is None
    assert all(
        patch_for_token(token_for_patch(r, c, grid, 1), grid, 1) == (r, c)
        for r in range(2)
        for c in range(3)
    )
    with pytest.raises(IndexError):
        token_for_patch(2, 0, grid, 1)


def test_attention_map_is_the_token_row_without_prefix(attention: np.ndarray) -> None:
    heat = attention_map(attention, layer=1, head=0, token=4, grid=(2, 3), num_prefix=1)
    assert heat.shape == (2, 3) and heat.dtype == np.float32
    assert heat[0, 0] == attention[1, 0, 4, 1]
    assert heat[1, 2] == attention[1, 0, 4, 6]
    np.testing.assert_array_equal(heat.ravel(), attention[1, 0, 4, 1:])


def test_mean_over_heads(attention: np.ndarray) -> None:
    heat = attention_map(attention, layer=0, head=None, token=0, grid=(2, 3), num_prefix=1)
    expected = (attention[0, 0, 0, 1:] + attention[0, 1, 0, 1:]) / 2
    np.testing.assert_allclose(heat.ravel(), expected, rtol=1e-6)


def test_head_maps_and_matrix(attention: np.ndarray) -> None:
    maps = head_maps(attention, layer=1, token=2, grid=(2, 3), num_prefix=1)
    assert maps.shape == (2, 2, 3)
    np.testing.assert_array_equal(maps[1].ravel(), attention[1, 1, 2, 1:])
    np.testing.assert_array_equal(attention_matrix(attention, 0, 1), attention[0, 1])
    mean = attention_matrix(attention, 0, None)
    np.testing.assert_allclose(mean.sum(-1), 1.0, atol=1e-6)


def softmax_attention(shape: tuple[int, ...], seed: int, diagonal: float = 0.0) -> np.ndarray:
    """Random attention as a model makes it: random logits softmaxed per row, float32."""
    logits = np.random.default_rng(seed).normal(0.0, 2.0, shape)
    logits += diagonal * np.eye(shape[-1])
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    return (weights / weights.sum(-1, keepdims=True)).astype(np.float32)


# --- Rollout: numbers worked out by hand ---------------------------------------------------------
#
# Three tokens (CLS, p1, p2; a 1x2 grid), two layers, two heads. Rows are queries.
#
#   layer 0, head 0      layer 0, head 1      layer 1, head 0      layer 1, head 1
#   [1/2 1/4 1/4]        [1/2 1/2  0 ]        [1/4 1/4 1/2]        [3/4  0  1/4]
#   [1/4 1/2 1/4]        [ 0   1   0 ]        [1/2 1/4 1/4]        [1/4 1/4 1/2]
#   [ 0  1/2 1/2]        [1/4 1/4 1/2]        [1/2  0  1/2]        [ 0  1/2 1/2]
#
# Rollout = Â1 Â0 with Â_l = rownorm(fuse(A_l) + I); its row t is what token t at the top draws
# from the input tokens.


@pytest.fixture
def hand_attention() -> np.ndarray:
    q = 0.25
    return np.array(
        [
            [
                [[2 * q, q, q], [q, 2 * q, q], [0, 2 * q, 2 * q]],
                [[2 * q, 2 * q, 0], [0, 4 * q, 0], [q, q, 2 * q]],
            ],
            [
                [[q, q, 2 * q], [2 * q, q, q], [2 * q, 0, 2 * q]],
                [[3 * q, 0, q], [q, q, 2 * q], [0, 2 * q, 2 * q]],
            ],
        ],
        dtype=np.float32,
    )


def test_rollout_with_mean_fusion_by_hand(hand_attention: np.ndarray) -> None:
    # mean of the heads, layer 0: [1/2 3/8 1/8], [1/8 3/4 1/8], [1/8 3/8 1/2]; each row sums to
    # 1, so + I makes it sum to 2 and Â0 = (mean + I) / 2:
    #   Â0 = [3/4 3/16 1/16], [1/16 7/8 1/16], [1/16 3/16 3/4]
    # layer 1: mean [1/2 1/8 3/8], [3/8 1/4 3/8], [1/4 1/4 1/2], so
    #   Â1 = [3/4 1/16 3/16], [3/16 5/8 3/16], [1/8 1/8 3/4]
    # Â1 Â0, in 256ths:
    #   row 0 = 3/4 [192 48 16] + 1/16 [16 224 16] + 3/16 [16 48 192]
    #         = [144 36 12] + [1 14 1] + [3 9 36] = [148 59 49]
    #   row 1 = 3/16 [192 48 16] + 5/8 [16 224 16] + 3/16 [16 48 192] = [49 158 49]
    #   row 2 = 1/8 [192 48 16] + 1/8 [16 224 16] + 3/4 [16 48 192] = [38 70 148]
    layers = rollout_layers(hand_attention, "mean")
    np.testing.assert_allclose(
        layers[0], np.array([[12, 3, 1], [1, 14, 1], [1, 3, 12]]) / 16, rtol=1e-6
    )
    np.testing.assert_allclose(
        layers[1], np.array([[12, 1, 3], [3, 10, 3], [2, 2, 12]]) / 16, rtol=1e-6
    )
    expected = np.array([[148, 59, 49], [49, 158, 49], [38, 70, 148]]) / 256
    np.testing.assert_allclose(rollout_matrix(layers), expected, rtol=1e-6)
    for token in range(3):
        np.testing.assert_allclose(rollout_row(layers, token), expected[token], rtol=1e-6)
    cls_map = rollout_map(hand_attention, 0, (1, 2), 1)
    np.testing.assert_allclose(cls_map, [[59 / 256, 49 / 256]], rtol=1e-6)


@pytest.mark.parametrize(
    ("fusion", "expected_cls_row"),
    [
        # max, layer 0: [1/2 1/2 1/4] + I = [3/2 1/2 1/4], sum 9/4 -> [2/3 2/9 1/9]
        #               [1/4 1 1/4] + I = [1/4 2 1/4], sum 5/2 -> [1/10 4/5 1/10]
        #               [1/4 1/2 1/2] + I = [1/4 1/2 3/2], sum 9/4 -> [1/9 2/9 2/3]
        # layer 1, row 0: [3/4 1/4 1/2] + I = [7/4 1/4 1/2], sum 5/2 -> [7/10 1/10 1/5]
        # CLS row = 7/10 [2/3 2/9 1/9] + 1/10 [1/10 4/5 1/10] + 1/5 [1/9 2/9 2/3], in 900ths:
        #         = [420 140 70] + [9 72 9] + [20 40 120] = [449 252 199]
        ("max", [449 / 900, 252 / 900, 199 / 900]),
        # min, layer 0: [1/2 1/4 0] + I = [3/2 1/4 0], sum 7/4 -> [6/7 1/7 0]
        #               [0 1/2 0] + I -> [0 1 0]
        #               [0 1/4 1/2] + I = [0 1/4 3/2], sum 7/4 -> [0 1/7 6/7]
        # layer 1, row 0: [1/4 0 1/4] + I = [5/4 0 1/4], sum 3/2 -> [5/6 0 1/6]
        # CLS row = 5/6 [6/7 1/7 0] + 1/6 [0 1/7 6/7] = [30/42 6/42 6/42] = [5/7 1/7 1/7]
        ("min", [5 / 7, 1 / 7, 1 / 7]),
    ],
)
def test_rollout_with_max_and_min_fusion_by_hand(
    hand_attention: np.ndarray, fusion: str, expected_cls_row: list[float]
) -> None:
    layers = rollout_layers(hand_attention, fusion)
    np.testing.assert_allclose(rollout_row(layers, 0), expected_cls_row, rtol=1e-6)
    np.testing.assert_allclose(rollout_matrix(layers)[0], expected_cls_row, rtol=1e-6)


def test_rollout_with_a_discard_ratio_by_hand(hand_attention: np.ndarray) -> None:
    # discard ratio 0.5 of 2 patch columns: floor(1) = 1 patch entry zeroed per row, after the
    # mean fusion; the CLS column is never a candidate, even where it is the smallest entry.
    # layer 0: [1/2 3/8 1/8] -> [1/2 3/8 0] + I = [3/2 3/8 0], sum 15/8 -> [4/5 1/5 0]
    #          [1/8 3/4 1/8] -> [1/8 3/4 0] + I = [1/8 7/4 0], sum 15/8 -> [1/15 14/15 0]
    #          [1/8 3/8 1/2] -> [1/8 0 1/2] + I = [1/8 0 3/2], sum 13/8 -> [1/13 0 12/13]
    # layer 1, row 0: [1/2 1/8 3/8] -> [1/2 0 3/8] + I = [3/2 0 3/8], sum 15/8 -> [4/5 0 1/5]
    # CLS row = 4/5 [4/5 1/5 0] + 1/5 [1/13 0 12/13] = [16/25 + 1/65, 4/25, 12/65]
    #         = [213/325, 52/325, 60/325]
    layers = rollout_layers(hand_attention, "mean", discard_ratio=0.5)
    np.testing.assert_allclose(
        layers[0], [[4 / 5, 1 / 5, 0], [1 / 15, 14 / 15, 0], [1 / 13, 0, 12 / 13]], rtol=1e-6
    )
    np.testing.assert_allclose(rollout_row(layers, 0), [213 / 325, 52 / 325, 60 / 325], rtol=1e-6)
    # a ratio whose share of 2 columns floors to 0 discards nothing
    np.testing.assert_array_equal(
        rollout_layers(hand_attention, "mean", discard_ratio=0.49), rollout_layers(hand_attention)
    )


def test_rollout_from_a_start_layer_by_hand(hand_attention: np.ndarray) -> None:
    # start layer 1: the rollout is Â1 alone, whose CLS row is [3/4 1/16 3/16] (see above)
    layers = rollout_layers(hand_attention, "mean", start_layer=1)
    assert layers.shape == (1, 3, 3)
    np.testing.assert_allclose(rollout_row(layers, 0), [3 / 4, 1 / 16, 3 / 16], rtol=1e-6)


def test_heads_are_fused_before_the_discard() -> None:
    # One layer, CLS row: head 0 [1/2 0.4 0.1], head 1 [1/2 0 1/2] (other rows: identity).
    # Fuse first (ours): mean [1/2 0.2 0.3]; discard the lower patch entry (0.2):
    #   [1/2 0 0.3] + I = [3/2 0 0.3], sum 1.8 -> [5/6 0 1/6]
    # Discard per head first (the other order): [1/2 0.4 0] and [1/2 0 1/2], mean [1/2 0.2 1/4]
    #   + I = [3/2 0.2 1/4], sum 1.95 -> [10/13 4/39 5/39]: a different answer.
    attention = np.tile(np.eye(3, dtype=np.float32), (1, 2, 1, 1))
    attention[0, 0, 0] = [0.5, 0.4, 0.1]
    attention[0, 1, 0] = [0.5, 0.0, 0.5]
    layers = rollout_layers(attention, "mean", discard_ratio=0.5)
    np.testing.assert_allclose(layers[0, 0], [5 / 6, 0, 1 / 6], rtol=1e-6)
    assert not np.allclose(layers[0, 0], [10 / 13, 4 / 39, 5 / 39], atol=1e-3)


def test_discard_ties_go_to_the_lower_column() -> None:
    # CLS row [0.4 0.3 0.3]: the two patch entries tie, so the first (column 1) is zeroed:
    #   [0.4 0 0.3] + I = [1.4 0 0.3], sum 1.7 -> [14/17 0 3/17]
    attention = np.tile(np.eye(3, dtype=np.float32), (1, 1, 1, 1))
    attention[0, 0, 0] = [0.4, 0.3, 0.3]
    layers = rollout_layers(attention, "max", discard_ratio=0.5)
    np.testing.assert_allclose(layers[0, 0], [14 / 17, 0, 3 / 17], rtol=1e-6)


def test_discard_takes_the_same_entries_as_a_stable_argsort() -> None:
    # values on a coarse lattice, so many rows have ties at the cut
    rng = np.random.default_rng(4)
    attention = rng.integers(1, 6, (3, 2, 21, 21)).astype(np.float32)
    attention /= attention.sum(-1, keepdims=True)
    for ratio in (0.05, 0.3, 0.5, 0.75, 0.95):
        layers = rollout_layers(attention, "max", ratio, num_prefix=1)
        count = int(np.floor(ratio * 20))
        for layer in range(3):
            fused = attention[layer].max(axis=0).astype(np.float64)
            lowest = np.argsort(fused[:, 1:], axis=1, kind="stable")[:, :count]
            np.put_along_axis(fused[:, 1:], lowest, 0.0, axis=1)
            fused += np.eye(21)
            expected = fused / fused.sum(-1, keepdims=True)
            np.testing.assert_allclose(layers[layer], expected, rtol=1e-6)


def test_discard_count_is_the_floor_of_the_share_of_patches() -> None:
    assert discard_count(0.0, 576) == 0
    assert discard_count(0.9, 576) == 518  # 518.4
    assert discard_count(0.5, 3) == 1
    assert discard_count(0.29, 100) == 29  # 0.29 * 100 is 28.999999999999996 in floating point
    assert discard_count(0.7, 10) == 7


def test_fuse_heads() -> None:
    heads = np.array([[[0.2, 0.8], [1.0, 0.0]], [[0.6, 0.4], [0.5, 0.5]]], dtype=np.float32)
    np.testing.assert_allclose(fuse_heads(heads, "mean"), [[0.4, 0.6], [0.75, 0.25]], rtol=1e-6)
    np.testing.assert_allclose(fuse_heads(heads, "max"), [[0.6, 0.8], [1.0, 0.5]], rtol=1e-6)
    np.testing.assert_allclose(fuse_heads(heads, "min"), [[0.2, 0.4], [0.5, 0.0]], rtol=1e-6)
    with pytest.raises(ValueError, match="mean, max, min"):
        fuse_heads(heads, "median")


# --- Rollout: invariants on random attention -----------------------------------------------------


@pytest.mark.parametrize("fusion", ["mean", "max", "min"])
@pytest.mark.parametrize("discard_ratio", [0.0, 0.3, 0.9])
def test_rollout_rows_sum_to_one(fusion: str, discard_ratio: float) -> None:
    attention = softmax_attention((4, 3, 13, 13), seed=1)  # CLS + a 3x4 grid
    layers = rollout_layers(attention, fusion, discard_ratio, start_layer=1)
    assert layers.shape == (3, 13, 13) and layers.dtype == np.float32
    assert layers.flags.c_contiguous
    np.testing.assert_allclose(layers.sum(-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(rollout_matrix(layers).sum(-1), 1.0, atol=1e-5)
    for token in range(13):
        assert abs(rollout_row(layers, token).sum() - 1.0) < 1e-5


@pytest.mark.parametrize("start_layer", [0, 2, 4])
def test_row_vector_rollout_equals_the_full_product(start_layer: int) -> None:
    attention = softmax_attention((5, 2, 7, 7), seed=2)  # CLS + a 2x3 grid
    layers = rollout_layers(attention, "mean", 0.2, start_layer)
    # the recursive definition (Abnar and Zuidema): R_start = Â_start, R_l = Â_l R_{l-1}
    product = layers[0].astype(np.float64)
    for layer in layers[1:]:
        product = layer.astype(np.float64) @ product
    np.testing.assert_allclose(rollout_matrix(layers), product, atol=1e-6)
    for token in range(7):
        np.testing.assert_allclose(rollout_row(layers, token), product[token], atol=1e-6)
    if len(layers) > 1:  # the test can tell the orders apart: the reverse product differs
        reverse = np.linalg.multi_dot(layers.astype(np.float64))
        assert np.abs(reverse - product).max() > 1e-3


def test_the_discard_never_zeroes_a_prefix_column() -> None:
    attention = softmax_attention((2, 2, 10, 10), seed=3, diagonal=20.0)  # 2 prefix + a 2x4 grid
    attention[:, :, :, :2] = 1e-6  # the prefix columns are the weakest entries of every row
    attention /= attention.sum(-1, keepdims=True)
    layers = rollout_layers(attention, "mean", discard_ratio=0.9, num_prefix=2)
    assert (layers[:, :, :2] > 0).all()
    # floor(0.9 * 8) = 7 of the 8 patch columns zeroed in every row; the strong diagonal is kept
    assert ((layers[:, 2:, 2:] == 0).sum(-1) == 7).all()
    assert ((layers[:, :2, 2:] == 0).sum(-1) == 7).all()


def test_rollout_map_on_a_rectangular_grid(attention: np.ndarray) -> None:
    heat = rollout_map(attention, token=5, grid=(2, 3), num_prefix=1, head_fusion="max")
    assert heat.shape == (2, 3) and heat.dtype == np.float32 and heat.flags.c_contiguous
    row = rollout_row(rollout_layers(attention, "max"), 5)
    np.testing.assert_array_equal(heat[1], row[4:7])
    with pytest.raises(ValueError, match="3x2 grid"):
        rollout_map(attention, token=0, grid=(3, 2), num_prefix=2)


def test_rollout_checks_its_options(attention: np.ndarray) -> None:
    with pytest.raises(ValueError, match="discard ratio"):
        rollout_layers(attention, discard_ratio=1.0)
    with pytest.raises(ValueError, match="discard ratio"):
        rollout_layers(attention, discard_ratio=-0.1)
    with pytest.raises(ValueError, match="start layer 2 must be from 0 to 1"):
        rollout_layers(attention, start_layer=2)
    with pytest.raises(ValueError, match="start layer"):
        rollout_layers(attention, start_layer=-1)
    with pytest.raises(ValueError, match="mean, max, min"):
        rollout_layers(attention, head_fusion="sum")
    with pytest.raises(ValueError, match="layers, heads, tokens, tokens"):
        rollout_layers(attention[0])
    with pytest.raises(IndexError):
        rollout_row(rollout_layers(attention), 7)


# --- Head statistics -----------------------------------------------------------------------------


def test_head_statistics_by_hand(hand_attention: np.ndarray) -> None:
    # 1x2 grid of 16 px patches: p1 and p2 are 16 px apart. Query patches are rows 1 and 2.
    # distance: layer 0 head 0: p1 gives 1/4 to p2 -> 4 px; p2 gives 1/2 to p1 -> 8; mean 6
    #           layer 0 head 1: p1 -> 0 * 16 = 0; p2 -> 1/4 * 16 = 4; mean 2
    #           layer 1 head 0: p1 -> 1/4 * 16 = 4; p2 -> 0; mean 2
    #           layer 1 head 1: p1 -> 1/2 * 16 = 8; p2 -> 1/2 * 16 = 8; mean 8
    # entropy (ln 2 units): [1/4 1/2 1/4] -> 3/2, [0 1/2 1/2] -> 1 (0 log 0 = 0), [0 1 0] -> 0
    #           layer 0: head 0 (3/2 + 1) / 2 = 5/4; head 1 (0 + 3/2) / 2 = 3/4
    #           layer 1: head 0 [1/2 1/4 1/4], [1/2 0 1/2] -> 5/4; head 1 [1/4 1/4 1/2],
    #           [0 1/2 1/2] -> 5/4
    # prefix share: layer 0: (1/4 + 0) / 2, (0 + 1/4) / 2; layer 1: (1/2 + 1/2) / 2, (1/4 + 0) / 2
    stats = head_statistics(hand_attention, (1, 2), 1, 16)
    np.testing.assert_allclose(stats.distance, [[6, 2], [2, 8]], rtol=1e-6)
    ln2 = math.log(2)
    np.testing.assert_allclose(stats.entropy, [[1.25 * ln2, 0.75 * ln2], [1.25 * ln2] * 2], 1e-6)
    np.testing.assert_allclose(stats.prefix_share, [[1 / 8, 1 / 8], [1 / 2, 1 / 8]], rtol=1e-6)


def test_mean_attention_distance_of_uniform_attention_on_a_2x2_grid() -> None:
    # CLS + 2x2 patches, every row uniform (1/5 each). From any patch the others are 16, 16 and
    # 16 sqrt 2 px away, so each query gives 1/5 * 16 * (2 + sqrt 2) = 10.9255 px (the CLS
    # share counts as 0: no renormalisation over the patches).
    attention = np.full((1, 1, 5, 5), 0.2, dtype=np.float32)
    distance = mean_attention_distance(attention, (2, 2), 1, 16)
    np.testing.assert_allclose(distance, [[0.2 * 16 * (2 + math.sqrt(2))]], rtol=1e-6)


def test_mean_attention_distance_on_a_rectangular_grid() -> None:
    # 2x3 grid, no prefix; each patch (r, c) attends wholly to the opposite one (1 - r, 2 - c).
    # (0,0)<->(1,2) and (0,2)<->(1,0) are sqrt(1 + 4) patches apart, (0,1)<->(1,1) one patch:
    # mean = (4 * 16 sqrt 5 + 2 * 16) / 6 = 29.1847 px. A column-major layout would differ.
    attention = np.zeros((1, 1, 6, 6), dtype=np.float32)
    attention[0, 0, np.arange(6), 5 - np.arange(6)] = 1.0
    distance = mean_attention_distance(attention, (2, 3), 0, 16)
    np.testing.assert_allclose(distance, [[(4 * 16 * math.sqrt(5) + 32) / 6]], rtol=1e-6)


def test_identity_attention_has_no_distance_no_entropy_no_prefix_share() -> None:
    attention = np.tile(np.eye(7, dtype=np.float32), (3, 2, 1, 1))  # CLS + a 2x3 grid
    stats = head_statistics(attention, (2, 3), 1, 16)
    for values in (stats.distance, stats.entropy, stats.prefix_share):
        assert values.shape == (3, 2)
        np.testing.assert_array_equal(values, 0.0)


def test_uniform_attention_has_entropy_log_n_and_prefix_share() -> None:
    attention = np.full((2, 3, 10, 10), 0.1, dtype=np.float32)  # 2 prefix + a 2x4 grid
    np.testing.assert_allclose(attention_entropy(attention, 2), math.log(10), rtol=1e-6)
    np.testing.assert_allclose(prefix_share(attention, 2), 0.2, rtol=1e-6)


def test_average_statistics_over_images() -> None:
    a = HeadStatistics(np.array([[1.0, 2.0]]), np.array([[0.0, 1.0]]), np.array([[0.5, 0.0]]))
    b = HeadStatistics(np.array([[3.0, 4.0]]), np.array([[2.0, 1.0]]), np.array([[0.0, 0.0]]))
    mean = average_statistics([a, b])
    np.testing.assert_array_equal(mean.distance, [[2.0, 3.0]])
    np.testing.assert_array_equal(mean.entropy, [[1.0, 1.0]])
    np.testing.assert_array_equal(mean.prefix_share, [[0.25, 0.0]])
    with pytest.raises(ValueError):
        average_statistics([])
    wider = HeadStatistics(*(np.zeros((1, 3)),) * 3)
    with pytest.raises(ValueError, match="different models"):
        average_statistics([a, wider])


def test_explanations_of_a_real_small_vit(tiny_small_vit) -> None:
    torch.manual_seed(1)
    _, attention = forward_with_attention(tiny_small_vit, torch.randn(1, 3, 32, 32))
    attention = attention[0].numpy()  # (2 layers, 2 heads, 17 tokens, 17 tokens), a 4x4 grid
    for fusion in ("mean", "max", "min"):
        heat = rollout_map(attention, 0, (4, 4), 1, fusion, discard_ratio=0.5)
        assert heat.shape == (4, 4) and (heat >= 0).all() and heat.sum() < 1
    stats = head_statistics(attention, (4, 4), 1, 8)
    assert stats.distance.shape == stats.entropy.shape == stats.prefix_share.shape == (2, 2)
    # a random model attends almost uniformly: about the mean distance between two patches of a
    # 4x4 grid of 8 px patches, times the patches' share of the row (16 of 17 tokens)
    pairs = [
        (r1, c1, r2, c2) for r1 in range(4) for c1 in range(4) for r2 in range(4) for c2 in range(4)
    ]
    uniform = np.mean([8 * math.hypot(a - c, b - d) for a, b, c, d in pairs]) * 16 / 17
    np.testing.assert_allclose(stats.distance, uniform, rtol=0.1)
    np.testing.assert_allclose(stats.entropy, math.log(17), rtol=0.05)
