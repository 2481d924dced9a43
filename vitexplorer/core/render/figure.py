"""A map over the image the model saw as a figure people can read, with PIL alone (no Qt, no
display): the picture enlarged to at least :data:`MIN_SIDE` pixels on its longer side (the
photo smoothly, the patch map nearest-neighbour so that each patch stays a crisp block), a title
naming the method, layer, head and token (from 1), and a colour bar whose tick labels come from
:func:`vitexplorer.core.render.scales.tick_labels`.

``vitexplorer analyze`` writes its PNGs with :func:`render_figure`; the raw maps go to ``.npy``
files unchanged.
"""

from __future__ import annotations

import math
import struct
import threading
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from vitexplorer.core.render.overlay import render_overlay
from vitexplorer.core.render.scales import tick_labels

if TYPE_CHECKING:
    from PIL import Image as PILImage

    from vitexplorer.core.models.spec import ModelSpec

MIN_SIDE = 448  # the map's longer side, in pixels, at the least
MARGIN = 16
BAR_GAP = 14  # between the map and the colour bar
BAR_WIDTH = 20
TICK_LENGTH = 5
TITLE_SIZE = 18
SUBTITLE_SIZE = 13
LABEL_SIZE = 13
BACKGROUND = (255, 255, 255)
INK = (34, 34, 34)
GREY = (110, 110, 110)
UNIFORM_INK = (0, 120, 200)  # the uniform level's mark and words: apart from the ticks' ink
TICKS = 5  # about this many labels on the colour bar


@dataclass(frozen=True)
class Figure:
    """A rendered figure and where its map lies in it."""

    image: PILImage.Image  # RGB
    map_box: tuple[int, int, int, int]  # left, top, width, height of the map, in pixels
    scale: int  # each pixel of the crop is scale x scale pixels in the figure
    levels: tuple[float, float] | None  # the colour bar's low and high; None without values
    uniform: float | None = None  # the uniform level marked on the bar, if any

    def facts(self, file: str) -> dict[str, Any]:
        """What a card says about the picture."""
        left, top, width, height = self.map_box
        return {
            "file": file,
            "size": [self.image.width, self.image.height],
            "map_area": {"left": left, "top": top, "width": width, "height": height},
            "scale": self.scale,
            "map_upsampling": "nearest (each patch one block)",
            "photo_upsampling": "bicubic" if self.scale > 1 else "none",
            "colour_scale": None if self.levels is None else list(self.levels),
            **({} if self.uniform is None else {"uniform_level": self.uniform}),
        }


# zlib level for the PNGs vitexplorer writes: level 1 writes a 542x532 map figure 4.9x faster
# than Pillow's default (6), for a file 18% larger (13 ms against 65 ms here), the same pixels
PNG_COMPRESSION = 1
_PNG_COLOUR_TYPES = {"L": 0, "RGB": 2, "RGBA": 6}  # 8 bits a channel


def save_png(image: Any, target: Any) -> None:
    """Write the PIL ``image`` to ``target`` (a binary handle or a path) as PNG, its IDAT
    stream at zlib level :data:`PNG_COMPRESSION`.

    8-bit L, RGB and RGBA images are written here, every row with PNG's "up" filter (its
    difference from the row above): Pillow has no setting for the filter and tries all five on
    every row to keep the best, which costs as much as the compression itself at level 1
    (figures of photographs, 866x832 and 670x644 px: 12.7 and 12.0 ms here against 21.8 and
    22.6 ms with Pillow, files 7% and 4% larger; the same pixels).
    Other modes go through Pillow at the same level."""
    colour_type = _PNG_COLOUR_TYPES.get(image.mode)
    if colour_type is None:
        image.save(target, format="PNG", compress_level=PNG_COMPRESSION)
        return
    pixels = np.asarray(image)
    height, width = pixels.shape[:2]
    rows = pixels.reshape(height, -1)
    filtered = np.empty((height, rows.shape[1] + 1), dtype=np.uint8)
    filtered[:, 0] = 2  # "up"; the first row's prior row counts as zeros
    filtered[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])  # modulo 256, as PNG wants
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    data = b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            _png_chunk(b"IHDR", header),
            _png_chunk(b"IDAT", zlib.compress(filtered.tobytes(), PNG_COMPRESSION)),
            _png_chunk(b"IEND", b""),
        )
    )
    if hasattr(target, "write"):
        target.write(data)
    else:
        with open(target, "wb") as handle:
            handle.write(data)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    """A PNG chunk: its length, its type, its data and their CRC-32."""
    return (
        struct.pack(">I", len(body))
        + kind
        + body
        + struct.pack(">I", zlib.crc32(body, zlib.crc32(kind)))
    )


