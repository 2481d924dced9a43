"""Safe image decoding and the model's preprocessing.

Every image that enters the app goes through :func:`load_image`: it refuses what is not an image,
empty, truncated or absurdly large (a decompression bomb) with a message a person can act on, and
turns everything else (EXIF-rotated, 16-bit, CMYK, palette, with alpha) into plain 8-bit RGB.
"""

from __future__ import annotations

import errno
import io
import math
import os
import stat
import warnings
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision.transforms import InterpolationMode

from vitexplorer.core.models import ModelSpec

MAX_PIXELS = 100_000_000  # 100 megapixels: bigger than any camera, smaller than a bomb
MAX_FILE_BYTES = 500_000_000  # bytes; an image file larger than this is refused unread
# The raster formats decoded, and no others: Pillow would hand EPS and PostScript (whatever the
# file's name) to Ghostscript, an external program; nothing external ever runs here. MPO is the
# JPEG that phones write. The suffixes shown in file dialogs and searched in folders are
# vitexplorer.core.session.IMAGE_SUFFIXES, which name these formats.
RASTER_FORMATS = ("PNG", "JPEG", "MPO", "BMP", "GIF", "TIFF", "WEBP", "PPM")


class ImageLoadError(ValueError):
    """An input that cannot be shown or analysed; the message says why."""


