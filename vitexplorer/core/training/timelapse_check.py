"""Checks of a time-lapse read back from a checkpoint, before anything uses it.

A checkpoint's time-lapse (:mod:`vitexplorer.core.training.timelapse`) is a small JSON description
and a few tensors that anyone can edit. :func:`check_description` and :func:`check_arrays` hold it
together on its own (every field of the right type and range, every tensor of the right kind and
shape, every value finite); :func:`check_model` holds it against the model saved beside it (its
classes, patch grid, layers, heads and input size), as :mod:`vitexplorer.core.models.checkpoint`
holds the checkpoint's weights against its architecture. Each raises a ``ValueError`` whose words
finish the line "the time-lapse in X is damaged: ...", so the command line and the window say
the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from vitexplorer.core.training.timelapse_frames import recorded_maps

MAX_SIDE = 4096  # a probe image's side (vit.MAX_IMAGE_SIZE): the model's input size
# the largest grid side, patch size, prefix count and class count a model can have (core.vit)
LIMITS = {"grid": 4096, "patch_size": 4096, "num_prefix": 4096, "num_classes": 100_000}
MAX_SOURCE = 4096  # characters in a probe's name: a path (PATH_MAX) or "test #i"
PROBABILITY_SLACK = 1e-3  # float16 rounding of a probability of 1
FLOATS = (torch.float16, torch.float32, torch.float64)
INTEGERS = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)
KINDS = {  # the tensors that are not float: what they may hold, in words
    "images": ((torch.uint8,), "bytes"),
    "labels": (INTEGERS, "whole numbers"),
    "predicted": (INTEGERS, "whole numbers"),
}
WORDS = {
    "patch_size": "patch size",
    "num_prefix": "number of prefix tokens",
    "num_classes": "number of classes",
}


@dataclass(frozen=True)
class Description:
    """A checked description: the epochs (increasing), the probes' names, the grid..."""

    epochs: list[int]
    sources: list[str]
    grid: tuple[int, int]
    patch_size: int
    num_prefix: int
    num_classes: int
    best_epoch: int | None


def _shown(value: object) -> str:
    from vitexplorer.core.io.values import show_value

    return show_value(value)


def _wrong(what: str, meta: dict[str, Any], key: str, wanted: str) -> ValueError:
    """The error for the field ``key`` of ``meta``: missing, or not what is ``wanted``."""
    if key not in meta:
        return ValueError(f"its {what} is missing")
    return ValueError(f"its {what} is {_shown(meta[key])}, not {wanted}")


def _whole(value: object, lowest: int = 0, highest: int | None = None) -> bool:
    if not isinstance(value, int) or isinstance(value, bool) or value < lowest:
        return False
    return highest is None or value <= highest


def check_description(meta: object, version: int, max_probes: int) -> Description:
    """The description stored under the metadata's ``"timelapse"`` key, checked."""
    from vitexplorer.core.training.config import MAX_EPOCHS

    if not isinstance(meta, dict):
        raise ValueError(f"its description is {_shown(meta)}, not a JSON object")
    if not _whole(meta.get("version")) or meta["version"] != version:
        raise ValueError(
            f"its description is of an unknown version ({_shown(meta.get('version'))})"
        )
    epochs = meta.get("epochs")
    if not isinstance(epochs, list) or not epochs:
        raise _wrong("list of epochs", meta, "epochs", "a list of epochs")
    for before, epoch in zip([-1, *epochs], epochs, strict=False):
        if not _whole(epoch) or epoch > MAX_EPOCHS:
            raise ValueError(f"it names the epoch {_shown(epoch)}, not one from 0 to {MAX_EPOCHS}")
        if epoch <= before:
            raise ValueError(f"its epochs are out of order: {epoch} comes after {before}")
    sources = meta.get("sources")
    if not isinstance(sources, list) or not 0 < len(sources) <= max_probes:
        raise _wrong("list of probes", meta, "sources", f"a list of 1 to {max_probes} names")
    for i, source in enumerate(sources):
        if not isinstance(source, str) or not 0 < len(source) <= MAX_SOURCE or "\x00" in source:
            raise ValueError(
                f"probe {i + 1}'s name is {_shown(source)}, not a file's name (1 to "
                f"{MAX_SOURCE} characters, no NUL)"
            )
    grid = meta.get("grid")
    top = LIMITS["grid"]
    if not (isinstance(grid, list) and len(grid) == 2 and all(_whole(n, 1, top) for n in grid)):
        raise _wrong("patch grid", meta, "grid", f"two whole numbers from 1 to {top}")
    sizes: dict[str, Any] = {k: meta.get(k) for k in ("patch_size", "num_prefix", "num_classes")}
    for key, value in sizes.items():
        if not _whole(value, 1, LIMITS[key]):
            raise _wrong(WORDS[key], meta, key, f"a whole number from 1 to {LIMITS[key]}")
    best = meta.get("best_epoch")  # may lack a frame: a run stopped while recording it
    if best is not None and (not _whole(best) or best > MAX_EPOCHS):
        raise ValueError(f"its kept epoch is {_shown(best)}, not one from 0 to {MAX_EPOCHS}")
    return Description(
        epochs=list(epochs),
        sources=list(sources),
        grid=(grid[0], grid[1]),
        patch_size=sizes["patch_size"],
        num_prefix=sizes["num_prefix"],
        num_classes=sizes["num_classes"],
        best_epoch=best,
    )


