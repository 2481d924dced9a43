"""Chefer-LRP: Chefer, Gur and Wolf's relevance propagation (CVPR 2021, "Transformer
Interpretability Beyond Attention Visualization"), the method behind their ViT-B/16 perturbation
scores. Relevance of the class score is propagated back through every block with their LRP rules;
each layer's relevance at the attention weights, times its gradient, clamped at zero and averaged
over the heads, is rolled out from ``start_layer`` with the identity added; the map is the class
token's row over the patches. Computed by :mod:`vitexplorer.core.explain.chefer_relprop`.

Not the ``relevance`` method: that is the same authors' ICCV 2021 generic rule (attention times
its gradient), without the propagated relevance.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vitexplorer.core.explain.attribution import Attribution, Attributor, grid_of
from vitexplorer.core.explain.method import Method, MethodOptions, Progress, for_class, register
from vitexplorer.core.render.numbering import shown

if TYPE_CHECKING:
    import torch

    from vitexplorer.core.models.loading import LoadedModel


class _CheferLRP(Attributor):
    def key(self, options: MethodOptions, spec: Any) -> tuple:
        return (options.target_class, options.start_layer)

    def refusal(self, model: Any) -> str | None:
        """Why the relevance cannot be propagated through ``model`` (blocks or a classifier it
        cannot describe), in one line; None when it can."""
        from vitexplorer.core.models.blocks import model_block_parts
        from vitexplorer.core.models.families.family import UnsupportedModel

        try:
            model.adapter.get_classifier()
            model_block_parts(model.adapter)
        except UnsupportedModel as exc:
            return (
                f"chefer-lrp cannot propagate relevance through {model.spec.display_name}: "
                f"{exc}; relevance and grad-attention work on it"
            )
        return None

    def attribute(
        self,
        model: LoadedModel,
        batch: torch.Tensor,
        options: MethodOptions,
        grid: tuple[int, int] | None = None,
        progress: Progress | None = None,
    ) -> Attribution:
        """The class token's row of the rollout over the patches, (batch, rows, cols)."""
        import numpy as np

        from vitexplorer.core.explain.chefer_relprop import chefer_rows
        from vitexplorer.core.models.families.family import UnsupportedModel

        (rows, cols), _ = grid_of(model, grid)
        try:
            result = chefer_rows(model, batch, options.target_class, options.start_layer, progress)
        except UnsupportedModel as exc:
            raise ValueError(
                f"chefer-lrp cannot propagate relevance through {model.spec.display_name}: "
                f"{exc}; relevance and grad-attention work on it"
            ) from None
        prefix = model.adapter.num_prefix_tokens
        patches = result.rows[:, prefix:]
        if patches.shape[1] != rows * cols:
            raise ValueError(
                f"the model ran {patches.shape[1]} patches but the grid is {rows}x{cols}"
            )
        maps = patches.reshape(-1, rows, cols).cpu().numpy().astype(np.float32)
        return Attribution(np.ascontiguousarray(maps), result.targets.cpu().numpy())


def _title(parameters: dict[str, Any], spec: Any, target: dict[str, Any] | None = None) -> str:
    start = int(parameters.get("start_layer", 0))
    return f"{for_class('chefer-lrp', target)} · from layer {shown(start)} · {spec.token_label(0)}"


def _caption(parameters: dict[str, Any], spec: Any, target: dict[str, Any] | None = None) -> str:
    return for_class("chefer-lrp", target)


CHEFER_LRP = register(
    Method(
        name="chefer-lrp",
        label="Chefer LRP",
        summary="Chefer et al.'s LRP through every block, rolled out, for --target-class",
        tip="Chefer et al.'s transformer attribution: relevance propagated back through every "
        "block (LRP), times the attention's gradient, rolled out over the layers",
        help_title="Chefer et al.'s relevance propagation (transformer attribution)",
        help="the class score's relevance propagated back through every block with Chefer, Gur "
        "and Wolf's LRP rules (alpha 1, beta 0 for the linear layers; norms and activations "
        "pass it; each residual sum split by its branches' shares; both attention products "
        "halved); each layer's relevance at the attention weights times their gradient, the "
        "negative part dropped and the heads averaged, rolled out with the identity added from "
        "the start layer; the class token's row. Their ViT-B scripts start at the second "
        "layer (--start-layer 2) for the published perturbation and segmentation scores; the "
        "default here is the first. A model without a class token pools its tokens: the mean "
        "of the rows. Layer scales pass relevance unchanged. Needs a classifier.",
        paper="Chefer, Gur and Wolf, Transformer Interpretability Beyond Attention "
        "Visualization, CVPR 2021",
        year=2021,
        options=("target_class", "start_layer"),
        needs_model=True,
        needs_backward=True,
        class_specific=True,
        only_cls=True,
        requires_classifier=True,
        cost=3,
        explains="the class score, per patch",
        per_token=False,
        pixels=False,
        not_applied="Chefer LRP combines every layer from the start layer and every head: no "
        "layer or head choice applies. Show Attention to pick one.",
        title=_title,
        caption=_caption,
        compute=_CheferLRP(),
        order=12,
    )
)