def scale_for(height: int, width: int, min_side: int = MIN_SIDE) -> int:
    """The whole factor that brings the longer side to at least ``min_side`` (1 when it is
    already that long): a whole factor keeps every patch the same number of pixels."""
    return max(1, math.ceil(min_side / max(height, width, 1)))


def enlarge(display: np.ndarray, scale: int) -> np.ndarray:
    """The (H, W, 3) uint8 photo ``scale`` times larger, smoothly (bicubic)."""
    from PIL import Image

    if scale == 1:
        return np.asarray(display)
    height, width = display.shape[:2]
    picture = Image.fromarray(np.asarray(display)).resize(
        (width * scale, height * scale), Image.Resampling.BICUBIC
    )
    return np.asarray(picture)


_fonts = threading.local()  # each thread its own: a FreeType face serves one thread at a time


def font(size: int) -> Any:
    """Pillow's bundled font at ``size`` pixels: nothing to install, no display needed. Pillow
    before 10.1 (or built without FreeType) has only a small bitmap font; that one is used.
    Kept per thread, as ``analyze`` draws its figures in several."""
    from PIL import ImageFont

    cache = _fonts.__dict__.setdefault("by_size", {})
    if size not in cache:
        try:
            cache[size] = ImageFont.load_default(size=size)
        except TypeError:  # Pillow < 10.1: load_default takes no size
            cache[size] = ImageFont.load_default()
    return cache[size]


def printable(text: str) -> str:
    """``text`` with what cannot be drawn replaced: bytes of a file name that were not UTF-8
    (kept by Python as lone surrogates) and line breaks."""
    text = text.encode("utf-8", "replace").decode("utf-8")
    return " ".join(text.split())


def text_width(draw: Any, text: str, face: Any) -> int:
    """How many pixels wide ``text`` is drawn in ``face``."""
    left, _, right, _ = draw.textbbox((0, 0), text, font=face)
    return int(math.ceil(right - left))


def text_height(draw: Any, face: Any) -> int:
    """The height of a line in ``face``, ascenders to descenders."""
    _, top, _, bottom = draw.textbbox((0, 0), "Hgjy(", font=face)
    return int(math.ceil(bottom - top))


def wrap(draw: Any, text: str, face: Any, width: int) -> list[str]:
    """``text`` broken at spaces into lines no wider than ``width``; a word wider than that
    alone is cut with an ellipsis."""
    lines: list[str] = []
    for word in text.split(" "):
        candidate = f"{lines[-1]} {word}" if lines else word
        if lines and text_width(draw, candidate, face) <= width:
            lines[-1] = candidate
        else:
            lines.append(word)
    return [fit(draw, line, face, width) for line in lines] or [""]


def fit(draw: Any, text: str, face: Any, width: int) -> str:
    """``text``, cut with an ellipsis if it is wider than ``width``: its longest prefix that
    fits with the ellipsis, found by bisection (a logarithmic number of measurements, so that a
    title of 10,000 characters costs milliseconds, not minutes)."""
    if text_width(draw, text, face) <= width:
        return text
    low, high = 0, len(text)  # text[:low] + "…" fits (or low is 0); text[:high] + "…" may not
    while low < high:
        middle = (low + high + 1) // 2
        if text_width(draw, text[:middle] + "…", face) <= width:
            low = middle
        else:
            high = middle - 1
    return text[:low] + "…"


