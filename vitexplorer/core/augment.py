"""Random changes to training images, per batch, on uint8 tensors (B, 3, H, W).

- ``flip``: horizontal flips, each image with probability 1/2;
- ``crop-flip``: the CIFAR recipe (He et al. 2016): each image padded by 4 px of zeros on every
  side and cut back to its size at a random place, then flipped as above;
- ``trivialaugment`` / ``randaugment``: crop-flip, then torchvision's TrivialAugmentWide (Müller
  and Hutter 2021) or RandAugment (Cubuk et al. 2020, 2 operations of magnitude 9), drawn for
  each image, as in the DeiT and CCT recipes for training ViTs on small data.

Everything random follows ``generator``: the same generator state gives the same batch. The
torchvision policies draw from torch's global generator, so they run under a forked one seeded
from ``generator``; the caller's global random state is left as it was.
"""

from __future__ import annotations

import torch

AUGMENTATIONS = ("none", "flip", "crop-flip", "trivialaugment", "randaugment")
CROP_PADDING = 4


def augment_batch(images: torch.Tensor, policy: str, generator: torch.Generator) -> torch.Tensor:
    """``images`` (uint8, B x 3 x H x W) changed by ``policy``; same shape, dtype and device."""
    if policy not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {policy!r}; use {', '.join(AUGMENTATIONS)}")
    if policy == "none" or len(images) == 0:
        return images
    if policy == "flip":
        return random_flip(images, generator)
    out = random_flip(random_crop(images, CROP_PADDING, generator), generator)
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


def _torchvision_policy(
    images: torch.Tensor, policy: str, generator: torch.Generator
) -> torch.Tensor:
    from torchvision.transforms import v2

    transform = v2.TrivialAugmentWide() if policy == "trivialaugment" else v2.RandAugment()
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torch.stack([transform(image) for image in images])  # a draw for each image
