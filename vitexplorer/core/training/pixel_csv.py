"""Datasets as pixel CSV files, as digit sets like MNIST are handed out: a header row, then one
square grayscale image per row, its pixels 0..255 row by row.

A labelled file (for training) has a ``label`` column: ``label,pixel0,pixel1,...,pixelN``. An
unlabelled file (to predict) has none, and may have an id column (``id`` or ``ImageId``); without
one, image ids are the 1-based row numbers after the header, as Kaggle's ``ImageId``. Column names
are matched without regard to case; every other column is a pixel, in the header's order, and
there must be a square number of them. Every value is a whole number written in decimal: labels
from 0 to :data:`MAX_LABEL` (the classes are the distinct labels, sorted, as text: "0".."9" for
digits), pixels from 0 to 255, ids any. Blank lines are skipped.

Bad files are refused with one line that names the file and, for a bad row, the row's number in
the file, counting the header as row 1 (a text editor's line number). The file is checked to be a
regular file of at most :data:`MAX_CSV_BYTES` before it is read, then read in blocks and parsed by
numpy (42,000 MNIST rows take one to two seconds).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from vitexplorer.core.io.images import _display_name, _megabytes, open_regular_file

MAX_CSV_BYTES = 500_000_000  # bytes; the largest digit sets are a few hundred MB as CSV
MAX_LABEL = 9_999
LABEL_NAMES = ("label",)
ID_NAMES = ("id", "imageid")
BLOCK_BYTES = 16 << 20  # read and parsed this many bytes at a time
ROW_NOTE = "(counting the header as row 1)"


class PixelCSVError(ValueError):
    """A pixel CSV that cannot be used; one line naming the file (and the row) and the reason."""


@dataclass
class PixelCSV:
    """A pixel CSV's images (N, side, side, 3) uint8, gray in all three channels, with its labels
    (int64, None when unlabelled) and one id per image (int64)."""

    images: np.ndarray
    labels: np.ndarray | None
    ids: np.ndarray
    id_column: str | None  # the id column's name in the header, None: ids are row numbers


def is_pixel_csv(path: str | Path) -> bool:
    """Whether ``path`` is meant as a pixel CSV (by its name; the reader checks the rest)."""
    return Path(path).suffix.lower() == ".csv"


def read_labelled_csv(path: str | Path) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """A labelled pixel CSV: (images (N, side, side, 3) uint8, labels int64 as class indices,
    class names). The classes are the distinct labels, sorted, as text, at least two."""
    csv = read_pixel_csv(path, labelled=True)
    assert csv.labels is not None
    values, indices = np.unique(csv.labels, return_inverse=True)
    if len(values) < 2:
        raise PixelCSVError(
            f"{_display_name(path)}: every image has the label {values[0]}; a dataset needs at "
            f"least two classes"
        )
    names = tuple(str(int(v)) for v in values)
    return csv.images, indices.astype(np.int64).reshape(-1), names


def read_unlabelled_csv(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """An unlabelled pixel CSV (a test set to predict): (images (N, side, side, 3) uint8, ids
    int64), the ids from the ``id``/``ImageId`` column, else 1, 2, 3, ... (Kaggle's ImageId)."""
    csv = read_pixel_csv(path, labelled=False)
    return csv.images, csv.ids


# ---------------------------------------------------------------------------------------------


@dataclass
class _Layout:
    name: str  # the file's name, for messages
    columns: list[str]  # the header's fields
    label: int | None
    ident: int | None
    pixels: np.ndarray  # the pixel columns' indices
    side: int


def read_pixel_csv(path: str | Path, *, labelled: bool) -> PixelCSV:
    """The whole file, checked; a :class:`PixelCSVError` names the file, the row and the fault."""
    name = _display_name(path)
    with open_regular_file(path, MAX_CSV_BYTES, "a CSV file", PixelCSVError) as handle:
        try:
            return _read(handle, name, labelled)
        except OSError as exc:
            raise PixelCSVError(f"{name}: cannot be read ({exc.strerror or exc})") from exc
        except MemoryError as exc:
            raise PixelCSVError(f"{name}: not enough memory to read it") from exc


def _read(handle: BinaryIO, name: str, labelled: bool) -> PixelCSV:
    header, rest = _header(handle, name)
    layout = _layout(header, name, labelled)
    blocks: list[tuple[np.ndarray, np.ndarray | None, np.ndarray | None]] = []
    row = 1  # the file's row number of the last line read
    total = len(rest)
    while True:
        chunk = handle.read(BLOCK_BYTES)
        total += len(chunk)
        if total > MAX_CSV_BYTES:  # the file grew while it was read
            raise PixelCSVError(f"{name}: more than the {_megabytes(MAX_CSV_BYTES)} limit")
        rest += chunk
        cut = rest.rfind(b"\n") + 1 if chunk else len(rest)
        if cut:
            block, rest = rest[:cut], rest[cut:]
            values, row = _parse_block(block, row, layout)
            if values is not None:
                blocks.append(_split(values, layout))
        if not chunk:
            break
    if not blocks:
        raise PixelCSVError(f"{name}: a header and no images (no rows after row 1)")
    pixels = np.concatenate([b[0] for b in blocks])
    images = np.repeat(pixels.reshape(-1, layout.side, layout.side, 1), 3, axis=-1)
    labels = np.concatenate([b[1] for b in blocks]) if layout.label is not None else None
    if layout.ident is not None:
        ids = np.concatenate([b[2] for b in blocks])
        id_column = layout.columns[layout.ident]
    else:
        ids, id_column = np.arange(1, len(images) + 1, dtype=np.int64), None
    return PixelCSV(images, labels, ids, id_column)


def _split(
    values: np.ndarray, layout: _Layout
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """A block's checked values as (pixels uint8, labels, ids): a quarter of their int64 size."""
    first, last = int(layout.pixels[0]), int(layout.pixels[-1])
    if last - first + 1 == len(layout.pixels):  # side by side (label or id first or last): a view
        pixels = values[:, first : last + 1].astype(np.uint8)
    else:
        pixels = values[:, layout.pixels].astype(np.uint8)
    labels = values[:, layout.label].copy() if layout.label is not None else None
    ids = values[:, layout.ident].copy() if layout.ident is not None else None
    return pixels, labels, ids


def _header(handle: BinaryIO, name: str) -> tuple[str, bytes]:
    """The header line as text, and the bytes read after it."""
    data = b""
    while b"\n" not in data:
        chunk = handle.read(BLOCK_BYTES)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_CSV_BYTES:
            raise PixelCSVError(f"{name}: more than the {_megabytes(MAX_CSV_BYTES)} limit")
    if not data.strip():
        raise PixelCSVError(f"{name}: the file is empty")
    if b"\0" in data[:BLOCK_BYTES]:
        raise PixelCSVError(f"{name}: not a text file (it holds binary data), so not a CSV file")
    line, _, rest = data.partition(b"\n")
    try:
        header = line.decode("utf-8-sig").strip()
    except UnicodeDecodeError as exc:
        raise PixelCSVError(
            f"{name}: row 1 is not text (not UTF-8), so this is not a CSV file"
        ) from exc
    return header, rest


def _layout(header: str, name: str, labelled: bool) -> _Layout:
    columns = [field.strip().strip('"').strip("'").strip() for field in header.split(",")]
    if all(_is_number(c) for c in columns):
        raise PixelCSVError(
            f"{name}: row 1 holds numbers; it must be the header "
            f"({'label,' if labelled else ''}pixel0,pixel1,...)"
        )
    lowered = [c.lower() for c in columns]
    labels = [i for i, c in enumerate(lowered) if c in LABEL_NAMES]
    ids = [i for i, c in enumerate(lowered) if c in ID_NAMES]
    if len(labels) > 1 or len(ids) > 1:
        twice = "label" if len(labels) > 1 else "id"
        raise PixelCSVError(f"{name}: row 1 (the header) has more than one {twice} column")
    if labelled and not labels:
        raise PixelCSVError(
            f"{name}: no label column in row 1 (the header); a labelled CSV's header is "
            f"label,pixel0,pixel1,... (a test CSV without labels is for predictions)"
        )
    if not labelled and labels:
        raise PixelCSVError(
            f"{name}: has a label column (column {labels[0] + 1} of row 1, the header); a test "
            f"CSV to predict has pixel columns only, optionally with an id or ImageId column"
        )
    label = labels[0] if labels else None
    ident = ids[0] if ids else None
    pixels = np.array([i for i in range(len(columns)) if i not in (label, ident)], dtype=np.intp)
    count = len(pixels)
    side = int(round(count**0.5))
    if count == 0:
        raise PixelCSVError(f"{name}: row 1 (the header) names no pixel columns")
    if side * side != count:
        below = int(count**0.5)
        raise PixelCSVError(
            f"{name}: row 1 (the header) names {count} pixel columns, not a square number, so "
            f"not a square image ({below}x{below} images have {below * below}, "
            f"{below + 1}x{below + 1} have {(below + 1) ** 2})"
        )
    return _Layout(name, columns, label, ident, pixels, side)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _parse_block(block: bytes, row: int, layout: _Layout) -> tuple[np.ndarray | None, int]:
    """Complete lines after file row ``row``: their values (rows, columns) int64, checked, or
    None when they are all blank; and the row number of the block's last line."""
    lines = block.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the block ends with a newline
    width = len(layout.columns)
    kept: list[bytes] = []
    numbers: list[int] = []  # the file row of each kept line
    for offset, line in enumerate(lines, start=row + 1):
        if not line.strip():
            continue
        if line.count(b",") != width - 1:
            fields = line.count(b",") + 1
            raise PixelCSVError(
                f"{layout.name}: row {offset} {ROW_NOTE} has {fields} fields, the header {width}"
            )
        kept.append(line)
        numbers.append(offset)
    last = row + len(lines)
    if not kept:
        return None, last
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # older numpy only warns on text it cannot parse
            values = np.fromstring(b",".join(kept), dtype=np.int64, sep=",")
    except (ValueError, DeprecationWarning):
        values = None
    if values is None or values.size != len(kept) * width:
        _find_unparsable(kept, numbers, layout)
        raise PixelCSVError(f"{layout.name}: rows {numbers[0]} to {numbers[-1]} cannot be read")
    values = values.reshape(len(kept), width)
    _check_ranges(values, numbers, layout)
    return values, last


def _find_unparsable(lines: list[bytes], numbers: list[int], layout: _Layout) -> None:
    """Raise for the first field that is not a whole number written in decimal."""
    for line, number in zip(lines, numbers, strict=True):
        for column, field in enumerate(line.split(b",")):
            text = field.strip()
            if text.isascii() and text.lstrip(b"+-").isdigit():
                continue
            shown = field.decode("utf-8", "backslashreplace").strip()
            shown = shown if len(shown) <= 20 else shown[:17] + "..."
            what = "empty" if not text else f"{shown!r} is not a whole number"
            raise PixelCSVError(
                f"{layout.name}: row {number} {ROW_NOTE}, column {layout.columns[column]!r}: {what}"
            )


def _check_ranges(values: np.ndarray, numbers: list[int], layout: _Layout) -> None:
    bad = values.view(np.uint64) > 255  # negative values too, as huge unsigned ones
    for column in (layout.label, layout.ident):
        if column is not None:
            bad[:, column] = False
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise PixelCSVError(
            f"{layout.name}: row {numbers[r]} {ROW_NOTE}, column {layout.columns[c]!r}: the "
            f"pixel value {values[r, c]} is outside 0..255"
        )
    if layout.label is not None:
        labels = values[:, layout.label]
        bad = (labels < 0) | (labels > MAX_LABEL)
        if bad.any():
            r = int(np.flatnonzero(bad)[0])
            raise PixelCSVError(
                f"{layout.name}: row {numbers[r]} {ROW_NOTE}: the label {labels[r]} is outside "
                f"0..{MAX_LABEL}"
            )
