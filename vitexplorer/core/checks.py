"""Checks of the explanations themselves.

- The sanity check of Adebayo et al. (2018, "Sanity Checks for Saliency Maps"), cascading
  randomisation: re-initialise the model from the top down, one part at a time, and measure how
  far the map moves from the original one (Spearman rank correlation). A map that does not change
  when the weights it claims to explain are destroyed is not explaining the model.
- The perturbation test of Chefer et al. (2021): remove the most relevant (positive test) or the
  least relevant (negative test) patches in steps of 10% and follow the predicted class's
  probability. A faithful map makes the positive curve fall fast (small area) and the negative
  curve fall slowly (large area).

Both take an explainer, ``(model, batch) -> (rows, cols) map`` (see
:func:`~vitexplorer.core.methods.method_explainer`), so they check any method alike.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision.models import VisionTransformer

from vitexplorer.core.data import ImageLoadError, load_image, preprocess
from vitexplorer.core.models import LoadedModel
from vitexplorer.core.vit import SmallViT

Explainer = Callable[[LoadedModel, torch.Tensor], np.ndarray]
CancelCheck = Callable[[], bool]
INIT_STD = 0.02  # parameters without a module of their own (CLS token, position embeddings)


# --- Spearman rank correlation ----------------------------------------------------------------


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


# --- Sanity check: cascading randomisation ----------------------------------------------------


@dataclass(frozen=True)
class SanityStep:
    """The map after randomising ``name`` and everything above it, against the original."""

    name: str  # "original", "head", "block L" .. "block 1" (1-based, as the explorer), "embedding"
    correlation: float  # Spearman with the original map; 1.0 for the original itself
    map: np.ndarray  # (rows, cols) float32


Part = nn.Module | nn.Parameter


def randomisation_steps(module: nn.Module) -> list[tuple[str, list[Part]]]:
    """The parts of a ViT in the order the sanity check re-initialises them, top first: the head
    with the final LayerNorm, each encoder block from the last, then the embedding (patch
    projection, CLS token, position embeddings). Together they hold every parameter once."""
    if isinstance(module, SmallViT):
        head: list[Part] = [module.norm, module.head]
        blocks = list(module.blocks)
        embedding: list[Part] = [module.patch_embed, module.cls_token, module.pos_embed]
    elif isinstance(module, VisionTransformer):
        head = [module.encoder.ln, module.heads]
        blocks = list(module.encoder.layers)
        embedding = [module.conv_proj, module.class_token, module.encoder.pos_embedding]
    else:
        raise ValueError(f"the sanity check does not know the parts of a {type(module).__name__}")
    steps = [("head", head)]
    steps += [(f"block {i + 1}", [blocks[i]]) for i in range(len(blocks) - 1, -1, -1)]
    return [*steps, ("embedding", embedding)]


def _reset_module(module: nn.Module) -> None:
    """Every submodule's own ``reset_parameters`` (``_reset_parameters`` for multi-head
    attention); parameters that no module resets are drawn from normal(0, INIT_STD)."""
    covered: set[int] = set()
    for sub in module.modules():
        reset = getattr(sub, "reset_parameters", None)
        if reset is None and isinstance(sub, nn.MultiheadAttention):
            reset = sub._reset_parameters
        if callable(reset):
            reset()
            covered.update(id(p) for p in sub.parameters(recurse=False))
    for p in module.parameters():
        if id(p) not in covered:
            nn.init.normal_(p, 0.0, INIT_STD)


@torch.no_grad()
def _reinitialise(parts: list[Part], seed: int) -> None:
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
                _reset_module(fresh)
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
    """
    stop = cancelled or (lambda: False)
    steps = randomisation_steps(model.module)  # refuses an unknown architecture before any work
    original = np.asarray(explain(model, batch), dtype=np.float32)
    yield SanityStep("original", 1.0, original)
    randomised = LoadedModel(copy.deepcopy(model.module), model.spec, model.device)
    parts = dict(randomisation_steps(randomised.module))
    seeds = np.random.SeedSequence(seed).generate_state(len(steps), dtype=np.uint32)
    for (name, _), step_seed in zip(steps, seeds, strict=True):
        if stop():
            return
        _reinitialise(parts[name], int(step_seed))
        current = np.asarray(explain(randomised, batch), dtype=np.float32)
        yield SanityStep(name, spearman(original, current), current)


# --- Faithfulness: the perturbation test ------------------------------------------------------


def perturbation_fractions(steps: int = 10) -> np.ndarray:
    """0, 1/steps, ..., 1: exactly 0.0, 0.1, ..., 1.0 for ten steps."""
    if steps < 1:
        raise ValueError(f"the perturbation test needs at least one step, not {steps}")
    return np.arange(steps + 1) / steps


def removal_counts(num_patches: int, steps: int = 10) -> np.ndarray:
    """How many patches each step removes: ``k / steps`` of them, rounded half up (integers)."""
    k = np.arange(steps + 1)
    return (2 * k * num_patches + steps) // (2 * steps)


