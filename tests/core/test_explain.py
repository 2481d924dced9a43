"""What the views draw: rows of the stored attention, mapped onto the patch grid."""

from __future__ import annotations

import numpy as np
import pytest

from vitexplorer.core.explain import (
    attention_map,
    attention_matrix,
    head_maps,
    patch_for_token,
    token_for_patch,
)


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
