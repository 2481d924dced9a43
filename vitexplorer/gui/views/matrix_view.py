"""One layer's and head's full attention matrix, tokens x tokens, the selected row marked."""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRect, QRectF, Qt, QTimer, Signal
from PySide6.QtWidgets import QGraphicsRectItem, QWidget

from vitexplorer.core.render.scales import nice_step
from vitexplorer.gui.views.common import (
    bar_position,
    heat_levels,
    new_colorbar,
    new_heat_item,
    new_uniform_line,
    selection_pen,
    set_colorbar_levels,
)
from vitexplorer.gui.views.image_view import BAR_AXIS_WIDTH


def token_ticks(count: int) -> list[tuple[float, str]]:
    """Axis ticks for ``count`` tokens numbered from 1: token 1, then every multiple of a round
    step (1, 10, 20, 30 for 37 tokens; 1, 50, 100, 150 for 197), each at its cell's centre."""
    if count < 1:
        return []
    step = max(1, int(nice_step(float(count), 5)))
    numbers = [1, *(k for k in range(step, count + 1, step) if k > 1)]
    return [(float(k), str(k)) for k in numbers]


class AttentionMatrixView(pg.GraphicsLayoutWidget):
    """Row i is where query token i attends; the first token (CLS) is at the top left.

    The axes count tokens from 1, as people do: token number k (index k - 1) is the cell
    centred on k, spanning k - 0.5 to k + 0.5. The signals carry 0-based token indices."""

    token_clicked = Signal(int)  # the query token (row) under the click, 0-based
    cell_hovered = Signal(int, int)  # query, key, 0-based; (-1, -1) off the matrix

    def __init__(self) -> None:
        super().__init__()
        self.plot = self.addPlot(row=0, col=0)
        self.plot.setMenuEnabled(False)
        self.plot.invertY(True)
        self.plot.setAspectLocked(True)  # square cells: query and key tokens alike
        self.setToolTip(
            "Row: where that query token attends. Scroll to zoom, drag to pan, "
            "double-click for the whole matrix; click a row to select its token"
        )
        self.plot.setLabel("left", "query token (from 1)")
        self.plot.setLabel("bottom", "key token (from 1)")
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.plot.hideAxis("left")  # shown with the first matrix
        self.plot.hideAxis("bottom")
        self.image = new_heat_item()
        self.plot.addItem(self.image)
        self.row_marker = QGraphicsRectItem()
        self.row_marker.setPen(selection_pen(1.5))
        self.row_marker.setZValue(2)
        self.plot.addItem(self.row_marker)
        self.colorbar = new_colorbar(width=12)
        self.colorbar.axis.setWidth(BAR_AXIS_WIDTH)  # room for "uniform 1/197 ▲"
        self.addItem(self.colorbar, row=0, col=1)
        self.colorbar.setVisible(False)  # shown with the first matrix: no matrix, no scale
        self.uniform_line = new_uniform_line(self.colorbar)
        self.uniform: tuple[float, str] | None = None  # the uniform level marked, and its words
        self.matrix = np.zeros((0, 0), np.float32)
        self.scene().sigMouseClicked.connect(self._clicked)
        self.scene().sigMouseMoved.connect(self._moved)

    def set_matrix(self, matrix: np.ndarray, uniform: tuple[float, str] | None = None) -> None:
        """Show ``matrix`` (tokens, tokens) on its own range. ``uniform`` (value, words), for
        a matrix whose rows are distributions over its tokens (attention, rollout: 1/N), is
        marked on the colour bar as in the explorer's view; None for any other."""
        n = matrix.shape[0]
        resized = n != self.matrix.shape[0]
        self.matrix = matrix
        self.uniform = uniform
        levels = heat_levels(matrix)
        self.image.setImage(matrix, levels=levels)
        set_colorbar_levels(self.colorbar, levels, uniform=uniform)
        inside = uniform is not None and levels[0] <= uniform[0] <= levels[1]
        if uniform is not None and inside:
            self.uniform_line.setValue(bar_position(levels, uniform[0]))
        self.uniform_line.setVisible(inside)
        self.colorbar.setVisible(True)
        if resized:
            self.plot.showAxis("left")
            self.plot.showAxis("bottom")
            self.image.setRect(QRectF(0.5, 0.5, n, n))
            self.plot.setRange(QRectF(0.5, 0.5, n, n), padding=0.02)
            ticks = [token_ticks(n)]
            self.plot.getAxis("left").setTicks(ticks)
            self.plot.getAxis("bottom").setTicks(ticks)

    def set_selected_token(self, token: int) -> None:
        """Mark the row of ``token`` (0-based)."""
        self.row_marker.setRect(QRectF(0.5, token + 0.5, self.matrix.shape[0], 1))

    def _cell(self, scene_pos) -> tuple[int, int] | None:
        point = self.plot.vb.mapSceneToView(scene_pos)
        query, key = math.floor(point.y() - 0.5), math.floor(point.x() - 0.5)
        n = self.matrix.shape[0]
        return (query, key) if 0 <= query < n and 0 <= key < n else None

    def show_whole(self) -> None:
        """Zoom out to the whole matrix."""
        n = self.matrix.shape[0]
        if n:
            self.plot.setRange(QRectF(0.5, 0.5, n, n), padding=0.02)

    def _clicked(self, event) -> None:
        if event.double() and event.button() == Qt.MouseButton.LeftButton:
            self.show_whole()
            return
        cell = self._cell(event.scenePos()) if event.button() == Qt.MouseButton.LeftButton else None
        if cell is not None:
            self.token_clicked.emit(cell[0])

    def _moved(self, scene_pos) -> None:
        self.cell_hovered.emit(*(self._cell(scene_pos) or (-1, -1)))


class SquareHolder(QWidget):
    """Holds the matrix view at the size that makes its plot square: in a tall or wide
    dock the axes end at the matrix instead of running on past it (centred across, at the top)."""

    def __init__(self, view: AttentionMatrixView) -> None:
        super().__init__()
        self.view = view
        view.setParent(self)
        self.setMinimumSize(160, 160)
        self.setToolTip(view.toolTip())
        # axes shown with the first matrix change the margins: placed again once laid out
        view.plot.vb.sigResized.connect(lambda _box: QTimer.singleShot(0, self.place))

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self.place()

    def place(self) -> None:
        """The view as large as fits with a square plot: its margins (axes, colour bar) are
        what it is larger than its plot."""
        box = self.view.plot.vb.size()
        width, height = self.width(), self.height()
        if box.width() <= 0 or box.height() <= 0 or not self.view.plot.getAxis("left").isVisible():
            self.view.setGeometry(0, 0, width, height)
            return
        extra_w = self.view.width() - box.width()
        extra_h = self.view.height() - box.height()
        side = max(40, min(width - extra_w, height - extra_h))
        w, h = min(width, round(side + extra_w)), min(height, round(side + extra_h))
        target = QRect((width - w) // 2, 0, w, h)  # under its caption
        if target != self.view.geometry():
            self.view.setGeometry(target)
