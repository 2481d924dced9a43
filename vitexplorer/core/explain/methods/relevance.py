"""Class relevance by the generic attention-explainability rule (GAE) of Chefer, Gur and Wolf,
ICCV 2021: attention weighted by its gradient for a class, accumulated through the layers
(computed by :mod:`vitexplorer.core.explain.relevance`). Not the same authors' LRP-based
transformer attribution of CVPR 2021 (``chefer-lrp``)."""

from __future__ import annotations

from typing import Any

from vitexplorer.core.explain.method import (
    Computation,
    Method,
    MethodOptions,
    for_class,
    register,
)


class _Relevance(Computation):
    def key(self, options: MethodOptions, spec: Any) -> tuple:
        return (options.target_class,)

    def from_model(
        self, model: Any, batch: Any, options: MethodOptions, grid: Any, progress: Any = None
    ) -> Any:
        from vitexplorer.core.explain import relevance

        return relevance.relevance_map(model, batch, options.target_class, grid).map

    def matrix(
        self, model: Any, batch: Any, options: MethodOptions, grid: Any, progress: Any = None
    ) -> Any:
        from vitexplorer.core.explain import relevance

        result = relevance.relevance_map(model, batch, options.target_class, grid, matrix=True)
        return result.matrix


def _title(parameters: dict[str, Any], spec: Any, target: dict[str, Any] | None = None) -> str:
    token = spec.token_label(int(parameters.get("token", 0)))
    return f"{for_class('relevance', target)} · {token}"


def _caption(parameters: dict[str, Any], spec: Any, target: dict[str, Any] | None = None) -> str:
    return for_class("relevance", target)


RELEVANCE = register(
    Method(
        name="relevance",
        label="Relevance (GAE)",  # the rule's name: Chefer et al.'s generic one, not their LRP
        summary="class relevance by Chefer, Gur and Wolf's generic gradient-times-attention "
        "rule (GAE, ICCV 2021; not their CVPR 2021 LRP method) for --target-class",
        tip="Relevance (GAE): what speaks for a class by Chefer et al.'s generic gradient × "
        "attention rule (ICCV 2021), for the CLS token",
        help_title="Class relevance: the generic gradient × attention rule (GAE, ICCV 2021)",
        help="what speaks for one class, by the generic attention-explainability rule (GAE) of "
        "Chefer, Gur and Wolf (ICCV 2021): each layer's attention weighted by its gradient, the "
        "negative part dropped, accumulated through the layers. It is not the same authors' "
        "LRP-based transformer attribution of CVPR 2021 (chefer-lrp). Needs a classifier. It "
        "follows the selected token; a patch's own place keeps the identity that the residual "
        "connection adds, as in rollout, so it stands out in its own map.",
        paper="Chefer, Gur and Wolf, Generic Attention-model Explainability for Interpreting "
        "Bi-Modal and Encoder-Decoder Transformers, ICCV 2021",
        year=2021,
        options=("target_class",),
        needs_model=True,
        needs_backward=True,
        class_specific=True,
        only_cls=True,
        requires_classifier=True,
        cost=2,
        explains="a class score, per patch",
        not_applied="Relevance combines every layer and head, weighted by their gradients for "
        "the class: no single layer or head applies. Show Attention to pick one.",
        title=_title,
        caption=_caption,
        compute=_Relevance(),
        order=2,
    )
)
