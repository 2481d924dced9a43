"""From an image to everything the views need: one forward pass, kept as plain numpy."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from vitexplorer.core.capture import forward_with_attention
from vitexplorer.core.data import display_crop, preprocess
from vitexplorer.core.explain import HeadStatistics, head_statistics
from vitexplorer.core.models import LoadedModel, ModelSpec


@dataclass(frozen=True)
class Prediction:
    index: int
    name: str
    probability: float


@dataclass
class ImageAnalysis:
    """The result of analysing one image; every interaction afterwards only slices it."""

    spec: ModelSpec
    logits: np.ndarray  # (classes,) float32
    probabilities: np.ndarray  # (classes,) float32
    attention: np.ndarray  # (layers, heads, tokens, tokens) float32, rows sum to 1
    predictions: list[Prediction]  # the top five, most probable first
    seconds: float  # the forward pass with capture, on the model's device
    display: np.ndarray  # (H, W, 3) uint8: the crop the model saw
    statistics: HeadStatistics | None = None  # per-head distance, entropy and prefix share


def failure_message(exc: BaseException) -> str:
    """One line for people; running out of GPU memory gets advice."""
    text = str(exc) or type(exc).__name__
    first = text.splitlines()[0]
    if "out of memory" in text.lower():
        return f"the GPU ran out of memory: use the CPU or a smaller model ({first})"
    return first if len(text) > 500 else " ".join(text.split())


def top_predictions(probabilities: np.ndarray, class_names: tuple[str, ...], k: int = 5):
    """The ``k`` most probable classes, most probable first (ties broken by class index)."""
    order = np.lexsort((np.arange(len(probabilities)), -probabilities))[:k]
    return [Prediction(int(i), class_names[i], float(probabilities[i])) for i in order]


def analyze_image(model: LoadedModel, image: Image.Image) -> ImageAnalysis:
    """Run one captured forward pass of ``model`` on ``image``."""
    batch = preprocess(image, model.spec).unsqueeze(0).to(model.device)
    start = time.perf_counter()
    logits, attention = forward_with_attention(model.module, batch)
    if model.device.type == "cuda":
        torch.cuda.synchronize(model.device)
    seconds = time.perf_counter() - start
    logits = logits[0].float()
    probabilities = logits.softmax(-1).cpu().numpy()
    maps = attention[0].float().cpu().numpy()
    spec = model.spec
    return ImageAnalysis(
        spec=model.spec,
        logits=logits.cpu().numpy(),
        probabilities=probabilities,
        attention=maps,
        predictions=top_predictions(probabilities, model.spec.class_names),
        seconds=seconds,
        display=display_crop(image, model.spec),
        statistics=head_statistics(maps, spec.grid, spec.num_prefix_tokens, spec.patch_size),
    )
