"""How much of a PNG, GIF or PPM file Pillow's header parsers would walk, checked first.

Pillow parses these containers in Python, a chunk, a block or a byte at a time: about 0.1 to 0.2
seconds a megabyte of tiny chunks, comment blocks or comment bytes, so a 500 MB file of them
stalls the reader for a minute or two before a pixel is decoded. Real files have a few dozen
chunks or blocks before their pixels and a header of a few bytes; each walk below stops at a
limit far above that and returns what it found there (the caller refuses the file).
"""

from __future__ import annotations

import re

MAX_CHUNKS = 100_000  # PNG chunks Pillow reads (a 500 MB PNG in 8 kB IDAT chunks has 61,000)
MAX_BLOCKS = 100_000  # GIF extension blocks and sub-blocks before the first image
MAX_PPM_HEADER = 65_536  # bytes of a PPM header (magic, sizes, comments)

_PPM_TOKEN = re.compile(rb"\s+|#[^\r\n]*|[^\s#]+")


def png_chunks(data: bytes) -> int:
    """The chunks Pillow reads for the first frame of the PNG ``data``: up to IEND, or up to the
    next frame of an APNG; counted up to ``MAX_CHUNKS + 1``."""
    pos, count, image_seen, end = 8, 0, False, len(data)
    while pos + 8 <= end and count <= MAX_CHUNKS:
        kind = data[pos + 4 : pos + 8]
        count += 1
        if kind == b"IEND" or (kind == b"fcTL" and image_seen):
            break
        image_seen = image_seen or kind == b"IDAT"
        pos += 12 + int.from_bytes(data[pos : pos + 4], "big")
    return count


def gif_blocks(data: bytes) -> int:
    """The extension blocks and sub-blocks before the first image of the GIF ``data``, counted
    up to ``MAX_BLOCKS + 1``."""
    if len(data) < 13:
        return 0
    flags = data[10]
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)  # after the global colour table
    count, end = 0, len(data)
    while pos < end and count <= MAX_BLOCKS:
        introducer = data[pos]
        if introducer != 0x21:  # an image descriptor (0x2C), the trailer, or damage: done
            break
        pos += 2  # 0x21 and the extension's label
        count += 1
        while pos < end and count <= MAX_BLOCKS:
            size = data[pos]
            pos += 1 + size
            count += 1
            if size == 0:
                break
    return count


def ppm_header_bytes(data: bytes) -> int:
    """The length of the header of the PPM (PBM, PGM, PFM) ``data``: magic number, sizes, the
    maximum value where there is one, and the comments between; ``MAX_PPM_HEADER + 1`` when it
    is longer than that (a file that ends sooner: its length)."""
    head = data[: MAX_PPM_HEADER + 1]
    wanted = 3 if head[1:2] in (b"1", b"4") else 4  # P1 and P4 have no maximum value
    tokens = 0
    for found in _PPM_TOKEN.finditer(head):
        token = found.group()
        if not token[:1].isspace() and not token.startswith(b"#"):
            tokens += 1
            if tokens == wanted:
                return found.end()
    return MAX_PPM_HEADER + 1 if len(head) > MAX_PPM_HEADER else len(head)  # else: truncated
