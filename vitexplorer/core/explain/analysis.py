"""From an image to everything the views need: one forward pass, kept as plain numpy."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from PIL import Image

from vitexplorer.core.explain.head_stats import HeadStatistics, head_statistics
from vitexplorer.core.models.capture import forward_with_attention, images_per_pass
from vitexplorer.core.models.feed import CROP, Feed
from vitexplorer.core.models.loading import LoadedModel
from vitexplorer.core.models.preprocessing import aspect_grid, display_crop, preprocess
from vitexplorer.core.models.spec import ModelSpec


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
    seconds: float  # the forward pass with capture, on the model's device (a batch's share)
    display: np.ndarray  # (H, W, 3) uint8: the crop the model saw
    batch: int = 1  # how many images that forward pass took
    _statistics: HeadStatistics | None = field(default=None, repr=False, compare=False)

    @property
    def statistics(self) -> HeadStatistics:
        """Per-head mean attention distance, entropy and prefix share, computed on first use
        (24 ms for a ViT-B/16 image: ``analyze`` never writes them, the analytics tab, ``stats``
        and ``compare`` do) and kept."""
        if self._statistics is None:
            spec = self.spec
            self._statistics = head_statistics(
                self.attention, spec.grid, spec.num_prefix_tokens, spec.patch_size
            )
        return self._statistics


def failure_message(exc: BaseException) -> str:
    """One line for people; running out of memory gets advice that fits the device that ran
    out (never "use the CPU" to someone on it)."""
    text = str(exc) or type(exc).__name__
    first = text.splitlines()[0]
    lower = text.lower()
    if "mps" in lower and "out of memory" in lower:
        return f"Apple's MPS ran out of memory: use the CPU or a smaller model ({first})"
    if "out of memory" in lower or _is_torch_oom(exc):
        return f"the GPU ran out of memory: use the CPU or a smaller model ({first})"
    if "defaultcpuallocator" in lower or isinstance(exc, MemoryError):
        return (
            "the CPU ran out of memory: close other programs, or use a smaller model or "
            f"smaller images ({first})"
        )
    return first if len(text) > 500 else " ".join(text.split())


def _is_torch_oom(exc: BaseException) -> bool:
    """Whether ``exc`` is torch's out-of-memory error (raised on CUDA), torch imported or not."""
    import sys

    torch = sys.modules.get("torch")
    kind = getattr(torch, "OutOfMemoryError", None) if torch is not None else None
    return kind is not None and isinstance(exc, kind)


# Relative tolerance under which logits, or a map's values, count as all equal. float32 keeps
# about seven digits, so values that differ by less than a millionth of their size are noise.
FLAT_RTOL = 1e-6


def constant_output(logits: np.ndarray, rtol: float = FLAT_RTOL) -> str | None:
    """Why the model's output says nothing about the classes, or None when it does.

    Logits that are not finite make every probability undefined; logits that are all equal give
    every class the same probability, so no prediction and no class-specific explanation means
    anything. torchvision builds its models with a head of zeros, so with random weights
    (``--weights none``) every logit is exactly 0."""
    values = np.asarray(logits, dtype=np.float64).ravel()
    if values.size == 0:
        return "the model gave no output"
    bad = int(np.count_nonzero(~np.isfinite(values)))
    if bad:
        return (
            f"{bad} of the model's {values.size} logits are not finite (NaN or infinity), so "
            f"its probabilities are undefined"
        )
    if values.size > 1 and np.ptp(values) <= rtol * max(1.0, float(np.abs(values).max())):
        return (
            f"every logit is {values[0]:.4g}: the output does not depend on the class (each "
            f"gets {1 / values.size:.2%}), so the prediction and any class-specific map mean "
            f"nothing; a head of zeros does this, as torchvision builds it for random weights"
        )
    return None


def undefined_prediction(logits: np.ndarray, probabilities: np.ndarray) -> str | None:
    """Why there is no prediction at all (probabilities that are not numbers), or None.

    A NaN logit makes every probability NaN, and so does an infinite one (infinity minus
    infinity in the softmax): no class is more probable than another, so none is predicted."""
    if np.isfinite(probabilities).all():
        return None
    if np.isnan(logits).any():
        return "the model's outputs are not numbers (NaN): no prediction"
    return "the model's outputs are infinite, so its probabilities are not numbers: no prediction"


