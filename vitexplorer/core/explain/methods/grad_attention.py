"""Attention times its gradient: the last layer's attention weighted by the gradient of a
class's logit with respect to it, ``mean_heads(relu(dA * A))``, its CLS row over the patches (the
first step of Chefer et al.'s rule, without carrying it through the layers)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from vitexplorer.core.explain.method import (
    Computation,
    Method,
    MethodOptions,
    for_class,
    register,
)


class _GradAttention(Computation):
    def key(self, options: MethodOptions, spec: Any) -> tuple:
        return (options.target_class,)

    def matrix(
        self, model: Any, batch: Any, options: MethodOptions, grid: Any, progress: Any = None
    ) -> Any:
        """``mean_heads(relu(dA * A))`` of the last layer, (tokens, tokens): row i token i's."""
        import numpy as np

        from vitexplorer.core.explain.relevance import capture_with_gradients

        any_size = grid is not None and tuple(grid) != model.spec.grid
        _, attention, gradients = capture_with_gradients(
            model, batch, options.target_class, any_size
        )
        last = attention[-1].astype(np.float64) * gradients[-1].astype(np.float64)
        return np.maximum(last, 0.0).mean(axis=0).astype(np.float32)

    def from_model(
        self, model: Any, batch: Any, options: MethodOptions, grid: Any, progress: Any = None
    ) -> Any:
        import numpy as np

        spec = model.spec if grid is None else replace(model.spec, grid_shape=tuple(grid))
        weighted = self.matrix(model, batch, options, grid)
        # the class token's row; a model without one pools its tokens: the mean of the rows
        row = weighted[0] if spec.num_prefix_tokens else weighted.mean(axis=0)
        patches = row[spec.num_prefix_tokens :].reshape(spec.grid)
        return np.ascontiguousarray(patches, dtype=np.float32)


def _title(parameters: dict[str, Any], spec: Any, target: dict[str, Any] | None = None) -> str:
    token = spec.token_label(int(parameters.get("token", 0)))
    return f"{for_class('grad-attention', target)} · layer {spec.num_layers} · {token}"


def _caption(parameters: dict[str, Any], spec: Any, target: dict[str, Any] | None = None) -> str:
    return for_class("grad-attention", target)


GRAD_ATTENTION = register(
    Method(
        name="grad-attention",
        label="Grad-attn",  # as short as "Relevance": the 1024 px method bar keeps its width
        summary="the last layer's attention times its gradient for --target-class",
        tip="Grad × attention: the last layer's attention weighted by its gradient for a class",
        help_title="Attention times its gradient",
        help="the last layer's attention weighted by the gradient of the class's score with "
        "respect to it, the negative part dropped and the heads averaged: which patches the "
        "last layer mixes in that push the class up. Needs a classifier.",
        paper="Chefer, Gur and Wolf, ICCV 2021 (the rule's one-layer step)",
        year=2021,
        options=("target_class",),
        needs_model=True,
        needs_backward=True,
        class_specific=True,
        only_cls=True,
        requires_classifier=True,
        cost=2,
        not_applied="Grad × attention weights the last layer's heads by their gradients for the "
        "class: no layer or head choice applies. Show Attention to pick one.",
        title=_title,
        caption=_caption,
        compute=_GradAttention(),
        order=3,
    )
)
