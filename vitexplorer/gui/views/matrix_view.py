"""One layer's and head's full attention matrix, tokens x tokens, the selected row marked."""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtWidgets import QGraphicsRectItem

from vitexplorer.gui.views.common import heat_levels, new_colorbar, new_heat_item, selection_pen


class AttentionMatrixView(pg.GraphicsLayoutWidget):
    """Row i is where query token i attends; token 0 (CLS) is at the top left."""

    token_clicked = Signal(int)  # the query token (row) under the click
    cell_hovered = Signal(int, int)  # query, key; (-1, -1) off the matrix

    def __init__(self) -> None:
        super().__init__()
        self.plot = self.addPlot(row=0, col=0)
        self.plot.setMenuEnabled(False)
        self.plot.invertY(True)
        self.plot.setLabel("left", "query token")
        self.plot.setLabel("bottom", "key token")
        self.setFocusPolicy(Qt.NoFocus)
        self.plot.hideAxis("left")  # shown with the first matrix
        self.plot.hideAxis("bottom")
        self.image = new_heat_item()
        self.plot.addItem(self.image)
        self.row_marker = QGraphicsRectItem()
        self.row_marker.setPen(selection_pen(1.5))
        self.row_marker.setZValue(2)
        self.plot.addItem(self.row_marker)
        self.colorbar = new_colorbar(width=12)
        self.addItem(self.colorbar, row=0, col=1)
        self.matrix = np.zeros((0, 0), np.float32)
        self.scene().sigMouseClicked.connect(self._clicked)
        self.scene().sigMouseMoved.connect(self._moved)

    def set_matrix(self, matrix: np.ndarray) -> None:
        n = matrix.shape[0]
        resized = n != self.matrix.shape[0]
        self.matrix = matrix
        levels = heat_levels(matrix)
        self.image.setImage(matrix, levels=levels)
        self.colorbar.setLevels(levels)
        if resized:
            self.plot.showAxis("left")
            self.plot.showAxis("bottom")
            self.image.setRect(QRectF(0, 0, n, n))
            self.plot.setRange(QRectF(0, 0, n, n), padding=0.02)

    def set_selected_token(self, token: int) -> None:
        self.row_marker.setRect(QRectF(0, token, self.matrix.shape[0], 1))

    def _cell(self, scene_pos) -> tuple[int, int] | None:  # noqa: ANN001
        point = self.plot.vb.mapSceneToView(scene_pos)
        query, key = math.floor(point.y()), math.floor(point.x())
        n = self.matrix.shape[0]
        return (query, key) if 0 <= query < n and 0 <= key < n else None

    def _clicked(self, event) -> None:  # noqa: ANN001
        cell = self._cell(event.scenePos()) if event.button() == Qt.LeftButton else None
        if cell is not None:
            self.token_clicked.emit(cell[0])

    def _moved(self, scene_pos) -> None:  # noqa: ANN001
        self.cell_hovered.emit(*(self._cell(scene_pos) or (-1, -1)))