def check_arrays(
    tensors: dict[str, torch.Tensor],
    about: Description,
    frame_arrays: tuple[str, ...],
    optional: tuple[str, ...],
) -> dict[str, np.ndarray]:
    """The time-lapse's tensors (names without the prefix) as numpy arrays, checked against its
    description ``about``: kinds, shapes, finite values, probabilities and classes in range."""
    missing = [n for n in ("images", "labels", *frame_arrays) if n not in tensors]
    if missing:
        raise ValueError(f"it lacks {', '.join(missing)}")
    names = ("images", "labels", *frame_arrays, *(k for k in optional if k in tensors))
    for name in names:
        wanted, kind = KINDS.get(name, (FLOATS, "numbers"))
        dtype = tensors[name].dtype
        if dtype not in wanted:
            raise ValueError(f"its {name} holds {str(dtype).removeprefix('torch.')}, not {kind}")
    arrays = {k: tensors[k].numpy() for k in names}
    images = arrays["images"]
    probes, frames = len(about.sources), len(about.epochs)
    if images.ndim != 4 or images.shape[0] != probes:
        raise ValueError(
            f"its probe images have the shape {images.shape}, not ({probes}, height, width, 3)"
        )
    height, width, channels = images.shape[1:]
    if channels != 3:
        raise ValueError(f"its probe images have {channels} channels, not 3 (red, green, blue)")
    if not (0 < height <= MAX_SIDE and 0 < width <= MAX_SIDE):
        raise ValueError(
            f"its probe images are {width}x{height} pixels, not 1 to {MAX_SIDE} a side"
        )
    distance = arrays["distance"]
    if distance.ndim != 4 or min(distance.shape[2:], default=0) < 1:
        raise ValueError(
            f"its distance has the shape {distance.shape}, not (epochs, probes, layers, heads)"
        )
    layers_heads = distance.shape[2:]
    patches = about.grid[0] * about.grid[1]
    expected = {
        "labels": (probes,),
        "predicted": (frames, probes),
        "probability": (frames, probes),
        "cls_attention": (frames, probes, *layers_heads, patches),
        **{name: (frames, probes, patches) for name in recorded_maps()},  # kept whole
        "distance": (frames, probes, *layers_heads),
        "entropy": (frames, probes, *layers_heads),
        "prefix_share": (frames, probes, *layers_heads),
        **{k: (frames, probes) for k in optional if k in arrays},
    }
    for key, shape in expected.items():
        if arrays[key].shape != shape:
            raise ValueError(f"its {key} has the shape {arrays[key].shape}, not {shape}")
    for key in expected:
        if key not in ("labels", "predicted") and not np.isfinite(arrays[key]).all():
            raise ValueError(f"its {key} holds values that are not finite")
    for key in ("probability", *(k for k in optional if k in arrays)):
        values = arrays[key]
        if values.size and not (values.min() >= 0 and values.max() <= 1 + PROBABILITY_SLACK):
            raise ValueError(f"its {key} holds values outside 0 to 1")
    _check_classes(arrays, about)
    return arrays


def _check_classes(arrays: dict[str, np.ndarray], about: Description) -> None:
    """Every predicted class one of the ``num_classes``; every true class one of them or -1."""
    classes = about.num_classes
    predicted = arrays["predicted"].astype(np.int64)
    wrong: np.ndarray = np.argwhere((predicted < 0) | (predicted >= classes))
    if len(wrong):
        frame, probe = (int(i) for i in wrong[0])
        raise ValueError(
            f"epoch {about.epochs[frame]} names class {int(predicted[frame, probe])} for probe "
            f"{probe + 1} but the model has {_classes(classes)}"
        )
    labels = arrays["labels"].astype(np.int64)
    wrong = np.flatnonzero((labels < -1) | (labels >= classes))
    if len(wrong):
        probe = int(wrong[0])
        raise ValueError(
            f"probe {probe + 1}'s true class is {int(labels[probe])} but the model has "
            f"{_classes(classes)}"
        )


def check_model(timelapse: Any, spec: Any) -> None:
    """A ValueError when the checked ``timelapse`` was not recorded with the model ``spec``
    describes (a :class:`~vitexplorer.core.models.spec.ModelSpec`): its classes, patch grid, patch
    size, prefix tokens, layers and heads must all be the model's, and its probe images such
    as training makes for that model's input."""
    classes = len(spec.class_names)
    if timelapse.num_classes != classes:
        raise ValueError(
            f"it was recorded with {_classes(timelapse.num_classes)} but the model has {classes}"
        )
    layers, heads = timelapse.frames[0].distance.shape[1:]
    height, width = timelapse.images.shape[1:3]
    recorded = {
        "patch grid": (tuple(timelapse.grid), tuple(spec.grid)),
        "patch size": (timelapse.patch_size, spec.patch_size),
        "number of prefix tokens": (timelapse.num_prefix, spec.num_prefix_tokens),
        "number of layers": (layers, spec.num_layers),
        "number of heads": (heads, spec.num_heads),
    }
    for what, (theirs, model) in recorded.items():
        if theirs != model:
            raise ValueError(f"its {what} is {_size(theirs)} but the model's is {_size(model)}")
    # training keeps a square image no larger than the input as it is (CIFAR-10's 32 px for a
    # 224 px model) and makes any other one the input's size: square, at most the input's side
    if height != width or height > spec.image_size:
        raise ValueError(
            f"its probe images are {width}x{height} pixels, not square and at most the model's "
            f"input ({spec.image_size}x{spec.image_size})"
        )


def _size(value: object) -> str:
    if isinstance(value, tuple):
        return "x".join(str(v) for v in value)
    return str(value)


def _classes(count: int) -> str:
    return f"{count} class" if count == 1 else f"{count} classes"
