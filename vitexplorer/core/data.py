"""Safe image decoding and the model's preprocessing.

Every image that enters the app goes through :func:`load_image`: it refuses what is not an image,
empty, truncated or absurdly large (a decompression bomb) with a message a person can act on, and
turns everything else (EXIF-rotated, 16-bit, CMYK, palette, with alpha) into plain 8-bit RGB.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision.transforms import InterpolationMode

from vitexplorer.core.models import ModelSpec

MAX_PIXELS = 100_000_000  # 100 megapixels: bigger than any camera, smaller than a bomb


class ImageLoadError(ValueError):
    """An input that cannot be shown or analysed; the message says why."""


def load_image(source: str | Path | bytes, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode ``source`` (a path or encoded bytes) to an upright 8-bit RGB image."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        name, data = "clipboard image", bytes(source)
    else:
        path = Path(source)
        name = path.name
        if not path.exists():
            raise ImageLoadError(f"{name}: file not found")
        if path.is_dir():
            raise ImageLoadError(f"{name}: is a folder, not an image")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ImageLoadError(f"{name}: cannot be read ({exc.strerror or exc})") from exc
    if not data:
        raise ImageLoadError(f"{name}: the file is empty")
    try:
        with warnings.catch_warnings():
            # Pillow warns from 89 MP on; max_pixels is the limit here, checked before decoding.
            # Pillow's own DecompressionBombError (twice its warning level) still applies.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise ImageLoadError(
                    f"{name}: {width}x{height} pixels is {width * height / 1e6:.0f} megapixels, "
                    f"more than the {max_pixels / 1e6:.0f} megapixel limit; scale it down first"
                )
            image.load()
    except ImageLoadError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageLoadError(f"{name}: not an image format that can be read") from exc
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(
            f"{name}: too many pixels to decode safely; scale it down first ({exc})"
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageLoadError(f"{name}: the file is truncated or corrupt ({exc})") from exc
    if width == 0 or height == 0:
        raise ImageLoadError(f"{name}: the image has no pixels")
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # a malformed EXIF block should not cost the user the picture
        pass
    return to_rgb8(image)


_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def to_rgb8(image: Image.Image) -> Image.Image:
    """Any PIL mode to 8-bit RGB: high bit depths rescaled, transparency over white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float32)  # exact up to 2**24; half of float64's RAM
        finite = np.isfinite(values) if image.mode == "F" else True
        low = float(values.min(where=finite, initial=np.inf))
        high = float(values.max(where=finite, initial=-np.inf))
        if low > high:  # no finite value at all
            low = high = 0.0
        if image.mode == "F" and (low == high or (low >= 0.0 and high <= 1.0)):
            values = values * 255.0  # floats in 0..1 are intensities, kept as they are
        elif image.mode == "F" or low < 0 or high > 65535:
            values = (values - low) / ((high - low) or 1.0) * 255.0
        elif image.mode != "I" or high > 255:
            # I;16 is always 16-bit, however dark; for plain I a maximum over 255 is the only clue
            values = values / 257.0
        values = np.nan_to_num(values, nan=0.0, posinf=255.0, neginf=0.0)
        return Image.fromarray(np.clip(values, 0, 255).round().astype(np.uint8)).convert("RGB")
    if image.mode == "La":
        image = image.convert("LA")  # Pillow converts premultiplied La only to LA
    has_alpha = image.mode in _ALPHA_MODES
    if "transparency" in image.info and image.mode in ("1", "L", "P", "RGB"):
        has_alpha = True  # a transparent palette index or colour key (PNG tRNS, GIF)
    if image.mode == "P" and image.palette is not None and image.palette.mode == "RGBA":
        has_alpha = True
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB") if image.mode != "RGB" else image


def preprocess(image: Image.Image, spec: ModelSpec) -> torch.Tensor:
    """The model's input (3, S, S): resize the short side, centre-crop, scale, normalise.

    The same steps, in the same order, as the ``transforms()`` of torchvision's weights.
    """
    image = _central_part(image)
    interpolation = InterpolationMode(spec.interpolation)
    resized = TF.resize(image, [spec.resize_size], interpolation=interpolation, antialias=True)
    cropped = TF.center_crop(resized, [spec.image_size])
    tensor = TF.convert_image_dtype(TF.pil_to_tensor(cropped), torch.float32)
    return TF.normalize(tensor, list(spec.mean), list(spec.std))


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
    """The region of the original image, (left, top, right, bottom), that the model sees."""
    short, long = sorted((width, height))
    new_long = int(spec.resize_size * long / short)
    new_w, new_h = (spec.resize_size, new_long) if width <= height else (new_long, spec.resize_size)
    size = spec.image_size
    left = int(round((new_w - size) / 2.0))
    top = int(round((new_h - size) / 2.0))
    sx, sy = width / new_w, height / new_h
    return left * sx, top * sy, (left + size) * sx, (top + size) * sy


def display_crop(image: Image.Image, spec: ModelSpec, max_side: int = 768) -> np.ndarray:
    """What the model saw, at display resolution: (H, W, 3) uint8, row-major."""
    box = crop_box(image.width, image.height, spec)
    side = int(round(max(box[2] - box[0], box[3] - box[1])))
    side = max(spec.image_size, min(side, max_side))
    region = image.resize((side, side), Image.Resampling.BICUBIC, box=box)
    return np.ascontiguousarray(np.asarray(region, dtype=np.uint8))
