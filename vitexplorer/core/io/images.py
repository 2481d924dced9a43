"""Safe image decoding, without torch: every image that enters the app goes through
:func:`load_image`. It refuses what is not an image, empty, truncated or absurdly large (a
decompression bomb) with a message a person can act on, and turns everything else (EXIF-rotated,
16-bit, CMYK, palette, with alpha) into plain 8-bit RGB. The window decodes its previews with it
before torch is even imported; :mod:`vitexplorer.core.models.preprocessing` adds the model's
preprocessing.
"""

from __future__ import annotations

import errno
import functools
import importlib
import io
import os
import stat
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vitexplorer.core.io.paths import node_kind

MAX_PIXELS = 100_000_000  # 100 megapixels: bigger than any camera, smaller than a bomb
MAX_FILE_BYTES = 500_000_000  # bytes; an image file larger than this is refused unread
# The raster formats decoded, and no others: Pillow would hand EPS and PostScript (whatever the
# file's name) to Ghostscript, an external program; nothing external ever runs here. MPO is the
# JPEG that phones write. The suffixes shown in file dialogs and searched in folders are
# vitexplorer.core.io.folders.IMAGE_SUFFIXES, which name these formats.
TIFF_JPEG = ("jpeg", "tiff_jpeg")  # Pillow's names for JPEG-compressed TIFF (7, and old-style 6)
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
            scans = _jpeg_scans(name, data) if data.startswith(b"\xff\xd8") else 0
            _check_header_work(name, data)
            image: Image.Image = Image.open(io.BytesIO(data), formats=_raster_formats())
            width, height = image.size
            if width * height > max_pixels:
                raise ImageLoadError(
                    f"{name}: {width}x{height} pixels is {width * height / 1e6:.0f} megapixels, "
                    f"more than the {max_pixels / 1e6:.0f} megapixel limit; scale it down first"
                )
            if image.format in ("JPEG", "MPO"):
                _check_scans(name, scans, width * height)
            elif image.format == "TIFF" and image.info.get("compression") in TIFF_JPEG:
                _check_tiff_scans(name, data, image)
            image.load()
    except ImageLoadError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageLoadError(
            f"{name}: not an image format that vitexplorer reads "
            f"({', '.join(f for f in RASTER_FORMATS if f != 'MPO')})"
        ) from exc
    except ValueError as exc:
        if "MAX_TEXT_CHUNK" not in str(exc) and "MAX_TEXT_MEMORY" not in str(exc):
            reason = _reason(exc)
            raise ImageLoadError(f"{name}: the file is truncated or corrupt ({reason})") from exc
        raise ImageLoadError(
            f"{name}: a compressed text or colour-profile block inflates beyond Pillow's limit "
            f"(a decompression bomb); re-save the image without its metadata"
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


def _jpeg_scans(name: str, data: bytes) -> int:
    """The scans of a JPEG (:mod:`vitexplorer.core.io.jpeg_scans`), counted before Pillow parses
    its header; a file of endless segments or stray bytes is refused here."""
    from vitexplorer.core.io.jpeg_scans import HostileMarkers, count_scans

    try:
        return count_scans(data)
    except HostileMarkers as exc:
        raise ImageLoadError(
            f"{name}: a JPEG with {exc}, far beyond any real photo; re-save it (as PNG, say)"
        ) from exc


def _check_header_work(name: str, data: bytes) -> None:
    """Refuse a PNG, GIF or PPM that Pillow's header parser, written in Python, would walk for
    minutes (:mod:`vitexplorer.core.io.header_work`)."""
    from vitexplorer.core.io import header_work as work

    if data.startswith(b"\x89PNG\r\n\x1a\n") and work.png_chunks(data) > work.MAX_CHUNKS:
        what = f"a PNG of more than {work.MAX_CHUNKS:,} chunks (real ones have a few dozen)"
    elif data[:6] in (b"GIF87a", b"GIF89a") and work.gif_blocks(data) > work.MAX_BLOCKS:
        what = f"a GIF of more than {work.MAX_BLOCKS:,} blocks before its first image"
    elif data[:1] == b"P" and data[1:2] in (b"1", b"2", b"3", b"4", b"5", b"6", b"f", b"F"):
        if work.ppm_header_bytes(data) <= work.MAX_PPM_HEADER:
            return
        what = f"a PPM header (comments included) over {work.MAX_PPM_HEADER:,} bytes"
    else:
        return
    raise ImageLoadError(f"{name}: {what}, far beyond any real image; re-save it in an editor")


def _check_scans(name: str, scans: int, pixels: int) -> None:
    """Refuse a JPEG whose ``scans`` would keep the decoder busy for minutes, before decoding."""
    from vitexplorer.core.io.jpeg_scans import MAX_SCAN_PIXELS, MAX_SCANS

    if scans > MAX_SCANS:
        raise ImageLoadError(
            f"{name}: a progressive JPEG of more than {MAX_SCANS} scans (ordinary files have "
            f"about 10; each one is a pass over the whole image); re-save it as a plain JPEG or PNG"
        )
    if scans * pixels > MAX_SCAN_PIXELS:
        raise ImageLoadError(
            f"{name}: a progressive JPEG of {scans} scans over {pixels / 1e6:.0f} megapixels, "
            f"more decoding work than the limit of {MAX_SCAN_PIXELS / 1e9:.0f} billion "
            f"pixel-scans; re-save it as a plain JPEG or PNG, or scale it down"
        )


def _check_tiff_scans(name: str, data: bytes, image: Image.Image) -> None:
    """Refuse a TIFF whose JPEG-compressed strips hold more scans than libtiff decodes (it would
    stop with a line of its own on stderr and a bare "decoder error")."""
    from vitexplorer.core.io.jpeg_scans import (
        MAX_SCAN_PIXELS,
        TIFF_MAX_SCANS,
        HostileMarkers,
        tiff_strip_scans,
    )

    tags = getattr(image, "tag_v2", {})
    offsets = tags.get(273) or tags.get(324) or ()  # StripOffsets, or TileOffsets
    counts = tags.get(279) or tags.get(325) or ()  # StripByteCounts, or TileByteCounts
    offsets = offsets if isinstance(offsets, tuple) else (offsets,)
    counts = counts if isinstance(counts, tuple) else (counts,)
    try:
        scans = tiff_strip_scans(data, offsets, counts)
    except HostileMarkers as exc:
        raise ImageLoadError(
            f"{name}: a TIFF whose JPEG-compressed strip has {exc}; re-save it uncompressed "
            f"or as PNG"
        ) from exc
    pixels = image.width * image.height
    if scans > TIFF_MAX_SCANS or scans * pixels > MAX_SCAN_PIXELS:
        shown = f"more than {TIFF_MAX_SCANS}" if scans > TIFF_MAX_SCANS else str(scans)
        raise ImageLoadError(
            f"{name}: a TIFF with a JPEG-compressed strip of {shown} scans over "
            f"{pixels / 1e6:.0f} megapixels (libtiff stops at 100 scans, and the limit here is "
            f"{MAX_SCAN_PIXELS / 1e9:.0f} billion pixel-scans; ordinary strips have 1); "
            f"re-save it uncompressed or as PNG"
        )


def read_image_file(path: str | Path, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of the regular file ``path``, or an :class:`ImageLoadError` that says what it is
    instead (missing, a folder, a pipe, a device, a looping link, too large, unreadable); see
    :func:`open_regular_file`."""
    name = _display_name(path)
    with open_regular_file(path, limit) as handle:
        try:
            data = handle.read(limit + 1)
        except OSError as exc:
            raise ImageLoadError(f"{name}: cannot be read ({exc.strerror or exc})") from exc
    if len(data) > limit:  # the file grew while it was read
        raise ImageLoadError(f"{name}: more than the {_megabytes(limit)} limit for an image file")
    return data


def open_regular_file(
    path: str | Path,
    limit: int,
    what: str = "an image file",
    error: type[Exception] = ImageLoadError,
) -> BinaryIO:
    """``path`` opened for reading in binary, once it is known to be a regular file of at most
    ``limit`` bytes; otherwise an ``error`` whose one line names the file and says what it is
    instead of ``what`` (missing, a folder, a pipe, a device, a looping link, too large,
    unreadable).

    The file is opened without blocking and checked on its open descriptor before a byte is read,
    so a FIFO cannot stall the caller and ``/dev/zero`` cannot fill the memory."""
    name = _display_name(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    flags |= getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError as exc:
        if os.path.islink(path):
            raise error(f"{name}: a symbolic link to a file that does not exist") from exc
        raise error(f"{name}: file not found") from exc
    except IsADirectoryError as exc:
        raise error(f"{name}: is a folder, not {what}") from exc
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise error(f"{name}: a symbolic link that loops (it never reaches a file)") from exc
        if exc.errno == errno.ENAMETOOLONG:
            raise error(f"{name}: the name is longer than the system allows") from exc
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise error(
                f"cannot read {name}: permission denied; give yourself read access "
                f"(chmod u+r, and search access to its folders) or copy it somewhere readable"
            ) from exc
        raise error(f"{name}: cannot be read ({exc.strerror or exc})") from exc
    try:
        info = os.fstat(fd)
        kind = _not_a_file(info.st_mode)
        if kind:
            raise error(f"{name}: is {kind}, not {what}")
        if info.st_size > limit:
            raise error(
                f"{name}: {_megabytes(info.st_size)} is more than the {_megabytes(limit)} limit "
                f"for {what}"
            )
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb", closefd=True)
    except OSError as exc:
        os.close(fd)
        raise error(f"{name}: cannot be read ({exc.strerror or exc})") from exc
    except BaseException:
        os.close(fd)
        raise


def _not_a_file(mode: int) -> str | None:
    """What a non-regular file is, in words; None for a regular file."""
    return None if stat.S_ISREG(mode) else node_kind(mode)


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


@functools.cache
def _raster_formats() -> tuple[str, ...]:
    """The formats of :data:`RASTER_FORMATS` this Pillow reads. Only their plugins are
    imported (``Image.init()`` would import all 40-odd: 30 to 100 ms per process)."""
    for plugin in ("Png", "Jpeg", "Mpo", "Bmp", "Gif", "Tiff", "WebP", "Ppm"):
        try:
            importlib.import_module(f"PIL.{plugin}ImagePlugin")
        except ImportError:  # a Pillow built without it: that format is not offered
            continue
    return tuple(f for f in RASTER_FORMATS if f in Image.OPEN)


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
