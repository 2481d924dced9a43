"""How much work a JPEG asks of its decoder, read off its markers before any decoding.

A progressive JPEG is decoded scan by scan, and every scan passes over the whole image: a small
file that repeats one scan 20,000 times over 81 megapixels keeps libjpeg busy for a quarter of an
hour. libjpeg has no limit of its own (TurboJPEG's ``TJFLAG_LIMITSCANS`` refuses more than 500
scans), so :func:`count_scans` walks the markers (segment lengths, then the entropy-coded data
to the next marker) and counts the scans (SOS segments) of the first image, up to its EOI.
"""

from __future__ import annotations

import re

MAX_SCANS = 500  # TurboJPEG's limit (TJFLAG_LIMITSCANS); an ordinary progressive file has ~10
# A scan costs about one pass over the pixels: 100 megapixels x 40 scans is a few seconds.
MAX_SCAN_PIXELS = 4_000_000_000
TIFF_MAX_SCANS = 99  # libtiff refuses a JPEG-in-TIFF strip at its 100th scan (with a stderr line)
TIFF_STRIPS_CHECKED = 64  # the first strips or tiles; libtiff bounds the rest itself
MAX_SEGMENTS = 20_000  # marker segments walked; a real file has a few dozen besides its scans
# Bytes outside any segment (fill, junk): none in a real file; Pillow's header parser reads them
# one at a time in Python (about 3 seconds a megabyte), so a file of them stalls it for minutes.
MAX_STRAY_BYTES = 65_536

# In entropy-coded data 0xFF is followed by 0x00 (a stuffed byte) or a restart marker RST0..7;
# anything else (after optional 0xFF fill bytes) starts the next marker.
_NEXT_MARKER = re.compile(rb"\xff+(?=[^\x00\xd0-\xd7\xff])")
_FILL = re.compile(rb"\xff+")
_STANDALONE = frozenset([0x01, *range(0xD0, 0xD8)])  # TEM and RSTn carry no length


class HostileMarkers(ValueError):
    """More marker segments than :data:`MAX_SEGMENTS`, or more stray bytes between them than
    :data:`MAX_STRAY_BYTES`: refused unread; the message says which."""


def count_scans(data: bytes, stop_after: int = MAX_SCANS) -> int:
    """The number of scans (SOS segments) of the first JPEG image in ``data``, counted up to
    ``stop_after + 1`` (enough to refuse). Bytes between segments are skipped to the next 0xFF,
    as libjpeg skips them (with a warning), so that they hide no scan. :class:`HostileMarkers`
    past :data:`MAX_SEGMENTS` segments or :data:`MAX_STRAY_BYTES` stray bytes."""
    if not data.startswith(b"\xff\xd8"):
        return 0
    scans, segments, stray, pos, end = 0, 0, 0, 2, len(data)
    while pos + 1 < end and scans <= stop_after:
        start = pos
        if data[pos] != 0xFF:  # bytes where a marker must be: libjpeg skips them, and so here
            pos = data.find(b"\xff", pos)
            if pos < 0:
                break
        fill = _FILL.match(data, pos)  # data[pos] is 0xFF here, so it matches
        assert fill is not None
        pos = fill.end() - 1  # fill bytes (0xFF) before a marker
        stray += pos - start
        if stray > MAX_STRAY_BYTES:
            raise HostileMarkers(f"more than {MAX_STRAY_BYTES:,} stray bytes between its markers")
        if pos + 1 >= end:
            break
        marker = data[pos + 1]
        segments += 1
        if segments > MAX_SEGMENTS:
            raise HostileMarkers(f"more than {MAX_SEGMENTS:,} marker segments")
        if marker == 0x00:  # 0xFF 0x00 is no marker: libjpeg skips it as junk
            stray += 2
            pos += 2
            continue
        if marker == 0xD9:  # EOI: the first image ends (an MPO's others are not decoded)
            break
        if marker in _STANDALONE or marker == 0xD8:
            pos += 2
            continue
        if pos + 4 > end:
            break
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker == 0xDA:  # SOS: its header, then entropy-coded data up to the next marker
            scans += 1
            found = _NEXT_MARKER.search(data, pos)
            if found is None:
                break
            pos = found.end() - 1
    return scans


def tiff_strip_scans(data: bytes, offsets: tuple[int, ...], counts: tuple[int, ...]) -> int:
    """The most scans in one of the first :data:`TIFF_STRIPS_CHECKED` JPEG-compressed strips or
    tiles of a TIFF (``offsets`` and ``counts`` from its tags) held in ``data``."""
    most = 0
    for offset, count in list(zip(offsets, counts, strict=False))[:TIFF_STRIPS_CHECKED]:
        if 0 <= offset < len(data) and count > 0:
            most = max(most, count_scans(data[offset : offset + count], TIFF_MAX_SCANS))
    return most
