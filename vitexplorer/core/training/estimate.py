"""How long a training run will take, from a few measured steps.

A run's cost is mostly its optimiser steps: ``epochs * ceil(train images / batch)`` of them,
each a forward pass, a backward pass and an update at the run's batch size. Validation after
each epoch and the test at the end are forward passes alone, about a third of a step per batch.
:func:`measure_step` times a few real steps of the configured model at the configured batch
size on the chosen device; :func:`run_seconds` turns one step's time into the run's.

Before a library model is built at all, :func:`check_model_fits` holds the bytes of its
parameters (counted on the meta device, where nothing is allocated) against the memory free.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from vitexplorer.core.models.architecture import free_ram, size_text

FORWARD_SHARE = 1 / 3  # a forward pass without gradients, against a training step


class MeasureCancelled(Exception):
    """The measurement was cancelled between steps."""


@dataclass(frozen=True)
class SubsetSizes:
    """The images a run trains on, validates on each epoch, and tests on at the end."""

    train: int
    val: int
    test: int


def subset_sizes(
    classes: int, per_class: int, test_per_class: int, val_fraction: float
) -> SubsetSizes:
    """As the engine splits them: a share of each class's ``per_class`` validates (at least
    one image of each class still trains)."""
    val = math.ceil(per_class * val_fraction) if val_fraction else 0
    val = min(val, per_class - 1)
    return SubsetSizes(classes * (per_class - val), classes * val, classes * test_per_class)


def run_seconds(step_seconds: float, batch_size: int, sizes: SubsetSizes, epochs: int) -> float:
    """The run's time: every optimiser step at ``step_seconds``, and the validation and test
    batches at :data:`FORWARD_SHARE` of a step each."""
    steps = epochs * math.ceil(sizes.train / batch_size)
    forward_batches = epochs * math.ceil(sizes.val / batch_size)
    forward_batches += math.ceil(sizes.test / batch_size)
    return step_seconds * (steps + FORWARD_SHARE * forward_batches)


def measure_step(
    model: nn.Module,
    batch_size: int,
    image_size: int,
    num_classes: int,
    device: torch.device,
    steps: int = 2,
    cancelled: Callable[[], bool] | None = None,
) -> float:
    """The median time in seconds of ``steps`` training steps (AdamW, cross-entropy, random
    images) of ``model`` at ``batch_size``, after one untimed step (which pays for first-call
    costs). ``model``'s weights change: give it a throwaway model."""
    cancelled = cancelled or (lambda: False)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch_size, 3, image_size, image_size, generator=generator).to(device)
    labels = torch.randint(0, num_classes, (batch_size,), generator=generator).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    criterion = nn.CrossEntropyLoss()
    model.train()
    times = []
    for i in range(steps + 1):
        if cancelled():
            raise MeasureCancelled
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        criterion(model(images), labels).backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i:
            times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]


# --- the memory a model's weights need ---------------------------------------------------------


class ModelTooLargeError(ValueError):
    """A model whose weights would not fit in the memory free for them: refused unbuilt."""


def module_bytes(module: nn.Module) -> int:
    """The bytes of ``module``'s parameters and buffers, each counted once, in their dtypes (a
    model on the meta device is counted without any memory being allocated)."""
    seen: set[int] = set()
    total = 0
    for tensor in itertools.chain(module.parameters(), module.buffers()):
        if id(tensor) not in seen:
            seen.add(id(tensor))
            total += tensor.numel() * tensor.element_size()
    return total


def free_bytes(device: torch.device) -> int | None:
    """The memory free on ``device`` now (a CUDA GPU's, or the RAM for the CPU); None where
    the system will not say (MPS, say)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type == "cpu":
        return free_ram()
    return None


def memory_refusal(what: str, module: nn.Module, device: torch.device) -> str | None:
    """Why ``what`` (``module``, on the meta device or built) cannot be held on ``device``:
    its weights need more bytes than are free there; None when they fit or the free memory is
    unknown."""
    needed, free = module_bytes(module), free_bytes(device)
    if free is None or needed <= free:
        return None
    count = sum(p.numel() for p in module.parameters())
    if device.type == "cpu":
        where, advice = "of memory free", "choose a smaller model or close other programs"
    else:
        where = f"free on the GPU ({device})"
        advice = "choose a smaller model, free the GPU or use --device cpu"
    return (
        f"{what} has {count:,} parameters, about {size_text(needed)} of weights, more than "
        f"the {size_text(free)} {where}: {advice}"
    )


def check_model_fits(what: str, module: nn.Module, device: torch.device) -> None:
    """A :class:`ModelTooLargeError` of one line when ``module``'s weights would not fit."""
    problem = memory_refusal(what, module, device)
    if problem is not None:
        raise ModelTooLargeError(problem)
