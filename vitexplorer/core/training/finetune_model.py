"""A ViT cut in two for fine-tuning: the frozen part and the trainable part.

Every model vitexplorer loads is a pre-norm ViT: an embedding (patches, prefix token, positions),
encoder blocks, a final LayerNorm, the prefix token's features and a linear head. The freeze
policy decides where the cut falls:

- ``head``: everything up to the features is frozen; only the new head trains;
- ``last:K``: the last K blocks, the final norm and the head train;
- ``none``: nothing is frozen.

``trainable(frozen(x))`` equals the whole model's forward, so the frozen part's output can be
computed once and cached when nothing random happens before the cut.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import torch
from torch import nn

from vitexplorer.core.models.loading import LoadedModel
from vitexplorer.core.models.spec import ModelSpec


class SplitViT(nn.Module):
    """The frozen part and the trainable part of a ViT, cut after ``len(blocks) - train_blocks``
    blocks (or, for head-only training, after the features)."""

    def __init__(self, module: nn.Module, train_blocks: int, headless: bool = False) -> None:
        from vitexplorer.core.models.families.family import UnsupportedModel
        from vitexplorer.core.models.families.registry import adapter_for

        super().__init__()
        self.module = module
        self.train_blocks = train_blocks
        try:
            self.adapter = adapter_for(module)
        except UnsupportedModel as exc:
            raise TypeError(f"cannot fine-tune it: {exc}") from exc
        if self.adapter.get_classifier() is None and not headless:
            raise TypeError(f"cannot fine-tune a {type(module).__name__}: it has no classifier")
        self.blocks = self.adapter.blocks()
        self.norm = self.adapter.final_norm()
        self.cut = len(self.blocks) - train_blocks
        self.head_only = train_blocks == 0
        self.nothing_frozen = train_blocks == len(self.blocks)
        # called between blocks: the engine raises there when the user cancels, so a long
        # forward pass (a ViT-B batch on a CPU takes seconds) stops within one block
        self.between_blocks: Callable[[], None] = lambda: None

    @property
    def head(self) -> nn.Linear:
        head = self.adapter.get_classifier()
        assert head is not None  # checked at construction
        return head

    def trainable_parameters(self) -> list[nn.Parameter]:
        if self.nothing_frozen:
            return list(self.module.parameters())
        head = self.adapter.get_classifier()  # None only for a headless split, when counting
        params = [] if head is None else list(head.parameters())
        if not self.head_only:
            for block in self.blocks[self.cut :]:
                params += list(block.parameters())
            params += list(self.norm.parameters())
        return params

    def freeze(self) -> None:
        """requires_grad only on the trainable parameters; frozen modules in eval mode."""
        trainable = {id(p) for p in self.trainable_parameters()}
        for p in self.module.parameters():
            p.requires_grad_(id(p) in trainable)

    def set_training(self, on: bool) -> None:
        self.module.eval()
        if on:
            self.head.train()
            if not self.head_only:
                for block in self.blocks[self.cut :]:
                    block.train()
                self.norm.train()
            if self.nothing_frozen:
                self.module.train()

    def _embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.adapter.embed(images)

    def _features(self, tokens: torch.Tensor) -> torch.Tensor:
        """Final norm, then what the classifier reads (the prefix token's features, and any
        layer before the head)."""
        return self.adapter.pool(self.norm(tokens))

    def _run_blocks(self, x: torch.Tensor, blocks: list[nn.Module]) -> torch.Tensor:
        for block in blocks:
            self.between_blocks()
            x = block(x)
        return x

    def frozen(self, images: torch.Tensor) -> torch.Tensor:
        """The frozen part's output: features (head only), tokens (last K), or the images."""
        if self.nothing_frozen:
            return images
        x = self._run_blocks(self._embed(images), self.blocks[: self.cut])
        return self._features(x) if self.head_only else x

    def trainable(self, frozen_output: torch.Tensor) -> torch.Tensor:
        x = self._embed(frozen_output) if self.nothing_frozen else frozen_output
        if not self.head_only:
            x = self._features(self._run_blocks(x, self.blocks[self.cut :]))
        return self.head(x)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.trainable(self.frozen(images))


def trainable_counts(module: nn.Module) -> tuple[int, int, tuple[int, ...]]:
    """For the settings panel, before any training: the model's parameter count, the width
    of the head's input, and for k = 0 .. number of blocks the parameters that train besides
    the head when the last k blocks train (the last entry: nothing frozen). A new head for C
    classes adds (width + 1) * C. Raises TypeError for a model the engine cannot split."""
    splits = [SplitViT(module, 0, headless=True)]
    splits += [SplitViT(module, k, headless=True) for k in range(1, len(splits[0].blocks) + 1)]
    adapter = splits[0].adapter
    old_head = adapter.get_classifier()  # None for an image encoder: fine-tuning adds one
    head = 0 if old_head is None else sum(p.numel() for p in old_head.parameters())
    trained = tuple(sum(p.numel() for p in s.trainable_parameters()) - head for s in splits)
    total = sum(p.numel() for p in module.parameters())
    return total, adapter.feature_width(), trained


def with_new_head(
    base: LoadedModel, class_names: tuple[str, ...], label: str, keep_head: bool = False
) -> LoadedModel:
    """``base`` with a zero-initialised head for ``class_names`` (zero makes the start exact
    and seed-independent: every class begins equally likely), and a spec to match. With
    ``keep_head``, a head that already has one output per class is kept as it is: a model built
    for training from scratch keeps its own random head (a zero head passes no gradient to the
    blocks until it has grown, which costs a run from scratch its first steps).

    Images are resized straight to the model's input size, as in training, so the explorer's
    preprocessing of a square image is the training preprocessing.
    """
    module = base.module
    num_classes = len(class_names)
    adapter = base.adapter
    head = adapter.get_classifier()
    if not (keep_head and head is not None and head.out_features == num_classes):
        adapter.reset_classifier(num_classes)
    spec: ModelSpec = base.spec
    config = dict(spec.config, num_classes=num_classes)
    spec = replace(
        spec,
        weights=label,
        random_weights=False,
        class_names=tuple(class_names),
        has_classifier=True,
        resize_size=spec.image_size,
        crop_mode="center",  # training's fit_image: the short side to the input, the centre
        config=config,
    )
    return LoadedModel(module, spec, base.device, known_adapter=adapter)
