"""The image the model saw, the patch grid, the selected patch and its attention overlay."""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QGraphicsRectItem

from vitexplorer.gui.views.common import heat_levels, new_colorbar, new_heat_item, selection_pen

ARROWS = {Qt.Key_Up: (-1, 0), Qt.Key_Down: (1, 0), Qt.Key_Left: (0, -1), Qt.Key_Right: (0, 1)}


class ImageView(pg.GraphicsLayoutWidget):
    """Coordinates are patch units: the image spans (0, 0) to (columns, rows)."""

    patch_clicked = Signal(int, int)  # row, column
    patch_hovered = Signal(int, int)  # row, column; (-1, -1) when off the image
    arrow_pressed = Signal(int, int)  # row step, column step

    def __init__(self) -> None:
        super().__init__()
        self.setFocusPolicy(Qt.StrongFocus)
        self.setAcceptDrops(False)  # drops go to the main window
        self.title = self.addLabel("Drop an image here", row=0, col=0, colspan=2)
        self.view = self.addViewBox(row=1, col=0, lockAspect=True, invertY=True, enableMenu=False)
        self.photo = pg.ImageItem(axisOrder="row-major")
        self.heat = new_heat_item()
        self.heat.setZValue(1)
        self.grid_lines = pg.PlotCurveItem(
            pen=pg.mkPen(255, 255, 255, 70), connect="pairs", antialias=False, skipFiniteCheck=True
        )
        self.grid_lines.setZValue(2)
        self.selection = QGraphicsRectItem()
        self.selection.setPen(selection_pen(2.5))
        self.selection.setZValue(3)
        for item in (self.photo, self.heat, self.grid_lines, self.selection):
            self.view.addItem(item)
        self.colorbar = new_colorbar(width=14)
        self.addItem(self.colorbar, row=1, col=1)
        self.grid: tuple[int, int] = (0, 0)
        self.heat_values = np.zeros((0, 0), np.float32)
        self.set_opacity(0.6)
        self.scene().sigMouseClicked.connect(self._clicked)
        self.scene().sigMouseMoved.connect(self._moved)

    def set_image(self, display: np.ndarray, grid: tuple[int, int]) -> None:
        """Show a new image (H, W, 3) with its patch grid (rows, columns)."""
        rows, cols = grid
        rect = QRectF(0, 0, cols, rows)
        self.photo.setImage(display, levels=(0, 255))
        self.photo.setRect(rect)
        if grid != self.grid:
            self.grid = grid
            xs = np.repeat(np.arange(cols + 1, dtype=float), 2)
            ys = np.tile([0.0, rows], cols + 1)
            hx = np.tile([0.0, cols], rows + 1)
            hy = np.repeat(np.arange(rows + 1, dtype=float), 2)
            self.grid_lines.setData(np.concatenate([xs, hx]), np.concatenate([ys, hy]))
            self.view.setRange(rect, padding=0.02)

    def set_heat(self, values: np.ndarray) -> None:
        """The selected token's attention over the patches, (rows, columns)."""
        self.heat_values = values
        levels = heat_levels(values)
        self.heat.setImage(values, levels=levels)
        self.heat.setRect(QRectF(0, 0, self.grid[1], self.grid[0]))
        self.colorbar.setLevels(levels)

    def set_selected_patch(self, patch: tuple[int, int] | None) -> None:
        """Outline the selected patch; ``None`` (a prefix token such as CLS) hides the outline."""
        self.selection.setVisible(patch is not None)
        if patch is not None:
            self.selection.setRect(QRectF(patch[1], patch[0], 1, 1))

    def set_opacity(self, opacity: float) -> None:
        self.heat.setOpacity(opacity)

    def set_grid_visible(self, visible: bool) -> None:
        self.grid_lines.setVisible(visible)

    def show_placeholder(self, message: str) -> None:
        self.photo.clear()
        self.heat.clear()
        self.heat_values = np.zeros((0, 0), np.float32)
        self.selection.setVisible(False)
        self.title.setText(message)

    def patch_at(self, scene_pos) -> tuple[int, int] | None:  # noqa: ANN001
        point = self.view.mapSceneToView(scene_pos)
        row, col = math.floor(point.y()), math.floor(point.x())
        if 0 <= row < self.grid[0] and 0 <= col < self.grid[1]:
            return row, col
        return None

    def _clicked(self, event) -> None:  # noqa: ANN001
        if event.button() != Qt.LeftButton or self.photo.image is None:
            return
        patch = self.patch_at(event.scenePos())
        if patch is not None:
            self.setFocus()
            self.patch_clicked.emit(*patch)

    def _moved(self, scene_pos) -> None:  # noqa: ANN001
        patch = self.patch_at(scene_pos) if self.photo.image is not None else None
        self.patch_hovered.emit(*(patch or (-1, -1)))

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        step = ARROWS.get(event.key())
        if step is None:
            super().keyPressEvent(event)
            return
        self.arrow_pressed.emit(*step)
        event.accept()
