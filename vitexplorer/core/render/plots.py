"""The distance-against-depth plot of ``vitexplorer stats`` (the ViT paper's Fig. 7, right) drawn
with Pillow alone: no Qt, no display, no torch.

One dot per head at its layer (numbered from 1) and its mean attention distance in pixels, and a
line through the mean of the heads of each layer. The app draws the same dots with pyqtgraph
(:mod:`vitexplorer.gui.views.head_stats_view`); the command line draws them here, so it never
imports Qt. Fonts, title wrapping and the y axis's tick labels are those of the analyze figures
(:mod:`vitexplorer.core.render.figure`, :func:`vitexplorer.core.render.scales.tick_labels`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from vitexplorer.core.render.figure import (
    BACKGROUND,
    GREY,
    INK,
    fit,
    font,
    printable,
    text_height,
    text_width,
    wrap,
)
from vitexplorer.core.render.scales import tick_labels

if TYPE_CHECKING:
    from PIL import Image as PILImage

WIDTH, HEIGHT = 900, 560  # the size pyqtgraph's export of the app's plot has
MARGIN = 16
TITLE_SIZE = 18
LABEL_SIZE = 14  # the axes' titles and the legend
TICK_SIZE = 13
TICK_LENGTH = 5
MINOR_LENGTH = 3
GAP = 6  # between a tick and its label, a label and the axis title
POINT_COLOUR = (31, 119, 180)  # head_stats_view.POINT_COLOR, the app's colour on white
MEAN_COLOUR = (255, 127, 14)
GRID_COLOUR = (228, 228, 228)
FRAME_COLOUR = (120, 120, 120)
POINT_RADIUS = 4.5  # 9 px across, as in the app
MEAN_WIDTH = 2
Y_TICKS = 10  # at most this many labels on the distance axis (tick_labels picks the step)
X_LABELS = 16  # at most this many layer numbers; every k-th layer beyond that
X_TITLE = "network depth (layer)"
Y_TITLE = "mean attention distance (pixels)"
POINTS_LABEL = "one head"
MEAN_LABEL = "mean of the heads of a layer"


@dataclass(frozen=True)
class DistancePlot:
    """A drawn plot and where its data lie in it, so that tests (and cards) can find them."""

    image: PILImage.Image  # RGB
    plot_box: tuple[int, int, int, int]  # left, top, right, bottom of the data area, in pixels
    layers: int
    y_high: float  # the distance at the top of the data area (the bottom is 0)

    def x_of(self, layer: float) -> float:
        """The pixel column of ``layer``, numbered from 1 (the axis runs from 0.5 to L + 0.5)."""
        left, _, right, _ = self.plot_box
        return left + (layer - 0.5) / max(self.layers, 1) * (right - left)

    def y_of(self, distance: float) -> float:
        """The pixel row of a mean attention distance (pixels)."""
        _, top, _, bottom = self.plot_box
        return bottom - distance / self.y_high * (bottom - top)


def layer_ticks(layers: int, most: int = X_LABELS) -> tuple[list[int], int]:
    """The layer numbers (from 1) labelled on the depth axis, and their step: every layer when
    there are at most ``most``, else the multiples of a step of 2, 4, 5 or 10 times a power of
    ten (like the app's axis, which labels every k-th layer), with layer 1 first."""
    step = 1
    if layers > most:
        need = layers / most
        power = 10 ** math.floor(math.log10(need))
        step = next(f * power for f in (1, 2, 4, 5, 10) if f * power >= need)
    labelled = list(range(step, layers + 1, step))
    if step > 1 and (not labelled or labelled[0] != 1) and labelled[0] - 1 >= 0.75 * step:
        labelled.insert(0, 1)  # the first layer, unless it would crowd the first multiple
    return labelled, step


def draw_distance_plot(
    distance: np.ndarray, title: str, width: int = WIDTH, height: int = HEIGHT
) -> DistancePlot:
    """Mean attention distance (``distance``, (layers, heads) pixels) against depth.

    The y axis runs from 0 to 5% above the largest finite distance (at least 1 px), as the app's
    plot does; heads whose distance is not finite are left out, and so is a layer's mean when
    none of its heads has one.
    """
    from PIL import Image, ImageDraw

    values = np.asarray(distance, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"distance must be (layers, heads), not {values.shape}")
    layers, heads = values.shape
    finite = np.isfinite(values)
    y_high = max(float(values[finite].max()) if finite.any() else 0.0, 1.0) * 1.05
    y_ticks = tick_labels(0.0, y_high, count=Y_TICKS)
    x_ticks, _ = layer_ticks(layers)

    image = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    title_font, label_font, tick_font = font(TITLE_SIZE), font(LABEL_SIZE), font(TICK_SIZE)
    title_h, label_h, tick_h = (text_height(draw, f) for f in (title_font, label_font, tick_font))

    # the header: the title (wrapped), then the legend on a row of its own, right-aligned
    title_lines = wrap(draw, printable(title), title_font, width - 2 * MARGIN)
    if len(title_lines) > 2:  # a long checkpoint name: two lines, the second cut
        rest = " ".join(title_lines[1:])
        title_lines = [title_lines[0], fit(draw, rest, title_font, width - 2 * MARGIN)]
    y = MARGIN
    for line in title_lines:
        draw.text((MARGIN, y), line, font=title_font, fill=INK, anchor="la")
        y += title_h + 6
    legend_y = y + 2
    _legend(draw, width - MARGIN, legend_y, label_font, label_h)

    # the data area: room on the left for the rotated axis title and the tick labels, below
    # for the layer numbers and the axis title
    tick_w = max((text_width(draw, text, tick_font) for _, text in y_ticks), default=0)
    left = MARGIN + label_h + 2 * GAP + tick_w + TICK_LENGTH
    top = legend_y + label_h + 12
    right = width - MARGIN - max(text_width(draw, str(layers), tick_font) // 2, 4)
    bottom = height - MARGIN - label_h - GAP - tick_h - GAP - TICK_LENGTH
    plot = DistancePlot(image, (left, top, right, bottom), layers, y_high)

    for value, text in y_ticks:
        at = round(plot.y_of(value))
        if top < at < bottom:
            draw.line((left + 1, at, right - 1, at), fill=GRID_COLOUR, width=1)
        draw.line((left - TICK_LENGTH, at, left, at), fill=INK, width=1)
        draw.text((left - TICK_LENGTH - GAP, at), text, font=tick_font, fill=INK, anchor="rm")
    labelled = set(x_ticks)
    for layer in range(1, layers + 1):
        at = round(plot.x_of(layer))
        length = TICK_LENGTH if layer in labelled else MINOR_LENGTH
        draw.line((at, bottom, at, bottom + length), fill=INK, width=1)
        if layer in labelled:
            where = (at, bottom + TICK_LENGTH + GAP)
            draw.text(where, str(layer), font=tick_font, fill=INK, anchor="ma")
    draw.rectangle((left, top, right, bottom), outline=FRAME_COLOUR, width=1)

    x_title_y = bottom + TICK_LENGTH + GAP + tick_h + GAP
    draw.text(((left + right) / 2, x_title_y), X_TITLE, font=label_font, fill=INK, anchor="ma")
    _vertical_text(image, Y_TITLE, label_font, MARGIN, (top + bottom) / 2)

    for layer in range(layers):
        for head in range(heads):
            if finite[layer, head]:
                _dot(draw, plot.x_of(layer + 1), plot.y_of(values[layer, head]))
    means = [
        (plot.x_of(layer + 1), plot.y_of(float(values[layer, finite[layer]].mean())))
        if finite[layer].any()
        else None
        for layer in range(layers)
    ]
    for run in _runs(means):  # over the dots: the summary stays visible where heads crowd
        if len(run) > 1:
            draw.line(run, fill=MEAN_COLOUR, width=MEAN_WIDTH, joint="curve")
        for mx, my in run:
            draw.ellipse((mx - 2.5, my - 2.5, mx + 2.5, my + 2.5), fill=MEAN_COLOUR)
    if not finite.any():
        middle = ((left + right) / 2, (top + bottom) / 2)
        draw.text(middle, "no finite distances", font=label_font, fill=GREY, anchor="mm")
    return plot


def save_distance_plot(handle: Any, distance: np.ndarray, title: str) -> None:
    """Write :func:`draw_distance_plot` as a PNG to ``handle`` (a path or a binary file)."""
    from vitexplorer.core.render.figure import save_png

    save_png(draw_distance_plot(distance, title).image, handle)


def _dot(draw: Any, x: float, y: float, colour: tuple[int, int, int] = POINT_COLOUR) -> None:
    r = POINT_RADIUS
    draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)


def _runs(points: list[tuple[float, float] | None]) -> list[list[tuple[float, float]]]:
    """The stretches of consecutive points with no gap (``None``) between them."""
    runs: list[list[tuple[float, float]]] = [[]]
    for point in points:
        if point is None:
            runs.append([])
        else:
            runs[-1].append(point)
    return [run for run in runs if run]


def _legend(draw: Any, right: float, top: float, face: Any, label_h: int) -> None:
    """The two entries side by side, ending at ``right``: a dot for the heads, a line with a
    marker for the layers' means."""
    middle = top + label_h / 2
    mean_w = text_width(draw, MEAN_LABEL, face)
    x = right - mean_w
    draw.text((x, middle), MEAN_LABEL, font=face, fill=INK, anchor="lm")
    x -= 8 + 24
    draw.line((x, middle, x + 24, middle), fill=MEAN_COLOUR, width=MEAN_WIDTH)
    draw.ellipse((x + 9.5, middle - 2.5, x + 14.5, middle + 2.5), fill=MEAN_COLOUR)
    x -= 24 + text_width(draw, POINTS_LABEL, face)
    draw.text((x, middle), POINTS_LABEL, font=face, fill=INK, anchor="lm")
    _dot(draw, x - 6 - POINT_RADIUS, middle)


def _vertical_text(image: Any, text: str, face: Any, left: float, middle: float) -> None:
    """``text`` turned a quarter anticlockwise (read bottom to top), its left edge at ``left``
    and centred on the row ``middle``."""
    from PIL import Image, ImageDraw

    scratch = ImageDraw.Draw(Image.new("L", (1, 1)))
    box = scratch.textbbox((0, 0), text, font=face)
    # whole numbers here (a bbox at (0, 0)); Pillow's annotation allows floats
    mask = Image.new("L", (int(box[2] - box[0]) + 2, int(box[3] - box[1]) + 2), 0)
    ImageDraw.Draw(mask).text((1 - box[0], 1 - box[1]), text, font=face, fill=255)
    mask = mask.rotate(90, expand=True)
    ink = Image.new("RGB", mask.size, INK)
    image.paste(ink, (round(left), round(middle - mask.height / 2)), mask)
