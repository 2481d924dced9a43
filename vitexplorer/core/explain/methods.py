"""One way to ask for any explanation map: a method name and its options.

``attention`` is one token's raw attention in one layer and head (or the mean of the heads),
``rollout`` is attention rollout (Abnar and Zuidema, 2020) for one token, and ``relevance`` is the
class-specific relevance of Chefer et al. (2021) for the CLS token. Every method answers with a
(rows, cols) float32 map over the patch grid, so the views, the command line and the checks in
:mod:`checks` treat them alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch

from vitexplorer.core.explain.analysis import ImageAnalysis
from vitexplorer.core.explain.relevance import relevance_map
from vitexplorer.core.explain.rollout import HEAD_FUSIONS, rollout_map
from vitexplorer.core.explain.tokens import attention_map
from vitexplorer.core.models.capture import forward_with_attention, model_forward
from vitexplorer.core.models.loading import LoadedModel, ModelSpec
from vitexplorer.core.models.preprocessing import input_grid
from vitexplorer.core.render.numbering import shown

METHODS: tuple[str, ...] = ("attention", "rollout", "relevance")

# The options each method reads; a method card records only these.
METHOD_OPTIONS: dict[str, tuple[str, ...]] = {
    "attention": ("layer", "head", "token"),
    "rollout": ("token", "head_fusion", "discard_ratio", "start_layer"),
    "relevance": ("target_class",),
}

Explainer = Callable[[LoadedModel, torch.Tensor], np.ndarray]
"""Computes a map for a model and a (1, 3, H, W) batch from scratch."""


def check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    return method


def _whole(name: str, value: Any, minimum: int | None = None, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be a whole number, not {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {value}")


@dataclass(frozen=True)
class MethodOptions:
    """The settings of every method; each method reads its own (see ``METHOD_OPTIONS``).

    Held as the code indexes the arrays, 0-based: ``layer`` 0 is the first layer and -1 the
    last; ``head=None`` averages the heads; ``token`` is the query token (0 is the first
    prefix token, CLS); ``target_class=None`` explains the predicted class. People give and
    read layers, heads and tokens from 1: the command line converts what is typed
    (:func:`vitexplorer.core.render.numbering.index_of`) and
    :func:`~vitexplorer.core.explain.provenance. method_card` writes them 1-based; the messages
    below count from 1 too.
    """

    layer: int = -1
    head: int | None = None
    token: int = 0
    head_fusion: str = "mean"
    discard_ratio: float = 0.0
    start_layer: int = 0
    target_class: int | None = None

    def __post_init__(self) -> None:
        _whole("layer", self.layer)
        _whole("head", self.head, minimum=0, optional=True)
        _whole("token", self.token, minimum=0)
        _whole("start layer", self.start_layer, minimum=0)
        _whole("target class", self.target_class, minimum=0, optional=True)
        if self.head_fusion not in HEAD_FUSIONS:
            raise ValueError(
                f"unknown head fusion {self.head_fusion!r}; use one of {', '.join(HEAD_FUSIONS)}"
            )
        ratio = self.discard_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float, np.floating)):
            raise ValueError(f"discard ratio must be a number, not {ratio!r}")
        if not 0.0 <= ratio < 1.0:  # also refuses NaN
            raise ValueError(f"discard ratio {ratio} must be at least 0 and below 1")

    def check(self, method: str, spec: ModelSpec) -> None:
        """Raise ValueError when an option ``method`` reads does not fit the model."""
        check_method(method)
        layers, heads, tokens = spec.num_layers, spec.num_heads, spec.num_tokens
        if method == "attention":
            if not -layers <= self.layer < layers:
                raise ValueError(
                    f"layer {shown(self.layer)} does not exist: the model has layers 1 to "
                    f"{layers} (-1 is the last)"
                )
            if self.head is not None and self.head >= heads:
                raise ValueError(
                    f"head {shown(self.head)} does not exist: the model has heads 1 to {heads}"
                )
        if method in ("attention", "rollout") and self.token >= tokens:
            raise ValueError(
                f"token {shown(self.token)} does not exist: the model has tokens 1 to {tokens}"
            )
        if method == "rollout" and self.start_layer >= layers:
            raise ValueError(
                f"start layer {shown(self.start_layer)} does not exist: the model has layers "
                f"1 to {layers}"
            )
        if method == "relevance":
            if not spec.has_classifier:
                raise ValueError(
                    f"{spec.display_name} has no classifier, so there is no class score for "
                    f"relevance to explain; attention and rollout work"
                )
            if self.token != 0:
                raise ValueError(
                    f"relevance explains the CLS token (token 1) only, not token "
                    f"{shown(self.token)}"
                )
            if self.target_class is not None and self.target_class >= spec.num_classes:
                raise ValueError(
                    f"target class {self.target_class} is outside 0..{spec.num_classes - 1}"
                )

    def as_dict(self, method: str | None = None) -> dict[str, Any]:
        """JSON-ready options for a method card; with ``method``, only those it reads. As the
        code holds them (0-based): ``method_card`` writes layers, heads and tokens from 1."""
        options = asdict(self)
        if method is None:
            return options
        return {key: options[key] for key in METHOD_OPTIONS[check_method(method)]}


def explanation_map(
    method: str,
    options: MethodOptions,
    *,
    analysis: ImageAnalysis | None = None,
    model: LoadedModel | None = None,
    batch: torch.Tensor | None = None,
    grid: tuple[int, int] | None = None,
) -> np.ndarray:
    """The map of ``method`` over the patch grid, (rows, cols) float32.

    ``attention`` and ``rollout`` read a stored ``analysis`` when given (no torch call), else
    run one captured forward of ``model`` on ``batch``. ``relevance`` needs ``model`` and
    ``batch`` (a (1, 3, H, W) preprocessed image): it takes a backward pass. ``grid`` is the
    patch grid of a batch made at the image's own aspect ratio (default: the analysis's grid,
    else the model's); another grid than the model's runs the any-size forward.
    """
    check_method(method)
    if analysis is not None and method != "relevance":
        options.check(method, analysis.spec)
        attention, spec = analysis.attention, analysis.spec
    else:
        if model is None or batch is None:
            needs = "a model and a batch" if method == "relevance" else "an analysis or a model"
            raise ValueError(f"the {method} method needs {needs}")
        if batch.ndim != 4 or batch.shape[0] != 1:
            raise ValueError(
                f"one image is explained at a time, a (1, 3, H, W) batch, not {tuple(batch.shape)}"
            )
        spec = model.spec
        if grid is None and analysis is not None:
            # an image analysed at its own aspect ratio: the batch has the analysis's grid
            grid = analysis.spec.grid
        if grid is not None:
            grid = (int(grid[0]), int(grid[1]))
        any_size = grid is not None and grid != spec.grid
        if any_size:
            spec = replace(spec, grid_shape=grid)
        options.check(method, spec)
        if method == "relevance":
            return relevance_map(model, batch, options.target_class, grid).map
        _, captured = forward_with_attention(model.module, batch.to(model.device), any_size)
        attention = captured[0].float().cpu().numpy()
    grid, prefix = spec.grid, spec.num_prefix_tokens
    if method == "attention":
        return attention_map(attention, options.layer, options.head, options.token, grid, prefix)
    return rollout_map(
        attention,
        options.token,
        grid,
        prefix,
        options.head_fusion,
        options.discard_ratio,
        options.start_layer,
    )


def method_explainer(method: str, options: MethodOptions, keep_aspect: bool = False) -> Explainer:
    """A function ``(model, batch) -> map`` for ``method``, checked once here.

    The checks in :mod:`checks` take this rather than a map bound to one model, because the
    sanity check explains randomised copies of the model with the same method. With
    ``keep_aspect`` each batch is an image preprocessed at its own aspect ratio: the map has
    the grid the batch's size splits into, computed with the any-size forward.
    """
    check_method(method)

    def explain(model: LoadedModel, batch: torch.Tensor) -> np.ndarray:
        grid = input_grid(model.spec, *batch.shape[-2:]) if keep_aspect else None
        return explanation_map(method, options, model=model, batch=batch, grid=grid)

    return explain


@torch.inference_mode()
def image_logits(model: LoadedModel, batch: torch.Tensor, any_size: bool = False) -> np.ndarray:
    """The plain forward's logits for one (1, 3, H, W) image, (classes,) float32; with
    ``any_size`` the family's any-size forward (an image at its own aspect ratio)."""
    images = batch.to(model.device)
    return model_forward(model.module, images, any_size)[0].float().cpu().numpy()


def hold_target(method: str, options: MethodOptions, logits: np.ndarray) -> MethodOptions:
    """``options`` with the class relevance explains fixed: the given ``target_class``, else
    the class ``logits`` predict (the first maximum, as ``torch.argmax`` picks it).

    An explainer built from the result explains that class for every model it is handed, so a
    check that explains changed copies of the model (the sanity check's randomised ones) does
    not mix a change of class into the change of weights. Other methods are class-agnostic:
    their options come back as they are."""
    if check_method(method) != "relevance" or options.target_class is not None:
        return options
    return replace(options, target_class=int(np.argmax(np.asarray(logits))))


def model_explainer(
    model: LoadedModel, method: str, options: MethodOptions
) -> Callable[[torch.Tensor], np.ndarray]:
    """A function ``batch -> map`` for one model, its options checked against it here."""
    options.check(method, model.spec)
    explain = method_explainer(method, options)
    return lambda batch: explain(model, batch)
