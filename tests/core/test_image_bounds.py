"""The decoding work an image may ask for is bounded before decoding: a progressive JPEG's scans
are counted from its markers, files of many frames or pages decode their first only, and a file
that cannot be read for its permissions says so."""

from __future__ import annotations

import errno
import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from tests.fuzz.hostile import (
    encoded,
    flat_progressive_jpeg,
    gif_with_comments,
    junk_after_a_table,
    many_frame_apng,
    many_frame_gif,
    many_frame_webp,
    many_page_tiff,
    photo,
    progressive_jpeg,
    repeated_scans,
)
from vitexplorer.core.io import images
from vitexplorer.core.io.images import ImageLoadError, load_image
from vitexplorer.core.io.jpeg_scans import MAX_SCAN_PIXELS, MAX_SCANS, MAX_SEGMENTS, count_scans


def test_scans_are_counted_as_libjpeg_writes_them() -> None:
    # libjpeg's jpeg_simple_progression: 10 scans for three components, 6 for one; baseline 1
    assert count_scans(progressive_jpeg()) == 10
    assert count_scans(encoded(photo().convert("L"), "JPEG", progressive=True)) == 6
    assert count_scans(encoded(photo(), "JPEG")) == 1
    assert count_scans(encoded(photo(), "PNG")) == 0
    assert count_scans(repeated_scans(progressive_jpeg(), 37)) == 47


def test_restart_markers_and_stuffed_bytes_do_not_end_a_scan() -> None:
    data = encoded(photo(3, (200, 120)), "JPEG", progressive=True, restart_marker_blocks=1)
    assert b"\xff\xd0" in data and b"\xff\x00" in data
    assert count_scans(data) == 10


def test_a_repeated_scan_below_the_limit_decodes_to_the_same_picture() -> None:
    original = progressive_jpeg()
    extra = MAX_SCANS - 10  # exactly the limit
    bombed = repeated_scans(original, extra)
    assert count_scans(bombed) == MAX_SCANS
    assert np.array_equal(np.asarray(load_image(bombed)), np.asarray(load_image(original)))


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_scan_bomb_is_refused_before_decoding(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "scans.jpg"
    path.write_bytes(repeated_scans(flat_progressive_jpeg((2048, 2048)), 20_000))
    decoded = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(self))
    with pytest.raises(ImageLoadError) as refused:
        images.load_image(path)
    message = str(refused.value)
    assert message.startswith("scans.jpg: a progressive JPEG of more than 500 scans")
    assert "re-save it" in message and "\n" not in message
    assert decoded == []


@pytest.mark.slow
def test_the_work_budget_refuses_fewer_scans_over_more_pixels() -> None:
    side = 4096  # 16.8 megapixels: the budget allows 238 scans
    allowed = MAX_SCAN_PIXELS // (side * side)
    data = flat_progressive_jpeg((side, side))
    with pytest.raises(ImageLoadError, match=r"of 300 scans over 17 megapixels"):
        load_image(repeated_scans(data, 300 - 10))
    assert count_scans(repeated_scans(data, allowed - 10)) == allowed  # under it: decoded
    assert load_image(repeated_scans(flat_progressive_jpeg((512, 512)), 200)).size == (512, 512)


def test_a_jpeg_of_endless_comment_segments_is_refused() -> None:
    data = encoded(photo(), "JPEG")
    comment = b"\xff\xfe\x00\x04hi"
    bombed = data[:2] + comment * (MAX_SEGMENTS + 1) + data[2:]
    with pytest.raises(ImageLoadError, match="20,000 marker segments"):
        load_image(bombed)
    fewer = data[:2] + comment * 100 + data[2:]
    assert load_image(fewer).size == (96, 64)


def test_junk_between_segments_hides_no_scan() -> None:
    """libjpeg skips stray bytes before a marker (with a warning) and decodes on: so does the
    count, or junk after a table would hide every scan behind it."""
    original = progressive_jpeg()
    assert count_scans(junk_after_a_table(original)) == 10
    assert count_scans(junk_after_a_table(repeated_scans(original, 600))) == MAX_SCANS + 1
    junk = junk_after_a_table(original)
    assert np.array_equal(np.asarray(load_image(junk)), np.asarray(load_image(original)))
    with pytest.raises(ImageLoadError, match="more than 500 scans"):
        load_image(junk_after_a_table(repeated_scans(original, 600), b"\x12"))


def test_a_damaged_marker_stream_is_left_to_the_decoder() -> None:
    data = progressive_jpeg()
    cut = data[: len(data) // 2]
    assert 0 < count_scans(cut) < 10
    with pytest.raises(ImageLoadError, match="truncated or corrupt"):
        load_image(cut)
    assert count_scans(data[:2] + b"\x00" * 50) == 0  # no marker at all after SOI


@pytest.mark.slow
@pytest.mark.parametrize(
    "make",
    [many_frame_apng, many_frame_gif, many_page_tiff, many_frame_webp],
    ids=["apng", "gif", "tiff", "webp"],
)
def test_only_the_first_of_100000_frames_is_decoded(make) -> None:
    many, one = make(100_000), make(1)
    assert Image.open(io.BytesIO(make(1000))).n_frames == 1000  # the files hold what they say
    picture = np.asarray(load_image(many))
    assert picture.shape == (8, 8, 3)
    assert np.array_equal(picture, np.asarray(load_image(one)))


@pytest.mark.slow
def test_a_small_png_with_a_huge_zlib_stream_decodes_only_its_pixels() -> None:
    import struct
    import zlib

    from tests.fuzz.hostile import _png_chunk

    stream = zlib.compressobj(9)
    data = stream.compress(b"\x00" + b"\x07\x08\x09" + b"\x00" * 100_000_000) + stream.flush()
    png = b"".join(
        [
            b"\x89PNG\r\n\x1a\n",
            _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)),
            _png_chunk(b"IDAT", data),
            _png_chunk(b"IEND", b""),
        ]
    )
    assert np.asarray(load_image(png)).tolist() == [[[7, 8, 9]]]


