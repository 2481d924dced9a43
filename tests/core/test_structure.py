"""The model's own structure: position-embedding similarity and patch-filter components."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

from vitexplorer.core.explain.structure import (
    filter_components,
    patch_filters,
    position_embeddings,
    position_similarity,
    principal_filter_directions,
)


def test_position_similarity_by_hand() -> None:
    # CLS + a 1x3 grid. Patch embeddings (1, 0), (1, 1), (0, 2); CLS (5, 5) is left out.
    # cos(p0, p1) = 1 / sqrt 2, cos(p0, p2) = 0, cos(p1, p2) = 2 / (sqrt 2 * 2) = 1 / sqrt 2
    embed = np.array([[5.0, 5.0], [1.0, 0.0], [1.0, 1.0], [0.0, 2.0]], dtype=np.float32)
    similarity = position_similarity(embed, (1, 3), 1)
    assert similarity.shape == (1, 3, 1, 3) and similarity.dtype == np.float32
    h = 1 / np.sqrt(2)
    np.testing.assert_allclose(
        similarity.reshape(3, 3), [[1, h, 0], [h, 1, h], [0, h, 1]], rtol=1e-6, atol=1e-7
    )


def test_position_similarity_on_a_rectangular_grid() -> None:
    embed = np.random.default_rng(0).normal(size=(2 + 6, 16))  # 2 prefix tokens + a 2x3 grid
    similarity = position_similarity(embed, (2, 3), 2)
    assert similarity.shape == (2, 3, 2, 3)
    flat = similarity.reshape(6, 6)
    np.testing.assert_allclose(np.diag(flat), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(flat, flat.T)
    # the map of position (1, 0) is row 3 of the flat matrix: row-major over the patches
    unit = embed[2:] / np.linalg.norm(embed[2:], axis=1, keepdims=True)
    np.testing.assert_allclose(similarity[1, 0], (unit @ unit[3]).reshape(2, 3), rtol=1e-5)
    with pytest.raises(ValueError, match="3x3 grid"):
        position_similarity(embed, (3, 3), 2)


def check_directions(weight: np.ndarray, count: int) -> None:
    """The components are orthonormal, the top right singular vectors of the centred filters."""
    directions, share = principal_filter_directions(weight, count)
    flat = directions.reshape(count, -1)
    np.testing.assert_allclose(flat @ flat.T, np.eye(count), atol=1e-8)
    centred = weight.reshape(len(weight), -1).astype(np.float64)
    centred -= centred.mean(axis=0)
    # each direction v is an eigenvector of the covariance C = X^T X: |C v| = v . C v
    covariance = centred.T @ centred
    projected = flat @ covariance
    eigenvalues = np.einsum("ij,ij->i", projected, flat)
    np.testing.assert_allclose(projected, eigenvalues[:, None] * flat, atol=1e-6)
    assert (np.diff(eigenvalues) <= 1e-9).all()  # largest variance first
    np.testing.assert_allclose(share, eigenvalues / np.trace(covariance), rtol=1e-6)


def test_filter_components_by_hand() -> None:
    # Four 1x1 RGB filters: (1,0,0), (-1,0,0), (0,2,0), (0,-2,0), already centred. The variance
    # lies along green (2 * 2^2 = 8) and red (2 * 1^2 = 2): components green then red, shares
    # 0.8 and 0.2. Scaled for display, 0.5 + v / (2 max|v|): green (0.5, 1, 0.5), red (1, 0.5, 0.5)
    weight = np.zeros((4, 3, 1, 1), dtype=np.float32)
    weight[:, :, 0, 0] = [[1, 0, 0], [-1, 0, 0], [0, 2, 0], [0, -2, 0]]
    directions, share = principal_filter_directions(weight, 2)
    np.testing.assert_allclose(directions.reshape(2, 3), [[0, 1, 0], [1, 0, 0]], atol=1e-12)
    np.testing.assert_allclose(share, [0.8, 0.2], rtol=1e-12)
    images = filter_components(weight, 2)
    assert images.shape == (2, 1, 1, 3) and images.dtype == np.float32
    np.testing.assert_allclose(images[:, 0, 0], [[0.5, 1, 0.5], [1, 0.5, 0.5]], atol=1e-7)
    with pytest.raises(ValueError, match="from 1 to 3"):
        filter_components(weight, 4)


def test_structure_of_a_tiny_small_vit(tiny_small_vit) -> None:
    embed = position_embeddings(tiny_small_vit)
    assert embed.shape == (17, 32) and embed.dtype == np.float32  # CLS + a 4x4 grid, width 32
    np.testing.assert_array_equal(embed, tiny_small_vit.pos_embed[0].detach().numpy())
    similarity = position_similarity(embed, (4, 4), 1)
    assert similarity.shape == (4, 4, 4, 4)
    np.testing.assert_allclose(similarity[2, 1, 2, 1], 1.0, rtol=1e-6)
    weight = patch_filters(tiny_small_vit)
    assert weight.shape == (32, 3, 8, 8)
    check_directions(weight, 28)
    images = filter_components(weight)
    assert images.shape == (28, 8, 8, 3) and images.dtype == np.float32
    assert images.min() >= 0 and images.max() <= 1
    # each component touches 0 or 1 where its largest magnitude lies
    extremes = np.maximum(images.max(axis=(1, 2, 3)), 1 - images.min(axis=(1, 2, 3)))
    np.testing.assert_allclose(extremes, 1.0, rtol=1e-6)


@pytest.mark.slow
def test_structure_of_torchvision_vit_b_32() -> None:
    torch.manual_seed(0)
    model = torchvision.models.vit_b_32(weights=None).eval()
    embed = position_embeddings(model)
    assert embed.shape == (50, 768)  # CLS + a 7x7 grid at 224 px
    similarity = position_similarity(embed, (7, 7), 1)
    assert similarity.shape == (7, 7, 7, 7)
    flat = similarity.reshape(49, 49)
    np.testing.assert_allclose(np.diag(flat), 1.0, rtol=1e-5)
    np.testing.assert_allclose(flat, flat.T, atol=1e-6)
    weight = patch_filters(model)
    assert weight.shape == (768, 3, 32, 32)
    images = filter_components(weight, 28)
    assert images.shape == (28, 32, 32, 3) and images.min() >= 0 and images.max() <= 1


def test_other_modules_are_refused() -> None:
    with pytest.raises(ValueError, match="Linear is not a ViT that vitexplorer knows"):
        position_embeddings(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="Sequential"):
        patch_filters(torch.nn.Sequential())