def load_image(source: str | Path | bytes, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode ``source`` (a path or encoded bytes) to an upright 8-bit RGB image."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        name, data = "clipboard image", bytes(source)
        if len(data) > MAX_FILE_BYTES:
            raise ImageLoadError(f"{name}: {_megabytes(len(data))} is more than the limit")
    else:
        name, data = _display_name(source), read_image_file(source)
    if not data:
        raise ImageLoadError(f"{name}: the file is empty")
    try:
        with warnings.catch_warnings():
            # Pillow warns from 89 MP on; max_pixels is the limit here, checked before decoding.
            # Pillow's own DecompressionBombError (twice its warning level) still applies. Its
            # other warnings (corrupt EXIF, truncated metadata) would be lines on the user's
            # terminal about a file that either decodes or is refused with its reason.
            warnings.simplefilter("ignore")
            image = Image.open(io.BytesIO(data), formats=_raster_formats())
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
        raise ImageLoadError(
            f"{name}: not an image format that vitexplorer reads "
            f"({', '.join(f for f in RASTER_FORMATS if f != 'MPO')})"
        ) from exc
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(
            f"{name}: too many pixels to decode safely (over the {max_pixels / 1e6:.0f} "
            f"megapixel limit); scale it down first"
        ) from exc
    except MemoryError as exc:
        raise ImageLoadError(f"{name}: not enough memory to decode it") from exc
    except Exception as exc:  # Pillow raises many kinds on damaged files: all mean the same
        raise ImageLoadError(f"{name}: the file is truncated or corrupt ({_reason(exc)})") from exc
    if width == 0 or height == 0:
        raise ImageLoadError(f"{name}: the image has no pixels")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Corrupt EXIF data" and the like
            image = ImageOps.exif_transpose(image)
    except Exception:  # a malformed EXIF block should not cost the user the picture
        pass
    try:
        return to_rgb8(image)
    except MemoryError as exc:
        raise ImageLoadError(f"{name}: not enough memory to decode it") from exc
    except Exception as exc:
        raise ImageLoadError(
            f"{name}: its colour mode {image.mode} cannot be shown ({_reason(exc)})"
        ) from exc


def read_image_file(path: str | Path, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of the regular file ``path``, or an :class:`ImageLoadError` that says what it is
    instead (missing, a folder, a pipe, a device, a looping link, too large, unreadable).

    The file is opened without blocking and checked on its open descriptor before a byte is read,
    so a FIFO cannot stall the caller and ``/dev/zero`` cannot fill the memory."""
    name = _display_name(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    flags |= getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError as exc:
        if os.path.islink(path):
            raise ImageLoadError(f"{name}: a symbolic link to a file that does not exist") from exc
        raise ImageLoadError(f"{name}: file not found") from exc
    except IsADirectoryError as exc:
        raise ImageLoadError(f"{name}: is a folder, not an image file") from exc
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            message = f"{name}: a symbolic link that loops (it never reaches a file)"
            raise ImageLoadError(message) from exc
        if exc.errno == errno.ENAMETOOLONG:
            raise ImageLoadError(f"{name}: the name is longer than the system allows") from exc
        raise ImageLoadError(f"{name}: cannot be read ({exc.strerror or exc})") from exc
    try:
        info = os.fstat(fd)
        kind = _not_a_file(info.st_mode)
        if kind:
            raise ImageLoadError(f"{name}: is {kind}, not an image file")
        if info.st_size > limit:
            raise ImageLoadError(
                f"{name}: {_megabytes(info.st_size)} is more than the {_megabytes(limit)} limit "
                f"for an image file"
            )
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=True) as handle:
            fd = -1
            data = handle.read(limit + 1)
    except OSError as exc:
        raise ImageLoadError(f"{name}: cannot be read ({exc.strerror or exc})") from exc
    finally:
        if fd >= 0:
            os.close(fd)
    if len(data) > limit:  # the file grew while it was read
        raise ImageLoadError(f"{name}: more than the {_megabytes(limit)} limit for an image file")
    return data


def _not_a_file(mode: int) -> str | None:
    """What a non-regular file is, in words; None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _display_name(path: str | Path) -> str:
    """The file's name as it can be printed on one line anywhere: bytes that are not UTF-8 and
    characters that do not print (a newline) as escapes."""
    name = Path(path).name or str(path)
    name = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    if name.isprintable():
        return name
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)


def _megabytes(nbytes: int) -> str:
    return f"{nbytes / 1e6:,.0f} MB" if nbytes >= 1e6 else f"{nbytes:,} bytes"


def _reason(exc: BaseException) -> str:
    """An exception in a few words, on one line."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def _raster_formats() -> list[str]:
    Image.init()
    return [f for f in RASTER_FORMATS if f in Image.OPEN]


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
    preprocessed with ``keep_aspect``). ValueError when the size does not split into patches."""
    rows, cols = spec.grid
    patch = spec.patch_size
    if (height, width) in ((spec.image_size, spec.image_size), (rows * patch, cols * patch)):
        return spec.grid
    if height % patch or width % patch or height < patch or width < patch:
        raise ValueError(
            f"a {height}x{width} input does not split into the model's {patch}-pixel patches"
        )
    return height // patch, width // patch


def preprocess(image: Image.Image, spec: ModelSpec, keep_aspect: bool = False) -> torch.Tensor:
    """The model's input (3, S, S): resize the short side, centre-crop, scale, normalise.

    The same steps, in the same order, as the ``transforms()`` of torchvision's weights. With
    ``keep_aspect`` the whole image is resized to the patch grid of :func:`aspect_grid` (no
    crop): (3, rows * patch, cols * patch).
    """
    image = _central_part(image)
    if keep_aspect:
        rows, cols = aspect_grid(image.width, image.height, spec)
        size = [rows * spec.patch_size, cols * spec.patch_size]
        interpolation = InterpolationMode(spec.interpolation)
        resized = TF.resize(image, size, interpolation=interpolation, antialias=True)
        tensor = TF.convert_image_dtype(TF.pil_to_tensor(resized), torch.float32)
        return TF.normalize(tensor, list(spec.mean), list(spec.std))
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


def display_crop(
    image: Image.Image, spec: ModelSpec, max_side: int = 768, keep_aspect: bool = False
) -> np.ndarray:
    """What the model saw, at display resolution: (H, W, 3) uint8, row-major. With
    ``keep_aspect``, the whole image (its central 4:1 part at most) in the proportions of its
    patch grid."""
    if keep_aspect:
        part = _central_part(image)
        rows, cols = aspect_grid(part.width, part.height, spec)
        scale = max(spec.patch_size, max_side // max(rows, cols))
        region = part.resize((cols * scale, rows * scale), Image.Resampling.BICUBIC)
        return np.ascontiguousarray(np.asarray(region, dtype=np.uint8))
    box = crop_box(image.width, image.height, spec)
    side = int(round(max(box[2] - box[0], box[3] - box[1])))
    side = max(spec.image_size, min(side, max_side))
    region = image.resize((side, side), Image.Resampling.BICUBIC, box=box)
    return np.ascontiguousarray(np.asarray(region, dtype=np.uint8))
