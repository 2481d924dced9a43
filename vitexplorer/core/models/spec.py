"""What a model is to vitexplorer, without torch: the names it can load and one description
(:class:`ModelSpec`) that the command line, the app's choices and the worker's messages share.

Families: torchvision's ViTs and the project's small ViT by name; timm models as ``timm:NAME``;
Hugging Face transformers models as ``hf:FOLDER_OR_HUB_NAME``; the families' names are in their
table (:mod:`vitexplorer.core.models.families.registry`). Nothing here imports torch, so
``--help`` and the window open fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from vitexplorer.core.models.families.registry import (
    LIBRARY_FAMILIES,
    SMALL_VIT,
    TORCHVISION_VITS,
)

MODEL_NAMES: tuple[str, ...] = (*TORCHVISION_VITS, SMALL_VIT)
DEMO = "demo"  # the small ViT in the box, trained on CIFAR-10: vitexplorer/resources
DEMO_FILE = "demo-vit.safetensors"
DEMO_LABEL = "Demo ViT (CIFAR-10)"
# the demo's architecture with random weights: a name that claims no training
DEMO_RANDOM_LABEL = "Demo ViT architecture, untrained"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PREFIX_KINDS = ("cls", "dist", "reg")  # class token, distillation token, register
# how people read the kinds, in the JSON, messages and the app alike (registers are numbered)
PREFIX_NAMES = {"cls": "CLS", "dist": "distillation", "reg": "register"}
RANDOM = "random initialisation"  # the weights label of a model with random weights
# the note a model with random weights carries (torchvision's warn through their zero heads)
RANDOM_NOTE = (
    "random weights (--weights none): the predictions and any class-specific map mean nothing"
)


def model_choices_help() -> str:
    """The model names a user can give, for help texts."""
    families = ", ".join(f.example for f in LIBRARY_FAMILIES.values())
    return (
        f"one of {', '.join(MODEL_NAMES)}; {DEMO} (the small ViT in the box, trained on "
        f"CIFAR-10, offline); {families}; or a vitexplorer checkpoint"
    )


def demo_path() -> Path:
    """Where the demo model is packaged (it may be missing from a source checkout)."""
    from importlib.resources import files

    return Path(str(files("vitexplorer.resources") / DEMO_FILE))


@dataclass(frozen=True)
class ModelSpec:
    """Everything the app needs to know about a model besides its parameters."""

    name: str  # architecture: a torchvision builder name, "small_vit", "timm:..." or "hf:..."
    display_name: str
    weights: str  # where the parameters came from, for people
    image_size: int
    resize_size: int
    patch_size: int
    num_layers: int
    num_heads: int
    class_names: tuple[str, ...]
    num_prefix_tokens: int = 1
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"
    config: dict[str, Any] = field(default_factory=dict, compare=False)
    family: str = ""  # "torchvision", "small_vit", "timm", "hf"; "" when not said
    prefix_kinds: tuple[str, ...] = ()  # one of PREFIX_KINDS per prefix token; () means all CLS
    grid_shape: tuple[int, int] | None = None  # patch rows and columns when not square
    has_classifier: bool = True  # False for image towers without a head (DINO, CLIP)
    # timm's names: "center" resizes the short side to resize_size, "squash" the whole image to
    # resize_size square, "border" the long side (padding the rest); then the centre image_size
    crop_mode: str = "center"
    notes: tuple[str, ...] = field(default=(), compare=False)  # one-line warnings for people
    random_weights: bool = False  # the parameters are a random initialisation (see randomised)

    def randomised(self, warn: bool = False) -> ModelSpec:
        """This spec for random parameters: the fact, the weights label people read (RANDOM)
        and, with ``warn``, the note that says what that means."""
        notes = (*self.notes, RANDOM_NOTE) if warn else self.notes
        return replace(self, weights=RANDOM, random_weights=True, notes=notes)

    @property
    def grid(self) -> tuple[int, int]:
        """Patch rows and columns."""
        if self.grid_shape is not None:
            return self.grid_shape
        side = self.image_size // self.patch_size
        return side, side

    @property
    def prefix_labels(self) -> tuple[str, ...]:
        """The kind of each prefix token, in order."""
        return self.prefix_kinds or ("cls",) * self.num_prefix_tokens

    def prefix_names(self) -> tuple[str, ...]:
        """A name for each prefix token, for menus: "CLS", "distillation", "register 1", ..."""
        names, registers = [], 0
        for kind in self.prefix_labels:
            if kind == "reg":
                registers += 1
                names.append(f"register {registers}")
            else:
                names.append(PREFIX_NAMES.get(kind, kind))
        return tuple(names)

    def token_label(self, token: int) -> str:
        """Which token ``token`` (0-based, as the arrays index it) is, in words: "the CLS
        token", "register 2", "patch row 3, col 5" (rows and columns from 1, as people count
        them everywhere)."""
        from vitexplorer.core.render.numbering import patch_label

        prefix = self.num_prefix_tokens
        if 0 <= token < prefix:
            name = self.prefix_names()[token]
            return name if name.startswith("register") else f"the {name} token"
        rows, cols = self.grid
        row, col = divmod(token - prefix, cols)
        return patch_label(row, col)

    def default_token(self) -> int:
        """The token the explorer starts on: the first prefix token, or without any the centre
        patch."""
        if self.num_prefix_tokens:
            return 0
        rows, cols = self.grid
        return (rows // 2) * cols + cols // 2

    @property
    def num_patches(self) -> int:
        rows, cols = self.grid
        return rows * cols

    @property
    def num_tokens(self) -> int:
        return self.num_prefix_tokens + self.num_patches

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def describe(self) -> dict[str, Any]:
        """The JSON-ready facts that ``vitexplorer analyze`` writes beside each map."""
        rows, cols = self.grid
        return {
            "model": self.name,
            "display_name": self.display_name,
            "weights": self.weights,
            "input_size": [rows * self.patch_size, cols * self.patch_size],
            "patch_size": self.patch_size,
            "grid": [rows, cols],
            "num_prefix_tokens": self.num_prefix_tokens,
            "prefix_tokens": list(self.prefix_names()),
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "num_tokens": self.num_tokens,
        }