def test_a_compressed_text_bomb_is_named() -> None:
    import zlib

    from tests.fuzz.hostile import _png_chunk

    data = encoded(photo(), "PNG")
    bomb = _png_chunk(b"zTXt", b"k\x00\x00" + zlib.compress(b"v" * 50_000_000))
    with pytest.raises(ImageLoadError) as refused:
        load_image(data[:33] + bomb + data[33:])
    assert "decompression bomb" in str(refused.value)


def test_a_file_without_read_permission_says_so(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "locked.png"
    photo().save(path)
    real_open = os.open

    def denied(name, flags, *args, **kwargs):
        if os.fspath(name) == os.fspath(path):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(name))
        return real_open(name, flags, *args, **kwargs)

    monkeypatch.setattr(images.os, "open", denied)
    with pytest.raises(ImageLoadError) as refused:
        load_image(path)
    message = str(refused.value)
    assert message.startswith("cannot read locked.png: permission denied; ")
    assert "No such file" not in message and "chmod" in message


def test_a_scan_bomb_inside_a_tiff_is_refused_in_words(capfd) -> None:
    """libtiff stops a JPEG-in-TIFF strip at its 100th scan, with a line of its own on stderr
    and a bare "decoder error"; the strip's scans are counted first instead."""
    from tests.fuzz.hostile import jpeg_in_tiff

    plain = flat_progressive_jpeg((256, 256))
    shown = load_image(jpeg_in_tiff(repeated_scans(plain, 89), 256))  # 99 scans: libtiff's most
    assert np.array_equal(np.asarray(shown), np.asarray(load_image(plain)))
    with pytest.raises(ImageLoadError) as refused:
        load_image(jpeg_in_tiff(repeated_scans(plain, 5_000), 256))
    message = str(refused.value)
    assert "a TIFF with a JPEG-compressed strip of more than 99 scans" in message
    assert "TIFFjpeg" not in capfd.readouterr().err  # libtiff never saw it


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_containers_that_pillow_would_walk_for_minutes_are_refused_first() -> None:
    """Pillow parses PNG chunks, GIF blocks, PPM headers and JPEG fill bytes in Python, about
    0.1 to 0.2 s a megabyte: a 500 MB file of them is refused before Pillow sees it."""
    from tests.fuzz.hostile import _png_chunk
    from vitexplorer.core.io import header_work as work
    from vitexplorer.core.io.jpeg_scans import MAX_STRAY_BYTES

    png = encoded(photo(), "PNG")
    chunk = _png_chunk(b"abCd", b"")
    # a GIF block is a comment extension (one) with one sub-block and its end (two more)
    refused = {
        "a PNG of more than 100,000 chunks": png[:33] + chunk * 2_000_000 + png[33:],
        "a GIF of more than 100,000 blocks": gif_with_comments(2_000_000),
        "a PPM header (comments included) over 65,536 bytes": b"P6\n#"
        + b"c" * 50_000_000
        + b"\n8 8\n255\n"
        + bytes(192),
        "a JPEG with more than 65,536 stray bytes": encoded(photo(), "JPEG")[:2]
        + b"\xff" * 50_000_000
        + encoded(photo(), "JPEG")[2:],
    }
    for words, data in refused.items():
        with pytest.raises(ImageLoadError, match=words.replace("(", r"\(").replace(")", r"\)")):
            load_image(data)
    # just under each limit: decoded as before
    assert work.png_chunks(png[:33] + chunk * (work.MAX_CHUNKS - 10) + png[33:]) < work.MAX_CHUNKS
    assert load_image(png[:33] + chunk * 1_000 + png[33:]).size == (96, 64)
    assert work.gif_blocks(gif_with_comments(work.MAX_BLOCKS // 3 - 1)) <= work.MAX_BLOCKS
    assert load_image(gif_with_comments(1_000)).size == (8, 8)
    comment = b"P6\n#" + b"c" * 60_000 + b"\n8 8\n255\n" + bytes(range(192))
    assert np.asarray(load_image(comment)).reshape(-1).tolist() == list(range(192))
    jpeg = encoded(photo(), "JPEG")
    filled = jpeg[:2] + b"\xff" * (MAX_STRAY_BYTES - 1) + jpeg[2:]
    assert np.array_equal(np.asarray(load_image(filled)), np.asarray(load_image(jpeg)))
    assert load_image(many_frame_apng(100_000)).size == (8, 8)  # other frames' chunks not read
