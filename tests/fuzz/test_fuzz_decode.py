"""Decoding work through the image reader: progressive JPEGs of k scans around the limit and
the pixel-scan budget, JPEG strips in TIFFs, files of many frames or pages, big but allowed
sizes, zlib bombs, containers Pillow would walk for minutes, files that cannot be read. Each is
decoded or refused in one line naming the file, and nothing hangs. The window's side of the
same door (drops, closing, save dialogs) is tests/fuzz/test_fuzz_decode_window.py."""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from tests.fuzz.conftest import record
from tests.fuzz.hostile import (
    _png_chunk,
    encoded,
    flat_progressive_jpeg,
    gif_with_comments,
    jpeg_in_tiff,
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
from vitexplorer.core.io.jpeg_scans import MAX_SCAN_PIXELS, MAX_SCANS, MAX_SEGMENTS

pytestmark = pytest.mark.slow  # the whole file is left out of the quick suite (-m "not slow")

DOOR = "image decoding work: reader and window"
HANG_SECONDS = 30


def _outcome(path: Path) -> tuple[str, object]:
    """("ok", image), ("refused", message), ("crash", exception) or ("hang", None)."""
    result: list[tuple[str, object]] = []

    def run() -> None:
        try:
            result.append(("ok", load_image(path)))
        except ImageLoadError as exc:
            result.append(("refused", str(exc)))
        except BaseException as exc:  # what the suite looks for
            result.append(("crash", exc))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(HANG_SECONDS)
    return result[0] if result else ("hang", None)


def _zlib_png(side: int, zeros: int) -> bytes:
    import struct
    import zlib

    stream = zlib.compressobj(9)
    rows = b"".join(b"\x00" + b"\x07\x08\x09" * side for _ in range(side))
    data = stream.compress(rows + b"\x00" * zeros) + stream.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return b"".join(
        [
            b"\x89PNG\r\n\x1a\n",
            _png_chunk(b"IHDR", header),
            _png_chunk(b"IDAT", data),
            _png_chunk(b"IEND", b""),
        ]
    )


def _with_chunks(chunks: bytes) -> bytes:
    data = encoded(photo(), "PNG")
    return data[:33] + chunks + data[33:]  # after IHDR


def _reader_cases() -> list[tuple[str, Callable[[], bytes], str, str]]:
    """(case, the file's bytes, "shown" / "refused" / "either", words a refusal must hold)."""
    import zlib

    cases: list[tuple[str, Callable[[], bytes], str, str]] = []
    small, larger = progressive_jpeg(), progressive_jpeg((640, 480), seed=1)
    for extra in (0, 1, 2, 5, 10, 25, 50, 100, 200, 300, 400, 450, 480, 489, 490):
        for label, data in (("64x48", small), ("640x480", larger)):
            expect = "shown" if 10 + extra <= MAX_SCANS else "refused"
            cases.append(
                (
                    f"{label} progressive JPEG, {10 + extra} scans",
                    lambda d=data, e=extra: repeated_scans(d, e),
                    expect,
                    "scans",
                )
            )
    for extra in (491, 500, 1_000, 2_000, 5_000, 20_000):
        for label, data in (("64x48", small), ("2048x2048 flat", None)):
            make = (
                (lambda e=extra: repeated_scans(flat_progressive_jpeg((2048, 2048)), e))
                if data is None
                else (lambda d=data, e=extra: repeated_scans(d, e))
            )
            cases.append(
                (
                    f"{label} progressive JPEG, {10 + extra} scans",
                    make,
                    "refused",
                    "more than 500 scans",
                )
            )
    for side in (4096, 6000):
        allowed = MAX_SCAN_PIXELS // (side * side)
        for scans in (allowed + 1, allowed + 40, MAX_SCANS):
            make = lambda s=side, n=scans: repeated_scans(flat_progressive_jpeg((s, s)), n - 10)  # noqa: E731
            cases.append((f"{side}x{side} JPEG, {scans} scans", make, "refused", "scans"))
    cases.append(
        (
            "4096x4096 JPEG, 20 scans",
            lambda: repeated_scans(flat_progressive_jpeg((4096, 4096)), 10),
            "shown",
            "",
        )
    )
    for scans in (10, 50, 99, 100, 500, 5_010):  # libtiff decodes 99 scans a strip at most
        cases.append(
            (
                f"TIFF of one JPEG strip, {scans} scans",
                lambda n=scans: jpeg_in_tiff(
                    repeated_scans(flat_progressive_jpeg((256, 256)), n - 10), 256
                ),
                "shown" if scans < 100 else "refused",
                "jpeg-compressed strip",
            )
        )
    for frames in (2, 1_000, 100_000):
        for name, make in (
            ("APNG", many_frame_apng),
            ("GIF", many_frame_gif),
            ("TIFF", many_page_tiff),
            ("WebP", many_frame_webp),
        ):
            cases.append(
                (f"{name} of {frames:,} frames", lambda m=make, f=frames: m(f), "shown", "")
            )
    # big but allowed sizes
    cases.append(
        (
            "baseline JPEG 6000x4000",
            lambda: encoded(Image.new("RGB", (6000, 4000), (9, 99, 199)), "JPEG"),
            "shown",
            "",
        )
    )
    cases.append(
        ("progressive JPEG 6000x4000", lambda: flat_progressive_jpeg((6000, 4000)), "shown", "")
    )
    cases.append(
        (
            "PNG 5000x5000 grey",
            lambda: encoded(Image.new("L", (5000, 5000), 77), "PNG"),
            "shown",
            "",
        )
    )
    cases.append(
        ("GIF 4000x4000", lambda: encoded(Image.new("P", (4000, 4000), 3), "GIF"), "shown", "")
    )
    # zlib and marker bombs
    cases.append(("1x1 PNG, 100 MB of zlib zeros", lambda: _zlib_png(1, 100_000_000), "shown", ""))
    cases.append(("64x64 PNG, 50 MB of zlib zeros", lambda: _zlib_png(64, 50_000_000), "shown", ""))
    cases.append(
        (
            "PNG, zTXt bomb",
            lambda: _with_chunks(
                _png_chunk(b"zTXt", b"k\x00\x00" + zlib.compress(b"v" * 50_000_000))
            ),
            "refused",
            "decompression bomb",
        )
    )
    cases.append(
        (
            "PNG, iCCP bomb",
            lambda: _with_chunks(
                _png_chunk(b"iCCP", b"p\x00\x00" + zlib.compress(b"v" * 50_000_000))
            ),
            "refused",
            "decompression bomb",
        )
    )
    cases.append(
        (
            "PNG, 100,000 tEXt chunks",
            lambda: _with_chunks(_png_chunk(b"tEXt", b"k\x00v") * 100_000),
            "either",
            "",
        )
    )
    base = encoded(photo(), "JPEG")
    for count in (100, MAX_SEGMENTS - 10, MAX_SEGMENTS + 1, 200_000):
        expect = "shown" if count < MAX_SEGMENTS else "refused"
        cases.append(
            (
                f"JPEG, {count:,} comment segments",
                lambda c=count: base[:2] + b"\xff\xfe\x00\x04hi" * c + base[2:],
                expect,
                "marker segments",
            )
        )
    cases.append(
        (
            "JPEG, 10,000 fill bytes before a marker",
            lambda: base[:2] + b"\xff" * 10_000 + base[2:],
            "either",
            "",
        )
    )
    cases.append(("JPEG, junk bytes after a table", lambda: junk_after_a_table(small), "shown", ""))
    cases.append(
        (
            "5010-scan JPEG, junk bytes after a table",
            lambda: junk_after_a_table(repeated_scans(small, 5_000)),
            "refused",
            "more than 500 scans",
        )
    )
    png, chunk = encoded(photo(), "PNG"), _png_chunk(b"abCd", b"")
    for count in (1_000, 99_000, 2_000_000):
        cases.append(
            (
                f"PNG, {count:,} empty private chunks",
                lambda c=count: png[:33] + chunk * c + png[33:],
                "shown" if count < 100_000 else "refused",
                "chunks",
            )
        )
    for count in (1_000, 33_000, 2_000_000):
        cases.append(
            (
                f"GIF, {count:,} comment blocks before its image",
                lambda c=count: gif_with_comments(c),
                "shown" if count * 3 < 100_000 else "refused",
                "blocks",
            )
        )
    for size in (60_000, 50_000_000):
        cases.append(
            (
                f"PPM, a comment of {size:,} bytes",
                lambda n=size: b"P6\n#" + b"c" * n + b"\n8 8\n255\n" + bytes(192),
                "shown" if size < 65_536 else "refused",
                "header",
            )
        )
    for size in (65_535, 50_000_000):
        cases.append(
            (
                f"JPEG, {size:,} fill bytes after SOI",
                lambda n=size: base[:2] + b"\xff" * n + base[2:],
                "shown" if size <= 65_536 else "refused",
                "stray bytes",
            )
        )
    bomb = repeated_scans(progressive_jpeg(), 5_000)
    for fraction in (0.01, 0.05, 0.2, 0.5, 0.9):
        cut = int(len(bomb) * fraction)
        cases.append(
            (f"5010-scan JPEG cut at {fraction:.0%}", lambda c=cut: bomb[:c], "either", "")
        )
    return cases


READER_CASES = _reader_cases()


@pytest.mark.timeout(600)
def test_every_decode_work_input_through_the_reader(tmp_path: Path) -> None:
    problems = []
    for n, (case, make, expect, words) in enumerate(READER_CASES):
        path = tmp_path / f"case{n}.img"
        path.write_bytes(make())
        kind, value = _outcome(path)
        record(DOOR, case, crash=kind == "crash", hang=kind == "hang")
        if kind in ("crash", "hang"):
            problems.append(f"{case}: {kind} {value!r}")
        elif kind == "refused":
            message = str(value)
            if expect == "shown":
                problems.append(f"{case}: refused ({message})")
            elif "\n" in message or len(message) > 300 or not message.startswith(path.name):
                problems.append(f"{case}: unclear refusal {message!r}")
            elif words.lower() not in message.lower():
                problems.append(f"{case}: refusal without {words!r}: {message!r}")
        elif expect == "refused":
            problems.append(f"{case}: decoded, but should have been refused")
        else:
            assert value.mode == "RGB" and min(value.size) >= 1, case
        path.unlink()
    assert not problems, "\n".join(problems)


def test_files_that_cannot_be_read_say_why(tmp_path: Path, monkeypatch) -> None:
    good = tmp_path / "locked.png"
    photo().save(good)
    real_open = os.open
    failures: dict[str, int] = {}

    def fake_open(name, flags, *args, **kwargs):
        code = failures.get(os.fspath(name))
        if code is not None:
            raise OSError(code, os.strerror(code), os.fspath(name))
        return real_open(name, flags, *args, **kwargs)

    monkeypatch.setattr(images.os, "open", fake_open)
    missing = tmp_path / "missing.png"
    dangling = tmp_path / "dangling.png"
    dangling.symlink_to(tmp_path / "nowhere.png")
    cases = [
        (
            "no read permission (EACCES)",
            good,
            errno.EACCES,
            "cannot read locked.png: permission denied",
        ),
        (
            "not permitted (EPERM)",
            good,
            errno.EPERM,
            "cannot read locked.png: permission denied",
        ),
        (
            "an I/O error (EIO)",
            good,
            errno.EIO,
            "locked.png: cannot be read (input/output error)",
        ),
        ("missing", missing, None, "missing.png: file not found"),
        (
            "dangling link",
            dangling,
            None,
            "dangling.png: a symbolic link to a file that does not exist",
        ),
        ("a folder", tmp_path, None, "is a folder"),
    ]
    problems = []
    for case, path, code, words in cases:
        failures.clear()
        if code is not None:
            failures[os.fspath(path)] = code
        try:
            load_image(path)
            problems.append(f"{case}: decoded")
            crashed = False
        except ImageLoadError as exc:
            crashed = False
            message = str(exc)
            if words.lower() not in message.lower() or "\n" in message:
                problems.append(f"{case}: {message!r}")
            if code in (errno.EACCES, errno.EPERM) and "No such file" in message:
                problems.append(f"{case}: says the file is missing")
        except BaseException as exc:
            crashed = True
            problems.append(f"{case}: crash {exc!r}")
        record(DOOR, f"unreadable: {case}", crash=crashed)
    assert good.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not problems, "\n".join(problems)
