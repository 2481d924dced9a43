"""Small pieces the views share: the colour map and level choice."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QPen, QTextOption

from vitexplorer.core.render.scales import tick_labels

HEAT_COLORMAP = "inferno"
DIFFERENCE_COLORMAP = "CET-D1"  # diverging, white at zero: one map minus another
SELECTION_COLOR = (0, 229, 255)
UNIFORM_COLOR = (0, 200, 255)  # the uniform level's line across a colour bar
END_INSET = 0.025  # a line of words at an end of a colour bar: this share of it inside
BAR_STEPS = 256  # a vertical colour bar's own y coordinates run from 0 to this (pyqtgraph's)


def colormap(name: str = HEAT_COLORMAP) -> pg.ColorMap:
    return pg.colormap.get(name)


def heat_levels(values: np.ndarray) -> tuple[float, float]:
    """Colour levels spanning the map's own range, so structure shows even in flat maps; the
    colour bar shows the true values. A constant map gets a small range around its value."""
    if values.size == 0:
        return 0.0, 1.0
    low, high = float(values.min()), float(values.max())
    return (low, high) if high > low else (low, low + max(abs(low), 1.0) * 1e-3)


def shared_levels(maps: list[np.ndarray]) -> tuple[float, float]:
    """One colour scale for several maps: from the lowest minimum to the highest maximum."""
    levels = [heat_levels(values) for values in maps]
    return min(low for low, _ in levels), max(high for _, high in levels)


def selection_pen(width: float = 2.0) -> QPen:
    pen = pg.mkPen(SELECTION_COLOR, width=width)
    pen.setCosmetic(True)
    return pen


def new_heat_item(name: str = HEAT_COLORMAP) -> pg.ImageItem:
    item = pg.ImageItem(axisOrder="row-major")
    item.setColorMap(colormap(name))
    return item


def new_colorbar(width: int, name: str = HEAT_COLORMAP) -> pg.ColorBarItem:
    """A read-only colour bar whose levels the view sets; labels never hidden in narrow columns."""
    bar = pg.ColorBarItem(
        values=(0, 1),
        colorMap=colormap(name),
        interactive=False,
        width=width,
        rounding=1e-6,
        colorMapMenu=False,
    )
    bar.axis.setStyle(hideOverlappingLabels=False)
    bar.axis.setWidth(52)
    set_colorbar_levels(bar, (0.0, 1.0))
    return bar


def set_colorbar_levels(
    bar: pg.ColorBarItem,
    levels: tuple[float, float],
    count: int = 5,
    uniform: tuple[float, str] | None = None,
    clipped: tuple[bool, bool] = (False, False),
) -> None:
    """The bar's range and its tick labels, chosen by
    :func:`vitexplorer.core.render.scales.tick_labels` (the labels of ``vitexplorer analyze``'s
    figures too): as many digits as the values need, so a map of values near 0.02 reads 0.019,
    0.020, 0.021, never 0.0, 0.0, 0.0. An exported view is a picture of the same scene, with the
    same labels. ``uniform`` (value, words) adds a labelled tick at that value (see
    :func:`uniform_tick`), the ticks it would hide left out; ``clipped`` (below, above) says
    "clipped" at an end the map has values beyond (a locked scale), so its end colour is not read
    as the end value."""
    low, high = float(levels[0]), float(levels[1])
    bar.setLevels((low, high))
    ticks = tick_labels(low, high, count)
    marks: dict[float, list[str]] = {}  # words at a value, one line each
    mark = uniform_tick(levels, uniform)
    if mark is not None:
        at = mark[0]
        if low < at < high:  # its words kept clear of an end's "clipped" (its line stays true)
            at = clear_of_ends(at, (low, high), clipped, mark[1].count("\n") + 1)
        marks.setdefault(at, []).append(mark[1])
    for end, beyond, arrow in ((low, clipped[0], "▼"), (high, clipped[1], "▲")):
        if beyond:  # the map has values past this end, drawn in its colour
            marks.setdefault(end, []).insert(0, f"clipped {arrow}")
    labelled: list[tuple[float, str]] = []
    for at, words in marks.items():
        lines = sum(w.count("\n") + 1 for w in words)
        # words at an end moved inside by half their height: a label that reaches past the
        # axis is not drawn at all (their arrows say which end they speak of)
        inset = END_INSET * (high - low) * lines
        at = at + inset if at == low and high > low else at - inset if at == high else at
        near = (high - low) * (0.05 + 2 * END_INSET * lines)  # the ticks its words would cover
        ticks = [t for t in ticks if abs(t[0] - at) > near]
        labelled.append((at, "\n".join(words)))
    bar.axis.setTicks([ticks + labelled, []])


def clear_of_ends(
    at: float, levels: tuple[float, float], clipped: tuple[bool, bool], lines: int
) -> float:
    """Where words of ``lines`` lines centred at ``at`` go so as not to overlap the one-line
    "clipped" at an end of ``levels`` that has it (that end's words take a line's height,
    ``2 * END_INSET`` of the bar, from the end): ``at`` itself where they do not."""
    low, high = levels
    line = 2 * END_INSET * (high - low)
    half = line * lines / 2
    if clipped[0]:
        at = max(at, low + line + half)
    if clipped[1]:
        at = min(at, high - line - half)
    return at


def uniform_tick(
    levels: tuple[float, float], uniform: tuple[float, str] | None
) -> tuple[float, str] | None:
    """The tick that marks the uniform level on a bar over ``levels``: at its value, or, off the
    scale, at the end it lies beyond with an arrow saying so (▼ below, ▲ above). Its words are
    broken after the first (``uniform`` over ``1/65``): a label wider than the bar's axis is
    not drawn at all."""
    if uniform is None:
        return None
    value, words = float(uniform[0]), uniform[1].replace(" ", "\n", 1)
    if value < levels[0]:
        return float(levels[0]), f"{words} ▼"
    if value > levels[1]:
        return float(levels[1]), f"{words} ▲"
    return value, words


def bar_position(levels: tuple[float, float], value: float) -> float:
    """Where ``value`` lies in a vertical colour bar's own coordinates (0 at ``levels``' low, 256
    at its high), for an item drawn over the bar."""
    low, high = float(levels[0]), float(levels[1])
    return BAR_STEPS * (value - low) / (high - low) if high > low else BAR_STEPS / 2


def new_uniform_line(bar: pg.ColorBarItem) -> pg.InfiniteLine:
    """A horizontal line across ``bar`` for the uniform level, hidden until placed."""
    line = pg.InfiniteLine(angle=0, movable=False, pen=pg.mkPen(UNIFORM_COLOR, width=2))
    line.setZValue(10)
    line.setVisible(False)
    bar.addItem(line)
    return line


class WrappingTitle(pg.LabelItem):
    """A view's title that wraps to the width the layout gives it, centred, instead of asking
    for the width of its whole text: a long title used to widen a narrow view's layout and push
    its colour bar's labels out of sight."""

    def __init__(self, text: str = " ", **options) -> None:
        super().__init__(text, **options)
        self.item.document().setDefaultTextOption(QTextOption(Qt.AlignmentFlag.AlignHCenter))

    def resizeEvent(self, event) -> None:  # Qt's name
        width = max(self.size().width(), 40.0)
        if abs(self.item.textWidth() - width) > 0.5:
            self.item.setTextWidth(width)
        super().resizeEvent(event)

    def updateMin(self) -> None:  # pyqtgraph's name
        height = self.itemRect().height()
        self.setMinimumWidth(0)
        self.setMinimumHeight(height)
        self._sizeHint = {
            Qt.SizeHint.MinimumSize: (0, height),
            Qt.SizeHint.PreferredSize: (0, height),
            Qt.SizeHint.MaximumSize: (-1, -1),
            Qt.SizeHint.MinimumDescent: (0, 0),
        }
        self.updateGeometry()
