"""CP-LRP (Ali et al., ICML 2022, "XAI for Transformers: Better Explanations through
Conservative Propagation"): gradient x input at the pixels with the attention weights and the
LayerNorms' standard deviation held constant in the backward pass, which makes the propagation
through the attention and the norms conservative. The map is the relevance of each pixel (summed
over the colour channels) for the class score; the grid map sums it over each patch."""

from __future__ import annotations

from typing import Any

from vitexplorer.core.explain.attribution import Attributor
from vitexplorer.core.explain.method import Method, MethodOptions, Progress, for_class, register


class _ConservativePropagation(Attributor):
    def refusal(self, model: Any) -> str | None:
        from vitexplorer.core.explain.lrp_rules import refusal

        return refusal(model, "cp-lrp")

    def attribute(
        self,
        model: Any,
        batch: Any,
        options: MethodOptions,
        grid: tuple[int, int] | None = None,
        progress: Progress | None = None,
    ) -> Any:
        from vitexplorer.core.explain.lrp_rules import ConservativeOps, pixel_attribution

        return pixel_attribution(
            model, batch, ConservativeOps(), "cp-lrp", options.target_class, grid
        )


def _title(parameters: dict[str, Any], spec: Any, target: dict[str, Any] | None = None) -> str:
    return f"{for_class('cp-lrp', target)} · relevance per pixel"


def _caption(parameters: dict[str, Any], spec: Any, target: dict[str, Any] | None = None) -> str:
    return for_class("CP-LRP", target)


CP_LRP = register(
    Method(
        name="cp-lrp",
        label="CP-LRP",
        summary="conservative LRP (gradient x input, attention and LayerNorm held constant)",
        tip="CP-LRP: each pixel's relevance for a class, with the attention weights and the "
        "LayerNorms' scale held constant in the backward pass",
        help_title="Conservative propagation (CP-LRP)",
        help="gradient times input at the pixels, with the attention weights and each "
        "LayerNorm's standard deviation treated as constants in the backward pass: the "
        "relevance of the class's score then flows through the values and the linear layers "
        "only, and is conserved through the attention and the norms. Positive relevance raises "
        "the class's score, negative lowers it; the grid map sums each patch. One forward and "
        "one backward pass. Needs a classifier and a pre-norm ViT whose blocks vitexplorer knows.",
        paper="Ali, Schnake, Eberle, Montavon, Müller and Wolf, XAI for Transformers: Better "
        "Explanations through Conservative Propagation, ICML 2022",
        year=2022,
        options=("target_class",),
        needs_model=True,
        needs_backward=True,
        class_specific=True,
        signed=True,
        only_cls=True,
        requires_classifier=True,
        cost=2,
        explains="the class score, per pixel",
        per_token=False,
        pixels=True,
        not_applied="CP-LRP explains the class score from the input pixels through every "
        "layer: no layer or head choice applies.",
        title=_title,
        caption=_caption,
        compute=_ConservativePropagation(),
        order=20,
    )
)