def perturbed_copies(
    batch: torch.Tensor, relevance: np.ndarray, positive: bool, steps: int = 10
) -> torch.Tensor:
    """(steps + 1, 3, H, W): copy k has the ``removal_counts[k]`` most relevant (``positive``)
    or least relevant patches set to 0, the dataset's mean colour in the normalised input.

    The patch grid is ``relevance.shape`` (rows, cols), row-major, and need not be square; ties
    go to the lower patch index.
    """
    if batch.ndim != 4 or batch.shape[0] != 1:
        raise ValueError(f"one image at a time, a (1, 3, H, W) batch; got {tuple(batch.shape)}")
    rows, cols = relevance.shape
    height, width = batch.shape[-2:]
    if height % rows or width % cols:
        raise ValueError(f"a {height}x{width} image does not split into a {rows}x{cols} grid")
    scores = np.asarray(relevance, dtype=np.float64).ravel()
    order = np.argsort(-scores if positive else scores, kind="stable")
    rank = np.empty(scores.size, dtype=np.int64)
    rank[order] = np.arange(scores.size)  # 0 = removed first
    counts = removal_counts(scores.size, steps)
    removed = torch.from_numpy(rank[None, :] < counts[:, None]).reshape(-1, rows, cols)
    pixels = removed.repeat_interleave(height // rows, 1).repeat_interleave(width // cols, 2)
    keep = (~pixels).to(device=batch.device, dtype=batch.dtype)[:, None]
    return batch * keep


def area_under(fractions: np.ndarray, values: np.ndarray) -> float:
    """The area under a curve by the trapezoid rule."""
    x, y = np.asarray(fractions, dtype=np.float64), np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape or x.size < 2:
        raise ValueError("an area needs two equally long curves of at least two points")
    return float(((x[1:] - x[:-1]) * (y[1:] + y[:-1])).sum() / 2.0)


@torch.inference_mode()
def _class_probabilities(model: LoadedModel, images: torch.Tensor) -> np.ndarray:
    logits = model.module(images.to(model.device)).float()
    return logits.softmax(-1).cpu().numpy()


def perturbation_curve(
    model: LoadedModel,
    batch: torch.Tensor,
    relevance: np.ndarray,
    target: int,
    positive: bool,
    steps: int = 10,
) -> tuple[np.ndarray, np.ndarray]:
    """(fractions, probabilities of ``target``) as patches are removed in order of
    ``relevance`` (rows, cols): most relevant first when ``positive``, least relevant otherwise.
    All the perturbed copies go through the model in one forward pass."""
    fractions = perturbation_fractions(steps)
    copies = perturbed_copies(batch, relevance, positive, steps)
    return fractions, _class_probabilities(model, copies)[:, target]


@dataclass(frozen=True)
class ImageFaithfulness:
    source: str  # the path, or "image i" for an image given in memory
    target: int  # the predicted class, whose probability the curves follow
    positive: np.ndarray  # (steps + 1,) probabilities, most relevant patches removed first
    negative: np.ndarray  # (steps + 1,) probabilities, least relevant patches removed first
    positive_auc: float  # lower is better
    negative_auc: float  # higher is better


@dataclass(frozen=True)
class FaithfulnessProgress:
    done: int
    total: int


@dataclass
class FaithfulnessResult:
    fractions: np.ndarray
    images: list[ImageFaithfulness] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (source, reason)
    cancelled: bool = False

    @property
    def positive_auc(self) -> float:
        """The mean over the images; NaN when there are none."""
        aucs = [i.positive_auc for i in self.images]
        return float(np.mean(aucs)) if aucs else float("nan")

    @property
    def negative_auc(self) -> float:
        aucs = [i.negative_auc for i in self.images]
        return float(np.mean(aucs)) if aucs else float("nan")


def image_faithfulness(
    model: LoadedModel, batch: torch.Tensor, explain: Explainer, source: str, steps: int = 10
) -> ImageFaithfulness:
    """Both perturbation curves of one preprocessed image, in one forward pass of 2 (steps + 1)
    copies; the target is the class the model predicts for the untouched image."""
    relevance = np.asarray(explain(model, batch))
    if relevance.shape != model.spec.grid:
        raise ValueError(f"the map is {relevance.shape}, not the model's grid {model.spec.grid}")
    copies = torch.cat(
        [perturbed_copies(batch, relevance, positive, steps) for positive in (True, False)]
    )
    probabilities = _class_probabilities(model, copies)
    target = int(np.argmax(probabilities[0]))
    positive, negative = probabilities[: steps + 1, target], probabilities[steps + 1 :, target]
    fractions = perturbation_fractions(steps)
    return ImageFaithfulness(
        source=source,
        target=target,
        positive=positive,
        negative=negative,
        positive_auc=area_under(fractions, positive),
        negative_auc=area_under(fractions, negative),
    )


def faithfulness(
    model: LoadedModel,
    images: Sequence[Image.Image | str | Path],
    explain: Explainer,
    steps: int = 10,
    cancelled: CancelCheck | None = None,
) -> Iterator[FaithfulnessProgress | FaithfulnessResult]:
    """The perturbation test over ``images`` (PIL images or paths).

    Yields :class:`FaithfulnessProgress` before the first image and after each one, then one
    :class:`FaithfulnessResult` with each image's curves and AUCs and their means. Images that
    cannot be read are skipped and listed with the reason. ``cancelled`` is checked between
    images; a cancelled run still ends with the result of the images done.
    """
    stop = cancelled or (lambda: False)
    result = FaithfulnessResult(fractions=perturbation_fractions(steps))
    total = len(images)
    yield FaithfulnessProgress(0, total)
    for index, item in enumerate(images):
        if stop():
            result.cancelled = True
            break
        if isinstance(item, Image.Image):
            source, image = f"image {index}", item
        else:
            source = str(item)
            try:
                image = load_image(item)
            except ImageLoadError as exc:
                result.skipped.append((source, str(exc)))
                yield FaithfulnessProgress(index + 1, total)
                continue
        batch = preprocess(image, model.spec).unsqueeze(0).to(model.device)
        result.images.append(image_faithfulness(model, batch, explain, source, steps))
        yield FaithfulnessProgress(index + 1, total)
    yield result
