"""Hostile and unusual image inputs, made on the spot in a folder: what a careless download, a
malicious sender or an odd camera hands the app. Each case says what a user must get:
``refused`` (one clear line naming the file and the reason), ``shown`` (decoded and analysed), or
``either`` (a truncated file that may still hold a whole image: shown, or refused in one line,
never a crash).
"""

from __future__ import annotations

import io
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

MARKER = "code-ran.marker"  # a hostile input that manages to run code creates this file


@dataclass(frozen=True)
class HostileImage:
    case: str  # an id for reports
    path: Path
    expect: str  # "refused", "shown" or "either"
    words: str = ""  # what a refusal must say (lower case), when expect is "refused"


def photo(seed: int = 0, size: tuple[int, int] = (96, 64)) -> Image.Image:
    """A small picture with structure in it (so a wrong orientation shows)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0 : size[1], 0 : size[0]]
    rgb = np.stack([x * 255 // size[0], y * 255 // size[1], (x * y) % 256], axis=-1)
    rgb = (rgb + rng.integers(0, 20, rgb.shape)).clip(0, 255).astype(np.uint8)
    return Image.fromarray(rgb)


def encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _eps(body: str) -> bytes:
    return ("%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\n" + body + "\nshowpage\n").encode()


def eps_payloads(folder: Path) -> dict[str, bytes]:
    """PostScript that Pillow would hand to Ghostscript: a loop, an error, a print to stdout,
    and one that writes the marker file (code execution, if it ever ran)."""
    marker = (folder / MARKER).as_posix()
    return {
        "eps-loop": _eps("{ } loop"),
        "eps-error": _eps("undefinedcommand"),
        "eps-print": _eps("(hello from ghostscript) print flush"),
        "eps-write": _eps(f"({marker}) (w) file dup (ran) writestring closefile"),
    }


def truncated_cases(folder: Path, offsets_per_format: int = 6) -> list[HostileImage]:
    """The same picture in each readable format, cut at several offsets."""
    picture = photo(1)
    formats = {
        "png": ("PNG", {}),
        "jpg": ("JPEG", {"quality": 90}),
        "gif": ("GIF", {}),
        "webp": ("WEBP", {"quality": 80}),
        "tif": ("TIFF", {}),
        "bmp": ("BMP", {}),
        "ppm": ("PPM", {}),
    }
    cases = []
    rng = random.Random(9)
    for suffix, (fmt, options) in formats.items():
        data = encoded(picture, fmt, **options)
        offsets = sorted({1, 8, 30, len(data) // 2, len(data) - 1, rng.randrange(2, len(data))})
        for offset in offsets[:offsets_per_format]:
            path = folder / f"cut-{suffix}-{offset}.{suffix}"
            path.write_bytes(data[:offset])
            cases.append(HostileImage(f"truncated {suffix} at {offset}", path, "either"))
    return cases


def odd_mode_cases(folder: Path) -> list[HostileImage]:
    """Modes and depths that must be shown as ordinary RGB."""
    base = photo(2)
    grey = base.convert("L")
    makers: dict[str, Callable[[], tuple[Image.Image, str]]] = {
        "mode-1.png": lambda: (base.convert("1"), "PNG"),
        "mode-L.png": lambda: (grey, "PNG"),
        "mode-LA.png": lambda: (base.convert("LA"), "PNG"),
        "mode-P.png": lambda: (base.convert("P"), "PNG"),
        "mode-P-transparent.png": lambda: (base.convert("P"), "PNG"),
        "mode-RGBA.png": lambda: (base.convert("RGBA"), "PNG"),
        "mode-I16.png": lambda: (Image.fromarray(np.asarray(grey, np.uint16) * 257), "PNG"),
        "mode-I.tif": lambda: (Image.fromarray(np.asarray(grey, np.int32) * 1000), "TIFF"),
        "mode-F.tif": lambda: (Image.fromarray(np.asarray(grey, np.float32) / 255), "TIFF"),
        "mode-F-nan.tif": lambda: (
            Image.fromarray(np.where(np.asarray(grey) > 100, np.nan, 1.0).astype(np.float32)),
            "TIFF",
        ),
        "mode-CMYK.jpg": lambda: (base.convert("CMYK"), "JPEG"),
        "mode-CMYK.tif": lambda: (base.convert("CMYK"), "TIFF"),
        "mode-YCbCr.tif": lambda: (base.convert("YCbCr"), "TIFF"),
        "mode-LAB.tif": lambda: (base.convert("LAB"), "TIFF"),
        "one-pixel.png": lambda: (Image.new("RGB", (1, 1), (200, 10, 10)), "PNG"),
        "strip-1x4000.png": lambda: (Image.new("RGB", (4000, 1), (0, 90, 0)), "PNG"),
        "animated.gif": lambda: (base, "GIF"),
    }
    cases = []
    for name, make in makers.items():
        image, fmt = make()
        path = folder / name
        options: dict[str, object] = {}
        if name == "animated.gif":
            options = {"save_all": True, "append_images": [photo(3)]}
        elif name == "mode-P-transparent.png":
            options = {"transparency": 0}
        image.save(path, format=fmt, **options)
        cases.append(HostileImage(name, path, "shown"))
    return cases


def upright_picture() -> Image.Image:
    return photo(4)


def exif_orientation_cases(folder: Path) -> list[HostileImage]:
    """The same upright picture stored in each of the 8 EXIF orientations (stored pixels
    transformed the opposite way, the tag saying how to undo it)."""
    # what Pillow's exif_transpose applies for each tag; the picture is stored with its inverse
    applied = {
        1: None,
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_270,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_90,
    }
    inverse = {
        Image.Transpose.ROTATE_90: Image.Transpose.ROTATE_270,
        Image.Transpose.ROTATE_270: Image.Transpose.ROTATE_90,
    }
    upright = upright_picture()
    cases = []
    for orientation, transpose in applied.items():
        stored = (
            upright if transpose is None else upright.transpose(inverse.get(transpose, transpose))
        )
        exif = Image.Exif()
        exif[0x0112] = orientation
        path = folder / f"exif-{orientation}.png"
        stored.save(path, format="PNG", exif=exif.tobytes())
        cases.append(HostileImage(f"exif orientation {orientation}", path, "shown"))
    return cases


def special_file_cases(folder: Path) -> list[HostileImage]:
    """Things that are not regular files, or not images, or too big to read."""
    cases = []
    for case, data in eps_payloads(folder).items():
        path = folder / f"{case}.png"  # PostScript whatever the name says
        path.write_bytes(data)
        cases.append(HostileImage(case, path, "refused", "not an image format"))
    fifo = folder / "fifo.png"
    os.mkfifo(fifo)
    cases.append(HostileImage("fifo", fifo, "refused", "pipe"))
    cases.append(HostileImage("/dev/zero", Path("/dev/zero"), "refused", "device"))
    (folder / "folder.png").mkdir()
    cases.append(HostileImage("folder named .png", folder / "folder.png", "refused", "folder"))
    os.symlink("loop-b.png", folder / "loop-a.png")
    os.symlink("loop-a.png", folder / "loop-b.png")
    cases.append(HostileImage("symlink loop", folder / "loop-a.png", "refused", "loops"))
    os.symlink("nowhere.png", folder / "dangling.png")
    cases.append(HostileImage("dangling symlink", folder / "dangling.png", "refused", "not exist"))
    huge = folder / "huge.png"
    with open(huge, "wb") as handle:  # sparse: 600 MB on paper, nothing on the disk
        handle.truncate(600_000_000)
    cases.append(HostileImage("600 MB file", huge, "refused", "600 mb is more than"))
    bomb = folder / "bomb.png"
    Image.new("1", (20_000, 20_000)).save(bomb, format="PNG")  # 400 MP in a few kB
    cases.append(HostileImage("decompression bomb", bomb, "refused", "megapixel"))
    (folder / "empty.png").write_bytes(b"")
    cases.append(HostileImage("empty file", folder / "empty.png", "refused", "empty"))
    (folder / "noise.jpg").write_bytes(random.Random(5).randbytes(5000))
    cases.append(HostileImage("random bytes", folder / "noise.jpg", "refused", "not an image"))
    (folder / "notes.png").write_text("not a picture\n" * 20)
    cases.append(HostileImage("text file", folder / "notes.png", "refused", "not an image"))
    header = bytearray(encoded(photo(5), "PNG"))
    header[16:24] = (60000).to_bytes(4, "big") + (60000).to_bytes(4, "big")  # lying IHDR
    (folder / "liar.png").write_bytes(bytes(header))
    cases.append(HostileImage("PNG header lying about its size", folder / "liar.png", "refused"))
    return cases


def name_cases(folder: Path) -> list[HostileImage]:
    """Valid images under names that tripped writers and readers."""
    limit = os.pathconf(folder, "PC_NAME_MAX")
    cases = []
    for case, name in (
        ("longest legal name", "l" * (limit - 4) + ".png"),
        ("234-character name", "m" * 230 + ".png"),
        ("spaces and quotes", 'it\'s a "photo" (1).png'),
        ("newline in name", "two\nlines.png"),
        ("leading dash", "-rf.png"),
    ):
        path = folder / name
        photo(6).save(path, format="PNG")
        cases.append(HostileImage(case, path, "shown"))
    raw = os.path.join(os.fsencode(folder), b"caf\xe9-\xff.png")  # not UTF-8
    photo(7).save(raw.decode("utf-8", "surrogateescape"), format="PNG")
    cases.append(HostileImage("non-UTF-8 name", Path(os.fsdecode(raw)), "shown"))
    return cases


def all_image_cases(folder: Path) -> list[HostileImage]:
    folder.mkdir(parents=True, exist_ok=True)
    return [
        *special_file_cases(folder),
        *truncated_cases(folder),
        *odd_mode_cases(folder),
        *exif_orientation_cases(folder),
        *name_cases(folder),
    ]


# --- decode-work bombs (tests/fuzz/test_fuzz_decode.py, tests/core/test_image_bounds.py) -------

import functools  # noqa: E402


def jpeg_segments(data: bytes) -> tuple[bytes, list[bytes], bytes]:
    """A JPEG cut at its first scan: (what comes before, the segments from the first SOS up to
    EOI, each scan with its entropy-coded data, EOI and after)."""
    import re

    pos, first, segments = 2, None, []
    while data[pos + 1] != 0xD9:
        end = pos + 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        if data[pos + 1] == 0xDA:
            end = re.compile(rb"\xff(?=[^\x00\xd0-\xd7\xff])").search(data, end).start()
            first = pos if first is None else first
        if first is not None:
            segments.append(data[pos:end])
        pos = end
    return data[:first], segments, data[pos:]


def progressive_jpeg(size: tuple[int, int] = (64, 48), seed: int = 0) -> bytes:
    """A progressive JPEG of :func:`photo` (libjpeg's script: 10 scans for colour)."""
    return encoded(photo(seed, size), "JPEG", progressive=True, quality=90)


def repeated_scans(data: bytes, extra: int) -> bytes:
    """``data`` (a progressive JPEG) with its first scan (DC, first pass) repeated ``extra``
    times more right after itself: the same coefficients set again, the same picture, ``extra``
    more passes of decoding work."""
    head, segments, tail = jpeg_segments(data)
    return head + segments[0] * (1 + extra) + b"".join(segments[1:]) + tail


@functools.cache
def flat_progressive_jpeg(size: tuple[int, int]) -> bytes:
    """A progressive JPEG of one colour: a few hundred bytes per scan at any size."""
    return encoded(Image.new("RGB", size, (120, 80, 40)), "JPEG", progressive=True)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    import struct
    import zlib

    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def many_frame_apng(frames: int, side: int = 8, value: int = 100) -> bytes:
    """An APNG of ``frames`` frames, each ``side`` x ``side`` RGB of ``value``, built by hand."""
    import struct
    import zlib

    data = zlib.compress(b"".join(b"\x00" + bytes([value] * side * 3) for _ in range(side)))
    control = struct.Struct(">IIIIIHHBB")
    out = [
        b"\x89PNG\r\n\x1a\n",
        _png_chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)),
    ]
    out.append(_png_chunk(b"acTL", struct.pack(">II", frames, 0)))
    out += [
        _png_chunk(b"fcTL", control.pack(0, side, side, 0, 0, 1, 10, 0, 0)),
        _png_chunk(b"IDAT", data),
    ]
    sequence = 1
    for _ in range(frames - 1):
        out.append(_png_chunk(b"fcTL", control.pack(sequence, side, side, 0, 0, 1, 10, 0, 0)))
        out.append(_png_chunk(b"fdAT", struct.pack(">I", sequence + 1) + data))
        sequence += 2
    out.append(_png_chunk(b"IEND", b""))
    return b"".join(out)


