"""LeGrad (Bousselham, Boggust, Chaybouti, Strobelt and Kuehne, "LeGrad: An Explainability
Method for Vision Transformers via Feature Formation Sensitivity", 2024).

Each layer ``l`` gets its own class score, the "logit lens" of the paper: layer ``l``'s output
tokens carried through the model's final norm, its pooling and its classifier,
``s_l = head(pool(norm(z_l)))[class]``. Its gradient with respect to layer ``l``'s own attention
map, ``dA_l = d s_l / d A_l`` (heads, tokens, tokens), says how the class score read at that
layer would move if the layer mixed its tokens otherwise. LeGrad keeps the positive part and
averages it over the heads and over every query row (all tokens, prefix tokens included, as the
reference ``legrad-torch`` does: ``grad.mean(dim=1).mean(dim=1)``), reads the patch columns
(every prefix column dropped), averages the layers from ``start_layer`` (default: all, the
paper's choice; ``legrad-torch``'s ``LeWrapper`` starts at the second last layer by default) and
min-max normalises the result per image, as the paper and its code do: the map runs from 0 to 1.

A model without prefix tokens (one that pools its tokens) is handled the same way: every token
is a query row and a patch column.

Only the gradient of ``s_l`` with respect to ``A_l`` is wanted, not the sum over later layers'
scores (``s_l'`` for ``l' > l`` depends on ``A_l`` too), so each averaged layer has its own
backward. Each runs only from layer ``l``'s score back to layer ``l``'s attention (through the
classifier, the pooling, the final norm and the rest of block ``l``), so together they cost
about one backward of the whole model beside the one forward.
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


def legrad_layers(
    model: LoadedModel,
    images: torch.Tensor,
    target_class: int | None = None,
    start_layer: int = 0,
    progress: Progress | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One forward and one backward per averaged layer of a (batch, 3, H, W) batch.

    Returns the logits (batch, classes), the targets (batch,) and each averaged layer's
    ``mean_heads_rows(relu(d s_l / d A_l))`` over all tokens, (layers, batch, tokens), all
    detached. The model is left as it was: its forwards, its train/eval mode, no ``.grad``."""
    import torch

    from vitexplorer.core.explain.attribution import class_scores, resolve_targets
    from vitexplorer.core.models.capture import Sink, capturing_attention

    class GraphMaps(Sink):  # each layer's softmax output stays its own tensor in the graph
        def __init__(self) -> None:
            self.maps: list[torch.Tensor] = []

        def softmax(self, scores: torch.Tensor) -> torch.Tensor:
            self.maps.append(torch.softmax(scores, dim=-1))
            return self.maps[-1]

    adapter = model.adapter
    module = model.module
    blocks, final_norm, head = layer_parts(model)
    if head is None:
        raise ValueError(
            f"{model.spec.display_name} has no classifier, so there is no class score for "
            f"legrad to explain; attention and rollout work"
        )
    layers = len(blocks)
    start = start_layer + layers if start_layer < 0 else start_layer
    if not 0 <= start < layers:
        raise ValueError(f"start layer {start_layer + 1} does not exist: the model has {layers}")

    def score(tokens: torch.Tensor) -> torch.Tensor:
        return head(adapter.pool(final_norm(tokens)))

    was_training = module.training
    module.eval()
    kept = GraphMaps()
    try:
        with (
            torch.inference_mode(False),
            torch.enable_grad(),
            capturing_attention(adapter, kept),
        ):
            # an input that requires grad keeps the maps in the graph even when every parameter
            # is frozen; clone() outside inference mode also accepts an inference-mode tensor
            x = images.detach().to(model.device).clone().requires_grad_(True)
            x = adapter.embed(x)
            outputs = []
            for block in blocks:
                x = block(x)
                outputs.append(x)
            if len(kept.maps) != layers:
                raise ValueError(
                    f"legrad found {len(kept.maps)} attention maps in {layers} blocks of "
                    f"{type(module).__name__}; relevance and the attention-only methods work"
                )
            logits = score(outputs[-1])
            targets = resolve_targets(logits, target_class)
            rows = []
            total = layers - start
            for done, layer in enumerate(range(start, layers), start=1):
                layer_logits = logits if layer == layers - 1 else score(outputs[layer])
                (gradient,) = torch.autograd.grad(
                    class_scores(layer_logits, targets),
                    kept.maps[layer],
                    retain_graph=layer < layers - 1,
                )
                # positive part, mean over heads, then over the query rows: (batch, tokens)
                rows.append(gradient.clamp(min=0).mean(dim=1).mean(dim=1).detach())
                del gradient
                if progress is not None:
                    progress(done, total)
    finally:
        module.train(was_training)
        kept.maps.clear()
    return logits.detach(), targets, torch.stack(rows)


