"""The map the explorer draws for the chosen method, without Qt and without torch.

Attention is sliced from the stored analysis; rollout propagates one row vector through layer
matrices cached per image and option (so a click costs about a millisecond even on ViT-L/16 at
384 px); relevance needs a backward pass, which the model worker runs: its whole relevance
matrix R is kept here by image and class once it arrives, and the map of the selected token is
its row, so relevance follows the clicked token as attention and rollout do.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from vitexplorer.core.explain.rollout import (
    HEAD_FUSIONS,
    rollout_layers,
    rollout_matrix,
    rollout_row,
)
from vitexplorer.core.explain.tokens import attention_map, token_relevance

if TYPE_CHECKING:
    from vitexplorer.core.explain.analysis import ImageAnalysis
    from vitexplorer.core.explorer.session import Selection

METHOD_LABELS = {"attention": "Attention", "rollout": "Rollout", "relevance": "Relevance"}


@dataclass(frozen=True)
class MethodChoice:
    """A method and its settings, as the explorer's method bar holds them."""

    method: str = "attention"
    head_fusion: str = "mean"
    discard_ratio: float = 0.0
    start_layer: int = 0
    target: int | None = None  # relevance: the class to explain; None is the predicted class

    def __post_init__(self) -> None:
        if self.method not in METHOD_LABELS:
            raise ValueError(f"unknown method {self.method!r}")
        if self.head_fusion not in HEAD_FUSIONS:
            raise ValueError(f"unknown head fusion {self.head_fusion!r}")
        if not 0.0 <= self.discard_ratio < 1.0:
            raise ValueError(f"discard ratio {self.discard_ratio} must be in [0, 1)")

    def target_for(self, analysis: ImageAnalysis) -> int:
        """The class relevance explains for this image."""
        return analysis.predictions[0].index if self.target is None else self.target

    def parameters(self, selection: Selection, analysis: ImageAnalysis) -> dict[str, Any]:
        """The settings that made the map, for a method card (the same names as the CLI's),
        0-based as the code holds them: the card writes them from 1."""
        if self.method == "attention":
            return {"layer": selection.layer, "head": selection.head, "token": selection.token}
        if self.method == "rollout":
            return {
                "token": selection.token,
                "head_fusion": self.head_fusion,
                "discard_ratio": self.discard_ratio,
                "start_layer": self.start_layer,
            }
        return {"target_class": self.target_for(analysis), "token": selection.token}

    def describe(self, selection: Selection, analysis: ImageAnalysis) -> str:
        """A few words for the view's title."""
        spec = analysis.spec
        if self.method == "attention":
            head = "mean of heads" if selection.head is None else f"head {selection.head + 1}"
            return f"attention · layer {selection.layer + 1}, {head}"
        if self.method == "rollout":
            words = [f"{self.head_fusion} of heads"]
            if self.discard_ratio:
                words.append(f"{100 * self.discard_ratio:.0f}% discarded")
            if self.start_layer:
                words.append(f"from layer {self.start_layer + 1}")
            return f"rollout · {', '.join(words)}"
        target = self.target_for(analysis)
        predicted = " (predicted)" if target == analysis.predictions[0].index else ""
        return f"relevance for {spec.class_names[target]!r}{predicted}"


class MapCache:
    """Rollout layer matrices and relevance maps, by image; a few images' worth at most."""

    def __init__(self, keep: int = 4) -> None:
        self.keep = keep
        self._layers: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._matrices: OrderedDict[tuple, np.ndarray] = OrderedDict()  # whole rollouts
        self._relevance: dict[tuple[str, int], np.ndarray] = {}  # R, (tokens, tokens)

    def rollout(
        self, key: str, analysis: ImageAnalysis, choice: MethodChoice, token: int
    ) -> np.ndarray:
        """The rollout map of ``token``; the layer matrices are computed once per option."""
        spec = analysis.spec
        row = rollout_row(self._rollout_layers(key, analysis, choice), token)
        return np.ascontiguousarray(row[spec.num_prefix_tokens :].reshape(spec.grid))

    def rollout_matrix(self, key: str, analysis: ImageAnalysis, choice: MethodChoice) -> np.ndarray:
        """The whole (tokens, tokens) rollout for ``choice``: row i is token i's rollout map
        (prefix tokens included). Computed once per option, like the layer matrices."""
        cache_key = (*self._cache_key(key, analysis, choice), "matrix")
        matrix = self._matrices.get(cache_key)
        if matrix is None:
            matrix = rollout_matrix(self._rollout_layers(key, analysis, choice))
            self._matrices[cache_key] = matrix
            while len(self._matrices) > self.keep:
                self._matrices.popitem(last=False)
        else:
            self._matrices.move_to_end(cache_key)
        return matrix

    @staticmethod
    def _cache_key(key: str, analysis: ImageAnalysis, choice: MethodChoice) -> tuple:
        start = min(choice.start_layer, analysis.spec.num_layers - 1)
        return (key, id(analysis), choice.head_fusion, choice.discard_ratio, start)

    def _rollout_layers(self, key: str, analysis: ImageAnalysis, choice: MethodChoice):
        cache_key = self._cache_key(key, analysis, choice)
        layers = self._layers.get(cache_key)
        if layers is None:
            layers = rollout_layers(
                analysis.attention,
                choice.head_fusion,
                choice.discard_ratio,
                cache_key[-1],
                analysis.spec.num_prefix_tokens,
            )
            self._layers[cache_key] = layers
            while len(self._layers) > self.keep:
                self._layers.popitem(last=False)
        else:
            self._layers.move_to_end(cache_key)
        return layers

    def set_relevance(self, key: str, target: int, matrix: np.ndarray) -> None:
        """Image ``key``'s relevance matrix R for class ``target`` (core.relevance): row i is
        token i's relevance."""
        self._relevance[(key, target)] = np.asarray(matrix, dtype=np.float32)

    def relevance(
        self, key: str, target: int, token: int, analysis: ImageAnalysis
    ) -> np.ndarray | None:
        """Token ``token``'s relevance map for class ``target``; None until R arrives."""
        matrix = self._relevance.get((key, target))
        if matrix is None:
            return None
        spec = analysis.spec
        return token_relevance(matrix, token, spec.grid, spec.num_prefix_tokens)

    def forget(self, key: str | None = None) -> None:
        """Drop what was computed for one image, or for all (the model changed)."""
        if key is None:
            self._layers.clear()
            self._matrices.clear()
            self._relevance.clear()
            return
        for cache_key in [k for k in self._layers if k[0] == key]:
            del self._layers[cache_key]
        for cache_key in [k for k in self._matrices if k[0] == key]:
            del self._matrices[cache_key]
        for cache_key in [k for k in self._relevance if k[0] == key]:
            del self._relevance[cache_key]


def method_map(
    key: str,
    analysis: ImageAnalysis,
    selection: Selection,
    choice: MethodChoice,
    cache: MapCache,
) -> np.ndarray | None:
    """What the overlay shows for ``choice``, for the selected token whatever the method;
    None while a relevance matrix is being computed."""
    spec = analysis.spec
    if choice.method == "attention":
        return attention_map(
            analysis.attention,
            selection.layer,
            selection.head,
            selection.token,
            spec.grid,
            spec.num_prefix_tokens,
        )
    if choice.method == "rollout":
        return cache.rollout(key, analysis, choice, selection.token)
    return cache.relevance(key, choice.target_for(analysis), selection.token, analysis)