def flat_map(values: np.ndarray, what: str = "the map", rtol: float = FLAT_RTOL) -> str | None:
    """Why ``values`` rank no patch above another (zero everywhere, one value everywhere, or
    not finite), or None when they do. ``what`` names the map in the reason."""
    heat = np.asarray(values, dtype=np.float64)
    if heat.size == 0:
        return f"{what} is empty"
    bad = int(np.count_nonzero(~np.isfinite(heat)))
    if bad:
        return f"{what} holds {bad} value(s) that are not finite (NaN or infinity)"
    if not heat.any():
        return f"{what} is zero everywhere: it ranks no patch above another"
    if np.ptp(heat) <= rtol * float(np.abs(heat).max()):
        return f"{what} is {heat.flat[0]:.4g} everywhere: it ranks no patch above another"
    return None


def top_predictions(probabilities: np.ndarray, class_names: tuple[str, ...], k: int = 5):
    """The ``k`` most probable classes, most probable first (ties broken by class index)."""
    order = np.lexsort((np.arange(len(probabilities)), -probabilities))[:k]
    return [Prediction(int(i), class_names[i], float(probabilities[i])) for i in order]


def analyze_image(model: LoadedModel, image: Image.Image, feed: Feed = CROP) -> ImageAnalysis:
    """Run one captured forward pass of ``model`` on ``image``: the centre crop the model's
    preprocessing makes, or with ``feed=WHOLE`` the whole image at its own aspect ratio (the
    analysis's spec then has that rectangular grid)."""
    return analyze_images(model, [image], feed)[0]


MAX_BATCH = 8  # the most images analyze_images takes at once: ViT-B/32 and B/16 8, L/16 4


def batch_size_for(spec: ModelSpec, grid: tuple[int, int] | None = None) -> int:
    """How many images :func:`analyze_images` runs at once for ``spec`` (on ``grid``, when the
    images keep their aspect): as many as 256 MB of maps allow
    (:func:`~vitexplorer.core.models.capture.images_per_pass`), at most :data:`MAX_BATCH`. On the
    CPU a batch of 8 takes 0.58 times the time of eight single passes for ViT-B/32, 0.9 for B/16
    and L/16."""
    rows, cols = grid or spec.grid
    tokens = rows * cols + spec.num_prefix_tokens
    return images_per_pass(spec.num_layers, spec.num_heads, tokens, MAX_BATCH)


def input_key(image: Image.Image, spec: ModelSpec, feed: Feed = CROP) -> tuple[int, int]:
    """The patch grid ``image`` is analysed on: images with the same key can share a batch."""
    return aspect_grid(image.width, image.height, spec) if feed.whole else spec.grid


def analyze_images(
    model: LoadedModel, images: list[Image.Image], feed: Feed = CROP
) -> list[ImageAnalysis]:
    """:func:`analyze_image` for several images in one captured forward pass (a batch). They
    must share their :func:`input_key` (ValueError otherwise). Each analysis holds its own
    image's maps, a view of the batch's array; ``seconds`` is its share of the pass. Each
    image's maps and logits equal its own pass to float rounding: the library's matrix
    products may add in another order at another batch size (here: torchvision's ViT-B maps
    bit for bit, the demo model's within 3e-7)."""
    if not images:
        return []
    spec = model.spec
    keys = {input_key(image, spec, feed) for image in images}
    if len(keys) > 1:
        raise ValueError(f"images of different patch grids cannot share a batch: {sorted(keys)}")
    if feed.whole:  # the same grid preprocess makes (ratios past 4:1 are cut to 4:1 there)
        spec = replace(spec, grid_shape=keys.pop())
    inputs = [preprocess(image, model.spec, feed) for image in images]
    batch = torch.stack(inputs).to(model.device)
    start = time.perf_counter()
    any_size = feed.whole and spec.grid != model.spec.grid
    logits, attention = forward_with_attention(model.adapter, batch, any_size)
    if model.device.type == "cuda":
        torch.cuda.synchronize(model.device)
    seconds = (time.perf_counter() - start) / len(images)
    logits = logits.float()
    # row by row: a softmax over the batch's (n, classes) rounds differently from one image's
    probabilities = torch.stack([row.softmax(-1) for row in logits]).cpu().numpy()
    logits_np = logits.cpu().numpy()
    maps = attention.float().cpu().numpy()
    results = []
    for i, image in enumerate(images):
        p = probabilities[i]
        results.append(
            ImageAnalysis(
                spec=spec,
                logits=logits_np[i],
                probabilities=p,
                attention=maps[i],
                # an image encoder's output is no class score: no predictions
                predictions=top_predictions(p, spec.class_names) if spec.has_classifier else [],
                seconds=seconds,
                display=display_crop(image, model.spec, feed=feed),
                batch=len(images),
            )
        )
    return results
