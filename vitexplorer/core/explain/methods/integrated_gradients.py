"""Integrated gradients (Sundararajan, Taly and Yan, Axiomatic Attribution for Deep Networks,
ICML 2017): each input pixel's share of the change of a class's score from a baseline image to
the image.

For an image ``x``, a baseline ``x'`` (:mod:`vitexplorer.core.explain.baselines`) and the
class's logit ``F``, the attribution of input value ``i`` is
``(x_i - x'_i) * integral_0^1 dF/dx_i(x' + a (x - x')) da``. The integral is taken with
Gauss-Legendre quadrature of ``path_steps`` points on [0, 1] (captum's default rule,
"gausslegendre", exact for polynomials of degree below 2 x steps; the paper's Riemann sum needs
many more steps for the same accuracy). The pixel map is the sum over the colour channels,
signed, so that the map sums to ``F(x) - F(x')`` (completeness) up to the quadrature's error;
the grid map is its sum over each patch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vitexplorer.core.explain.attribution import Attribution, Attributor
from vitexplorer.core.explain.method import Method, MethodOptions, Progress, for_class, register

if TYPE_CHECKING:
    import torch

    from vitexplorer.core.models.loading import LoadedModel

RULE = "Gauss-Legendre"  # the quadrature along the path, as captum's method="gausslegendre"


def path_points(steps: int) -> tuple[list[float], list[float]]:
    """The path's points ``a`` in [0, 1] (from 0 up) and their weights (summing to 1): the
    Gauss-Legendre rule of ``steps`` points moved from [-1, 1] to [0, 1], as captum's."""
    import numpy as np

    nodes, weights = np.polynomial.legendre.leggauss(int(steps))
    return (0.5 * (1.0 + nodes)).tolist(), (0.5 * weights).tolist()


def integrated_gradients(
    model: LoadedModel,
    batch: torch.Tensor,
    options: MethodOptions,
    grid: tuple[int, int] | None = None,
    progress: Progress | None = None,
) -> Attribution:
    """Integrated gradients of a (batch, 3, H, W) preprocessed batch for ``options``'
    ``target_class`` (else each image's predicted class), ``path_steps`` and ``baseline``.
    ``pixels`` holds the attributions summed over the colour channels; ``maps`` their sums
    over each patch. ``progress(done, total)`` after each pass of :func:`points_per_pass`
    points of the path."""
    import numpy as np
    import torch

    from vitexplorer.core.explain.attribution import grid_of, patch_sums
    from vitexplorer.core.explain.baselines import baseline_images
    from vitexplorer.core.explain.gradient_sums import (
        check_input,
        gradient_sums,
        points_per_pass,
        targets_for,
    )

    chosen, any_size = grid_of(model, grid)
    check_input(model, batch, chosen)
    images = batch.detach().to(model.device, torch.float32)
    targets = targets_for(model, images, options.target_class, any_size)
    starts = baseline_images(model, images, options.baseline)
    alphas, weights = path_points(options.path_steps)
    alpha = torch.tensor(alphas, dtype=images.dtype, device=images.device)

    def make(owners: np.ndarray, steps: np.ndarray) -> torch.Tensor:
        own = torch.from_numpy(owners).to(images.device)
        step = torch.from_numpy(steps).to(images.device)
        start = starts[own]
        return start + alpha[step].view(-1, 1, 1, 1) * (images[own] - start)

    sums = gradient_sums(
        model,
        make,
        images.shape[0],
        options.path_steps,
        weights,
        targets,
        any_size=any_size,
        chunk=points_per_pass(model, chosen),
        progress=progress,
    )
    attributions = sums * (images - starts).to("cpu", torch.float64)
    pixels = attributions.sum(dim=1).to(torch.float32).numpy()
    return Attribution(
        maps=patch_sums(pixels, chosen),
        targets=targets.detach().cpu().numpy().astype(np.int64),
        pixels=np.ascontiguousarray(pixels),
    )


class _IntegratedGradients(Attributor):
    def key(self, options: MethodOptions, spec: Any) -> tuple:
        return (options.target_class, options.path_steps, options.baseline)

    def attribute(
        self,
        model: LoadedModel,
        batch: torch.Tensor,
        options: MethodOptions,
        grid: tuple[int, int] | None = None,
        progress: Progress | None = None,
    ) -> Attribution:
        return integrated_gradients(model, batch, options, grid, progress)


def _caption(parameters: dict[str, Any], spec: Any, target: dict[str, Any] | None = None) -> str:
    return for_class("integrated-gradients", target)


def _title(parameters: dict[str, Any], spec: Any, target: dict[str, Any] | None = None) -> str:
    steps = int(parameters.get("path_steps", 50))
    baseline = parameters.get("baseline", "black")
    return f"{_caption(parameters, spec, target)} · {baseline} baseline · {steps} steps"


INTEGRATED_GRADIENTS = register(
    Method(
        name="integrated-gradients",
        label="Int. grads",
        summary="integrated gradients (Sundararajan et al. 2017) of --target-class from "
        "--baseline, --path-steps points of Gauss-Legendre quadrature",
        tip="Integrated gradients: each pixel's share of the class score's change from a "
        "baseline image (Sundararajan et al. 2017)",
        help_title="Integrated gradients",
        help="each pixel's share of the change of the class's score from a baseline image (black, "
        "the mean colour or the image blurred) to the image: the gradient averaged along the "
        "straight path between them, times the pixel's change. The path's integral is taken by "
        "Gauss-Legendre quadrature with the chosen number of steps (captum's default rule; "
        "it needs far fewer steps than the paper's Riemann sum). Signed and summed over the "
        "colour channels, so the map adds up to the score's change; a patch's value is the "
        "sum of its pixels'. The blurred baseline is the image blurred by a Gaussian of sigma "
        "one patch. Needs a classifier; costs a forward and a backward per step.",
        paper="Sundararajan, Taly and Yan, Axiomatic Attribution for Deep Networks, ICML 2017",
        year=2017,
        options=("target_class", "path_steps", "baseline"),
        needs_model=True,
        needs_backward=True,
        class_specific=True,
        signed=True,
        only_cls=True,
        requires_classifier=True,
        cost=2,
        cost_per="path_steps",
        explains="the class score's change from the baseline, per pixel",
        per_token=False,
        pixels=True,
        not_applied="Integrated gradients attributes the class score to the input's pixels "
        "through the whole model: no layer or head applies. Show Attention to pick one.",
        title=_title,
        caption=_caption,
        compute=_IntegratedGradients(),
        order=10,
    )
)
