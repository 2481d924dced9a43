"""Grad-CAM (Selvaraju, Cogswell, Das, Vedantam, Parikh and Batra, "Grad-CAM: Visual
Explanations from Deep Networks via Gradient-based Localization", ICCV 2017), adapted to ViTs as
pytorch-grad-cam's ViT example does.

The "feature map" is the output of the last block's first LayerNorm (timm's
``blocks[-1].norm1``, torchvision's ``encoder.layers[-1].ln_1``), its patch tokens laid out on
the patch grid as channels: ``A`` (patches, width). Each channel ``c`` is weighted by the
gradient of the class's score with respect to it, averaged over the grid,
``w_c = mean_patches(d score / d A_c)``, and the map is ``relu(sum_c w_c A_c)`` per patch: the
patches whose features, as the last block reads them, push the class up. Every prefix token
(CLS, distillation, registers) is left out of both the mean and the map, as the example's
``reshape_transform`` drops the CLS token; a model without prefix tokens (one that pools) has
every token on the grid.

The map is in the score's units (not scaled): pytorch-grad-cam then min-max scales it and resizes
it to the input; the views scale it as they do every map. One forward and one backward.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vitexplorer.core.explain.attribution import Attribution, Attributor, grid_of
from vitexplorer.core.explain.method import (
    Method,
    MethodOptions,
    Progress,
    for_class,
    register,
)

if TYPE_CHECKING:
    import torch
    from torch import nn

    from vitexplorer.core.models.loading import LoadedModel


def target_layer(model: LoadedModel) -> nn.Module:
    """The last block's first norm, whose output Grad-CAM weighs; a one-line ValueError naming
    the model and what works instead where the family does not describe its blocks."""
    adapter = model.adapter
    try:
        return adapter.block_parts(adapter.blocks()[-1]).norm1
    except ValueError as exc:  # UnsupportedModel is one
        raise ValueError(
            f"gradcam needs the last block's first norm of {model.spec.display_name}: {exc}; "
            f"grad-attention, relevance and the attention-only methods work on it"
        ) from None


def gradcam_parts(
    model: LoadedModel,
    images: torch.Tensor,
    target_class: int | None = None,
    any_size: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One forward and one backward of a (batch, 3, H, W) batch: the logits (batch, classes),
    the targets (batch,), the last block's first norm's output ``A`` and the gradient of each
    image's target score with respect to it, both (batch, tokens, width), all detached. The model
    is left as it was: its hooks, its train/eval mode, no ``.grad`` on any parameter."""
    import torch

    from vitexplorer.core.explain.attribution import class_scores, resolve_targets
    from vitexplorer.core.models.capture import model_forward

    norm = target_layer(model)
    module = model.module
    kept: list[torch.Tensor] = []

    def keep(_: nn.Module, __: Any, output: torch.Tensor) -> None:
        kept.append(output)

    was_training = module.training
    module.eval()
    hook = norm.register_forward_hook(keep)
    try:
        with torch.inference_mode(False), torch.enable_grad():
            # an input that requires grad keeps the graph even when every parameter is frozen
            x = images.detach().to(model.device).clone().requires_grad_(True)
            logits = model_forward(model.adapter, x, any_size)
            if len(kept) != 1:
                raise ValueError(
                    f"gradcam saw the last block's norm run {len(kept)} times in one forward of "
                    f"{model.spec.display_name}, not once; grad-attention and relevance work"
                )
            targets = resolve_targets(logits, target_class)
            (gradient,) = torch.autograd.grad(class_scores(logits, targets), kept[0])
    finally:
        hook.remove()
        module.train(was_training)
    return logits.detach(), targets, kept[0].detach(), gradient.detach()


def gradcam_from(
    activations: torch.Tensor, gradients: torch.Tensor, prefix: int, grid: tuple[int, int]
) -> torch.Tensor:
    """``relu(sum_c mean_patches(dA_c) * A_c)`` per patch, (batch, rows, cols), from the norm's
    output and its gradient (batch, tokens, width); the first ``prefix`` tokens left out."""
    import torch

    patches, grads = activations[:, prefix:].double(), gradients[:, prefix:].double()
    weights = grads.mean(dim=1, keepdim=True)  # (batch, 1, width): each channel's weight
    cam = torch.relu((weights * patches).sum(dim=-1))
    return cam.reshape(cam.shape[0], *grid)


class _GradCAM(Attributor):
    def refusal(self, model: Any) -> str | None:
        """Why ``model`` has no last-block norm to weigh, in one line; None when it has."""
        try:
            target_layer(model)
        except ValueError as exc:
            return str(exc)
        return None

    def attribute(
        self,
        model: LoadedModel,
        batch: torch.Tensor,
        options: MethodOptions,
        grid: tuple[int, int] | None = None,
        progress: Progress | None = None,
    ) -> Attribution:
        import numpy as np

        chosen, any_size = grid_of(model, grid)
        _, targets, activations, gradients = gradcam_parts(
            model, batch, options.target_class, any_size
        )
        prefix = model.adapter.num_prefix_tokens
        rows, cols = chosen
        if activations.shape[1] - prefix != rows * cols:
            raise ValueError(
                f"the model ran {activations.shape[1] - prefix} patch tokens, not the "
                f"{rows}x{cols} grid asked"
            )
        cam = gradcam_from(activations, gradients, prefix, chosen)
        maps = np.ascontiguousarray(cam.float().cpu().numpy(), dtype=np.float32)
        return Attribution(maps=maps, targets=targets.cpu().numpy())


def _title(parameters: dict[str, Any], spec: Any, target: dict[str, Any] | None = None) -> str:
    return f"{for_class('gradcam', target)} · layer {spec.num_layers}'s first norm"


def _caption(parameters: dict[str, Any], spec: Any, target: dict[str, Any] | None = None) -> str:
    return for_class("gradcam", target)


GRADCAM = register(
    Method(
        name="gradcam",
        label="Grad-CAM",
        summary="the last block's normed tokens weighted by their mean gradient for --target-class",
        tip="Grad-CAM: the last block's input features, each channel weighted by its gradient "
        "for a class averaged over the patches",
        help_title="Grad-CAM",
        help="the features the last block reads (its first norm's output), each channel "
        "weighted by the gradient of the class's score with respect to it averaged over the "
        "patches, summed over the channels and the negative part dropped: the patches whose "
        "features push the class up. Needs a classifier.",
        paper="Selvaraju, Cogswell, Das, Vedantam, Parikh and Batra, Grad-CAM: Visual "
        "Explanations from Deep Networks via Gradient-based Localization, ICCV 2017 (the ViT "
        "target layer and token layout of pytorch-grad-cam)",
        year=2017,
        options=("target_class",),
        needs_model=True,
        needs_backward=True,
        class_specific=True,
        only_cls=True,
        requires_classifier=True,
        cost=2,
        explains="the class score, per patch of the last block's input",
        per_token=False,
        pixels=False,
        not_applied="Grad-CAM weighs the last block's input features for the class: no layer or "
        "head choice applies. Show Attention to pick one.",
        title=_title,
        caption=_caption,
        compute=_GradCAM(),
        order=13,
    )
)
