"""An image a program hands over (the Python API's ``model.analyze(image)``), as 8-bit RGB.

A path or encoded bytes go through :func:`~vitexplorer.core.io.images.load_image`, with every
guard a file gets; a PIL image or a numpy array is held to the same pixel limit and turned into
RGB the same way (:func:`~vitexplorer.core.io.images.to_rgb8`). Whatever cannot be an image is an
:class:`~vitexplorer.core.io.images.ImageLoadError` of one line. No torch.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from vitexplorer.core.io.images import MAX_PIXELS, ImageLoadError, load_image, to_rgb8

WHAT = (
    "an image is a path, encoded bytes, a PIL image or a numpy array (height, width[, 3 or 4]) "
    "of uint8 values 0..255 or floats 0..1"
)


def image_from(image: object) -> tuple[Image.Image, str | None]:
    """``image`` as 8-bit RGB, and its path when it came from a file (a method card names it)."""
    if isinstance(image, (str, os.PathLike)):
        path = os.fspath(image)
        if not isinstance(path, str):
            raise ImageLoadError(f"{WHAT}; a path is text, not {type(path).__name__}")
        return load_image(path), path
    if isinstance(image, (bytes, bytearray, memoryview)):
        return load_image(bytes(image)), None
    if isinstance(image, Image.Image):
        return _rgb(image), None
    if isinstance(image, np.ndarray):
        return _rgb(_from_array(image)), None
    raise ImageLoadError(f"{WHAT}, not {type(image).__name__}")


def _check_pixels(width: int, height: int) -> None:
    if width == 0 or height == 0:
        raise ImageLoadError("the image has no pixels")
    if width * height > MAX_PIXELS:
        raise ImageLoadError(
            f"the image's {width}x{height} pixels are {width * height / 1e6:.0f} megapixels, "
            f"more than the {MAX_PIXELS / 1e6:.0f} megapixel limit; scale it down first"
        )


def _rgb(image: Image.Image) -> Image.Image:
    _check_pixels(*image.size)
    try:
        return to_rgb8(image)
    except Exception as exc:  # Pillow refuses some modes in many ways: one line all the same
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ImageLoadError(
            f"the image's colour mode {image.mode} cannot be read ({reason})"
        ) from exc


def _from_array(array: np.ndarray) -> Image.Image:
    """A PIL image of a (height, width[, 1, 3 or 4]) array of 0..255 integers or 0..1 floats."""
    shape = tuple(int(n) for n in array.shape)
    if not (len(shape) == 2 or (len(shape) == 3 and shape[2] in (1, 3, 4))):
        raise ImageLoadError(
            f"a numpy image has the shape (height, width), (height, width, 3) or "
            f"(height, width, 4), not {shape}; put the colour channels last"
        )
    _check_pixels(shape[1], shape[0])
    if len(shape) == 3 and shape[2] == 1:
        array = array[:, :, 0]
    kind = array.dtype.kind
    if kind == "f":
        if not np.isfinite(array).all() or array.min() < 0.0 or array.max() > 1.0:
            raise ImageLoadError(
                "a numpy image of floats holds values from 0 to 1 (NaN and infinity are not "
                "colours); scale it, or give uint8 values from 0 to 255"
            )
        array = np.round(array.astype(np.float64) * 255.0).astype(np.uint8)
    elif kind in "iu":
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 255:
            raise ImageLoadError(
                f"a numpy image of integers holds values from 0 to 255, not {low} to {high}; "
                f"scale it to uint8 first"
            )
        array = array.astype(np.uint8)
    else:
        raise ImageLoadError(
            f"a numpy image holds uint8 values (0 to 255) or floats (0 to 1), not {array.dtype}"
        )
    return Image.fromarray(np.ascontiguousarray(array))
