"""The sanity check of Adebayo et al. (2018, "Sanity Checks for Saliency Maps"), cascading
randomisation: re-initialise the model from the top down, one part at a time, and measure how
far the map moves from the original one (Spearman rank correlation). A map that does not change
when the weights it claims to explain are destroyed is not explaining the model.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from vitexplorer.core.evaluate.faithfulness import CancelCheck, Explainer
from vitexplorer.core.explain.analysis import flat_map
from vitexplorer.core.models.capture import adapter_of
from vitexplorer.core.models.families.base import Part, ViTAdapter
from vitexplorer.core.models.families.family import UnsupportedModel
from vitexplorer.core.models.loading import LoadedModel

INIT_STD = 0.02  # parameters without a module of their own (CLS token, position embeddings)


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of the flattened ``values``; tied values share the mean of their ranks."""
    x = np.asarray(values, dtype=np.float64).ravel()
    order = np.argsort(x, kind="stable")
    ordered = x[order]
    starts_group = np.r_[True, ordered[1:] != ordered[:-1]]
    group = np.cumsum(starts_group) - 1  # each sorted position's group of equal values
    starts = np.flatnonzero(starts_group)
    ends = np.r_[starts[1:], x.size]  # one past each group's last position
    ranks = np.empty(x.size)
    ranks[order] = ((starts + ends - 1) / 2.0 + 1.0)[group]
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two equally sized arrays (flattened), average ranks for
    ties. NaN when either array is constant or holds a NaN: the correlation is undefined."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"cannot correlate {a.size} values with {b.size}")
    if a.size < 2 or np.isnan(a).any() or np.isnan(b).any():
        return float("nan")
    ra, rb = average_ranks(a), average_ranks(b)
    ra -= ra.mean()
    rb -= rb.mean()
    denominator = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    if denominator == 0:
        return float("nan")
    return float(np.clip((ra * rb).sum() / denominator, -1.0, 1.0))


@dataclass(frozen=True)
class SanityStep:
    """The map after randomising ``name`` and everything above it, against the original."""

    name: str  # "original", "head", "block L" .. "block 1" (1-based, as the explorer), "embedding"
    correlation: float  # Spearman with the original map; 1.0 for the original itself; NaN: see note
    map: np.ndarray  # (rows, cols) float32
    note: str | None = None  # why the correlation is undefined (a map that ranks nothing)


def randomisation_steps(module: nn.Module | ViTAdapter) -> list[tuple[str, list[Part]]]:
    """The parts of a ViT (a module, or a model's adapter) in the order the sanity check
    re-initialises them, top first: the head with the final norm, each encoder block from the
    last, then the embedding (patch projection, prefix tokens, position embeddings). Together
    they hold every parameter once."""
    head, blocks, embedding = _adapter(module).randomisation_groups()
    steps = [("head", head)]
    steps += [(f"block {i + 1}", [blocks[i]]) for i in range(len(blocks) - 1, -1, -1)]
    return [*steps, ("embedding", embedding)]


def _adapter(model: nn.Module | ViTAdapter | LoadedModel) -> ViTAdapter:
    """The adapter of a loaded model (its own), an adapter, or a bare module (found from its
    type); a ValueError of one line for a module no family knows."""
    try:
        return model.adapter if isinstance(model, LoadedModel) else adapter_of(model)
    except UnsupportedModel as exc:
        name = type(model.module if isinstance(model, LoadedModel) else model).__name__
        raise ValueError(f"the sanity check does not know the parts of a {name}: {exc}") from exc


@torch.no_grad()
def _reinitialise(adapter: ViTAdapter, parts: list[Part], seed: int) -> None:
    """Re-initialise ``parts`` in place, reproducibly: the new values are drawn on the CPU from
    the default generator seeded with ``seed`` inside a fork, so the caller's random state and
    the model's device do not matter."""
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        for part in parts:
            if isinstance(part, nn.Parameter):
                part.copy_(torch.empty(part.shape).normal_(0.0, INIT_STD))
            else:
                fresh = copy.deepcopy(part).to("cpu")
                adapter.reinitialise(fresh, INIT_STD)
                part.load_state_dict(fresh.state_dict())


def sanity_check(
    model: LoadedModel,
    batch: torch.Tensor,
    explain: Explainer,
    seed: int = 0,
    cancelled: CancelCheck | None = None,
) -> Iterator[SanityStep]:
    """Cascading randomisation (Adebayo et al. 2018), one :class:`SanityStep` per step.

    The first step is the original map. Then, on a deep copy of the model (``model`` itself is
    never touched), the parts of :func:`randomisation_steps` are re-initialised one after the
    other, top first, each step keeping the ones before it randomised, and the map is computed
    again. Re-initialisation uses each module's own ``reset_parameters`` and normal(0, 0.02) for
    bare parameters, seeded from ``seed``. ``cancelled`` is checked between steps; a cancelled
    check simply ends early.

    A class-specific explainer should explain one fixed class (see
    :func:`~vitexplorer.core.explain.maps.hold_target`), or each randomised model's own
    prediction is explained and a change of class is mixed into the change of weights. When the
    original map ranks no patch above another (zero or one value everywhere) every correlation is
    undefined: the steps carry NaN and a note saying why; so does a step whose own map is flat.
    """
    stop = cancelled or (lambda: False)
    steps = randomisation_steps(_adapter(model))  # refuses an unknown model before any work
    original = np.asarray(explain(model, batch), dtype=np.float32)
    original_flat = flat_map(original, "the original map")
    if original_flat:
        yield SanityStep("original", float("nan"), original, original_flat)
    else:
        yield SanityStep("original", 1.0, original)
    module = copy.deepcopy(model.module)
    adapter = type(model.adapter)(module)  # the copy's: the same family's adapter
    randomised = LoadedModel(module, model.spec, model.device, known_adapter=adapter)
    parts = dict(randomisation_steps(adapter))
    seeds = np.random.SeedSequence(seed).generate_state(len(steps), dtype=np.uint32)
    for (name, _), step_seed in zip(steps, seeds, strict=True):
        if stop():
            return
        _reinitialise(adapter, parts[name], int(step_seed))
        current = np.asarray(explain(randomised, batch), dtype=np.float32)
        note = original_flat or flat_map(current, f"the map after randomising {name}")
        correlation = float("nan") if note else spearman(original, current)
        yield SanityStep(name, correlation, current, note)
