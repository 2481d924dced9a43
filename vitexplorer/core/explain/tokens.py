"""Tokens and the rows of attention that views draw: a patch's token and back, one head's or
the mean's row as a map over the patch grid, the full matrix, a token's row of relevance.

Attention arrays are (layers, heads, tokens, tokens), rows summing to 1; tokens are
``num_prefix`` prefix tokens (CLS first) followed by the patches row-major over a (rows, cols)
grid, which need not be square. numpy alone (no torch).
"""

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


def check_attention_array(attention: np.ndarray, num_prefix: int) -> None:
    if attention.ndim != 4 or attention.shape[-1] != attention.shape[-2]:
        raise ValueError(
            f"attention must be (layers, heads, tokens, tokens), got shape {attention.shape}"
        )
    if not 0 <= num_prefix < attention.shape[-1]:
        raise ValueError(
            f"num_prefix {num_prefix} must be at least 0 and below the {attention.shape[-1]} tokens"
        )


def check_patch_grid(attention: np.ndarray, grid: tuple[int, int], num_prefix: int) -> None:
    rows, cols = grid
    patches = attention.shape[-1] - num_prefix
    if rows * cols != patches:
        raise ValueError(f"a {rows}x{cols} grid does not hold the {patches} patch tokens")


def token_relevance(
    matrix: np.ndarray | None, token: int, grid: tuple[int, int], num_prefix: int
) -> np.ndarray:
    """Row ``token`` of a relevance matrix R over the patches, (rows, cols) float32."""
    if matrix is None or matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError("no relevance matrix: compute it with relevance_map")
    rows, cols = grid
    if matrix.shape[0] != num_prefix + rows * cols:
        raise ValueError(
            f"a relevance matrix of {matrix.shape[0]} tokens does not fit a {rows}x{cols} grid "
            f"with {num_prefix} prefix tokens"
        )
    if not 0 <= token < matrix.shape[0]:
        raise ValueError(f"token {token + 1} does not exist: there are 1 to {matrix.shape[0]}")
    return np.ascontiguousarray(matrix[token, num_prefix:].reshape(grid), dtype=np.float32)
