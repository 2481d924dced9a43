"""SmoothGrad (Smilkov, Thorat, Kim, Viégas and Wattenberg, SmoothGrad: removing noise by adding
noise, 2017): the class score's gradient with respect to the input, its absolute value averaged
over noisy copies of the image.

Each of ``samples`` copies is the (normalised) image plus Gaussian noise of standard deviation
``noise * (max - min)``, the image's own range (the paper's sigma over x_max - x_min). The
absolute gradients of the class's logit are averaged over the copies (captum's
``NoiseTunnel(Saliency)`` with ``nt_type="smoothgrad"``); the pixel map is their sum over the
colour channels (as the authors' own saliency library draws a gradient in grey,
``VisualizeImageGrayscale``), and the grid map its sum over each patch.

The noise comes from a ``torch.Generator`` seeded with ``noise_seed`` for each image (never the
global random state): a map can be made again, and an image's map is the same alone or in a batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from vitexplorer.core.explain.attribution import Attribution, Attributor
from vitexplorer.core.explain.method import Method, MethodOptions, Progress, for_class, register

if TYPE_CHECKING:
    import torch

    from vitexplorer.core.models.loading import LoadedModel


def noise_draws(image: torch.Tensor, noise: float, seed: int) -> Iterator[torch.Tensor]:
    """The noise added to one (3, H, W) image's copies, one copy's after another: standard
    normal draws of a CPU ``torch.Generator`` seeded with ``seed``, times ``noise`` times the
    image's range (max - min), on the image's device and dtype."""
    import torch

    generator = torch.Generator().manual_seed(int(seed))
    stdev = (image.detach().amax() - image.detach().amin()).to("cpu", torch.float32) * noise
    while True:
        draw = torch.randn(tuple(image.shape), generator=generator, dtype=torch.float32)
        yield (draw * stdev).to(image.device, image.dtype)


def smoothgrad_noise(images: torch.Tensor, samples: int, noise: float, seed: int) -> torch.Tensor:
    """Every copy's noise for a (batch, 3, H, W) batch, (batch * samples, 3, H, W), image by
    image (the order of captum's ``repeat_interleave``): what :func:`smoothgrad` adds."""
    import torch

    copies: list[torch.Tensor] = []
    for image in images:
        draws = noise_draws(image, noise, seed)
        copies.extend(next(draws) for _ in range(samples))
    return torch.stack(copies)


def smoothgrad(
    model: LoadedModel,
    batch: torch.Tensor,
    options: MethodOptions,
    grid: tuple[int, int] | None = None,
    progress: Progress | None = None,
) -> Attribution:
    """SmoothGrad of a (batch, 3, H, W) preprocessed batch for ``options``' ``target_class``
    (else each image's predicted class, on the image without noise), ``samples``, ``noise``
    and ``noise_seed``. ``pixels`` holds the mean absolute gradients summed over the colour
    channels; ``maps`` their sums over each patch. ``progress(done, total)`` after each pass."""
    import numpy as np
    import torch

    from vitexplorer.core.explain.attribution import grid_of, patch_sums
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
    draws = [noise_draws(image, options.noise, options.noise_seed) for image in images]

    def make(owners: np.ndarray, steps: np.ndarray) -> torch.Tensor:
        # the pairs come in order, so each image's generator gives its copies in order
        return torch.stack([images[i] + next(draws[i]) for i in owners.tolist()])

    sums = gradient_sums(
        model,
        make,
        images.shape[0],
        options.samples,
        [1.0 / options.samples] * options.samples,
        targets,
        any_size=any_size,
        chunk=points_per_pass(model, chosen),
        absolute=True,
        progress=progress,
    )
    pixels = sums.sum(dim=1).to(torch.float32).numpy()
    return Attribution(
        maps=patch_sums(pixels, chosen),
        targets=targets.detach().cpu().numpy().astype(np.int64),
        pixels=np.ascontiguousarray(pixels),
    )


class _SmoothGrad(Attributor):
    def key(self, options: MethodOptions, spec: Any) -> tuple:
        return (options.target_class, options.samples, options.noise, options.noise_seed)

    def attribute(
        self,
        model: LoadedModel,
        batch: torch.Tensor,
        options: MethodOptions,
        grid: tuple[int, int] | None = None,
        progress: Progress | None = None,
    ) -> Attribution:
        return smoothgrad(model, batch, options, grid, progress)


def _caption(parameters: dict[str, Any], spec: Any, target: dict[str, Any] | None = None) -> str:
    return for_class("smoothgrad", target)


def _title(parameters: dict[str, Any], spec: Any, target: dict[str, Any] | None = None) -> str:
    samples = int(parameters.get("samples", 25))
    noise = float(parameters.get("noise", 0.15))
    seed = int(parameters.get("noise_seed", 0))
    return (
        f"{_caption(parameters, spec, target)} · {samples} samples · noise {noise:g} · seed {seed}"
    )


SMOOTHGRAD = register(
    Method(
        name="smoothgrad",
        label="SmoothGrad",
        summary="SmoothGrad (Smilkov et al. 2017): |gradient| of --target-class averaged over "
        "--samples noisy copies",
        tip="SmoothGrad: the class score's gradient per pixel, averaged over noisy copies of the "
        "image (Smilkov et al. 2017)",
        help_title="SmoothGrad",
        help="how strongly each pixel moves the class's score: the absolute gradient of the "
        "score with respect to the input, averaged over noisy copies of the image (Gaussian "
        "noise of the chosen share of the image's range, drawn from the chosen seed, so a map "
        "can be made again), then summed over the colour channels; a patch's value is the sum "
        "of its pixels'. Unsigned: it says where the score is sensitive, not which way. Needs "
        "a classifier; costs a forward and a backward per sample.",
        paper="Smilkov, Thorat, Kim, Viégas and Wattenberg, SmoothGrad: removing noise by "
        "adding noise, ICML 2017 workshop on visualization for deep learning",
        year=2017,
        options=("target_class", "samples", "noise", "noise_seed"),
        needs_model=True,
        needs_backward=True,
        class_specific=True,
        only_cls=True,
        requires_classifier=True,
        cost=2,
        cost_per="samples",
        explains="the class score's sensitivity, per pixel",
        per_token=False,
        pixels=True,
        not_applied="SmoothGrad attributes the class score to the input's pixels through the "
        "whole model: no layer or head applies. Show Attention to pick one.",
        title=_title,
        caption=_caption,
        compute=_SmoothGrad(),
        order=11,
    )
)
