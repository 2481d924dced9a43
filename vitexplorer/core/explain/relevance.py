"""Class-specific relevance (Chefer, Gur and Wolf, ICCV 2021, the gradient-times-attention rule).

For a chosen class, every layer's attention ``A_l`` is weighted by the gradient of that class's
logit with respect to it, negative contributions are dropped and the heads averaged:
``Ā_l = mean_heads(relu(grad_l * A_l))``. Starting from ``R = I`` (each token is relevant to
itself), each layer from the first to the last adds what it mixes in: ``R = R + Ā_l @ R``. The
map is the CLS row over the patches, ``R[0, prefix:]`` (for a model without prefix tokens, which
pools its tokens, the mean of the rows). Chefer's generic rule builds the whole matrix R, and its
row ``i`` is token ``i``'s relevance over the input tokens for the same class: the explorer keeps
R (:attr:`Relevance.matrix`) so that relevance follows the clicked token, as rollout does.

The gradients need the softmax outputs as tensors in the autograd graph. :mod:`capture` writes
them into a preallocated buffer under ``inference_mode``, which autograd cannot follow, so this
module runs the same explicit attention with a sink that keeps each layer's softmax output as its
own tensor, and asks ``torch.autograd.grad`` for the gradients with respect to those maps only:
no parameter's ``.grad`` is touched.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from vitexplorer.core.explain.tokens import token_relevance
from vitexplorer.core.models.capture import Sink, capturing_attention, model_forward
from vitexplorer.core.models.loading import LoadedModel


class _KeptMaps(Sink):
    """An attention sink for autograd: each layer's softmax output stays its own graph tensor."""

    def __init__(self) -> None:
        self.maps: list[torch.Tensor] = []

    def softmax(self, scores: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(scores, dim=-1)
        self.maps.append(weights)
        return weights


def check_target(target: int, num_classes: int) -> int:
    """``target`` as an int, or a ValueError naming the valid range."""
    if isinstance(target, bool) or not isinstance(target, (int, np.integer)):
        raise ValueError(f"the target class must be a whole number, not {target!r}")
    if not 0 <= target < num_classes:
        raise ValueError(f"target class {target} is outside 0..{num_classes - 1}")
    return int(target)


def capture_with_gradients(
    model: LoadedModel, batch: torch.Tensor, target: int | None = None, any_size: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One forward and backward pass for one image.

    ``batch`` is (1, 3, H, W) preprocessed. Returns the logits (classes,), the attention and its
    gradient with respect to the ``target`` logit (the predicted class when None), both
    (layers, heads, tokens, tokens) float32. The model is left as it was:
    original forwards, the same train/eval mode, no ``.grad`` on any parameter.
    """
    if batch.ndim != 4 or batch.shape[0] != 1:
        raise ValueError(
            f"relevance needs one image, a (1, 3, H, W) batch; got {tuple(batch.shape)}"
        )
    module = model.module
    was_training = module.training
    module.eval()
    kept = _KeptMaps()
    try:
        capturing = capturing_attention(model.adapter, kept)
        with torch.inference_mode(False), torch.enable_grad(), capturing:
            # an input that requires grad keeps the maps in the graph even when every parameter
            # is frozen; clone() outside inference mode also accepts an inference-mode tensor
            images = batch.detach().to(model.device).clone().requires_grad_(True)
            logits = model_forward(model.adapter, images, any_size)[0]
            if target is None:
                target = int(logits.argmax())
            target = check_target(target, logits.shape[0])
            grads = torch.autograd.grad(logits[target], kept.maps, allow_unused=True)
    finally:
        module.train(was_training)
    attention = torch.cat([m.detach() for m in kept.maps])  # (layers, heads, N, N)
    gradients = torch.cat(
        [torch.zeros_like(m) if g is None else g for m, g in zip(kept.maps, grads, strict=True)]
    )
    return (
        logits.detach().float().cpu().numpy(),
        attention.float().cpu().numpy(),
        gradients.float().cpu().numpy(),
    )


def _weighted_layers(attention: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    """``mean_heads(relu(grad * A))`` per layer: (layers, N, N) float64."""
    if attention.ndim != 4 or attention.shape != gradients.shape:
        raise ValueError(
            f"attention and gradients must both be (layers, heads, tokens, tokens); got "
            f"{attention.shape} and {gradients.shape}"
        )
    product = attention.astype(np.float64) * gradients.astype(np.float64)
    return np.maximum(product, 0.0).mean(axis=1)


def relevance_from(attention: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    """The full relevance matrix R (tokens, tokens), float64: ``R = I``, then for each layer
    from the first, ``R += mean_heads(relu(grad * A)) @ R``."""
    layers = _weighted_layers(attention, gradients)
    relevance = np.eye(attention.shape[-1])
    for weighted in layers:
        relevance = relevance + weighted @ relevance
    return relevance


def relevance_row(
    attention: np.ndarray, gradients: np.ndarray, token: int | None = 0
) -> np.ndarray:
    """Row ``token`` of :func:`relevance_from`, (tokens,) float64, in O(layers·tokens²); with
    ``token=None`` the mean of all rows (for a model that pools its tokens instead of reading a
    class token, the classifier reads every token alike).

    R = (I + Ā_L) ... (I + Ā_1), so its row is ``e_token`` carried through the factors from the
    last layer down: ``v = v + v @ Ā_l``.
    """
    layers = _weighted_layers(attention, gradients)
    n = attention.shape[-1]
    row = np.zeros(n)
    if token is None:
        row[:] = 1.0 / n
    else:
        row[token] = 1.0
    for weighted in layers[::-1]:
        row = row + row @ weighted
    return row


@dataclass(frozen=True)
class Relevance:
    """One image's relevance map for one class."""

    map: np.ndarray  # (rows, cols) float32 over the patch grid: the CLS token's (or mean) row
    target: int  # the class explained
    logits: np.ndarray  # (classes,) float32, equal to the plain forward's
    matrix: np.ndarray | None = None  # (tokens, tokens) float32: R, row i token i's relevance

    def token_map(self, token: int, grid: tuple[int, int], num_prefix: int) -> np.ndarray:
        """Token ``token``'s relevance over the patches: row ``token`` of R on ``grid``."""
        return token_relevance(self.matrix, token, grid, num_prefix)


def relevance_map(
    model: LoadedModel,
    batch: torch.Tensor,
    target: int | None = None,
    grid: tuple[int, int] | None = None,
    matrix: bool = False,
) -> Relevance:
    """The CLS token's relevance over the patches for class ``target`` (default: predicted);
    the mean token's for a model that has no class token. ``grid`` is the patch grid of an
    input at its own aspect ratio (see :func:`vitexplorer.core.models.preprocessing.preprocess`).
    With ``matrix``, the whole R too (O(layers·tokens³) instead of one row's O(layers·tokens²)), so
    that any token's relevance can be read from it (:meth:`Relevance.token_map`)."""
    spec = model.spec if grid is None else replace(model.spec, grid_shape=grid)
    any_size = grid is not None and grid != model.spec.grid
    logits, attention, gradients = capture_with_gradients(model, batch, target, any_size)
    if target is None:
        target = int(np.argmax(logits))  # the first maximum, as torch.argmax picks it
    if attention.shape[-1] != spec.num_tokens:
        raise ValueError(
            f"the model ran {attention.shape[-1]} tokens but its spec expects {spec.num_tokens}"
        )
    # the class token's row; a model without one pools its tokens: the mean of the rows
    token = 0 if spec.num_prefix_tokens else None
    if matrix:
        full = relevance_from(attention, gradients)
        row = full[0] if token == 0 else full.mean(axis=0)
    else:
        full, row = None, relevance_row(attention, gradients, token)
    patches = np.ascontiguousarray(
        row[spec.num_prefix_tokens :].reshape(spec.grid), dtype=np.float32
    )
    kept = None if full is None else full.astype(np.float32)
    return Relevance(map=patches, target=target, logits=logits, matrix=kept)
