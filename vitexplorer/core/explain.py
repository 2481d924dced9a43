"""What the views draw, computed from a stored attention array by numpy slicing alone."""

from __future__ import annotations

import numpy as np


def token_for_patch(row: int, col: int, grid: tuple[int, int], num_prefix: int) -> int:
    """The token index of the patch at (row, col); patches follow the prefix tokens row-major."""
    rows, cols = grid
    if not (0 <= row < rows and 0 <= col < cols):
        raise IndexError(f"patch ({row}, {col}) is outside the {rows}x{cols} grid")
    return num_prefix + row * cols + col


def patch_for_token(token: int, grid: tuple[int, int], num_prefix: int) -> tuple[int, int] | None:
    """(row, col) of a patch token, or None for a prefix token such as CLS."""
    if token < num_prefix:
        return None
    return divmod(token - num_prefix, grid[1])


def attention_row(attention: np.ndarray, layer: int, head: int | None, token: int) -> np.ndarray:
    """The selected token's attention over all tokens; ``head=None`` averages the heads."""
    rows = attention[layer, :, token, :]
    return rows.mean(axis=0) if head is None else rows[head]


def attention_map(
    attention: np.ndarray,
    layer: int,
    head: int | None,
    token: int,
    grid: tuple[int, int],
    num_prefix: int,
) -> np.ndarray:
    """Where ``token`` attends among the patches, as a (rows, cols) float32 map."""
    row = attention_row(attention, layer, head, token)
    return np.ascontiguousarray(row[num_prefix:].reshape(grid), dtype=np.float32)


def head_maps(
    attention: np.ndarray, layer: int, token: int, grid: tuple[int, int], num_prefix: int
) -> np.ndarray:
    """Every head's map for ``token`` in ``layer``: (heads, rows, cols)."""
    rows = attention[layer, :, token, num_prefix:]
    return np.ascontiguousarray(rows.reshape(rows.shape[0], *grid), dtype=np.float32)


def attention_matrix(attention: np.ndarray, layer: int, head: int | None) -> np.ndarray:
    """The full (tokens, tokens) matrix of one head, or the mean over heads."""
    maps = attention[layer]
    matrix = maps.mean(axis=0) if head is None else maps[head]
    return np.ascontiguousarray(matrix, dtype=np.float32)
