"""One dispatcher and one cache for every method of the catalogue.

:func:`explanation_map` computes any method's map for the command line and the checks: from a
stored analysis when the method reads only the attention, else from the model (a captured
forward, or a backward pass). :class:`MapCache` holds what the explorer computed per image,
method and option: the rollout's layer matrices, the relevance matrix R the worker sent, so a
click on another token costs a row, whatever the method. Every method answers with a
(rows, cols) float32 map over the patch grid.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from vitexplorer.core.explain.method import (
    MethodOptions,
    Progress,
    check_method,
    get,
)
from vitexplorer.core.models.feed import CROP, Feed

if TYPE_CHECKING:
    import torch

    from vitexplorer.core.explain.analysis import ImageAnalysis
    from vitexplorer.core.explain.attribution import Attribution
    from vitexplorer.core.models.loading import LoadedModel

Explainer = Callable[["LoadedModel", "torch.Tensor"], np.ndarray]
"""Computes a map for a model and a (1, 3, H, W) batch from scratch."""


def explanation_map(
    method: str,
    options: MethodOptions,
    *,
    analysis: ImageAnalysis | None = None,
    model: LoadedModel | None = None,
    batch: torch.Tensor | None = None,
    grid: tuple[int, int] | None = None,
    progress: Progress | None = None,
) -> np.ndarray:
    """The map of ``method`` over the patch grid, (rows, cols) float32.

    A method that reads the attention uses a stored ``analysis`` when given (no torch call),
    else runs one captured forward of ``model`` on ``batch``. A method that needs the model
    (relevance) needs ``model`` and ``batch`` (a (1, 3, H, W) preprocessed image). ``grid`` is
    the patch grid of a batch made at the image's own aspect ratio (default: the analysis's
    grid, else the model's); another grid than the model's runs the any-size forward.
    """
    described = get(method)
    compute = described.computation
    if analysis is not None and not described.needs_model:
        return stored_map(method, options, analysis.attention, analysis.spec)
    if model is None or batch is None:
        needs = "a model and a batch" if described.needs_model else "an analysis or a model"
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
    refuse_model(method, spec, model)
    if described.needs_model:
        return compute.from_model(model, batch, options, grid, progress)
    from vitexplorer.core.models.capture import forward_with_attention

    _, captured = forward_with_attention(model.module, batch.to(model.device), any_size)
    return compute.from_attention(captured[0].float().cpu().numpy(), spec, options)


def stored_map(method: str, options: MethodOptions, attention: Any, spec: Any) -> np.ndarray:
    """The map of ``method``, a method that reads only the attention, from ``attention`` kept
    for the model ``spec`` (an analysis's; a time-lapse frame's, which keeps the CLS token's
    rows), its options checked against ``spec`` first."""
    described = get(method)
    if described.needs_model:
        raise ValueError(f"the {method} method needs a model and a batch")
    options.check(method, spec)
    return described.computation.from_attention(attention, spec, options)


def model_matrix(
    method: str,
    model: LoadedModel,
    batch: torch.Tensor,
    options: MethodOptions,
    grid: tuple[int, int] | None = None,
    progress: Progress | None = None,
) -> np.ndarray:
    """The explorer's job for a method that needs the model: its (tokens, tokens) matrix, row
    i token i's map (prefix tokens included), float32; for a method that explains only the
    class token (``per_token`` False), its (rows, cols) map."""
    described = get(method)
    spec = model.spec if grid is None else replace(model.spec, grid_shape=grid)
    options.check(method, spec)
    refuse_model(method, spec, model)
    matrix = described.computation.matrix(model, batch, options, grid, progress)
    return np.asarray(matrix, dtype=np.float32)


def attribute(
    method: str,
    model: LoadedModel,
    batch: torch.Tensor,
    options: MethodOptions,
    grid: tuple[int, int] | None = None,
    progress: Progress | None = None,
) -> Attribution:
    """The maps of a method that explains a class score (an :class:`Attributor`'s) for a
    (batch, 3, H, W) preprocessed batch, with the class each explains and, for a method that
    attributes to pixels, the pixel maps. ``grid`` as for :func:`explanation_map`."""
    from vitexplorer.core.explain.attribution import Attributor

    described = get(method)
    compute = described.computation
    if not isinstance(compute, Attributor):
        raise ValueError(f"the {method} method does not explain a batch; use explanation_map")
    if batch.ndim != 4:
        raise ValueError(f"a batch of images is (batch, 3, H, W), not {tuple(batch.shape)}")
    spec = model.spec if grid is None else replace(model.spec, grid_shape=(grid[0], grid[1]))
    options.check(method, spec)
    refuse_model(method, spec, model)
    return compute.attribute(model, batch, options, grid, progress)


def refuse_model(method: str, spec: Any, model: LoadedModel) -> None:
    """A ValueError in one line when ``method`` cannot run on ``model`` (its computation's
    :meth:`~vitexplorer.core.explain.method.Computation.refusal`)."""
    reason = get(method).applies(spec, model)
    if reason:
        raise ValueError(reason)


def method_explainer(method: str, options: MethodOptions, feed: Feed = CROP) -> Explainer:
    """A function ``(model, batch) -> map`` for ``method``, checked once here.

    The checks in :mod:`vitexplorer.core.evaluate` take this rather than a map bound to one
    model, because the sanity check explains randomised copies of the model with the same
    method. With ``feed=WHOLE`` each batch is an image preprocessed at its own aspect ratio:
    the map has the grid the batch's size splits into, computed with the any-size forward.
    """
    check_method(method)

    def explain(model: LoadedModel, batch: torch.Tensor) -> np.ndarray:
        from vitexplorer.core.models.preprocessing import input_grid

        grid = input_grid(model.spec, *batch.shape[-2:]) if feed.whole else None
        return explanation_map(method, options, model=model, batch=batch, grid=grid)

    return explain


def image_logits(model: LoadedModel, batch: torch.Tensor, any_size: bool = False) -> np.ndarray:
    """The plain forward's logits for one (1, 3, H, W) image, (classes,) float32; with
    ``any_size`` the family's any-size forward (an image at its own aspect ratio)."""
    import torch

    from vitexplorer.core.models.capture import model_forward

    with torch.inference_mode():
        images = batch.to(model.device)
        return model_forward(model.module, images, any_size)[0].float().cpu().numpy()


def hold_target(method: str, options: MethodOptions, logits: np.ndarray) -> MethodOptions:
    """``options`` with the class a class-specific method explains fixed: the given
    ``target_class``, else the class ``logits`` predict (the first maximum, as
    ``torch.argmax`` picks it).

    An explainer built from the result explains that class for every model it is handed, so a
    check that explains changed copies of the model (the sanity check's randomised ones) does
    not mix a change of class into the change of weights. Other methods are class-agnostic:
    their options come back as they are."""
    if not get(method).class_specific or options.target_class is not None:
        return options
    return replace(options, target_class=int(np.argmax(np.asarray(logits))))


def model_explainer(
    model: LoadedModel, method: str, options: MethodOptions
) -> Callable[[torch.Tensor], np.ndarray]:
    """A function ``batch -> map`` for one model, its options checked against it here."""
    options.check(method, model.spec)
    explain = method_explainer(method, options)
    return lambda batch: explain(model, batch)


# --- the explorer's cache ------------------------------------------------------------------------


@dataclass(frozen=True)
class MapJob:
    """A map the worker computes for one image: a method that needs the model, its options
    with the class resolved (what the explorer keeps the matrix by)."""

    method: str
    options: MethodOptions


def resolved(method: str, options: MethodOptions, analysis: ImageAnalysis) -> MethodOptions:
    """``options`` with a class-specific method's class fixed to the one it explains for this
    image: the chosen one, else the predicted one."""
    if get(method).class_specific and options.target_class is None and analysis.predictions:
        return replace(options, target_class=analysis.predictions[0].index)
    return options


def map_job(method: str, options: MethodOptions, analysis: ImageAnalysis) -> MapJob | None:
    """The worker's job for ``method`` on this image (the options it reads, the class
    resolved), or None when the method reads only the stored attention."""
    described = get(method)
    if not described.needs_model:
        return None
    options = resolved(method, options, analysis)
    return MapJob(method, MethodOptions(**{n: getattr(options, n) for n in described.options}))


def caption(method: str, options: MethodOptions, analysis: ImageAnalysis) -> str:
    """A few words for a view's title: the method and its options (the class, for a
    class-specific method), numbers from 1."""
    described = get(method)
    chosen = resolved(method, options, analysis)
    target = None
    if described.class_specific and analysis.predictions:
        index = chosen.target_for(analysis.predictions[0].index)
        predicted = index == analysis.predictions[0].index
        target = {"name": analysis.spec.class_names[index], "predicted": predicted}
    return described.make_caption(chosen.as_dict(), analysis.spec, target)


class MapCache:
    """What the explorer computed per image, method and option; a few entries per kind at most.

    A method that reads the attention is prepared here from the stored analysis (rollout's layer
    matrices); a method that needs the model is prepared by the worker (:class:`MapJob`) and
    stored with :meth:`store`. A map is then the clicked token's row of what is prepared."""

    def __init__(self, keep: int = 4) -> None:
        self.keep = keep
        self._prepared: OrderedDict[tuple, Any] = OrderedDict()  # attention-read methods
        self._wholes: OrderedDict[tuple, np.ndarray] = OrderedDict()  # whole (N, N) matrices
        self._computed: dict[tuple, np.ndarray] = {}  # the worker's matrices

    def map(
        self, key: str, analysis: ImageAnalysis, method: str, options: MethodOptions
    ) -> np.ndarray | None:
        """What the overlay shows: ``options.token``'s map; None while the worker computes it."""
        described = get(method)
        prepared = self.prepared(key, analysis, method, options)
        if prepared is None:
            return None
        chosen = resolved(method, options, analysis)
        return described.computation.token_map(prepared, chosen, analysis.spec)

    def prepared(
        self, key: str, analysis: ImageAnalysis, method: str, options: MethodOptions
    ) -> Any:
        described = get(method)
        if described.needs_model:
            job = map_job(method, options, analysis)
            return self._computed.get((key, job))
        compute = described.computation
        cache_key = (key, id(analysis), method, compute.key(options, analysis.spec))
        if not cache_key[-1]:
            return compute.prepare(analysis.attention, analysis.spec, options)
        prepared = self._prepared.get(cache_key)
        if prepared is None:
            prepared = compute.prepare(analysis.attention, analysis.spec, options)
            self._prepared[cache_key] = prepared
            while len(self._prepared) > self.keep:
                self._prepared.popitem(last=False)
        else:
            self._prepared.move_to_end(cache_key)
        return prepared

    def whole(
        self, key: str, analysis: ImageAnalysis, method: str, options: MethodOptions
    ) -> np.ndarray:
        """The whole (tokens, tokens) matrix of a method that has one (rollout): row i is
        token i's map (prefix tokens included). Computed once per option."""
        compute = get(method).computation
        cache_key = (key, id(analysis), method, compute.key(options, analysis.spec), "whole")
        matrix = self._wholes.get(cache_key)
        if matrix is None:
            matrix = compute.whole(self.prepared(key, analysis, method, options))
            self._wholes[cache_key] = matrix
            while len(self._wholes) > self.keep:
                self._wholes.popitem(last=False)
        else:
            self._wholes.move_to_end(cache_key)
        return matrix

    def store(self, key: str, job: MapJob, matrix: np.ndarray) -> None:
        """The worker's matrix for ``job`` on image ``key``: row i is token i's map."""
        self._computed[(key, job)] = np.asarray(matrix, dtype=np.float32)

    def forget(self, key: str | None = None) -> None:
        """Drop what was computed for one image, or for all (the model changed)."""
        for store in (self._prepared, self._wholes, self._computed):
            for cache_key in [k for k in store if key is None or k[0] == key]:
                del store[cache_key]
