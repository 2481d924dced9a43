"""Weighted sums of input gradients over many variants of each image, in bounded passes.

Integrated gradients (the points of a path from a baseline to the image) and SmoothGrad (noisy
copies of the image) both need the gradient of each image's class score at many inputs made from
it, and a weighted sum of those gradients per image. Here the inputs are made a chunk at a time
(:func:`points_per_pass` of them, as many as a memory budget allows), their gradients taken in
one forward and backward, and added into each image's sum; ``progress(done, total)`` is called
after each pass, and may raise :class:`~vitexplorer.core.explain.method.MethodCancelled`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from vitexplorer.core.explain.method import Progress

if TYPE_CHECKING:
    import torch

    from vitexplorer.core.models.loading import LoadedModel

MOST_POINTS = 32  # the most inputs one pass takes (at 224 px ViT-B/16 11, ViT-Tiny 32: the budget)


def points_per_pass(model: LoadedModel, grid: tuple[int, int]) -> int:
    """How many inputs one forward and backward takes on ``grid``: as many as one captured
    forward of that many images would hold in attention maps
    (:func:`~vitexplorer.core.models.capture.images_per_pass`), at most :data:`MOST_POINTS`."""
    from vitexplorer.core.models.capture import images_per_pass

    spec = model.spec
    tokens = grid[0] * grid[1] + spec.num_prefix_tokens
    return images_per_pass(spec.num_layers, spec.num_heads, tokens, MOST_POINTS)


def check_input(model: LoadedModel, batch: torch.Tensor, grid: tuple[int, int]) -> None:
    """Raise ValueError when ``batch`` is not (batch, 3, H, W) with H and W the grid's patches."""
    patch = model.spec.patch_size
    size = (grid[0] * patch, grid[1] * patch)
    if batch.ndim != 4 or batch.shape[1] != 3 or tuple(batch.shape[-2:]) != size:
        raise ValueError(
            f"a batch on a {grid[0]}x{grid[1]} grid of {patch}-pixel patches is (batch, 3, "
            f"{size[0]}, {size[1]}), not {tuple(batch.shape)}"
        )
    if batch.shape[0] == 0:
        raise ValueError("the batch holds no image; give at least one")


def targets_for(
    model: LoadedModel, images: torch.Tensor, target_class: int | None, any_size: bool
) -> torch.Tensor:
    """The class each image is explained for, (batch,) int64: ``target_class`` for all (its
    range is checked against the logits with the first pass's), else each image's predicted
    class, from one plain forward."""
    import torch

    from vitexplorer.core.explain.attribution import plain_logits, resolve_targets

    if target_class is None:
        return resolve_targets(plain_logits(model, images, any_size), None).cpu()
    return torch.full((images.shape[0],), int(target_class), dtype=torch.int64)


def gradient_sums(
    model: LoadedModel,
    make: Callable[[np.ndarray, np.ndarray], torch.Tensor],
    images: int,
    per_image: int,
    weights: Sequence[float],
    targets: torch.Tensor,
    *,
    any_size: bool,
    chunk: int,
    absolute: bool = False,
    progress: Progress | None = None,
) -> torch.Tensor:
    """``sum_j weights[j] * g(make(i, j))`` for each image ``i`` of ``images``, ``j`` from 0 to
    ``per_image - 1``, where ``g`` is the gradient of image ``i``'s target logit (``targets[i]``)
    with respect to the input (its absolute value with ``absolute``). Returns (images, 3, H, W)
    float64 on the CPU (the sums are kept in double precision whatever the device).

    ``make(owners, steps)`` builds the inputs of one pass, (n, 3, H, W), for the pairs
    (``owners[k]``, ``steps[k]``); the pairs come image by image, steps in order, ``chunk`` at a
    time. The model is left as it was (mode, no ``.grad``: see
    :func:`~vitexplorer.core.explain.attribution.input_gradients`)."""
    import torch

    from vitexplorer.core.explain.attribution import input_gradients

    count = images * per_image
    chunk = max(1, int(chunk))
    passes = -(-count // chunk)
    chosen = targets.detach().cpu().tolist()
    scale = torch.tensor(list(weights), dtype=torch.float64)
    total: torch.Tensor | None = None
    for done, start in enumerate(range(0, count, chunk), start=1):
        index = np.arange(start, min(start + chunk, count))
        owners, steps = index // per_image, index % per_image
        inputs = make(owners, steps)
        _, _, gradient = input_gradients(
            model, inputs, [chosen[i] for i in owners], any_size=any_size
        )
        gradient = gradient.detach().to("cpu", torch.float64)
        if absolute:
            gradient = gradient.abs()
        gradient *= scale[torch.from_numpy(steps)].view(-1, 1, 1, 1)
        if total is None:
            total = gradient.new_zeros((images, *gradient.shape[1:]))
        total.index_add_(0, torch.from_numpy(owners), gradient)
        if progress is not None:
            progress(done, passes)
    assert total is not None  # at least one image and one step
    return total
