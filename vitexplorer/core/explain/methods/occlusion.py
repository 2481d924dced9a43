"""Occlusion (Zeiler and Fergus, ECCV 2014), one patch of the ViT's grid at a time: the map
value of a patch is the class's logit on the clean image minus its logit with that patch
occluded. Positive: the patch supported the class; negative: hiding it raised the class.

Two ways to occlude a patch: its pixels replaced by a baseline image's (black, the mean colour,
the image blurred), as Captum's ``Occlusion`` does with a patch-sized window and stride; or its
token replaced by zeros after the embedding (position embedding included), so that the prefix
tokens (CLS, distillation, registers) are never occluded. Many occluded copies share one
forward pass; the map costs one forward per patch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vitexplorer.core.explain.attribution import Attribution, Attributor
from vitexplorer.core.explain.method import (
    OCCLUDED,
    Method,
    MethodOptions,
    Progress,
    for_class,
    register,
)

if TYPE_CHECKING:
    import torch

    from vitexplorer.core.models.loading import LoadedModel

CHUNK_BYTES = 1 << 28  # the activation memory one forward of occluded copies may take (256 MiB)
MAX_CHUNK = 256  # and at most this many copies a forward (progress stays frequent)


class _Occlusion(Attributor):
    def key(self, options: MethodOptions, spec: Any) -> tuple:
        return (options.target_class, options.occlude, options.baseline)

    def attribute(
        self,
        model: LoadedModel,
        batch: torch.Tensor,
        options: MethodOptions,
        grid: tuple[int, int] | None = None,
        progress: Progress | None = None,
    ) -> Attribution:
        return occlusion_maps(
            model,
            batch,
            options.target_class,
            occlude=options.occlude,
            baseline=options.baseline,
            grid=grid,
            progress=progress,
        )


def occlusion_maps(
    model: LoadedModel,
    batch: torch.Tensor,
    target_class: Any = None,
    *,
    occlude: str = "pixels",
    baseline: str = "black",
    grid: tuple[int, int] | None = None,
    progress: Progress | None = None,
    chunk: int | None = None,
) -> Attribution:
    """Each image's drop in its target class's logit when each patch is occluded, (batch, rows,
    cols) float32, computed with ``chunk`` occluded copies a forward (default: as many as
    :data:`CHUNK_BYTES` allows). ``progress(done, total)`` follows each forward: ``total`` is
    batch x patches. The model is left as it was (mode, parameters, no gradients)."""
    import numpy as np
    import torch

    from vitexplorer.core.explain.attribution import grid_of, resolve_targets
    from vitexplorer.core.explain.baselines import baseline_images
    from vitexplorer.core.models.capture import model_forward
    from vitexplorer.core.models.families.family import UnsupportedModel

    if occlude not in OCCLUDED:
        raise ValueError(f"unknown occlusion {occlude!r}; use one of {', '.join(OCCLUDED)}")
    (rows, cols), any_size = grid_of(model, grid)
    if batch.ndim != 4:
        raise ValueError(f"a batch of images is (batch, 3, H, W), not {tuple(batch.shape)}")
    count, _, height, width = batch.shape
    if height % rows or width % cols:
        raise ValueError(f"a {height}x{width} image does not split into a {rows}x{cols} grid")
    adapter = model.adapter
    module = model.module
    was_training = module.training
    module.eval()
    try:
        with torch.inference_mode():
            images = batch.detach().to(model.device)
            if occlude == "token":
                try:
                    tokens = adapter.embed(images)
                except UnsupportedModel:
                    raise ValueError(
                        f"{model.spec.display_name}: occlusion of tokens needs the model's "
                        f"embedding, blocks and head, and vitexplorer knows only its attention; "
                        f"occlude pixels instead (--occlude pixels)"
                    ) from None
                clean = _from_tokens(adapter, tokens)
            else:
                clean = model_forward(adapter, images, any_size)
            if clean.shape[1] == 0:
                raise ValueError(
                    f"{model.spec.display_name} has no classifier, so there is no class score "
                    f"for occlusion to explain; attention and rollout work"
                )
            targets = resolve_targets(clean, target_class)
            clean_scores = clean.gather(1, targets[:, None])[:, 0]
            patches = rows * cols
            total = count * patches
            if chunk is None:
                chunk = _chunk_size(model, patches + adapter.num_prefix_tokens, images)
            pairs = torch.arange(total, device=images.device)
            drops = torch.empty(total, dtype=torch.float32, device=images.device)
            fill = images  # the pixels each copy takes inside its occluded patch
            if occlude == "pixels":
                fill = baseline_images(model, images, baseline)
            row_of = torch.arange(height, device=images.device) // (height // rows)
            col_of = torch.arange(width, device=images.device) // (width // cols)
            prefix = adapter.num_prefix_tokens
            for start in range(0, total, chunk):
                which = pairs[start : start + chunk]
                image, patch = which // patches, which % patches
                if occlude == "token":
                    copies = tokens[image].clone()
                    copies[torch.arange(len(which)), prefix + patch] = 0.0
                    logits = _from_tokens(adapter, copies)
                else:
                    row, col = patch // cols, patch % cols
                    inside = (row_of[None, :, None] == row[:, None, None]) & (
                        col_of[None, None, :] == col[:, None, None]
                    )
                    copies = torch.where(inside[:, None], fill[image], images[image])
                    logits = model_forward(adapter, copies, any_size)
                scores = logits.gather(1, targets[image][:, None])[:, 0]
                drops[start : start + len(which)] = (clean_scores[image] - scores).float()
                if progress is not None:
                    progress(min(start + chunk, total), total)
    finally:
        module.train(was_training)
    maps = drops.reshape(count, rows, cols).cpu().numpy().astype(np.float32)
    return Attribution(maps, targets.cpu().numpy().astype(np.int64))


def _from_tokens(adapter: Any, tokens: torch.Tensor) -> torch.Tensor:
    """The logits from the embedding's tokens on: blocks, final norm, pool, classifier (as
    :meth:`ViTAdapter.forward_parts` after its embedding)."""
    for block in adapter.blocks():
        tokens = block(tokens)
    features = adapter.pool(adapter.final_norm()(tokens))
    head = adapter.get_classifier()
    return features.new_zeros((features.shape[0], 0)) if head is None else head(features)


def _chunk_size(model: LoadedModel, tokens: int, images: torch.Tensor) -> int:
    """How many occluded copies one forward takes: the activations of one copy (its widest
    layer's, its attention scores and its input) against :data:`CHUNK_BYTES`."""
    linear = [max(p.shape) for p in model.module.parameters() if p.ndim == 2]
    widest = max(linear, default=1024)
    heads = max(1, int(model.spec.num_heads))
    element = images.element_size()
    per_copy = element * (tokens * (3 * widest + 2 * heads * tokens) + 2 * images[0].numel())
    return max(1, min(MAX_CHUNK, CHUNK_BYTES // max(1, per_copy)))


def _words(parameters: dict[str, Any]) -> str:
    if parameters.get("occlude", "pixels") == "token":
        return "tokens zeroed"
    return f"pixels → {parameters.get('baseline', 'black')}"


def _title(parameters: dict[str, Any], spec: Any, target: dict[str, Any] | None = None) -> str:
    return f"{for_class('occlusion', target)} · {_words(parameters)} · logit drop"


def _caption(parameters: dict[str, Any], spec: Any, target: dict[str, Any] | None = None) -> str:
    return f"{for_class('occlusion', target)} · {_words(parameters)}"


OCCLUSION = register(
    Method(
        name="occlusion",
        label="Occlusion",
        summary="the drop in --target-class's logit when each patch is occluded",
        tip="Occlusion: how much the class's logit drops when each patch is hidden",
        help_title="Occlusion",
        help="each patch hidden in turn, one forward pass per patch: its pixels replaced by the "
        "baseline's (a black image, the mean colour or the image blurred) or its token replaced "
        "by zeros after the embedding (the CLS, distillation and register tokens are never "
        "hidden). A patch's value is the class's logit (not its probability) on the whole image "
        "minus its logit with the patch hidden: positive, the patch supported the class; "
        "negative, hiding it raised the class. Needs a classifier; the slowest method, one "
        "pass per patch.",
        paper="Zeiler and Fergus, Visualizing and Understanding Convolutional Networks, ECCV "
        "2014 (per patch of the ViT's grid)",
        year=2014,
        options=("target_class", "occlude", "baseline"),
        needs_model=True,
        class_specific=True,
        signed=True,
        only_cls=True,
        requires_classifier=True,
        cost=1,
        cost_per="patches",
        explains="the class's logit, per patch (its drop when the patch is hidden)",
        per_token=False,
        pixels=False,
        not_applied="Occlusion hides whole patches and reads the class's logit: no layer or head "
        "choice applies. Show Attention to pick one.",
        title=_title,
        caption=_caption,
        compute=_Occlusion(),
        order=30,
    )
)