def many_frame_gif(frames: int, side: int = 8) -> bytes:
    """A GIF whose one frame is repeated ``frames`` times (bytes copied, not re-encoded)."""
    data = encoded(Image.new("P", (side, side), 1), "GIF")
    start = data.find(b"\x2c")
    control = data.rfind(b"\x21\xf9", 0, start)
    start = control if control != -1 else start
    return data[:start] + data[start:-1] * frames + b";"


def many_page_tiff(pages: int, side: int = 8, value: int = 50) -> bytes:
    """A little-endian TIFF of ``pages`` grey pages chained by their IFDs, one shared strip."""
    import struct

    pixels = bytes([value]) * side * side
    first, size = 8 + len(pixels), 2 + 8 * 12 + 4
    out = [b"II*\x00" + struct.pack("<I", first), pixels]
    for page in range(pages):
        following = first + (page + 1) * size if page < pages - 1 else 0
        tags = [(256, 3, side), (257, 3, side), (258, 3, 8), (259, 3, 1), (262, 3, 1),
                (273, 4, 8), (278, 3, side), (279, 4, len(pixels))]  # fmt: skip
        body = b"".join(struct.pack("<HHII", tag, kind, 1, value) for tag, kind, value in tags)
        out.append(struct.pack("<H", len(tags)) + body + struct.pack("<I", following))
    return b"".join(out)


