"""The model's preprocessing: an image (decoded safely by
:func:`vitexplorer.core.io.images.load_image`, which every image that enters the app goes
through) made into the model's input, and the patch grids of its inputs."""

from __future__ import annotations

import math

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torchvision.transforms import InterpolationMode

from vitexplorer.core.models.feed import CROP, Feed
from vitexplorer.core.models.spec import ModelSpec


def aspect_grid(width: int, height: int, spec: ModelSpec, max_ratio: int = 4) -> tuple[int, int]:
    """The patch grid (rows, cols) for an image of ``width`` x ``height`` analysed at its own
    aspect ratio: about as many patches as the model's own input has, in the image's
    proportions (up to ``max_ratio`` to 1, as :func:`_central_part` cuts longer strips)."""
    ratio = min(max(width / height, 1 / max_ratio), max_ratio)
    patches = spec.num_patches if spec.grid_shape is None else spec.grid[0] * spec.grid[1]
    rows = max(1, round(math.sqrt(patches / ratio)))
    cols = max(1, round(math.sqrt(patches * ratio)))
    return rows, cols


def input_grid(spec: ModelSpec, height: int, width: int) -> tuple[int, int]:
    """The patch grid (rows, cols) of a preprocessed input of ``height`` x ``width`` pixels:
    the model's own grid for its own input, else the grid the size splits into (an image
    preprocessed whole, ``feed=WHOLE``). ValueError when the size does not split into patches."""
    rows, cols = spec.grid
    patch = spec.patch_size
    if (height, width) in ((spec.image_size, spec.image_size), (rows * patch, cols * patch)):
        return spec.grid
    if height % patch or width % patch or height < patch or width < patch:
        raise ValueError(
            f"a {height}x{width} input does not split into the model's {patch}-pixel patches"
        )
    return height // patch, width // patch


def preprocess(image: Image.Image, spec: ModelSpec, feed: Feed = CROP) -> torch.Tensor:
    """The model's input (3, S, S): resize, centre-crop, scale, normalise, as the model's own
    library does it: torchvision's ``transforms()`` of its weights, timm's ``create_transform``
    of its ``pretrained_cfg`` (``crop_mode`` center, squash or border), or a Hugging Face image
    processor (which resizes uint8 tensors and rounds the crop's offset down).

    With ``feed=WHOLE`` the whole image is resized to the patch grid of :func:`aspect_grid` (no
    crop): (3, rows * patch, cols * patch).
    """
    image = _central_part(image)
    interpolation = InterpolationMode(spec.interpolation)
    if feed.whole:
        rows, cols = aspect_grid(image.width, image.height, spec)
        size = [rows * spec.patch_size, cols * spec.patch_size]
        resized = TF.resize(image, size, interpolation=interpolation, antialias=True)
        tensor = TF.convert_image_dtype(TF.pil_to_tensor(resized), torch.float32)
        return TF.normalize(tensor, list(spec.mean), list(spec.std))
    if spec.family == "hf":
        return _hf_input(image, spec, interpolation)
    if spec.crop_mode == "border":
        from timm.data.transforms import CenterCropOrPad, ResizeKeepRatio

        side, fill = spec.resize_size, [round(255 * v) for v in spec.mean]
        resized = ResizeKeepRatio((side, side), longest=1.0, interpolation=spec.interpolation)(
            image
        )
        # timm's annotation says int or a 3-tuple; it hands fill to torchvision, which takes a list
        cropped = CenterCropOrPad(spec.image_size, fill=fill)(resized)  # type: ignore[arg-type]
    else:
        size = [spec.resize_size] * (2 if spec.crop_mode == "squash" else 1)
        resized = TF.resize(image, size, interpolation=interpolation, antialias=True)
        cropped = TF.center_crop(resized, [spec.image_size])
    tensor = TF.convert_image_dtype(TF.pil_to_tensor(cropped), torch.float32)
    return TF.normalize(tensor, list(spec.mean), list(spec.std))


def _hf_input(
    image: Image.Image, spec: ModelSpec, interpolation: InterpolationMode
) -> torch.Tensor:
    """A Hugging Face image processor's steps (its torchvision backend): the uint8 image resized
    as a tensor by torchvision's v2 functions, as transformers does, the crop's offset rounded
    down, rescaling folded into the normalisation."""
    from torchvision.transforms.v2 import functional as F2  # transformers' own, on first use

    pixels = TF.pil_to_tensor(image)
    size = [spec.resize_size] * (2 if spec.crop_mode == "squash" else 1)
    pixels = F2.resize(pixels, size, interpolation=interpolation, antialias=True)
    height, width = pixels.shape[-2:]
    side = spec.image_size
    if (height, width) != (side, side):
        pixels = TF.crop(
            pixels, _offset(height - side, spec), _offset(width - side, spec), side, side
        )
    mean, std = [255.0 * m for m in spec.mean], [255.0 * s for s in spec.std]
    return TF.normalize(pixels.to(torch.float32), mean, std)