def min_max(maps: Any) -> Any:
    """Each (rows, cols) map of a (batch, rows, cols) array scaled to run from 0 to 1 (LeGrad's
    normalisation); a constant map becomes zeros."""
    import numpy as np

    flat = maps.reshape(maps.shape[0], -1).astype(np.float64)
    low = flat.min(axis=1, keepdims=True)
    span = flat.max(axis=1, keepdims=True) - low
    scaled = np.divide(flat - low, span, out=np.zeros_like(flat), where=span > 0)
    return scaled.reshape(maps.shape).astype(np.float32)


def layer_parts(model: LoadedModel) -> tuple[list[nn.Module], nn.Module, nn.Module | None]:
    """The blocks, the final norm and the classifier LeGrad reads each layer's score through;
    a one-line ValueError naming what works instead where the family does not describe them."""
    adapter = model.adapter
    try:
        return adapter.blocks(), adapter.final_norm(), adapter.get_classifier()
    except ValueError as exc:  # UnsupportedModel is one
        raise ValueError(
            f"legrad needs each layer's tokens and the classifier: {exc}; grad-attention, "
            f"relevance and the attention-only methods work on it"
        ) from None


class _LeGrad(Attributor):
    def refusal(self, model: Any) -> str | None:
        """Why ``model``'s layers cannot be read through its head, in one line; None when they
        can."""
        try:
            layer_parts(model)
        except ValueError as exc:
            return str(exc)
        return None

    def key(self, options: MethodOptions, spec: Any) -> tuple:
        return (options.target_class, options.start_layer)

    def attribute(
        self,
        model: LoadedModel,
        batch: torch.Tensor,
        options: MethodOptions,
        grid: tuple[int, int] | None = None,
        progress: Progress | None = None,
    ) -> Attribution:
        import numpy as np

        chosen, _ = grid_of(model, grid)
        _, targets, layers = legrad_layers(
            model, batch, options.target_class, options.start_layer, progress
        )
        prefix = model.adapter.num_prefix_tokens
        patches = layers.mean(dim=0)[:, prefix:].double().cpu().numpy()  # (batch, patches)
        rows, cols = chosen
        if patches.shape[1] != rows * cols:
            raise ValueError(
                f"the model ran {patches.shape[1]} patch tokens, not the {rows}x{cols} grid asked"
            )
        maps = min_max(patches.reshape(-1, rows, cols))
        return Attribution(maps=np.ascontiguousarray(maps), targets=targets.cpu().numpy())


def _title(parameters: dict[str, Any], spec: Any, target: dict[str, Any] | None = None) -> str:
    start = int(parameters.get("start_layer", 0))
    start = start + spec.num_layers if start < 0 else start
    layers = "every layer" if start == 0 else f"layers {start + 1} to {spec.num_layers}"
    return f"{for_class('legrad', target)} · {layers}"


def _caption(parameters: dict[str, Any], spec: Any, target: dict[str, Any] | None = None) -> str:
    return for_class("legrad", target)


LEGRAD = register(
    Method(
        name="legrad",
        label="LeGrad",
        summary="each layer's attention gradient for --target-class read at that layer, averaged",
        tip="LeGrad: how each layer's class score, read from that layer's tokens, depends on "
        "that layer's attention, averaged over the layers",
        help_title="LeGrad",
        help="for each layer, the class's score read from that layer's tokens (through the "
        "final norm, the pooling and the classifier) and its gradient with respect to that "
        "layer's attention; the positive part is averaged over the heads and the query tokens, "
        "then over the layers, and scaled from 0 to 1: the patches whose attention each layer "
        "would have to give more of to raise the class. Needs a classifier.",
        paper="Bousselham, Boggust, Chaybouti, Strobelt and Kuehne, LeGrad: An Explainability "
        "Method for Vision Transformers via Feature Formation Sensitivity, 2024",
        year=2024,
        options=("target_class", "start_layer"),
        needs_model=True,
        needs_backward=True,
        class_specific=True,
        only_cls=True,
        requires_classifier=True,
        cost=2,
        explains="the class score read at every layer, per patch",
        per_token=False,
        pixels=False,
        not_applied="LeGrad averages every layer's heads from the start layer: the view's layer "
        "and head do not apply. Show Attention to pick one.",
        title=_title,
        caption=_caption,
        compute=_LeGrad(),
        order=12,
    )
)
