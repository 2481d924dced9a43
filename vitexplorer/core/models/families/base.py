"""What vitexplorer needs to know of a model family's modules, behind one small interface.

Everything outside ``core/families`` (capture, fine-tuning, the analytics' structure, the sanity
check) asks a :class:`ViTAdapter` instead of switching on types or private names. The vocabulary
follows timm's (``get_classifier``, ``reset_classifier``, ``num_prefix_tokens``), and a family is
one file: a subclass registered in :mod:`vitexplorer.core.models.families`.

Every model here is a pre-norm ViT: ``embed`` (patches, prefix tokens, positions) -> blocks ->
``final_norm`` -> ``pool`` (the features the classifier reads) -> classifier.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from vitexplorer.core.models.families.family import UnsupportedModel

if TYPE_CHECKING:
    from vitexplorer.core.models.blocks import BlockParts, Ops

Part = nn.Module | nn.Parameter
PREFIX_KINDS = ("cls", "dist", "reg")  # class token, distillation token, register


class ViTAdapter(ABC):
    """One model, seen through its family's knowledge. Subclasses implement each method for
    the modules their library builds; ``matches`` says whether a module is theirs."""

    family: ClassVar[str]  # a short name: "torchvision", "small_vit", "timm", "hf"

    def __init__(self, module: nn.Module) -> None:
        self.module = module

    @classmethod
    @abstractmethod
    def matches(cls, module: nn.Module) -> bool:
        """Whether ``module`` is a model of this family."""

    # --- tokens ------------------------------------------------------------------------------
    @property
    def prefix_kinds(self) -> tuple[str, ...]:
        """The tokens before the patches, in order: "cls", "dist" or "reg" each."""
        return ("cls",)

    @property
    def num_prefix_tokens(self) -> int:
        return len(self.prefix_kinds)

    # --- the forward pass, in parts (fine-tuning runs them with a cut between blocks) --------
    @abstractmethod
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """The tokens that enter the first block: (batch, tokens, width)."""

    @abstractmethod
    def blocks(self) -> list[nn.Module]:
        """The encoder blocks, first first; each maps tokens to tokens."""

    @abstractmethod
    def final_norm(self) -> nn.Module:
        """The norm applied to the last block's output."""

    @abstractmethod
    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        """The features the classifier reads, from the final norm's output."""

    def forward_parts(self, images: torch.Tensor) -> torch.Tensor:
        """The model's output computed part by part: what its own forward computes, but at any
        input size :meth:`embed` accepts (a rectangular grid included). Without a classifier,
        a (batch, 0) tensor: an image encoder's output is no class score."""
        x = self.embed(images)
        for block in self.blocks():
            x = block(x)
        features = self.pool(self.final_norm()(x))
        head = self.get_classifier()
        return features.new_zeros((features.shape[0], 0)) if head is None else head(features)

    # --- the explicit forward of the propagation methods (core/models/blocks.py) ------------
    def block_parts(self, block: nn.Module) -> BlockParts:
        """``block``'s parts as one pre-norm block (see :mod:`vitexplorer.core.models.blocks`);
        ``UnsupportedModel`` with the reason where the family has none or a part differs."""
        raise UnsupportedModel(f"a {type(self.module).__name__} has no described block parts")

    def explicit_head(self, tokens: torch.Tensor, ops: Ops) -> torch.Tensor:
        """The features the classifier reads from the last block's output, the final norm (and
        any norm or linear layer of the pooling) computed by ``ops``."""
        return self.pool(ops.norm(self.final_norm(), tokens))

    # --- the classifier ----------------------------------------------------------------------
    @abstractmethod
    def get_classifier(self) -> nn.Linear | None:
        """The linear classifier, or None for a model without one."""

    @abstractmethod
    def set_classifier(self, head: nn.Linear) -> None:
        """Put ``head`` in the classifier's place (and keep the module's bookkeeping true)."""

    def feature_width(self) -> int:
        """The width of the features :meth:`pool` gives (what a new classifier reads)."""
        head = self.get_classifier()
        if head is not None:
            return head.in_features
        width = getattr(self.module, "num_features", None) or getattr(
            self.module, "feature_width", None
        )
        if isinstance(width, int):
            return width
        shape = getattr(self.final_norm(), "normalized_shape", None)
        if shape:
            return int(shape[0])
        raise UnsupportedModel(f"the feature width of a {type(self.module).__name__} is unknown")

    def reset_classifier(self, num_classes: int) -> nn.Linear:
        """A zero-initialised classifier for ``num_classes`` in place of the old one; returned.

        Zero makes the start exact and seed-independent: every class begins equally likely."""
        old = self.get_classifier()
        if old is None:
            raise UnsupportedModel(f"a {type(self.module).__name__} has no classifier to replace")
        head = nn.Linear(old.in_features, num_classes).to(old.weight.device)
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)
        self.set_classifier(head)
        return head

    # --- attention capture -------------------------------------------------------------------
    @abstractmethod
    def attention_modules(self) -> list[nn.Module]:
        """The self-attention modules, first layer first."""

    @abstractmethod
    def capturing_forward(self, attention: nn.Module, sink: Any) -> Callable[..., Any]:
        """A replacement for ``attention.forward`` that computes the same output explicitly and
        hands the scaled scores to ``sink.softmax`` (which returns the probabilities to use)."""

    # --- what the model learned independently of any image (the analytics tab) --------------
    @abstractmethod
    def position_embeddings(self) -> torch.Tensor | None:
        """The learned position embeddings as (tokens, width), prefix tokens first; None when
        the model has none (or none for its prefix tokens: then only the patches')."""

    @abstractmethod
    def patch_filters(self) -> torch.Tensor:
        """The patch embedding's filters as (width, channels, patch, patch)."""

    # --- the sanity check --------------------------------------------------------------------
    def reinitialise(self, part: nn.Module, std: float) -> None:
        """Fresh random parameters for ``part`` (a copy, on the CPU), as the family builds them."""
        reset_module_parameters(part, std)

    @abstractmethod
    def randomisation_groups(self) -> tuple[list[Part], list[nn.Module], list[Part]]:
        """(the head with the final norm, the blocks first first, the embedding): together
        every parameter once, in the parts the sanity check re-initialises."""


