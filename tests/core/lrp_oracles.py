"""Helpers of the LRP methods' tests: models, the normalised difference, the model checks."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from tests.conftest import tiny_spec
from vitexplorer.core.models.loading import LoadedModel


def normalised_difference(ours: np.ndarray, theirs: np.ndarray) -> float:
    """The largest absolute difference once each map is divided by its largest magnitude."""
    a, b = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    assert a.shape == b.shape
    assert np.abs(a).max() > 0 and np.abs(b).max() > 0
    return float(np.abs(a / np.abs(a).max() - b / np.abs(b).max()).max())


def loaded(module: nn.Module, spec=None) -> LoadedModel:
    """A LoadedModel of a bare module (the tiny spec: 32 px in 8 px patches)."""
    return LoadedModel(module, spec or tiny_spec(), torch.device("cpu"))


def vit_b_16() -> LoadedModel:
    """A random torchvision ViT-B/16 whose head is random too (torchvision zeroes it)."""
    from torchvision.models import vit_b_16 as build

    from vitexplorer.core.models.families.torchvision import spec_for

    torch.manual_seed(0)
    module = build(weights=None).eval()
    nn.init.normal_(module.heads.head.weight, std=0.02)
    nn.init.normal_(module.heads.head.bias, std=0.02)
    return LoadedModel(module, spec_for("vit_b_16", module, "random"), torch.device("cpu"))


def state_of(module: nn.Module) -> dict:
    """What a method must leave as it was: the mode, the parameters' .grad, replaced forwards."""
    return {
        "training": [m.training for m in module.modules()],
        "grads": [p.grad is None for p in module.parameters()],
        "forwards": [("forward" in m.__dict__) for m in module.modules()],
        "hooks": [
            len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
            for m in module.modules()
        ],
    }