def colour_bar(
    lut: np.ndarray, height: int, width: int, flat: bool, flat_at: float = 0.0
) -> np.ndarray:
    """A vertical (height, width, 3) uint8 bar of ``lut``, its high end at the top; ``flat``
    (a map of one value) fills it with the colour that value gets, the table's entry at
    ``flat_at`` (0 its first, 0.5 its middle)."""
    table = np.asarray(lut)[:, :3]
    if flat:
        at = int(np.rint(flat_at * (len(table) - 1)))
        column = np.repeat(table[at : at + 1], height, axis=0)
    else:
        fraction = 1.0 - (np.arange(height) + 0.5) / height
        column = table[np.rint(fraction * (len(table) - 1)).astype(np.intp)]
    return np.ascontiguousarray(np.repeat(column[:, None, :], width, axis=1), dtype=np.uint8)


def render_figure(
    display: np.ndarray,
    heat: np.ndarray,
    lut: np.ndarray,
    title: str,
    subtitle: str = "",
    min_side: int = MIN_SIDE,
    levels: tuple[float, float] | None = None,
    uniform: tuple[float, str] | None = None,
) -> Figure:
    """``heat`` (rows, cols) over ``display`` (H, W, 3) uint8 as a readable figure.

    The photo is enlarged smoothly by a whole factor (:func:`scale_for`) and the map, coloured
    by ``lut`` on its own range as :func:`~vitexplorer.core.render.overlay.render_overlay` colours
    it, is blended over it nearest-neighbour, so each patch is one flat block. Beside it a colour
    bar from the map's lowest to its highest finite value, with tick labels that tell the
    values apart; above it ``title`` and a smaller ``subtitle``. ``levels`` (low, high) sets
    the scale instead of the map's own range (two maps on one scale, a difference symmetric
    around zero); a scale of no width is drawn in the table's middle colour. ``uniform``
    (value, words), for a map whose rows are distributions, marks that value on the bar with a
    line and its words ("uniform 1/65"); a value off the scale is said at the end it lies beyond
    ("uniform 1/65 (below)").
    """
    from PIL import Image, ImageDraw

    display = np.asarray(display)
    heat = np.asarray(heat)
    height, width = display.shape[:2]
    scale = scale_for(height, width, min_side)
    picture = render_overlay(enlarge(display, scale), heat, lut, levels=levels)
    map_h, map_w = picture.shape[:2]

    flat_at = 0.0 if levels is None else 0.5  # where a scale of no width takes its colour
    if levels is None:
        finite = heat[np.isfinite(heat)]
        levels = (float(finite.min()), float(finite.max())) if finite.size else None
    else:
        levels = (float(levels[0]), float(levels[1]))
    ticks = tick_labels(*levels, count=TICKS) if levels else []
    flat = levels is None or levels[1] <= levels[0]

    scratch = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_font, title_font, subtitle_font = font(LABEL_SIZE), font(TITLE_SIZE), font(SUBTITLE_SIZE)
    labels = [text for _, text in ticks] or ["no finite values"]
    mark = _uniform_mark(uniform, levels, flat)
    if mark is not None:
        labels.append(mark[1])
    label_w = max(text_width(scratch, text, label_font) for text in labels)
    total_w = MARGIN + map_w + BAR_GAP + BAR_WIDTH + TICK_LENGTH + 4 + label_w + MARGIN
    text_w = total_w - 2 * MARGIN
    title_lines = wrap(scratch, printable(title), title_font, text_w)
    subtitle_line = fit(scratch, printable(subtitle), subtitle_font, text_w) if subtitle else ""
    title_h, subtitle_h = text_height(scratch, title_font), text_height(scratch, subtitle_font)
    top = MARGIN + len(title_lines) * (title_h + 6)
    if subtitle_line:
        top += subtitle_h + 6
    top += 8
    total_h = top + map_h + MARGIN

    figure = Image.new("RGB", (total_w, total_h), BACKGROUND)
    figure.paste(Image.fromarray(picture), (MARGIN, top))
    draw = ImageDraw.Draw(figure)
    y = MARGIN
    for line in title_lines:
        draw.text((MARGIN, y), line, font=title_font, fill=INK)
        y += title_h + 6
    if subtitle_line:
        draw.text((MARGIN, y), subtitle_line, font=subtitle_font, fill=GREY)

    bar_left = MARGIN + map_w + BAR_GAP
    if levels is not None:
        bar = colour_bar(lut, map_h, BAR_WIDTH, flat, flat_at)
        figure.paste(Image.fromarray(bar), (bar_left, top))
    draw.rectangle((bar_left - 1, top - 1, bar_left + BAR_WIDTH, top + map_h), outline=INK, width=1)
    label_h = text_height(scratch, label_font)
    tick_left = bar_left + BAR_WIDTH
    if not ticks:
        ticks_at: list[tuple[float, str]] = [(top + map_h / 2, labels[0])]
    elif flat:
        ticks_at = [(top + map_h / 2, ticks[0][1])]
    else:
        low, high = levels  # type: ignore[misc]
        ticks_at = [(top + map_h - (v - low) / (high - low) * map_h, t) for v, t in ticks]
    marks = [(at, text, INK) for at, text in ticks_at]
    if mark is not None:  # the uniform level: a line across the bar, its words beside it
        mark_at = min(max(top + map_h - mark[0] * map_h, top), top + map_h - 1)
        draw.line((bar_left, mark_at, tick_left + TICK_LENGTH, mark_at), fill=UNIFORM_INK, width=2)
        marks = [m for m in marks if abs(m[0] - mark_at) > label_h]  # its words hide none
        marks.append((mark_at, mark[1], UNIFORM_INK))
    for at, text, ink in marks:
        at = min(max(at, top), top + map_h - 1)
        draw.line((tick_left, at, tick_left + TICK_LENGTH, at), fill=ink, width=1)
        box = draw.textbbox((0, 0), text, font=label_font)
        draw.text(
            (tick_left + TICK_LENGTH + 4 - box[0], at - label_h / 2 - box[1]),
            text,
            font=label_font,
            fill=ink,
        )
    value = None if uniform is None else float(uniform[0])
    return Figure(figure, (MARGIN, top, map_w, map_h), scale, levels, value)