def many_frame_webp(frames: int, side: int = 8) -> bytes:
    """An animated WebP whose second frame is repeated to ``frames`` frames (bytes copied)."""
    import struct

    pictures = [
        Image.new("RGB", (side, side), (200, 0, 0)),
        Image.new("RGB", (side, side), (0, 200, 0)),
    ]
    data = encoded(pictures[0], "WEBP", save_all=True, append_images=pictures[1:], lossless=True)
    pos, chunks = 12, []
    while pos < len(data):
        length = struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        end = pos + 8 + length + (length & 1)
        chunks.append(data[pos:end])
        pos = end
    frames_at = [c for c in chunks if c[:4] == b"ANMF"]
    body = b"WEBP" + b"".join(c for c in chunks if c[:4] != b"ANMF")
    body += frames_at[0] + frames_at[1] * (frames - 1)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def jpeg_in_tiff(jpeg: bytes, side: int) -> bytes:
    """A ``side`` x ``side`` YCbCr TIFF whose one strip is ``jpeg`` (compression 7), built by
    hand: how a progressive scan bomb reaches libtiff's JPEG codec."""
    import struct

    tags = [(256, side), (257, side), (258, None), (259, 7), (262, 6), (273, None), (277, 3),
            (278, side), (279, len(jpeg)), (284, 1)]  # fmt: skip
    after = 8 + 2 + len(tags) * 12 + 4
    entries = b""
    for tag, value in tags:
        if tag == 258:  # BitsPerSample 8, 8, 8: stored after the IFD
            entries += struct.pack("<HHII", tag, 3, 3, after)
        elif tag in (273, 279):
            entries += struct.pack("<HHII", tag, 4, 1, after + 6 if tag == 273 else value)
        else:
            entries += struct.pack("<HHIHH", tag, 3, 1, value, 0)
    ifd = struct.pack("<H", len(tags)) + entries + b"\x00" * 4
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<HHH", 8, 8, 8) + jpeg


def junk_after_a_table(data: bytes, junk: bytes = b"\x12\x34\x00") -> bytes:
    """``data`` with stray bytes after the first Huffman table (DHT) between two scans."""
    head, segments, tail = jpeg_segments(data)
    table = next(n for n, segment in enumerate(segments) if segment[:2] == b"\xff\xc4")
    return head + b"".join(segments[: table + 1]) + junk + b"".join(segments[table + 1 :]) + tail


def gif_with_comments(count: int) -> bytes:
    """An 8 x 8 GIF with ``count`` comment extensions (three blocks each) before its image."""
    data = encoded(Image.new("P", (8, 8), 1), "GIF")
    start = data.find(b"\x2c")
    control = data.rfind(b"\x21\xf9", 0, start)
    start = control if control != -1 else start
    return data[:start] + b"\x21\xfe\x01x\x00" * count + data[start:]
