"""Random changes to training images, per batch, on uint8 tensors (B, 3, H, W).

- ``flip``: horizontal flips, each image with probability 1/2;
- ``crop-flip``: the CIFAR recipe (He et al. 2016): each image padded by 4 px of zeros on every
  side and cut back to its size at a random place, then flipped as above;
- ``crop-flip-rotate``: crop-flip, then each image turned by a random angle of at most
  :data:`MAX_ROTATION` degrees either way about its centre (bilinear, the corners it uncovers
  black), the small rotations of the tutorials' ``RandomRotation(15)``;
- ``trivialaugment`` / ``randaugment``: crop-flip, then torchvision's TrivialAugmentWide (Müller
  and Hutter 2021) or RandAugment (Cubuk et al. 2020, 2 operations of magnitude 9), drawn for
  each image, as in the DeiT and CCT recipes for training ViTs on small data.

Everything random follows ``generator``: the same generator state gives the same batch. The
torchvision policies draw from torch's global generator, so they run under a forked one seeded
from ``generator``; the caller's global random state is left as it was.
"""

from __future__ import annotations

import torch

from vitexplorer.core.training.config import AUGMENTATIONS

CROP_PADDING = 4
MAX_ROTATION = 15.0  # degrees


def augment_batch(images: torch.Tensor, policy: str, generator: torch.Generator) -> torch.Tensor:
    """``images`` (uint8, B x 3 x H x W) changed by ``policy``; same shape, dtype and device."""
    if policy not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {policy!r}; use {', '.join(AUGMENTATIONS)}")
    if policy == "none" or len(images) == 0:
        return images
    if policy == "flip":
        return random_flip(images, generator)
    out = random_flip(random_crop(images, CROP_PADDING, generator), generator)
    if policy == "crop-flip-rotate":
        out = random_rotate(out, MAX_ROTATION, generator)
    if policy in ("trivialaugment", "randaugment"):
        out = _torchvision_policy(out, policy, generator)
    return out


def random_flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image flipped left to right with probability 1/2."""
    flips = torch.rand(len(images), generator=generator) < 0.5
    return torch.where(flips.to(images.device)[:, None, None, None], images.flip(-1), images)


def random_crop(images: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Each image padded by ``padding`` px of zeros and cut back to its size at a random place."""
    b, _, h, w = images.shape
    padded = torch.nn.functional.pad(images, (padding, padding, padding, padding))
    tops = torch.randint(0, 2 * padding + 1, (b,), generator=generator).tolist()
    lefts = torch.randint(0, 2 * padding + 1, (b,), generator=generator).tolist()
    return torch.stack(
        [
            padded[i, :, t : t + h, x : x + w]
            for i, (t, x) in enumerate(zip(tops, lefts, strict=True))
        ]
    )


def random_rotate(images: torch.Tensor, degrees: float, generator: torch.Generator) -> torch.Tensor:
    """Each image turned about its centre by an angle drawn uniformly from -``degrees`` to
    ``degrees``, the whole batch in one resampling (``affine_grid`` and ``grid_sample``)."""
    b, _, h, w = images.shape
    angles = (torch.rand(b, generator=generator) * 2 - 1) * degrees * torch.pi / 180
    cos, sin = torch.cos(angles), torch.sin(angles)
    aspect = h / w  # normalised coordinates: keep a non-square image's angles true
    theta = torch.stack(
        [torch.stack([cos, -sin * aspect, torch.zeros(b)], 1),
         torch.stack([sin / aspect, cos, torch.zeros(b)], 1)], 1,
    ).to(images.device)  # fmt: skip
    grid = torch.nn.functional.affine_grid(theta, [b, 3, h, w], align_corners=False)
    turned = torch.nn.functional.grid_sample(
        images.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    return turned.round_().clamp_(0, 255).to(images.dtype)


def _torchvision_policy(
    images: torch.Tensor, policy: str, generator: torch.Generator
) -> torch.Tensor:
    from torchvision.transforms import v2

    transform = v2.TrivialAugmentWide() if policy == "trivialaugment" else v2.RandAugment()
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torch.stack([transform(image) for image in images])  # a draw for each image
