"""Per-head statistics of a stored attention array (the ViT paper's Fig. 7): mean attention
distance, entropy and the share given to prefix tokens, averaged over images, as CSV.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vitexplorer.core.explain.tokens import check_attention_array, check_patch_grid


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
    check_attention_array(attention, num_prefix)
    check_patch_grid(attention, grid, num_prefix)
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
    check_attention_array(attention, num_prefix)
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
    check_attention_array(attention, num_prefix)
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
