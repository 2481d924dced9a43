"""AttnLRP (Achtibat et al., ICML 2024, "AttnLRP: Attention-Aware Layer-Wise Relevance
Propagation for Transformers") as the ``lxt`` library's efficient mode computes it for a ViT
(lxt 2.x's torchvision ViT patch map with zennit's gamma rules, as in lxt's ViT example): in the
gradient x input form, the LayerNorms' normalisation and the attention weights held constant,
the identity rule on the MLP's activation, the gamma rule on the MLP's and the classifier's
linear layers (``gamma``) and on the patch convolution (``conv_gamma``). ``attention_rule``
"attnlrp" applies the paper's attention rules instead (softmax rule, uniform rule on both
products, gamma on the projections), as lxt does on transformers' models. The map is each pixel's
relevance for the class score, summed over the colour channels; the grid map sums each patch."""

from __future__ import annotations

from typing import Any

from vitexplorer.core.explain.attribution import Attributor
from vitexplorer.core.explain.method import Method, MethodOptions, Progress, for_class, register


class _AttnLRP(Attributor):
    def key(self, options: MethodOptions, spec: Any) -> tuple:
        return (options.target_class, options.gamma, options.conv_gamma, options.attention_rule)

    def refusal(self, model: Any) -> str | None:
        from vitexplorer.core.explain.lrp_rules import refusal

        return refusal(model, "attnlrp")

    def attribute(
        self,
        model: Any,
        batch: Any,
        options: MethodOptions,
        grid: tuple[int, int] | None = None,
        progress: Progress | None = None,
    ) -> Any:
        from vitexplorer.core.explain.lrp_rules import AttnLRPOps, pixel_attribution

        ops = AttnLRPOps(options.gamma, options.conv_gamma, options.attention_rule)
        return pixel_attribution(model, batch, ops, "attnlrp", options.target_class, grid)


def _title(parameters: dict[str, Any], spec: Any, target: dict[str, Any] | None = None) -> str:
    gamma = parameters.get("gamma", MethodOptions.gamma)
    conv = parameters.get("conv_gamma", MethodOptions.conv_gamma)
    rule = parameters.get("attention_rule", MethodOptions.attention_rule)
    return (
        f"{for_class('attnlrp', target)} · gamma {gamma:g}, conv gamma {conv:g}, {rule} attention"
    )


def _caption(parameters: dict[str, Any], spec: Any, target: dict[str, Any] | None = None) -> str:
    return for_class("AttnLRP", target)


ATTNLRP = register(
    Method(
        name="attnlrp",
        label="AttnLRP",
        summary="attention-aware LRP (lxt's ViT rules: gamma rule, LayerNorm and activation "
        "identity rules)",
        tip="AttnLRP: each pixel's relevance for a class, propagated with LRP's rules as the "
        "lxt library applies them to a ViT",
        help_title="Attention-aware LRP (AttnLRP)",
        help="layer-wise relevance propagation of the class's score down to the pixels, in one "
        "forward and one backward pass, with the rules the lxt library applies to a ViT: each "
        "LayerNorm's normalisation and the attention weights pass relevance on unchanged, the "
        "MLP's activation by the identity rule, and the MLP's and the classifier's linear layers "
        "and the patch convolution by the gamma rule, which favours positive contributions by "
        "gamma (--gamma, default 0.05, and --conv-gamma, default 100: lxt's choice for vision "
        "models, in its ViT example's grid). The attention's own projections keep the plain "
        "gradient, as in lxt on torchvision's ViT. --attention-rule attnlrp uses the paper's "
        "rules inside the attention instead (the softmax rule, the uniform rule on its two "
        "products, the gamma rule on its projections), as lxt applies them to transformers' "
        "models. Positive relevance raises the class's "
        "score, negative lowers it; the grid map sums each patch. Needs a classifier and a "
        "pre-norm ViT whose blocks vitexplorer knows.",
        paper="Achtibat, Hatefi, Dreyer, Jain, Wiegand, Lapuschkin and Samek, AttnLRP: "
        "Attention-Aware Layer-Wise Relevance Propagation for Transformers, ICML 2024",
        year=2024,
        options=("target_class", "gamma", "conv_gamma", "attention_rule"),
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
        not_applied="AttnLRP explains the class score from the input pixels through every "
        "layer: no layer or head choice applies.",
        title=_title,
        caption=_caption,
        compute=_AttnLRP(),
        order=21,
    )
)
