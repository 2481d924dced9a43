"""What the methods that explain a class score share: a batch in, one map per image out.

An attribution method (integrated gradients, SmoothGrad, occlusion, Grad-CAM, LeGrad, the LRP
family) explains the model's score for one class per image: it has no per-token matrix as
rollout and relevance have, only the class token's map over the patch grid. Its method file
subclasses :class:`Attributor` and implements :meth:`Attributor.attribute` for a batch; the
single-image glue the dispatcher and the explorer's worker call is here. Methods that attribute
to the input's pixels return the pixel map too, and the grid map is its sum over each patch
(:func:`patch_sums`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vitexplorer.core.explain.method import Computation, MethodOptions, Progress

if TYPE_CHECKING:  # numpy and torch are imported when a map is asked for (the catalogue's rule)
    import numpy as np
    import torch

    from vitexplorer.core.models.loading import LoadedModel


@dataclass(frozen=True)
class Attribution:
    """One method's maps for a batch of images."""

    maps: np.ndarray  # (batch, rows, cols) float32 over the patch grid
    targets: np.ndarray  # (batch,) int64: the class each map explains
    pixels: np.ndarray | None = None  # (batch, height, width) float32, the input's pixels


def patch_sums(pixels: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """A (batch, height, width) pixel map summed over each patch: (batch, rows, cols) float32.
    ``height`` and ``width`` must be whole multiples of the grid (the model's input is)."""
    import numpy as np

    batch, height, width = pixels.shape
    rows, cols = grid
    if height % rows or width % cols:
        raise ValueError(f"a {height}x{width} pixel map does not split into a {rows}x{cols} grid")
    blocks = pixels.reshape(batch, rows, height // rows, cols, width // cols)
    return blocks.sum(axis=(2, 4), dtype=np.float64).astype(np.float32)


def grid_of(model: LoadedModel, grid: Sequence[int] | None) -> tuple[tuple[int, int], bool]:
    """The patch grid a batch has (``grid``, else the model's own) and whether it is another
    than the model's (then the family's any-size forward runs it)."""
    own = (int(model.spec.grid[0]), int(model.spec.grid[1]))
    chosen = own if grid is None else (int(grid[0]), int(grid[1]))
    return chosen, chosen != own


def resolve_targets(logits: torch.Tensor, target_class: int | None | Sequence[int]) -> torch.Tensor:
    """The class each image's map explains, (batch,) int64: the given class (one for all, or
    one per image), else each image's predicted class (the first maximum, as argmax picks)."""
    import numpy as np
    import torch

    batch, classes = logits.shape
    if target_class is None:
        return logits.detach().argmax(dim=1)
    chosen = [target_class] * batch if isinstance(target_class, (int, np.integer)) else target_class
    chosen = [int(t) for t in chosen]
    if len(chosen) != batch:
        raise ValueError(f"{len(chosen)} target classes given for a batch of {batch} images")
    for target in chosen:
        if not 0 <= target < classes:
            raise ValueError(f"target class {target} is outside 0..{classes - 1}")
    return torch.tensor(chosen, dtype=torch.int64, device=logits.device)


def class_scores(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Each image's logit of its target class, summed over the batch: a backward of this
    sum gives every image its own class's gradient (the images do not interact)."""
    return logits.gather(1, targets[:, None]).sum()


def input_gradients(
    model: LoadedModel,
    images: torch.Tensor,
    target_class: int | None | Sequence[int] = None,
    any_size: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The logits (batch, classes), the targets (batch,) and the gradient of each image's
    target logit with respect to its input (batch, 3, H, W), all detached.

    The model is left as it was: the same train/eval mode, no ``.grad`` on any parameter
    (``torch.autograd.grad`` asks for the input's gradient only)."""
    import torch

    from vitexplorer.core.models.capture import model_forward

    module = model.module
    was_training = module.training
    module.eval()
    try:
        with torch.inference_mode(False), torch.enable_grad():
            inputs = images.detach().to(model.device).clone().requires_grad_(True)
            logits = model_forward(model.adapter, inputs, any_size)
            targets = resolve_targets(logits, target_class)
            (gradient,) = torch.autograd.grad(class_scores(logits, targets), inputs)
    finally:
        module.train(was_training)
    return logits.detach(), targets, gradient.detach()


def plain_logits(model: LoadedModel, images: torch.Tensor, any_size: bool = False) -> torch.Tensor:
    """The plain forward's logits for a batch, (batch, classes), without gradients."""
    import torch

    from vitexplorer.core.models.capture import model_forward

    with torch.inference_mode():
        return model_forward(model.adapter, images.to(model.device), any_size).detach()


class Attributor(Computation):
    """The computation of a method that explains a class score with one map per image.

    A subclass implements :meth:`attribute`. The command line's and the checks' single map
    (:meth:`from_model`) and the explorer's worker job (:meth:`matrix`) are its first image; the
    explorer keeps that map and shows it whatever token is clicked (the method's ``only_cls``)."""

    def key(self, options: MethodOptions, spec: Any) -> tuple:
        return (options.target_class,)

    def attribute(
        self,
        model: LoadedModel,
        batch: torch.Tensor,
        options: MethodOptions,
        grid: tuple[int, int] | None = None,
        progress: Progress | None = None,
    ) -> Attribution:
        """The maps of a (batch, 3, H, W) preprocessed batch; ``options.target_class`` (one
        class for all, else each image's predicted class) is what each explains. ``grid`` is
        the batch's patch grid when it is not the model's (an image at its own aspect ratio).
        A method of several passes calls ``progress(done, total)`` after each."""
        raise NotImplementedError

    def from_model(
        self,
        model: Any,
        batch: Any,
        options: MethodOptions,
        grid: Any,
        progress: Progress | None = None,
    ) -> Any:
        return self.attribute(model, batch, options, grid, progress).maps[0]

    def matrix(
        self,
        model: Any,
        batch: Any,
        options: MethodOptions,
        grid: Any,
        progress: Progress | None = None,
    ) -> Any:
        """The explorer's job: the first image's map (no per-token matrix)."""
        return self.from_model(model, batch, options, grid, progress)

    def token_map(self, prepared: Any, options: MethodOptions, spec: Any) -> Any:
        return prepared
