"""What the views draw, computed from a stored attention array with numpy alone (no torch).

Raw attention rows and matrices, attention rollout, and per-head statistics. Attention arrays are
(layers, heads, tokens, tokens), rows summing to 1; tokens are ``num_prefix`` prefix tokens (CLS
first) followed by the patches row-major over a (rows, cols) grid, which need not be square.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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


# --- Attention rollout (Abnar and Zuidema, 2020) ---------------------------------------------

HEAD_FUSIONS: tuple[str, ...] = ("mean", "max", "min")


def fuse_heads(layer_attention: np.ndarray, fusion: str) -> np.ndarray:
    """One layer's heads (heads, tokens, tokens) fused into one (tokens, tokens) float64 matrix.

    ``fusion`` is ``mean``, ``max`` or ``min``, taken elementwise over the heads.
    """
    _check_fusion(fusion)
    if fusion == "mean":  # summed in the input's precision: twice as fast as a float64 sum
        return layer_attention.mean(axis=0).astype(np.float64)
    if fusion == "max":
        return layer_attention.max(axis=0).astype(np.float64)
    return layer_attention.min(axis=0).astype(np.float64)


def _check_fusion(fusion: str) -> None:
    if fusion not in HEAD_FUSIONS:
        raise ValueError(f"unknown head fusion {fusion!r}; use one of {', '.join(HEAD_FUSIONS)}")


def _check_attention(attention: np.ndarray, num_prefix: int) -> None:
    if attention.ndim != 4 or attention.shape[-1] != attention.shape[-2]:
        raise ValueError(
            f"attention must be (layers, heads, tokens, tokens), got shape {attention.shape}"
        )
    if not 0 <= num_prefix < attention.shape[-1]:
        raise ValueError(
            f"num_prefix {num_prefix} must be at least 0 and below the {attention.shape[-1]} tokens"
        )


def _check_grid(attention: np.ndarray, grid: tuple[int, int], num_prefix: int) -> None:
    rows, cols = grid
    patches = attention.shape[-1] - num_prefix
    if rows * cols != patches:
        raise ValueError(f"a {rows}x{cols} grid does not hold the {patches} patch tokens")


def discard_count(discard_ratio: float, num_patches: int) -> int:
    """``floor(discard_ratio * num_patches)``, the entries the discard zeroes in each row.

    A tolerance of 1e-9 keeps a product that binary floating point rounds just below a whole
    number (0.29 * 100 = 28.999999999999996) from losing one.
    """
    return int(np.floor(discard_ratio * num_patches + 1e-9))


def rollout_layers(
    attention: np.ndarray,
    head_fusion: str = "mean",
    discard_ratio: float = 0.0,
    start_layer: int = 0,
    num_prefix: int = 1,
) -> np.ndarray:
    """The per-layer rollout matrices Â_l for l = start_layer..L-1: (L - start_layer, N, N) float32.

    For each layer, in this order: the heads are fused; in every row the lowest
    ``floor(discard_ratio * (N - num_prefix))`` entries among the patch columns are zeroed (the
    prefix columns, CLS first, are never discarded; ties go to the lower column index); the
    identity is added for the residual path; every row is divided by its own sum. The work per
    layer is done in float64 and stored as float32, C-contiguous, for :func:`rollout_row`.
    """
    _check_attention(attention, num_prefix)
    layers, n = attention.shape[0], attention.shape[-1]
    if not 0.0 <= discard_ratio < 1.0:
        raise ValueError(f"discard ratio {discard_ratio} must be at least 0 and below 1")
    if not 0 <= start_layer < layers:
        raise ValueError(f"start layer {start_layer} must be from 0 to {layers - 1}")
    _check_fusion(head_fusion)
    discard = discard_count(discard_ratio, n - num_prefix)
    out = np.empty((layers - start_layer, n, n), dtype=np.float32)
    identity = np.eye(n)
    for k, layer in enumerate(range(start_layer, layers)):
        fused = fuse_heads(attention[layer], head_fusion)
        if discard:
            _zero_lowest(fused[:, num_prefix:], discard)  # a view: zeroes entries of ``fused``
        fused += identity
        out[k] = fused / fused.sum(axis=-1, keepdims=True)
    return out


def _zero_lowest(rows: np.ndarray, count: int) -> None:
    """Zero the ``count`` lowest entries of every row in place, ties going to the lower column.

    The same entries as the first ``count`` of a stable argsort, found with a partition (about
    three times faster at 577 tokens): every entry below the row's count-th smallest value, then
    the leftmost entries equal to it until ``count`` are taken.
    """
    threshold = np.partition(rows, count - 1, axis=1)[:, count - 1 : count]
    below = rows < threshold
    equal = rows == threshold
    wanted = count - below.sum(axis=1, keepdims=True)
    rows[below | (equal & (np.cumsum(equal, axis=1) <= wanted))] = 0.0


def rollout_row(layers: np.ndarray | Sequence[np.ndarray], token: int) -> np.ndarray:
    """Row ``token`` of the rollout Â_{L-1} ··· Â_start, as (N,) float32, in O(K·N²).

    ``layers`` is :func:`rollout_layers`'s output. The row of a product is the token's unit row
    vector times the product, so it is propagated from the top layer down:
    ``v = e_token; v = v @ Â_{L-1}; v = v @ Â_{L-2}; ...; v = v @ Â_start``.
    """
    n = layers[-1].shape[-1]  # an array (layers, N, N), or a list of (N, N) arrays
    if not 0 <= token < n:
        raise IndexError(f"token {token} is outside the {n} tokens")
    v = layers[-1][token].copy()
    for k in range(len(layers) - 2, -1, -1):
        v = v @ layers[k]
    return v


def rollout_matrix(layers: np.ndarray) -> np.ndarray:
    """The whole rollout Â_{L-1} ··· Â_start as (N, N) float32 (products in float64), O(K·N³)."""
    product = layers[-1].astype(np.float64)
    for k in range(len(layers) - 2, -1, -1):
        product = product @ layers[k].astype(np.float64)
    return product.astype(np.float32)


def rollout_map(
    attention: np.ndarray,
    token: int,
    grid: tuple[int, int],
    num_prefix: int,
    head_fusion: str = "mean",
    discard_ratio: float = 0.0,
    start_layer: int = 0,
) -> np.ndarray:
    """Where ``token`` draws from among the input patches under rollout: (rows, cols) float32."""
    _check_attention(attention, num_prefix)
    _check_grid(attention, grid, num_prefix)
    layers = rollout_layers(attention, head_fusion, discard_ratio, start_layer, num_prefix)
    row = rollout_row(layers, token)
    return np.ascontiguousarray(row[num_prefix:].reshape(grid), dtype=np.float32)


# --- Head analytics (Dosovitskiy et al., 2021, Fig. 7) ---------------------------------------


@dataclass(frozen=True)
class HeadStatistics:
    """Per-head summaries, each (layers, heads) float64, averaged over query patches."""

    distance: np.ndarray  # mean attention distance in input pixels
    entropy: np.ndarray  # nats
    prefix_share: np.ndarray  # the share of each row's attention on the prefix tokens


def patch_distances(grid: tuple[int, int], patch_size: int) -> np.ndarray:
    """(patches, patches) float32 euclidean pixel distances between patch centres (row-major)."""
    rows, cols = grid
    r, c = np.divmod(np.arange(rows * cols), cols)
    dr = r[:, None] - r[None, :]
    dc = c[:, None] - c[None, :]
    return (patch_size * np.hypot(dr, dc)).astype(np.float32)


def mean_attention_distance(
    attention: np.ndarray, grid: tuple[int, int], num_prefix: int, patch_size: int
) -> np.ndarray:
    """(layers, heads) mean attention distance in pixels, as in the ViT paper's Fig. 7.

    For each query patch i, ``sum_j A_ij * d(i, j)`` over key patches j, with d the pixel
    distance between patch centres; then the mean over query patches. The patch-to-patch weights
    are used as they are, not renormalised over the patches, so attention a query gives to the
    prefix tokens counts as distance 0: a head that mostly attends to CLS reads as local. One
    layer at a time, in float32, so no copy of the whole array is made.
    """
    _check_attention(attention, num_prefix)
    _check_grid(attention, grid, num_prefix)
    distances = patch_distances(grid, patch_size)
    out = np.empty(attention.shape[:2])
    for layer in range(attention.shape[0]):
        patches = attention[layer, :, num_prefix:, num_prefix:]
        per_query = np.einsum("hij,ij->hi", patches, distances)
        out[layer] = per_query.mean(axis=-1, dtype=np.float64)
    return out


def attention_entropy(attention: np.ndarray, num_prefix: int) -> np.ndarray:
    """(layers, heads) mean over query patches of each row's entropy in nats, over all keys.

    ``0 · log 0`` counts as 0. Uniform attention over N tokens gives log N; one-hot gives 0.
    """
    _check_attention(attention, num_prefix)
    out = np.empty(attention.shape[:2])
    for layer in range(attention.shape[0]):
        rows = attention[layer, :, num_prefix:, :]
        logs = np.zeros(rows.shape, dtype=np.result_type(rows.dtype, np.float32))
        np.log(rows, out=logs, where=rows > 0)
        logs *= rows
        out[layer] = -logs.sum(axis=-1).mean(axis=-1, dtype=np.float64)
    return out


def prefix_share(attention: np.ndarray, num_prefix: int) -> np.ndarray:
    """(layers, heads) mean over query patches of the attention mass on the prefix tokens."""
    _check_attention(attention, num_prefix)
    out = np.empty(attention.shape[:2])
    for layer in range(attention.shape[0]):
        share = attention[layer, :, num_prefix:, :num_prefix].sum(axis=-1, dtype=np.float64)
        out[layer] = share.mean(axis=-1)
    return out


def head_statistics(
    attention: np.ndarray, grid: tuple[int, int], num_prefix: int, patch_size: int
) -> HeadStatistics:
    """Mean attention distance, entropy and prefix share of every head for one image."""
    return HeadStatistics(
        distance=mean_attention_distance(attention, grid, num_prefix, patch_size),
        entropy=attention_entropy(attention, num_prefix),
        prefix_share=prefix_share(attention, num_prefix),
    )


def average_statistics(statistics: list[HeadStatistics]) -> HeadStatistics:
    """The mean over images of each per-head statistic (a folder's figure)."""
    if not statistics:
        raise ValueError("no head statistics to average")
    shapes = {s.distance.shape for s in statistics}
    if len(shapes) != 1:
        raise ValueError(f"head statistics of different models cannot be averaged: {shapes}")
    return HeadStatistics(
        distance=np.mean([s.distance for s in statistics], axis=0),
        entropy=np.mean([s.entropy for s in statistics], axis=0),
        prefix_share=np.mean([s.prefix_share for s in statistics], axis=0),
    )


def statistics_csv(statistics: HeadStatistics, images: int) -> str:
    """One CSV row per layer and head, both numbered from 1 as everywhere people read them
    (the row of ``statistics.distance[0, 0]`` is layer 1, head 1), the figures averaged over
    ``images``."""
    lines = ["layer,head,mean_distance_px,entropy_nats,prefix_share,images"]
    layers, heads = statistics.distance.shape
    for layer in range(layers):
        for head in range(heads):
            lines.append(
                f"{layer + 1},{head + 1},{statistics.distance[layer, head]:.4f},"
                f"{statistics.entropy[layer, head]:.5f},"
                f"{statistics.prefix_share[layer, head]:.5f},{images}"
            )
    return "\n".join(lines) + "\n"


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