def _offset(extra: int, spec: ModelSpec) -> int:
    """A centre crop's offset for ``extra`` pixels more than the crop: Hugging Face's processors
    round it down, torchvision's ``center_crop`` (and timm's) to the nearest."""
    return int(extra / 2.0) if spec.family == "hf" else int(round(extra / 2.0))


def _central_part(image: Image.Image, max_ratio: int = 4) -> Image.Image:
    """Cut a very long, thin image down to its central part, at most ``max_ratio`` to 1.

    The centre crop reaches only the middle of the long side, but resizing the short side first
    would blow the whole image up: a 60000x2 strip becomes billions of pixels. Ordinary photos
    and panoramas up to 4:1 pass untouched, so they match torchvision's transforms exactly."""
    width, height = image.size
    short, long = min(width, height), max(width, height)
    keep = short * max_ratio
    if long <= keep:
        return image
    start = (long - keep) // 2
    box = (start, 0, start + keep, height) if width > height else (0, start, width, start + keep)
    return image.crop(box)


def crop_box(width: int, height: int, spec: ModelSpec) -> tuple[float, float, float, float]:
    """The region of the original image, (left, top, right, bottom), that the model sees; it
    reaches past the image where timm's ``border`` mode pads it."""
    size, resize = spec.image_size, spec.resize_size
    if spec.crop_mode == "squash":
        new_w = new_h = resize
    elif spec.crop_mode == "border":  # timm's ResizeKeepRatio(longest=1.0)
        ratio = max(width, height) / resize
        new_w, new_h = round(width / ratio), round(height / ratio)
    else:
        short, long = sorted((width, height))
        new_long = int(resize * long / short)
        new_w, new_h = (resize, new_long) if width <= height else (new_long, resize)
    if spec.crop_mode == "border" and (new_w < size or new_h < size):
        left = -((size - new_w) // 2) if new_w < size else int(round((new_w - size) / 2.0))
        top = -((size - new_h) // 2) if new_h < size else int(round((new_h - size) / 2.0))
    else:
        left, top = _offset(new_w - size, spec), _offset(new_h - size, spec)
    sx, sy = width / new_w, height / new_h
    return left * sx, top * sy, (left + size) * sx, (top + size) * sy


def display_crop(
    image: Image.Image, spec: ModelSpec, max_side: int = 768, feed: Feed = CROP
) -> np.ndarray:
    """What the model saw, at display resolution: (H, W, 3) uint8, row-major. With
    ``feed=WHOLE``, the whole image (its central 4:1 part at most) in the proportions of its
    patch grid."""
    if feed.whole:
        part = _central_part(image)
        rows, cols = aspect_grid(part.width, part.height, spec)
        scale = max(spec.patch_size, max_side // max(rows, cols))
        region = part.resize((cols * scale, rows * scale), Image.Resampling.BICUBIC)
        return np.ascontiguousarray(np.asarray(region, dtype=np.uint8))
    box = crop_box(image.width, image.height, spec)
    side = int(round(max(box[2] - box[0], box[3] - box[1])))
    side = max(spec.image_size, min(side, max_side))
    if box[0] < 0 or box[1] < 0 or box[2] > image.width or box[3] > image.height:
        image, box = _padded(image, box, spec)
    region = image.resize((side, side), Image.Resampling.BICUBIC, box=box)
    return np.ascontiguousarray(np.asarray(region, dtype=np.uint8))


def _padded(
    image: Image.Image, box: tuple[float, float, float, float], spec: ModelSpec
) -> tuple[Image.Image, tuple[float, float, float, float]]:
    """``image`` on a canvas that holds all of ``box`` (timm's border, in its fill colour), and
    the box on that canvas."""
    left, top = math.floor(min(box[0], 0)), math.floor(min(box[1], 0))
    right = math.ceil(max(box[2], image.width))
    bottom = math.ceil(max(box[3], image.height))
    fill = tuple(round(255 * v) for v in spec.mean)
    canvas = Image.new("RGB", (right - left, bottom - top), fill)
    canvas.paste(image, (-left, -top))
    return canvas, (box[0] - left, box[1] - top, box[2] - left, box[3] - top)
