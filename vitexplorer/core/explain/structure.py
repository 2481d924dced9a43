"""What a ViT learned independently of any image: its position embeddings and patch filters.

The ViT paper (Dosovitskiy et al. 2021, Fig. 7, left and centre) shows the principal components
of the patch-embedding filters and the cosine similarity between position embeddings. Both are
read straight off the model's parameters, which its family's adapter finds.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def _parameter(module: nn.Module, what: str) -> torch.Tensor:
    from vitexplorer.core.models.families.family import UnsupportedModel
    from vitexplorer.core.models.families.registry import adapter_for

    try:
        adapter = adapter_for(module)
    except UnsupportedModel as exc:
        raise ValueError(f"cannot read {what} from it: {exc}") from exc
    found = adapter.position_embeddings() if what == "positions" else adapter.patch_filters()
    if found is None:
        raise ValueError(f"a {type(module).__name__} has no learned {what}")
    return found


def position_embeddings(module: nn.Module) -> np.ndarray:
    """The learned position embeddings as (tokens, dim) float32, prefix tokens first."""
    return _parameter(module, "positions").detach().cpu().float().numpy()


def position_similarity(
    pos_embed: np.ndarray, grid: tuple[int, int], num_prefix: int
) -> np.ndarray:
    """Cosine similarity between the patch positions' embeddings: (rows, cols, rows, cols) float32.

    ``out[r, c]`` is the (rows, cols) map of position (r, c)'s similarity to every patch position;
    the prefix tokens' embeddings are left out. A zero embedding has similarity 0 to everything.
    """
    rows, cols = grid
    embed = np.asarray(pos_embed, dtype=np.float64)
    if embed.ndim != 2 or len(embed) - num_prefix != rows * cols or num_prefix < 0:
        raise ValueError(
            f"position embeddings of shape {embed.shape} with {num_prefix} prefix tokens do "
            f"not fit a {rows}x{cols} grid"
        )
    patches = embed[num_prefix:]
    norms = np.linalg.norm(patches, axis=1, keepdims=True)
    unit = patches / np.maximum(norms, np.finfo(np.float64).tiny)
    return (unit @ unit.T).reshape(rows, cols, rows, cols).astype(np.float32)


def patch_filters(module: nn.Module) -> np.ndarray:
    """The patch-embedding convolution's weights as (dim, 3, p, p) float32."""
    return _parameter(module, "filters").detach().cpu().float().numpy()


def principal_filter_directions(
    weight: np.ndarray, count: int = 28
) -> tuple[np.ndarray, np.ndarray]:
    """The first ``count`` principal directions of the filters, and their share of the variance.

    The (dim, 3, p, p) filters are flattened to (dim, 3·p·p), centred on the mean filter and
    decomposed as ``X = U S Vt``; the directions are the first rows of ``Vt`` (orthonormal),
    returned as (count, 3, p, p) float64 with the sign fixed so that each direction's entry of
    largest magnitude is positive (the SVD's sign is arbitrary). The share is ``S² / sum(S²)``.
    """
    weight = np.asarray(weight, dtype=np.float64)
    if weight.ndim != 4 or weight.shape[1] != 3:
        raise ValueError(f"patch filters must be (dim, 3, p, p), got shape {weight.shape}")
    flat = weight.reshape(len(weight), -1)
    available = min(flat.shape)
    if not 1 <= count <= available:
        raise ValueError(f"count {count} must be from 1 to {available} for these filters")
    centred = flat - flat.mean(axis=0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    directions = vt[:count]
    largest = np.abs(directions).argmax(axis=1)
    directions *= np.sign(directions[np.arange(count), largest])[:, None]
    variance = singular**2
    share = variance[:count] / max(variance.sum(), np.finfo(np.float64).tiny)
    return directions.reshape(count, *weight.shape[1:]), share


def filter_components(
    weight: np.ndarray, count: int = 28, directions: np.ndarray | None = None
) -> np.ndarray:
    """The filters' first ``count`` principal components as RGB images: (count, p, p, 3) float32.

    Each component (see :func:`principal_filter_directions`) is scaled on its own so that 0 maps
    to mid grey and its largest magnitude to 0 or 1: ``0.5 + v / (2 max|v|)``. Signs are
    arbitrary, so a symmetric scale shows positive and negative weights alike.
    """
    if directions is None:  # else the caller's principal_filter_directions(weight, count)
        directions, _ = principal_filter_directions(weight, count)
    images = directions.transpose(0, 2, 3, 1)
    peak = np.abs(images).max(axis=(1, 2, 3), keepdims=True)
    scaled = 0.5 + images / (2 * np.maximum(peak, np.finfo(np.float64).tiny))
    return np.clip(scaled, 0.0, 1.0).astype(np.float32)


def model_structure(
    module: nn.Module, grid: tuple[int, int], num_prefix: int, count: int = 28
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What the model's own structure looks like (the ViT paper's Fig. 7): the position
    similarity (rows, cols, rows, cols), the patch filters' first principal components as RGB
    images (count, p, p, 3) and their shares of the variance (count,). ValueError for an
    architecture whose parameters cannot be read."""
    positions = position_embeddings(module)
    if len(positions) == grid[0] * grid[1]:
        num_prefix = 0  # the prefix tokens get no position embedding (DINOv2's registers, DeiT III)
    similarity = position_similarity(positions, grid, num_prefix)
    filters = patch_filters(module)
    count = min(count, filters.shape[0], int(np.prod(filters.shape[1:])))
    directions, shares = principal_filter_directions(filters, count)  # one SVD for both
    return similarity, filter_components(filters, count, directions), shares