def _uniform_mark(
    uniform: tuple[float, str] | None, levels: tuple[float, float] | None, flat: bool
) -> tuple[float, str] | None:
    """Where on the bar (0 its bottom, 1 its top) the uniform level goes, and its words: off the
    scale, at the end it lies beyond, saying so."""
    if uniform is None or levels is None:
        return None
    value, words = float(uniform[0]), uniform[1]
    low, high = levels
    if value < low:
        return 0.0, f"{words} (below)"
    if value > high:
        return 1.0, f"{words} (above)"
    return (0.5 if flat else (value - low) / (high - low)), words


def map_title(
    method: str,
    parameters: dict[str, Any],
    spec: ModelSpec,
    target: dict[str, Any] | None = None,
) -> str:
    """The title of one map, numbers from 1, as the method catalogue words it: the method, the
    layer and head (or how the layers were combined) and the token; ``parameters`` as the code
    holds them (0-based, the names of ``MethodOptions``), ``target`` the class a
    class-specific method explains (a card's ``target``)."""
    from vitexplorer.core.explain.method import get as described
    from vitexplorer.core.explain.method import method_names

    if method in method_names():
        return described(method).make_title(parameters, spec, target)
    return f"{method} · {spec.token_label(int(parameters.get('token', 0)))}"