def resample_positions(
    positions: torch.Tensor, grid: tuple[int, int], num_prefix: int
) -> torch.Tensor:
    """Learned position embeddings (1, prefix + side*side, width) for another patch grid
    (rows, cols): the square patch part resized bicubically (with antialiasing, as timm's
    ``resample_abs_pos_embed`` does), the prefix tokens' embeddings kept as they are."""
    prefix, patches = positions[:, :num_prefix], positions[:, num_prefix:]
    side = math.isqrt(patches.shape[1])
    if side * side != patches.shape[1]:
        raise UnsupportedModel("its position embeddings are not a square grid to resample")
    if (side, side) == tuple(grid):
        return positions
    width = patches.shape[-1]
    square = patches.reshape(1, side, side, width).permute(0, 3, 1, 2).float()
    resized = F.interpolate(square, size=grid, mode="bicubic", antialias=True, align_corners=False)
    resized = resized.permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], width).to(positions.dtype)
    return torch.cat([prefix, resized], dim=1)


def reset_module_parameters(
    module: nn.Module, std: float, special: Callable[[nn.Module], bool] | None = None
) -> None:
    """Every submodule's own ``reset_parameters``; parameters that no module resets are drawn
    from normal(0, ``std``). ``special(sub)`` may reset a submodule itself (returning True) for
    modules whose reset is not public."""
    covered: set[int] = set()
    for sub in module.modules():
        reset = getattr(sub, "reset_parameters", None)
        if special is not None and special(sub):
            covered.update(id(p) for p in sub.parameters(recurse=False))
        elif callable(reset):
            reset()
            covered.update(id(p) for p in sub.parameters(recurse=False))
    for p in module.parameters():
        if id(p) not in covered:
            nn.init.normal_(p, 0.0, std)
