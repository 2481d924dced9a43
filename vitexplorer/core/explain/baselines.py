"""What stands for an absent input: the baseline images of integrated gradients and occlusion.

A baseline is an image in the model's input space (after its normalisation) that carries no
evidence for any class; an attribution method measures how the class score changes from it to
the image. Three are offered (:data:`~vitexplorer.core.explain.method.BASELINES`):

- ``"black"``: an all-black picture put through the model's normalisation, ``(0 - mean) / std``
  per channel (the baseline of Sundararajan, Taly and Yan, ICML 2017);
- ``"mean"``: zeros in the normalised space, the picture of the dataset's mean colour;
- ``"blur"``: the image itself blurred by a Gaussian of sigma :data:`BLUR_SIGMA` patches (16 px
  for a /16 model), which removes what lies inside a patch and keeps the coarse layout (a blurred
  baseline as in Sturmfels, Lundberg and Lee, Distill 2020). The blur is taken in the normalised
  space; as normalising is affine per channel and the kernel sums to 1, that is the normalised
  blurred picture.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from vitexplorer.core.explain.method import BASELINES

if TYPE_CHECKING:
    import torch

    from vitexplorer.core.models.loading import LoadedModel

BLUR_SIGMA = 1.0  # the blurred baseline's Gaussian sigma, in patches (times the patch size in px)


def blur_kernel_size(sigma: float, side: int) -> int:
    """The odd width of a Gaussian kernel of ``sigma`` pixels for an image side of ``side``
    pixels: three sigmas each way, cut to what reflect padding allows (``side - 1`` each way)."""
    half = min(math.ceil(3.0 * sigma), max(side - 1, 0))
    return 2 * half + 1


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """``images`` (batch, channels, H, W) blurred by a Gaussian of ``sigma`` pixels, each
    channel alone, with reflect padding: torchvision's ``gaussian_blur`` with the kernel sizes of
    :func:`blur_kernel_size`, computed as two 1-D passes (the same numbers, far fewer sums)."""
    import torch
    import torch.nn.functional as F

    batch, channels, height, width = images.shape
    out = images
    for axis, side in ((3, width), (2, height)):
        size = blur_kernel_size(sigma, side)
        if size == 1:
            continue
        half = (size - 1) * 0.5
        x = torch.linspace(-half, half, steps=size, dtype=images.dtype, device=images.device)
        pdf = torch.exp(-0.5 * (x / sigma).pow(2))
        kernel = pdf / pdf.sum()
        if axis == 3:
            weight = kernel.view(1, 1, 1, size).expand(channels, 1, 1, size)
            padded = F.pad(out, [size // 2, size // 2, 0, 0], mode="reflect")
        else:
            weight = kernel.view(1, 1, size, 1).expand(channels, 1, size, 1)
            padded = F.pad(out, [0, 0, size // 2, size // 2], mode="reflect")
        out = F.conv2d(padded, weight, groups=channels)
    return out


def baseline_images(model: LoadedModel, batch: torch.Tensor, kind: str) -> torch.Tensor:
    """The baseline of each image of a (batch, 3, H, W) preprocessed batch: a tensor of the
    batch's shape, dtype and device. ``kind`` is "black", "mean" or "blur" (the module's words
    say what each is); the model's spec gives the normalisation and the patch size."""
    import torch

    if kind not in BASELINES:
        raise ValueError(f"unknown baseline {kind!r}; use one of {', '.join(BASELINES)}")
    if batch.ndim != 4 or batch.shape[1] != 3:
        raise ValueError(f"a batch of images is (batch, 3, H, W), not {tuple(batch.shape)}")
    spec = model.spec
    if kind == "mean":
        return torch.zeros_like(batch)
    if kind == "black":
        mean = torch.tensor(spec.mean, dtype=batch.dtype, device=batch.device)
        std = torch.tensor(spec.std, dtype=batch.dtype, device=batch.device)
        black = (0.0 - mean) / std
        return black.view(1, 3, 1, 1).expand_as(batch).clone()
    return gaussian_blur(batch, BLUR_SIGMA * spec.patch_size)
