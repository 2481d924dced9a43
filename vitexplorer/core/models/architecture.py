"""The small ViT's architecture as a person sets it, before anything is built: the defaults for
32 px images, the problems that make a setting impossible (each naming its field), the number of
parameters, and the memory that training it needs against the memory that is free.

Torch-free (but for the free memory of a GPU), so that the command line's help and the app's
form can use it without importing torch; :class:`vitexplorer.core.models.vit.SmallViTConfig` checks
the same rules again when the model is built.
"""

from __future__ import annotations

import os
from typing import Any

# The compact ViTs for 32 px images (ViT-Lite, Hassani et al. 2021): 4 px patches, an MLP twice
# the width, a little stochastic depth.
ARCH_DEFAULTS: dict[str, Any] = {
    "image_size": 32,
    "patch_size": 4,
    "width": 192,
    "depth": 6,
    "heads": 3,
    "mlp_ratio": 2.0,
    "dropout": 0.0,
    "drop_path": 0.1,
}
LONGEST_WARMUP = 5.0  # epochs: the from-scratch recipe's warm-up, in a long enough run


def default_warmup(epochs: int) -> float:
    """The from-scratch warm-up for a run of ``epochs``: a tenth of the run, at most
    LONGEST_WARMUP epochs, so that a short run still decays to its end (one of 5 epochs that was
    all warm-up would end at the peak learning rate)."""
    return min(LONGEST_WARMUP, epochs / 10)


WHOLE_FIELDS = ("image_size", "patch_size", "width", "depth", "heads")
FIELD_NAMES = {
    "image_size": "image size",
    "patch_size": "patch size",
    "width": "width",
    "depth": "depth",
    "heads": "heads",
    "mlp_ratio": "MLP ratio",
    "dropout": "dropout",
    "drop_path": "stochastic depth",
}
BYTES_PER_FLOAT = 4
# per parameter while training with AdamW: the weight, its gradient, two moments, the best copy
BYTES_PER_PARAM = 5 * BYTES_PER_FLOAT
MAX_PATCHES = 65536  # as core.vit


def architecture_problem(shape: dict[str, Any]) -> tuple[str, str] | None:
    """The first reason ``shape`` (the fields of ARCH_DEFAULTS) cannot be built: the field to
    mend and a sentence in words, or None. The app shows the sentence beside that field."""
    for name in WHOLE_FIELDS:
        if shape[name] < 1:
            return name, f"the {FIELD_NAMES[name]} must be at least 1, not {shape[name]}"
    size, patch = shape["image_size"], shape["patch_size"]
    if size % patch:
        return "patch_size", (
            f"the image size {size} is not a multiple of the patch size {patch}: "
            f"try {_divisors_near(size, patch)}"
        )
    if shape["width"] % shape["heads"]:
        return "heads", (
            f"the width {shape['width']} is not divisible by {shape['heads']} heads: "
            f"try {_divisors_near(shape['width'], shape['heads'])}"
        )
    if (size // patch) ** 2 > MAX_PATCHES:
        patches = (size // patch) ** 2
        return "patch_size", f"{patches:,} patches are too many (at most {MAX_PATCHES:,})"
    for name in ("dropout", "drop_path"):
        if not 0 <= shape[name] < 1:
            return name, f"the {FIELD_NAMES[name]} must be at least 0 and below 1"
    return None


def _divisors_near(whole: int, part: int) -> str:
    """'4 or 8': the divisors of ``whole`` nearest ``part``, below and above."""
    below = next((d for d in range(part, 0, -1) if whole % d == 0), None)
    above = next((d for d in range(part, whole + 1) if whole % d == 0), None)
    found = sorted({d for d in (below, above) if d is not None})
    return " or ".join(str(d) for d in found)


def parameter_count(config: Any) -> int:
    """The number of parameters of a :class:`~vitexplorer.core.models.vit.SmallViT` of ``config``
    (any object with its fields, ``num_classes`` included), counted without building it."""
    d, c = config.width, config.num_classes
    h = int(d * config.mlp_ratio)
    tokens = (config.image_size // config.patch_size) ** 2 + 1
    embed = 3 * config.patch_size**2 * d + d + d + tokens * d
    block = 4 * d + (3 * d * d + 3 * d) + (d * d + d) + (d * h + h) + (h * d + d)
    return embed + config.depth * block + 2 * d + d * c + c


def training_bytes(config: Any, batch_size: int) -> tuple[int, int]:
    """About how many bytes training ``config`` at ``batch_size`` holds at its peak: the
    activations kept for the backward pass, and the parameters with their gradients, AdamW's two
    moments and the best epoch's copy."""
    d = config.width
    h = int(d * config.mlp_ratio)
    n = (config.image_size // config.patch_size) ** 2 + 1
    # per block and image: norms, qkv, attention output, projection, residuals, the MLP's two
    # hidden activations and its output; then the scores and probabilities of every head
    per_block = n * (10 * d + 2 * h) + 2 * config.heads * n * n
    activations = BYTES_PER_FLOAT * batch_size * (config.depth * per_block + 3 * n * d)
    return activations, BYTES_PER_PARAM * parameter_count(config)


def size_text(size: float) -> str:
    """1.2 GB or 350 MB."""
    return f"{size / 1e9:.1f} GB" if size >= 1e8 else f"{size / 1e6:.0f} MB"


def available_bytes(device: str) -> int | None:
    """Memory free for training on ``device`` (auto, cpu, cuda[:N], mps), or None if unknown.
    Only a GPU's needs torch (imported then)."""
    if device != "cpu":
        import torch

        from vitexplorer.core.models.loading import resolve_device

        where = resolve_device(device)
        if where.type == "cuda":
            return int(torch.cuda.mem_get_info(where)[0])
        if where.type != "cpu":
            return None
    return free_ram()


def free_ram() -> int | None:
    """The memory the operating system can give this process now, or None if it will not say."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo", encoding="ascii") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def memory_problem(
    config: Any,
    batch_size: int,
    free: int | None,
    advice: str = "lower the batch size, the width or the depth, or raise the patch size",
) -> str | None:
    """Why training ``config`` at ``batch_size`` would not fit in ``free`` bytes, or None."""
    activations, weights = training_bytes(config, batch_size)
    if free is None or activations + weights <= free:
        return None
    return (
        f"this ViT ({config.depth} blocks of width {config.width}, "
        f"{(config.image_size // config.patch_size) ** 2} patches) needs about "
        f"{size_text(activations + weights)} to train at batch size {batch_size} "
        f"({size_text(activations)} of activations, {size_text(weights)} of parameters and "
        f"optimiser state), more than the {size_text(free)} free: {advice}"
    )
